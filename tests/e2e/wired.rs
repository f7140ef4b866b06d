//! A whole installation wired by vestibule's own commands, as an admin would: two sites from their
//! templates (`vhost new`), every product's settings (`integrate all`, Mattermost's configuration in
//! its database through the REST API), the daemon started; then `doctor` reports only OK lines, and
//! after five settings are broken on purpose (Mattermost's site URL, Document Server's secret,
//! Mattermost's health, the push upstream, an embedding origin not yet loaded) it names each of them,
//! and nothing else.

use std::path::Path;

use serde_json::{json, Value};

use super::doctor::{doctor, line};
use super::mail_routes::Dnsmasq;
use crate::support::config::{MainConfig, Table};
use crate::support::mattermost::Mattermost;
use crate::support::tls::TestCa;
use crate::support::*;

const LOCAL_JSON: &str = include_str!("../fixtures/documentserver-local.json");
const INTRANET: &str = include_str!("../fixtures/kopano-config-intranet.php");

fn vestibule(main: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new(bin())
        .args(args)
        .arg("--config")
        .arg(main)
        .output()
        .expect("run vestibule");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "vestibule {args:?}: {text}");
    text
}

/// The report's lines that are not OK.
fn not_ok(out: &Cli) -> Vec<&str> {
    out.stdout.lines().filter(|l| !l.starts_with("OK ")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wired_installation_is_all_ok_and_each_broken_setting_is_named() {
    let mm = Mattermost::start("wired-token").await;
    let ds = Upstream::start("documentserver").await;
    let push = Upstream::start("push").await;
    let dns = Dnsmasq::start(&[
        "--address=/chat.example.org/127.0.0.1",
        "--address=/office.example.org/127.0.0.1",
    ])
    .await;
    let files = tempfile::tempdir().unwrap();
    let token = files.path().join("mattermost.token");
    std::fs::write(&token, "wired-token\n").unwrap();
    std::fs::set_permissions(&token, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let local_json = files.path().join("local.json");
    std::fs::write(&local_json, LOCAL_JSON).unwrap();
    let intranet = files.path().join("config-intranet.php");
    std::fs::write(&intranet, INTRANET).unwrap();
    let ca = TestCa::new("wired test CA");
    let (chat_crt, chat_key) = ca
        .leaf(&["chat.example.org"], &rcgen::PKCS_ECDSA_P256_SHA256)
        .write(files.path(), "chat");
    let (office_crt, office_key) = ca
        .leaf(&["office.example.org"], &rcgen::PKCS_ECDSA_P256_SHA256)
        .write(files.path(), "office");

    let resolver = format!("127.0.0.1:{}", dns.port);
    let cfg = MainConfig::new()
        .proxy("listen_tls", [format!("127.0.0.1:{}", free_port())])
        .table(
            Table::new("mail")
                .set("listen", [config::ANY_PORT])
                .set("hostname", "mail.example.org")
                .set("sender_domains", ["example.org"]),
        )
        .table(Table::new("push").set("listen", config::ANY_PORT))
        .push_route(&["apple_rn", "android_rn"], |r| {
            r.set("upstream", format!("http://{}", push.addr).as_str())
        })
        .table(Table::new("dns").set("servers", [resolver.as_str()]))
        // Loopback stands for the public address here.
        .table(
            Table::new("doctor")
                .set("public_resolvers", [resolver.as_str()])
                .set("public_addresses", ["127.0.0.1"]),
        )
        .table(
            Table::new("integrate")
                .set("mattermost_url", mm.url().as_str())
                .set("mattermost_token_file", token.to_str().unwrap())
                .set("documentserver_config", local_json.to_str().unwrap())
                .set("webapp_config", intranet.to_str().unwrap()),
        )
        .build();
    let main = cfg.main_file();
    let tls = |crt: &Path, key: &Path| format!("cert:{},key:{}", crt.display(), key.display());
    let (ds_addr, mm_addr) = (ds.addr.to_string(), mm.addr.to_string());
    vestibule(
        &main,
        &[
            "vhost",
            "new",
            "--template",
            "onlyoffice",
            "--name",
            "office.example.org",
            "--upstream",
            &ds_addr,
            "--tls",
            &tls(&office_crt, &office_key),
        ],
    );
    vestibule(
        &main,
        &[
            "vhost",
            "new",
            "--template",
            "mattermost",
            "--name",
            "chat.example.org",
            "--upstream",
            &mm_addr,
            "--tls",
            &tls(&chat_crt, &chat_key),
            "--onlyoffice",
            "--embed-from",
            "https://mail.example.org",
        ],
    );
    let out = vestibule(&main, &["integrate", "all", "--packager-defaults"]);
    assert!(!out.contains("skipped"), "{out}");
    let v = Vestibule::start(cfg).await;

    let healthy = doctor(&main, &[]).await;
    assert_eq!(not_ok(&healthy), Vec::<&str>::new(), "{}", healthy.text());
    assert_eq!(healthy.code, 0, "{}", healthy.text());
    for check in [
        "configuration",
        "listeners",
        "dns",
        "certificates",
        "upstreams",
        "mattermost",
        "embedding",
        "onlyoffice",
        "push",
        "clock",
    ] {
        assert!(
            healthy
                .stdout
                .lines()
                .any(|l| l.split_whitespace().nth(1) == Some(check)),
            "no {check} line: {}",
            healthy.text()
        );
    }

    // Five settings broken on purpose.
    mm.config.lock().unwrap()["ServiceSettings"]["SiteURL"] = json!("https://old.example.org");
    let mut ds_doc: Value = serde_json::from_str(&std::fs::read_to_string(&local_json).unwrap()).unwrap();
    ds_doc["services"]["CoAuthoring"]["secret"]["inbox"]["string"] = json!("someone-else's");
    std::fs::write(&local_json, serde_json::to_string_pretty(&ds_doc).unwrap()).unwrap();
    mm.healthy.store(false, std::sync::atomic::Ordering::SeqCst);
    let push_addr = push.addr;
    push.stop().await;
    let vhost = main.parent().unwrap().join("vhosts/chat.example.org.toml");
    let text = std::fs::read_to_string(&vhost).unwrap().replacen(
        "\"https://mail.example.org\"",
        "\"https://mail.example.org\", \"https://intranet.example.org\"",
        1,
    );
    std::fs::write(&vhost, text).unwrap();

    let broken = doctor(&main, &[]).await;
    assert_eq!(broken.code, 2, "{}", broken.text());
    let named = [
        line(&broken, "WARN", "mattermost", "ServiceSettings.SiteURL"),
        line(&broken, "FAIL", "onlyoffice", "local.json"),
        line(&broken, "FAIL", "mattermost", "ping"),
        line(&broken, "FAIL", "push", &push_addr.to_string()),
        line(&broken, "FAIL", "embedding", "https://intranet.example.org"),
    ];
    let mut rest = not_ok(&broken);
    rest.retain(|l| !named.contains(l));
    assert_eq!(
        rest,
        Vec::<&str>::new(),
        "lines not explained by the five breaks:\n{}",
        broken.text()
    );
    drop(v);
}
