//! Covered: `vestibule vhost new` renders each template (mattermost with --embed-from and
//! --onlyoffice, onlyoffice, kopano-webapp) into a vhost that passes the tree's checks and proxies over
//! HTTPS with the template's policies; it refuses to overwrite without --force and writes nothing when
//! the result would be invalid; `vhost list` shows them.

use crate::support::*;

fn vhost_new(cfg: &ConfigDir, args: &[&str]) -> (i32, String) {
    let out = cfg.vestibule(&[&["vhost", "new"], args].concat());
    (out.code, out.text())
}

fn curl_k(v: &Vestibule, name: &str, path: &str, headers: &[&str]) -> String {
    let port = v.https_addr().port();
    let mut cmd = std::process::Command::new("curl");
    cmd.args(["-sk", "-D", "-", "--resolve", &format!("{name}:{port}:127.0.0.1")]);
    for h in headers {
        cmd.args(["-H", h]);
    }
    let out = cmd
        .arg(format!("https://{name}:{port}{path}"))
        .output()
        .expect("curl is required: run `bash .ci/prereqs test`");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_template_renders_checks_and_proxies() {
    let mm = Upstream::start("mattermost").await;
    let ds = Upstream::start("docserver").await;
    let wa = Upstream::start("webapp").await;
    let cfg = MainConfig::new().https().build();
    let (mm_s, ds_s, wa_s) = (mm.addr.to_string(), ds.addr.to_string(), wa.addr.to_string());
    let (code, out) = vhost_new(
        &cfg,
        &[
            "--template",
            "mattermost",
            "--name",
            "chat.test",
            "--upstream",
            &mm_s,
            "--embed-from",
            "https://webapp.test",
            "--onlyoffice",
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("wrote ") && out.contains("vhosts/chat.test.toml") && out.contains("next:"),
        "{out}"
    );
    let (code, out) = vhost_new(
        &cfg,
        &[
            "--template",
            "onlyoffice",
            "--name",
            "office.test",
            "--upstream",
            &ds_s,
        ],
    );
    assert_eq!(code, 0, "{out}");
    let (code, out) = vhost_new(
        &cfg,
        &[
            "--template",
            "kopano-webapp",
            "--name",
            "webapp.test",
            "--upstream",
            &wa_s,
            "--tls",
            "self-signed",
        ],
    );
    assert_eq!(code, 0, "{out}");

    // No overwrite without --force; an invalid result writes nothing.
    let (code, out) = vhost_new(
        &cfg,
        &[
            "--template",
            "kopano-webapp",
            "--name",
            "webapp.test",
            "--upstream",
            &wa_s,
        ],
    );
    assert_eq!(code, 1);
    assert!(out.contains("already exists: pass --force"), "{out}");
    let (code, out) = vhost_new(
        &cfg,
        &[
            "--template",
            "mattermost",
            "--name",
            "bad.test",
            "--upstream",
            "no-port",
        ],
    );
    assert_eq!(code, 1);
    assert!(
        out.contains("would make the configuration invalid")
            && out.contains("`no-port` is not a server address"),
        "{out}"
    );
    assert!(!cfg.path().join("vhosts/bad.test.toml").exists());
    let (code, out) = vhost_new(
        &cfg,
        &[
            "--template",
            "mattermost",
            "--name",
            "office.test",
            "--upstream",
            &mm_s,
            "--force",
        ],
    );
    assert_eq!(code, 0, "replacing with --force: {out}");
    let (code, out) = vhost_new(
        &cfg,
        &[
            "--template",
            "onlyoffice",
            "--name",
            "office.test",
            "--upstream",
            &ds_s,
            "--force",
        ],
    );
    assert_eq!(code, 0, "{out}");

    let list = cfg.vestibule(&["vhost", "list"]).stdout;
    for (name, up) in [
        ("chat.test", &mm_s),
        ("office.test", &ds_s),
        ("webapp.test", &wa_s),
    ] {
        assert!(
            list.lines()
                .any(|l| l.starts_with(name) && l.contains(up.as_str()) && l.contains("self-signed")),
            "{list}"
        );
    }

    let v = Vestibule::start(cfg).await;
    let chat = curl_k(
        &v,
        "chat.test",
        "/plugins/com.onlyoffice.mattermost/api/download?id=1",
        &[
            "Authorization: Bearer t.o.k",
            "x-echo-response: X-Frame-Options: SAMEORIGIN",
        ],
    );
    assert!(chat.starts_with("HTTP/2 200"), "{chat}");
    assert!(chat.contains("upstream=mattermost"), "{chat}");
    assert!(
        chat.contains("h:authorizationjwt=Bearer t.o.k"),
        "onlyoffice relay: {chat}"
    );
    assert!(
        chat.contains("content-security-policy: frame-ancestors 'self' https://webapp.test"),
        "embed: {chat}"
    );
    let head = chat.split("\r\n\r\n").next().unwrap().to_ascii_lowercase();
    assert!(!head.contains("x-frame-options"), "{chat}");
    assert!(
        chat.contains("strict-transport-security: max-age=15768000"),
        "{chat}"
    );
    assert!(chat.contains("h:x-forwarded-proto=https"), "{chat}");
    let office = curl_k(&v, "office.test", "/", &[]);
    assert!(
        office.starts_with("HTTP/2 200") && office.contains("upstream=docserver"),
        "{office}"
    );
    let webapp = curl_k(&v, "webapp.test", "/webapp/", &[]);
    assert!(
        webapp.starts_with("HTTP/2 200") && webapp.contains("upstream=webapp"),
        "{webapp}"
    );
}
