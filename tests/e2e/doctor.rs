//! `vestibule doctor`, run as the real binary: a healthy setup reports only OK lines and exits 0;
//! each deliberately broken setting gives its FAIL or WARN line with the fix, and the exit code
//! (1 warnings, 2 failures); `--json` carries the same lines.
//!
//! Covered so far: the configuration (invalid: FAIL with the error count and the errors), the
//! listeners (daemon not running; a configured listener it does not serve), the certificates
//! (self-signed on a public name; expiring within 14 days), the upstreams (a server that does not
//! answer), Mattermost's settings (a key that differs, an admin's value, an unreadable config.json;
//! OK once integrated; the places taken from [integrate]), the mail queue (a message older than an
//! hour), DNS (a name that resolves elsewhere through public DNS, one that does not resolve; two
//! dnsmasq instances), Mattermost's ping (unhealthy, gone), embedding fetched through vestibule (the
//! upstream's X-Frame-Options before a reload, an origin left out, a certificate file renewed but
//! not loaded), the ONLYOFFICE secret (one place changed: named by digest), the smarthost (EHLO
//! refused, nothing listening, AUTH refused), push routes (an upstream gone, an APNs key that loads
//! or does not), the clock (a peer's Date seconds or minutes off), and `[doctor]` itself.

use std::path::Path;

use serde_json::Value;

use super::mail_routes::Dnsmasq;
use crate::support::tls::TestCa;
use crate::support::*;

/// `vestibule doctor [extra] --config <main>`, off the async runtime: the stand-ins it talks to
/// run on it.
pub(crate) async fn doctor(main: &Path, extra: &[&str]) -> Cli {
    let mut cmd = std::process::Command::new(bin());
    cmd.arg("doctor").args(extra).arg("--config").arg(main);
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .expect("join")
        .expect("run vestibule doctor");
    Cli {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The report's line that has `status`, names `check` and contains `text`.
pub(crate) fn line<'a>(out: &'a Cli, status: &str, check: &str, text: &str) -> &'a str {
    out.stdout
        .lines()
        .find(|l| {
            let mut cols = l.split_whitespace();
            cols.next() == Some(status) && cols.next() == Some(check) && l.contains(text)
        })
        .unwrap_or_else(|| panic!("no `{status} {check} ..{text}..` line in:\n{}", out.text()))
}

fn chat(upstream: &Upstream) -> Vhost {
    Vhost::new("chat.localhost").upstream(upstream.addr.to_string())
}

#[tokio::test]
async fn a_healthy_setup_is_all_ok() {
    let up = Upstream::start("mattermost").await;
    let v = Vestibule::start(MainConfig::new().https().vhost(chat(&up).self_signed()).build()).await;
    let out = doctor(&v.cfg.main_file(), &[]).await;
    assert_eq!(out.code, 0, "{}", out.text());
    assert!(out.stdout.lines().all(|l| l.starts_with("OK ")), "{}", out.text());
    line(&out, "OK", "configuration", "is valid");
    line(&out, "OK", "listeners", &format!("http {}", v.addr("http")));
    line(&out, "OK", "listeners", &format!("https {}", v.addr("https")));
    line(&out, "OK", "listeners", &format!("admin {}", v.addr("admin")));
    line(
        &out,
        "OK",
        "certificates",
        "vhost chat (chat.localhost): self-signed",
    );
    line(&out, "OK", "upstreams", &format!("{} answers", up.addr));

    let json = doctor(&v.cfg.main_file(), &["--json"]).await;
    assert_eq!(json.code, 0, "{}", json.text());
    let doc: Value = serde_json::from_str(&json.stdout).expect("one JSON document");
    assert_eq!(doc["status"], "OK");
    let checks = doc["checks"].as_array().expect("checks");
    assert_eq!(checks.len(), out.stdout.lines().count(), "{doc}");
    assert!(
        checks.iter().all(|c| c["status"] == "OK" && c["fix"] == ""),
        "{doc}"
    );
}

#[tokio::test]
async fn an_invalid_configuration_fails_with_its_error_count() {
    let cfg = MainConfig::new()
        .proxy("listne", ["127.0.0.1:0"])
        .vhost(Vhost::new("chat.localhost").upstream("127.0.0.1:9"))
        .build();
    let out = doctor(&cfg.main_file(), &[]).await;
    assert_eq!(out.code, 2, "{}", out.text());
    let l = line(&out, "FAIL", "configuration", "invalid (1 error)");
    assert!(
        l.ends_with("vestibule check (lists each error with its file and line)"),
        "{l}"
    );
    let json = doctor(&cfg.main_file(), &["--json"]).await;
    assert_eq!(json.code, 2, "{}", json.text());
    let doc: Value = serde_json::from_str(&json.stdout).expect("one JSON document");
    assert_eq!(doc["status"], "FAIL");
    assert_eq!(doc["checks"][0]["check"], "configuration");
}

#[tokio::test]
async fn a_daemon_that_is_not_running_fails_with_how_to_start_it() {
    let up = Upstream::start("mattermost").await;
    let cfg = MainConfig::new().vhost(chat(&up)).build();
    let out = doctor(&cfg.main_file(), &[]).await;
    assert_eq!(out.code, 2, "{}", out.text());
    let l = line(&out, "FAIL", "listeners", "vestibule is not running");
    assert!(l.ends_with("systemctl start vestibule"), "{l}");
    // The other checks still run.
    line(&out, "OK", "upstreams", "answers");
}

#[tokio::test]
async fn a_configured_listener_the_daemon_does_not_serve_fails() {
    let up = Upstream::start("mattermost").await;
    let v = Vestibule::start(MainConfig::new().vhost(chat(&up)).build()).await;
    // Changed on disk, not reloaded: the running daemon has no push relay.
    v.cfg.update(|m| {
        m.push(|p| p).push_route(&["apple_rn"], |r| {
            r.set("upstream", "https://push.mattermost.com")
        })
    });
    let out = doctor(&v.cfg.main_file(), &[]).await;
    assert_eq!(out.code, 2, "{}", out.text());
    let l = line(
        &out,
        "FAIL",
        "listeners",
        "push 127.0.0.1:0 is configured but not served",
    );
    assert!(l.contains("systemctl reload vestibule"), "{l}");
    line(&out, "OK", "listeners", &format!("http {}", v.addr("http")));
}

#[tokio::test]
async fn a_self_signed_certificate_on_a_public_name_fails() {
    let up = Upstream::start("mattermost").await;
    let cfg = MainConfig::new()
        .https()
        .vhost(
            Vhost::new("chat.example.org")
                .upstream(up.addr.to_string())
                .self_signed(),
        )
        .build();
    let v = Vestibule::start(cfg).await;
    let out = doctor(&v.cfg.main_file(), &[]).await;
    assert_eq!(out.code, 2, "{}", out.text());
    let l = line(
        &out,
        "FAIL",
        "certificates",
        "vhost chat (chat.example.org): self-signed on a public name",
    );
    assert!(
        l.ends_with("set tls = \"acme\" (or cert/key files) in vhosts/chat.toml"),
        "{l}"
    );
}

#[tokio::test]
async fn a_certificate_that_expires_within_two_weeks_warns() {
    let up = Upstream::start("mattermost").await;
    let certs = tempfile::tempdir().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let leaf =
        TestCa::new("doctor test CA").leaf_with(&["chat.example.org"], &rcgen::PKCS_ECDSA_P256_SHA256, |p| {
            p.not_before = rcgen::date_time_ymd(2020, 1, 1);
            // Five and a half days from now: "5 days" left whichever second the check runs in.
            p.not_after =
                rcgen::date_time_ymd(1970, 1, 1) + (now + std::time::Duration::from_secs(5 * 86400 + 43200));
        });
    let (cert, key) = leaf.write(certs.path(), "chat");
    // The name resolves to this machine: only the certificate is wrong.
    let dns = Dnsmasq::start(&["--address=/chat.example.org/127.0.0.1"]).await;
    // In this test's world loopback is the public address (it must be listed: public DNS giving a
    // loopback or private address is otherwise a failure).
    let cfg = resolvers(MainConfig::new(), &dns, &dns, &["127.0.0.1"])
        .https()
        .vhost(
            Vhost::new("chat.example.org")
                .upstream(up.addr.to_string())
                .cert(&cert, &key),
        )
        .build();
    let v = Vestibule::start(cfg).await;
    let out = doctor(&v.cfg.main_file(), &[]).await;
    assert_eq!(out.code, 1, "{}", out.text());
    let l = line(
        &out,
        "WARN",
        "certificates",
        "vhost chat (chat.example.org): expires in 5 days",
    );
    assert!(
        l.ends_with(&format!("replace {} and reload", cert.display())),
        "{l}"
    );
}

#[tokio::test]
async fn an_upstream_that_does_not_answer_fails() {
    let up = Upstream::start("mattermost").await;
    let dead = up.addr;
    up.stop().await;
    let v = Vestibule::start(
        MainConfig::new()
            .vhost(Vhost::new("chat.localhost").upstream(dead.to_string()))
            .build(),
    )
    .await;
    let out = doctor(&v.cfg.main_file(), &[]).await;
    assert_eq!(out.code, 2, "{}", out.text());
    let l = line(&out, "FAIL", "upstreams", &format!("chat {dead} does not answer"));
    assert!(
        l.ends_with("start the application server, or fix `servers` of upstream chat"),
        "{l}"
    );
}

/// A tree whose Mattermost vhost comes from `vhost new --template mattermost`, and Mattermost's
/// first-start config.json in it.
fn mattermost_tree() -> (ConfigDir, std::path::PathBuf) {
    let cfg = MainConfig::new().https().build();
    let made = cfg.vestibule(&[
        "vhost",
        "new",
        "--template",
        "mattermost",
        "--name",
        "chat.example.org",
        "--upstream",
        "127.0.0.1:8065",
        "--tls",
        "self-signed",
    ]);
    assert_eq!(made.code, 0, "{}", made.text());
    let json = cfg.path().join("config.json");
    std::fs::write(&json, crate::support::mattermost::DEFAULT_CONFIG).unwrap();
    (cfg, json)
}

#[tokio::test]
async fn mattermost_settings_that_differ_from_vestibules_warn_by_key() {
    let (cfg, json) = mattermost_tree();
    let path = json.to_str().unwrap();
    let out = doctor(&cfg.main_file(), &["--mattermost-config", path]).await;
    let l = line(
        &out,
        "WARN",
        "mattermost",
        "ServiceSettings.SiteURL is \"\", vestibule needs \"https://chat.example.org",
    );
    assert!(l.ends_with("vestibule integrate mattermost"), "{l}");
    line(
        &out,
        "WARN",
        "mattermost",
        "ServiceSettings.TrustedProxyIPHeader is",
    );

    // Once integrated, they match.
    let done = cfg.vestibule(&["integrate", "mattermost", "--config-json", path]);
    assert_eq!(done.code, 0, "{}", done.text());
    let out = doctor(&cfg.main_file(), &["--mattermost-config", path]).await;
    line(
        &out,
        "OK",
        "mattermost",
        "settings match vhost `chat.example.org`",
    );
    assert!(!out.stdout.contains("WARN  mattermost"), "{}", out.text());

    // An admin's own value: named, with --force in the fix.
    let text = std::fs::read_to_string(&json).unwrap();
    let doc: Value = serde_json::from_str(&text).unwrap();
    let site = doc["ServiceSettings"]["SiteURL"].as_str().unwrap().to_string();
    std::fs::write(&json, text.replace(&site, "https://old.example.org")).unwrap();
    let out = doctor(&cfg.main_file(), &["--mattermost-config", path]).await;
    let l = line(
        &out,
        "WARN",
        "mattermost",
        "ServiceSettings.SiteURL is \"https://old.example.org\" (set by an admin)",
    );
    assert!(l.ends_with("vestibule integrate mattermost --force"), "{l}");

    // Unreadable: said, with where to point doctor.
    let out = doctor(
        &cfg.main_file(),
        &["--mattermost-config", "/nonexistent/config.json"],
    )
    .await;
    let l = line(
        &out,
        "WARN",
        "mattermost",
        "cannot read Mattermost's configuration",
    );
    assert!(
        l.ends_with(
            "set [integrate] mattermost_config (or mattermost_url and mattermost_token_file), or give doctor --mattermost-config PATH"
        ),
        "{l}"
    );
}

#[tokio::test]
async fn a_mail_queue_with_a_message_older_than_an_hour_warns() {
    let cfg = MainConfig::new()
        .mail(|m| {
            m.set("hostname", "mail.example.org")
                .set("sender_domains", ["example.org"])
        })
        .vhost(Vhost::new("chat.localhost").upstream("127.0.0.1:9"))
        .build();
    let out = doctor(&cfg.main_file(), &[]).await;
    line(&out, "OK", "mail", "queue");
    assert!(
        out.stdout.contains("OK    mail queue     empty"),
        "{}",
        out.text()
    );

    // A message the relay accepted two hours ago and could not deliver since.
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 7200;
    let queue = cfg.state_dir().join("mail/queue");
    std::fs::create_dir_all(&queue).unwrap();
    std::fs::write(
        queue.join("0633a1f2b4c5d60001a1b2c3d4.msg"),
        format!(
            "{{\"id\":\"0633a1f2b4c5d60001a1b2c3d4\",\"created\":{created},\"client\":\"127.0.0.1\",\
             \"helo\":\"client.test\",\"auth_user\":null,\"sender\":\"a@example.org\",\"size\":6,\
             \"recipients\":[{{\"address\":\"b@example.org\",\"state\":\"pending\",\"attempts\":3}}]}}\n\
             Hello\n"
        ),
    )
    .unwrap();
    let out = doctor(&cfg.main_file(), &[]).await;
    let l = line(&out, "WARN", "mail", "1 message queued, the oldest for 120 min");
    assert!(
        l.ends_with("vestibule mail queue (each recipient's last reply); check the smarthost"),
        "{l}"
    );
    // A queued message whose envelope cannot be read is not "empty": it is named.
    std::fs::write(queue.join("0633a1f2b4c5d60001a1b2c3d5.msg"), "not an envelope\n").unwrap();
    let out = doctor(&cfg.main_file(), &[]).await;
    line(&out, "WARN", "mail", "1 queued message in ");
    assert!(
        out.stdout.contains("cannot be read (1 readable)"),
        "{}",
        out.text()
    );
}

/// A route for Mattermost's websocket: what tells doctor a vhost fronts Mattermost.
const WEBSOCKET: &str = "^/api/v[0-9]+/(users/)?websocket$";

/// `[dns] servers` and `[doctor] public_resolvers` on two dnsmasq instances, and `public_addresses`.
fn resolvers(main: MainConfig, configured: &Dnsmasq, public: &Dnsmasq, nat: &[&str]) -> MainConfig {
    main.table(Table::new("dns").set("servers", [format!("127.0.0.1:{}", configured.port)]))
        .table(
            Table::new("doctor")
                .set("public_resolvers", [format!("127.0.0.1:{}", public.port)])
                .set("public_addresses", nat),
        )
}

#[tokio::test]
async fn names_that_resolve_elsewhere_or_not_at_all_fail_per_resolver() {
    // The configured resolvers know two names, public DNS points one of them elsewhere.
    // In this test's world loopback is the public address: listed in public_addresses.
    let configured = Dnsmasq::start(&[
        "--address=/ok.example.org/127.0.0.1",
        "--address=/chat.example.org/127.0.0.1",
        "--address=/v6.example.org/127.0.0.1",
        "--address=/cloud.example.org/127.0.0.1",
    ])
    .await;
    // Public DNS: chat on another network's address, v6 with a stale AAAA beside the right A,
    // cloud on a public address this machine does not hold (NAT, or a cloud's public IP).
    let public = Dnsmasq::start(&[
        "--address=/ok.example.org/127.0.0.1",
        "--address=/chat.example.org/192.0.2.7",
        "--address=/v6.example.org/127.0.0.1",
        "--address=/v6.example.org/2001:db8::7",
        "--address=/cloud.example.org/93.184.216.34",
    ])
    .await;
    let vhost = || {
        Vhost::new("ok.example.org")
            .also("chat.example.org")
            .also("lost.example.org")
            .also("v6.example.org")
            .also("cloud.example.org")
            .also("box.lan")
            .upstream("127.0.0.1:9")
    };
    let cfg = resolvers(MainConfig::new(), &configured, &public, &["127.0.0.1"])
        .vhost(vhost())
        .build();
    let out = doctor(&cfg.main_file(), &[]).await;
    assert_eq!(out.code, 2, "{}", out.text());
    line(
        &out,
        "OK",
        "dns",
        "ok.example.org -> 127.0.0.1 (this machine) through [dns] servers and public DNS",
    );
    let l = line(
        &out,
        "FAIL",
        "dns",
        &format!(
            "chat.example.org through public DNS (127.0.0.1:{}): resolves to 192.0.2.7, which no one outside can reach",
            public.port
        ),
    );
    assert!(l.contains("[doctor] public_addresses"), "{l}");
    // The AAAA record is asked for even though an A record exists.
    line(&out, "FAIL", "dns", "v6.example.org through public DNS");
    assert!(
        out.stdout
            .contains("resolves to 2001:db8::7, which no one outside can reach"),
        "{}",
        out.text()
    );
    // A public address not on any interface may be this machine behind NAT: a warning.
    let l = line(&out, "WARN", "dns", "cloud.example.org through public DNS");
    assert!(
        l.contains("resolves to 93.184.216.34, not an address of this machine"),
        "{l}"
    );
    assert!(
        !out.stdout.contains("chat.example.org through [dns]"),
        "{}",
        out.text()
    );
    let l = line(
        &out,
        "FAIL",
        "dns",
        "lost.example.org through [dns] servers: does not resolve",
    );
    assert!(
        l.ends_with("add an A (and AAAA) record for lost.example.org with this machine's public address"),
        "{l}"
    );
    line(&out, "FAIL", "dns", "lost.example.org through public DNS");
    // A local name is not in public DNS: not looked up.
    assert!(!out.stdout.contains("box.lan"), "{}", out.text());

    // Behind NAT: the forwarded public address is this machine's.
    cfg.update(|_| {
        resolvers(
            MainConfig::new(),
            &configured,
            &public,
            &["127.0.0.1", "192.0.2.7"],
        )
        .vhost(vhost())
    });
    let out = doctor(&cfg.main_file(), &[]).await;
    line(
        &out,
        "OK",
        "dns",
        "chat.example.org -> 127.0.0.1, 192.0.2.7 (this machine)",
    );
}

#[tokio::test]
async fn mattermost_that_does_not_answer_its_ping_fails() {
    let mm = crate::support::mattermost::Mattermost::start("token").await;
    let cfg = MainConfig::new()
        .vhost(
            Vhost::new("chat.localhost")
                .upstream(mm.addr.to_string())
                .route(WEBSOCKET, |r| r),
        )
        .build();
    let url = format!("http://{}/api/v4/system/ping", mm.addr);
    let out = doctor(&cfg.main_file(), &[]).await;
    line(&out, "OK", "mattermost", &format!("{url} answers status OK"));
    // The clock is compared with Mattermost's Date when there is no ACME directory.
    line(&out, "OK", "clock", &format!("with {url}"));

    mm.healthy.store(false, std::sync::atomic::Ordering::SeqCst);
    let out = doctor(&cfg.main_file(), &[]).await;
    assert_eq!(out.code, 2, "{}", out.text());
    let l = line(
        &out,
        "FAIL",
        "mattermost",
        &format!("{url} answers HTTP 500, status \"UNHEALTHY\""),
    );
    assert!(l.contains("see its log"), "{l}");

    drop(mm);
    let out = doctor(&cfg.main_file(), &[]).await;
    let l = line(&out, "FAIL", "mattermost", &format!("{url} does not answer"));
    assert!(l.contains("systemctl status mattermost"), "{l}");
}

#[tokio::test]
async fn embedding_is_checked_as_a_browser_sees_it_through_vestibule() {
    // Mattermost's own answer forbids framing (X-Frame-Options: SAMEORIGIN, frame-ancestors 'self').
    let mm = crate::support::mattermost::Mattermost::start("token").await;
    let chat = || {
        Vhost::new("chat.localhost")
            .upstream(mm.addr.to_string())
            .self_signed()
    };
    let embed = |origins: &[&str]| Table::new("embed").set("allow_origins", origins);
    let v = Vestibule::start(MainConfig::new().https().vhost(chat()).build()).await;
    let url = format!("https://chat.localhost:{}/", v.port("https"));

    // [embed] written, the daemon not reloaded: Mattermost's headers reach browsers.
    v.cfg
        .update(|m| m.vhost(chat().table(embed(&["https://webapp.example.org"]))));
    let out = doctor(&v.cfg.main_file(), &[]).await;
    assert_eq!(out.code, 2, "{}", out.text());
    let l = line(
        &out,
        "FAIL",
        "embedding",
        &format!("{url} (HTTP 200): X-Frame-Options: SAMEORIGIN reaches browsers"),
    );
    assert!(l.contains("systemctl reload vestibule"), "{l}");

    // Reloaded: the policy applies.
    v.signal(libc::SIGHUP);
    let out = eventually("the reload applied [embed]", || async {
        let out = doctor(&v.cfg.main_file(), &[]).await;
        out.stdout.contains("OK    embedding").then_some(out)
    })
    .await;
    line(
        &out,
        "OK",
        "embedding",
        &format!("{url} may be framed by https://webapp.example.org"),
    );

    // A second origin on disk only: named as the one left out.
    v.cfg.update(|m| {
        m.vhost(chat().table(embed(&[
            "https://webapp.example.org",
            "https://office.example.org",
        ])))
    });
    let out = doctor(&v.cfg.main_file(), &[]).await;
    line(
        &out,
        "FAIL",
        "embedding",
        "frame-ancestors 'self' https://webapp.example.org leaves out https://office.example.org",
    );
}

#[test]
fn onlyoffice_secrets_are_compared_by_digest_and_the_odd_place_named() {
    use super::integrate::{config_json, vestibule_tree};
    let cfg = vestibule_tree();
    let dir = tempfile::tempdir().unwrap();
    let mm = config_json(dir.path(), |t| t);
    let ds = dir.path().join("local.json");
    std::fs::write(&ds, include_str!("../fixtures/documentserver-local.json")).unwrap();
    let secret_file = dir.path().join("secrets/onlyoffice.jwt");
    let (mm, ds_s) = (mm.to_str().unwrap(), ds.to_str().unwrap());
    let done = cfg.vestibule(&[
        "integrate",
        "onlyoffice",
        "--config-json",
        mm,
        "--documentserver-config",
        ds_s,
        "--secret-file",
        secret_file.to_str().unwrap(),
    ]);
    assert_eq!(done.code, 0, "{}", done.text());
    let secret = std::fs::read_to_string(&secret_file).unwrap().trim().to_string();
    let run = || {
        cfg.vestibule(&[
            "doctor",
            "--mattermost-config",
            mm,
            "--documentserver-config",
            ds_s,
        ])
    };
    let out = run();
    let l = line(&out, "OK", "onlyoffice", "the same secret <secret: sha256 ");
    let places = [
        "vhost chat.example.org [onlyoffice] secret_file".to_string(),
        "Mattermost's ONLYOFFICE plugin (desjwt)".to_string(),
        format!("{ds_s} (secret.inbox)"),
        format!("{ds_s} (secret.outbox)"),
        format!("{ds_s} (secret.session)"),
    ];
    for place in &places {
        assert!(l.contains(place.as_str()), "{place}: {l}");
    }
    assert!(!out.stdout.contains(&secret), "the secret was printed");

    // The same places named in [integrate] instead of on the command line.
    cfg.write(
        "conf.d/integrate.toml",
        &format!("[integrate]\nmattermost_config = {mm:?}\ndocumentserver_config = {ds_s:?}\n"),
    );
    let plain = cfg.vestibule(&["doctor"]);
    // Labels are keyed per run: the same places, each with this run's label.
    let pl = line(&plain, "OK", "onlyoffice", "the same secret <secret: sha256 ");
    for place in &places {
        assert!(pl.contains(place.as_str()), "{place}: {pl}");
    }

    // Document Server's outbox secret changed by hand.
    let text = std::fs::read_to_string(&ds).unwrap();
    let mut doc: Value = serde_json::from_str(&text).unwrap();
    doc["services"]["CoAuthoring"]["secret"]["outbox"]["string"] = "typed-by-hand".into();
    std::fs::write(&ds, doc.to_string()).unwrap();
    let out = run();
    assert_eq!(out.code, 2, "{}", out.text());
    let l = line(
        &out,
        "FAIL",
        "onlyoffice",
        &format!("the secret differs: {ds_s} (secret.outbox) has <secret: sha256 "),
    );
    assert!(
        l.ends_with("vestibule integrate onlyoffice (writes one secret to all three places)"),
        "{l}"
    );
    assert!(!l.contains("typed-by-hand") && !l.contains(&secret), "{l}");
}

/// `[mail]` relaying through `smarthost` in plaintext (a smarthost on loopback).
fn through(smarthost: String) -> ConfigDir {
    MainConfig::new()
        .mail(|m| {
            m.set("hostname", "relay.test")
                .set("smarthost", smarthost)
                .set("smarthost_tls", "none")
        })
        .vhost(Vhost::new("chat.localhost").upstream("127.0.0.1:9"))
        .build()
}

#[tokio::test]
async fn a_smarthost_that_refuses_or_does_not_answer_fails() {
    use super::mail::SmtpSink;
    let sink = SmtpSink::start(free_port(), &[]).await;
    let cfg = through(format!("smtp://127.0.0.1:{}", sink.port));
    let out = doctor(&cfg.main_file(), &[]).await;
    line(
        &out,
        "OK",
        "smarthost",
        &format!("127.0.0.1:{} smtp (plaintext) answers EHLO", sink.port),
    );

    // EHLO refused (5xx).
    let refusing = SmtpSink::start(free_port(), &["-f", "EHLO"]).await;
    let cfg = through(format!("smtp://127.0.0.1:{}", refusing.port));
    let out = doctor(&cfg.main_file(), &[]).await;
    assert_eq!(out.code, 2, "{}", out.text());
    let l = line(
        &out,
        "FAIL",
        "smarthost",
        &format!("127.0.0.1:{} smtp (plaintext): ", refusing.port),
    );
    assert!(l.contains("check [mail] smarthost"), "{l}");

    // Nothing listens.
    let closed = free_port();
    let cfg = through(format!("smtp://127.0.0.1:{closed}"));
    let out = doctor(&cfg.main_file(), &[]).await;
    line(&out, "FAIL", "smarthost", "Connection refused");
}

#[tokio::test]
async fn a_push_upstream_that_does_not_answer_fails() {
    let up = Upstream::start("push").await;
    let push = |url: String| {
        MainConfig::new()
            .push(|p| p)
            .push_route(&["apple_rn", "android_rn"], |r| r.set("upstream", url))
            .vhost(Vhost::new("chat.localhost").upstream("127.0.0.1:9"))
            .build()
    };
    let cfg = push(format!("http://{}", up.addr));
    let out = doctor(&cfg.main_file(), &[]).await;
    line(
        &out,
        "OK",
        "push",
        &format!(
            "[[push.route]] #1 (apple_rn, android_rn): upstream http://{} answers (HTTP 200)",
            up.addr
        ),
    );
    let dead = up.addr;
    up.stop().await;
    let out = doctor(&cfg.main_file(), &[]).await;
    assert_eq!(out.code, 2, "{}", out.text());
    let l = line(
        &out,
        "FAIL",
        "push",
        &format!("[[push.route]] #1 (apple_rn, android_rn): upstream http://{dead} does not answer"),
    );
    assert!(l.contains("firewall"), "{l}");
}

/// An HTTP server whose `Date` is `skew` seconds behind the real time (negative: ahead).
async fn dated(skew: i64) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let date = (chrono::Utc::now() - chrono::Duration::seconds(skew))
                    .format("%a, %d %b %Y %H:%M:%S GMT");
                let _ = s
                    .write_all(
                        format!("HTTP/1.1 200 OK\r\nDate: {date}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                            .as_bytes(),
                    )
                    .await;
            });
        }
    });
    (addr, task)
}

#[tokio::test]
async fn a_clock_off_by_minutes_fails_and_by_seconds_warns() {
    for (skew, status) in [(0, "OK"), (40, "WARN"), (-40, "WARN"), (600, "FAIL")] {
        let (addr, task) = dated(skew).await;
        let url = format!("http://{addr}/");
        let cfg = MainConfig::new()
            .table(
                Table::new("doctor")
                    .set("public_resolvers", Vec::<String>::new())
                    .set("clock_url", &url),
            )
            .vhost(Vhost::new("chat.localhost").upstream("127.0.0.1:9"))
            .build();
        let out = doctor(&cfg.main_file(), &[]).await;
        let l = line(&out, status, "clock", &url);
        // A second may tick between the two clocks' readings.
        let secs: i64 = l
            .split_whitespace()
            .nth(2)
            .and_then(|w| w.parse().ok())
            .unwrap_or(0);
        assert!((secs - skew.abs()).abs() <= 1, "{skew}: {l}");
        match skew {
            0 => {}
            s if s > 0 => assert!(l.contains("s ahead of"), "{l}"),
            _ => assert!(l.contains("s behind"), "{l}"),
        }
        if status != "OK" {
            assert!(
                l.ends_with(
                    "enable time synchronisation: timedatectl set-ntp true (systemd-timesyncd or chrony)"
                ),
                "{l}"
            );
        }
        if status == "FAIL" {
            assert!(l.contains("JWTs and ACME orders are refused"), "{l}");
        }
        task.abort();
    }
}

#[test]
fn a_bad_doctor_section_is_a_configuration_error() {
    let cfg = MainConfig::new()
        .table(
            Table::new("doctor")
                .set("clock_url", "ftp://example.org")
                .set("public_resolver", ["1.1.1.1:53"]),
        )
        .vhost(Vhost::new("chat.localhost").upstream("127.0.0.1:9"))
        .build();
    let (code, _, err) = check(&cfg);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("unknown key `public_resolver` in [doctor]"), "{err}");
    assert!(err.contains("did you mean `public_resolvers`?"), "{err}");
    assert!(
        err.contains("`clock_url` in [doctor]: `ftp://example.org` is not an http:// or https:// URL"),
        "{err}"
    );
}

#[test]
fn apns_credentials_that_load_are_ok_and_a_broken_key_is_named() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("AuthKey_KEY123.p8");
    let (p8, _) = crate::support::push_peers::apns_key("KEY123");
    std::fs::write(&key, &p8).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let credentials = inline(&[
        ("key_file", &key),
        ("key_id", &"KEY123"),
        ("team_id", &"TEAM123"),
        ("topic", &"com.example.chat"),
    ]);
    let cfg = MainConfig::new()
        .push(|p| p)
        .push_route(&["apple"], |r| r.set("apns", credentials))
        .vhost(Vhost::new("chat.localhost").upstream("127.0.0.1:9"))
        .build();
    let out = cfg.vestibule(&["doctor"]);
    line(
        &out,
        "OK",
        "push",
        &format!("[[push.route]] #1 (apple): APNs key {} loads", key.display()),
    );

    // The key replaced by something else: the configuration's own error says which route and file.
    std::fs::write(&key, "not a key\n").unwrap();
    let out = cfg.vestibule(&["doctor"]);
    assert_eq!(out.code, 2, "{}", out.text());
    line(&out, "FAIL", "configuration", "invalid (1 error)");
    line(
        &out,
        "FAIL",
        "configuration",
        &format!("[[push.route]] #1: {} contains no PEM private key", key.display()),
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_smarthost_that_refuses_the_credentials_fails() {
    use super::mail_routes::{hash_password, secret_file};
    // The smarthost: another vestibule relay, AUTH over STARTTLS only, with a CA-signed certificate.
    let secrets = tempfile::tempdir().unwrap();
    let ca = TestCa::new("smarthost CA");
    let (cert, key) = ca
        .leaf(&["localhost"], &rcgen::PKCS_ECDSA_P256_SHA256)
        .write(secrets.path(), "smarthost");
    let users = secret_file(
        secrets.path(),
        "users",
        &format!("mm:{}\n", hash_password("s3cret pass")),
    );
    let b = MainConfig::new()
        .https()
        .mail(|m| {
            m.set("hostname", "smarthost.test")
                .set("trusted_networks", raw("[]"))
                .set("users_file", &users)
                .set("hold", true)
        })
        .vhost(Vhost::new("localhost").upstream("127.0.0.1:9").cert(&cert, &key));
    let b = Vestibule::start(b).await;
    let ca_file = secrets.path().join("ca.pem");
    std::fs::write(&ca_file, &ca.pem).unwrap();
    let shown = format!("localhost:{} smtp (STARTTLS)", b.port("smtp"));
    for password in ["s3cret pass", "wrong"] {
        let auth = secret_file(secrets.path(), "auth", &format!("mm:{password}\n"));
        let a = MainConfig::new()
            .mail(|m| {
                m.set("hostname", "relay.test")
                    .set("smarthost", format!("smtp://localhost:{}", b.port("smtp")))
                    .set("smarthost_auth_file", &auth)
                    .set("smarthost_ca_file", &ca_file)
            })
            .vhost(Vhost::new("chat.localhost").upstream("127.0.0.1:9"))
            .build();
        let out = doctor(&a.main_file(), &[]).await;
        if password == "wrong" {
            let l = line(&out, "FAIL", "smarthost", &format!("{shown}: AUTH refused: "));
            assert!(
                l.ends_with("fix the user name and password in [mail] smarthost_auth_file"),
                "{l}"
            );
            assert!(!l.contains("wrong"), "{l}");
        } else {
            line(
                &out,
                "OK",
                "smarthost",
                &format!("{shown} answers EHLO and accepts AUTH"),
            );
        }
    }
}

#[tokio::test]
async fn embedding_through_a_certificate_other_than_the_configured_one_fails() {
    let up = Upstream::start("webapp-embedded").await;
    let certs = tempfile::tempdir().unwrap();
    let ca = TestCa::new("doctor test CA");
    let p256 = &rcgen::PKCS_ECDSA_P256_SHA256;
    let (cert, key) = ca.leaf(&["chat.localhost"], p256).write(certs.path(), "chat");
    let cfg = MainConfig::new()
        .https()
        // No reload by the file watch while the test runs: only an explicit one.
        .table(Table::new("tls").set("watch_interval", "1h"))
        .vhost(
            Vhost::new("chat.localhost")
                .upstream(up.addr.to_string())
                .cert(&cert, &key)
                .table(Table::new("embed").set("allow_origins", ["https://webapp.example.org"])),
        )
        .build();
    let v = Vestibule::start(cfg).await;
    let url = format!("https://chat.localhost:{}/", v.port("https"));
    let out = doctor(&v.cfg.main_file(), &[]).await;
    line(
        &out,
        "OK",
        "embedding",
        &format!("{url} may be framed by https://webapp.example.org"),
    );

    // A renewed certificate on disk, not yet loaded: the daemon still serves the old one.
    ca.leaf(&["chat.localhost"], p256).write(certs.path(), "chat");
    let out = doctor(&v.cfg.main_file(), &[]).await;
    assert_eq!(out.code, 2, "{}", out.text());
    let l = line(
        &out,
        "FAIL",
        "embedding",
        &format!("{url} serves the certificate sha256 "),
    );
    assert!(l.contains(", not the configured one (sha256 "), "{l}");
    assert!(l.ends_with("systemctl reload vestibule"), "{l}");
}

/// A Mattermost whose API accepts connections and never answers (a hung server) costs doctor its
/// per-step deadline, not the 30 s `integrate` waits when it writes: the report still comes, with a
/// warning saying why Mattermost's settings were not compared.
#[tokio::test]
async fn a_mattermost_api_that_never_answers_costs_doctor_its_deadline() {
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((sock, _)) = silent.accept().await {
            open.push(sock); // accepted, never read or answered
        }
    });
    let (cfg, _json) = mattermost_tree();
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "t\n").unwrap();
    std::fs::set_permissions(&token, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let url = format!("http://{addr}");
    let args = ["--url", url.as_str(), "--token-file", token.to_str().unwrap()];
    // Several deadlines at most (one per step that asks Mattermost), far below integrate's 30 s.
    let out = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        doctor(&cfg.main_file(), &args),
    )
    .await
    .expect("doctor waited on a hung Mattermost API instead of giving up at its deadline");
    let l = line(
        &out,
        "WARN",
        "mattermost",
        "cannot read Mattermost's configuration",
    );
    assert!(l.contains("timed out") || l.contains("deadline"), "{l}");
    held.abort();
}

/// An upstream named in the directory only `[dns] servers` know (an internal zone) is resolved as the
/// proxy resolves it, not through the system's resolver.
#[tokio::test]
async fn upstream_names_resolve_through_the_configured_resolvers() {
    let up = Upstream::start("internal").await;
    let dns = Dnsmasq::start(&["--address=/mm.internal.test/127.0.0.1"]).await;
    let server = format!("mm.internal.test:{}", up.addr.port());
    let cfg = MainConfig::new()
        .table(Table::new("dns").set("servers", [format!("127.0.0.1:{}", dns.port)]))
        .vhost(Vhost::new("chat.localhost").upstream(server.as_str()))
        .build();
    let out = doctor(&cfg.main_file(), &[]).await;
    line(
        &out,
        "OK",
        "upstreams",
        &format!("{server} answers (127.0.0.1:{})", up.addr.port()),
    );
}
