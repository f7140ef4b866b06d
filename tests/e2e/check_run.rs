//! Covered: `vestibule check` and `vestibule run` give the same verdict on the same tree. Every
//! broken tree here is refused by both, with the same message, and `run` binds nothing for it
//! (no `listening` report); a tree that is valid but worth a warning gets the same warnings from
//! `check` (printed) and `run` (logged). A configuration error that only `run` found would pass
//! systemd's `ExecStartPre=vestibule check` and then fail the start.

use std::process::Stdio;

use crate::support::*;

/// `vestibule run` on `cfg`: its exit code and stderr. Panics if it is still running after the
/// test's patience (it accepted the tree) or if it published bound addresses.
async fn run_refuses(cfg: &ConfigDir) -> (i32, String) {
    let err_path = cfg.path().join("run.err");
    let mut child = tokio::process::Command::new(bin())
        .args(["run", "--config"])
        .arg(cfg.main_file())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn vestibule run");
    let Ok(status) = tokio::time::timeout(patience(), child.wait()).await else {
        panic!(
            "`run` accepted a tree `check` refuses:\n{}",
            std::fs::read_to_string(&err_path).unwrap_or_default()
        );
    };
    assert!(
        listening(&cfg.state_dir()).is_none(),
        "`run` published bound addresses for a tree it refused"
    );
    (
        status.unwrap().code().unwrap_or(-1),
        std::fs::read_to_string(&err_path).unwrap(),
    )
}

/// (what the tree breaks, the tree, a phrase both commands must print).
fn broken_trees() -> Vec<(&'static str, ConfigDir, &'static str)> {
    let chat = || Vhost::new("chat.test").upstream("127.0.0.1:9");
    let apns = inline(&[
        ("key_file", &"/nonexistent.p8"),
        ("key_id", &"K"),
        ("team_id", &"T"),
        ("topic", &"com.x"),
    ]);
    let trees = [
        (
            // Found only when the relay started, before the loader owned the cross-checks.
            "mail TLS listener without any certificate",
            MainConfig::new()
                .mail(|m| m.set("listen_tls", [ANY_PORT]).set("hostname", "relay.test"))
                .vhost(chat()),
            "listen_tls = [\"127.0.0.1:0\"] needs a certificate",
        ),
        (
            "a misspelt key",
            MainConfig::new().vhost(chat().set("read_timout", "5s")),
            "unknown key `read_timout`",
        ),
        (
            "a users file that does not exist",
            MainConfig::new().mail(|m| {
                m.set("hostname", "relay.test")
                    .set("users_file", "/nonexistent/users")
            }),
            "[mail] users_file",
        ),
        (
            "certificate files that do not exist",
            MainConfig::new().https().vhost(chat().cert(
                std::path::Path::new("/nonexistent/c.pem"),
                std::path::Path::new("/nonexistent/k.pem"),
            )),
            "vhost `chat`",
        ),
        (
            "a default certificate for unknown names without a default vhost",
            MainConfig::new()
                .https()
                .table(Table::new("tls").set("unknown_sni", "default"))
                .vhost(chat().self_signed()),
            "unknown_sni = \"default\" needs a default_vhost with tls",
        ),
        (
            "a push route whose APNs key cannot be read",
            MainConfig::new()
                .push(|p| p)
                .push_route(&["apple"], |r| r.set("apns", apns)),
            "[[push.route]] #1",
        ),
    ];
    trees
        .into_iter()
        .map(|(what, tree, phrase)| (what, tree.build(), phrase))
        .collect()
}

#[tokio::test]
async fn check_and_run_refuse_the_same_trees() {
    for (what, cfg, phrase) in broken_trees() {
        let (code, out, err) = check(&cfg);
        assert_eq!(code, 1, "{what}: `check` accepted it:\n{out}{err}");
        assert!(
            err.contains(phrase),
            "{what}: `check` did not say {phrase:?}:\n{err}"
        );
        let (code, err) = run_refuses(&cfg).await;
        assert_eq!(code, 1, "{what}: `run` exit code:\n{err}");
        assert!(
            err.contains(phrase),
            "{what}: `run` did not say {phrase:?}:\n{err}"
        );
        assert!(err.contains("not starting"), "{what}:\n{err}");
    }
}

#[tokio::test]
async fn check_prints_the_warnings_run_logs() {
    let cfg = MainConfig::new()
        .mail(|m| m.set("hostname", "relay.test").set("hold", true))
        .vhost(Vhost::new("chat.test").upstream("127.0.0.1:9").self_signed())
        .build();
    let (code, out, err) = check(&cfg);
    assert_eq!(code, 0, "{out}{err}");
    let warnings: Vec<&str> = out.lines().filter_map(|l| l.strip_prefix("warning: ")).collect();
    // The mail relay's hold, and a vhost with `tls` but no HTTPS listener.
    assert!(warnings.iter().any(|w| w.contains("hold = true")), "{out}");
    assert!(warnings.iter().any(|w| w.contains("no HTTPS listener")), "{out}");
    let v = Vestibule::start(cfg).await;
    let log = v.log();
    for w in &warnings {
        assert!(log.contains(w), "`run` did not log {w:?}:\n{log}");
    }
}
