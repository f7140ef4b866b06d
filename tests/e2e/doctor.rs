//! `vestibule doctor`, run as the real binary: a healthy setup reports only OK lines and exits 0;
//! each deliberately broken setting gives its FAIL or WARN line with the fix, and the exit code
//! (1 warnings, 2 failures); `--json` carries the same lines.
//!
//! Covered so far: the configuration (invalid: FAIL with the error count), the listeners (daemon not
//! running; a configured listener it does not serve), the certificates (self-signed on a public
//! name; expiring within 14 days), the upstreams (a server that does not answer), Mattermost's
//! settings (a key that differs, an admin's value, an unreadable config.json; OK once integrated),
//! the mail queue (a message older than an hour).

use std::path::Path;

use serde_json::Value;

use crate::support::tls::TestCa;
use crate::support::*;

/// `vestibule doctor [extra] --config <main>`, off the async runtime: the stand-ins it talks to
/// run on it.
async fn doctor(main: &Path, extra: &[&str]) -> Cli {
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
fn line<'a>(out: &'a Cli, status: &str, check: &str, text: &str) -> &'a str {
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
    let cfg = MainConfig::new()
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
        l.ends_with("give doctor --mattermost-config PATH, or --url URL --token-file PATH"),
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
}
