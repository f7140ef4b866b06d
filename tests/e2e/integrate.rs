//! `vestibule integrate mattermost`, run as the real binary against a real-shaped `config.json` and
//! against the Mattermost API stand-in.
//!
//! Covered: the settings derived from the vhost, [mail] and [push]; the dry run's diff and that it
//! writes nothing; the backup, mode, owner, key order and untouched text of the file; a second run
//! changes nothing; an admin's value is refused by name without --force and overwritten with it;
//! the API back end's token checks, its patch, keys this Mattermost lacks, and settings Mattermost
//! did not store.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

use crate::support::config::{MainConfig, Table, Vhost};
use crate::support::mattermost::{Mattermost, DEFAULT_CONFIG};
use crate::support::*;

/// A vestibule tree with a Mattermost vhost made by `vestibule vhost new --template mattermost`,
/// an HTTPS listener on 8443, [mail] and [push].
pub(crate) fn vestibule_tree() -> ConfigDir {
    // Fixed relay and HTTPS ports: integrate binds nothing, and the values it derives are the test.
    let cfg = MainConfig::new()
        .proxy("listen_tls", ["127.0.0.1:8443"])
        .table(
            Table::new("mail")
                .set("listen", ["127.0.0.1:2525"])
                .set("hostname", "mail.example.org")
                .set("sender_domains", ["example.org"]),
        )
        .table(
            Table::new("push")
                .set("listen", "127.0.0.1:8066")
                .set("contents", "generic"),
        )
        .push_route(&["apple_rn", "android_rn"], |r| {
            r.set("upstream", "https://push.mattermost.com")
        })
        .build();
    let out = Command::new(bin())
        .args([
            "vhost",
            "new",
            "--template",
            "mattermost",
            "--name",
            "chat.example.org",
        ])
        .args(["--upstream", "127.0.0.1:8065", "--tls", "self-signed", "--config"])
        .arg(cfg.main_file())
        .output()
        .expect("run vestibule vhost new");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    cfg
}

/// Mattermost's first-start config.json with a section vestibule does not know first (with a
/// character Go escapes), at mode 640.
pub(crate) fn config_json(dir: &Path, edit: impl FnOnce(String) -> String) -> PathBuf {
    let text = DEFAULT_CONFIG.replacen(
        "{\n",
        "{\n    \"VendorSettings\": {\n        \"Note\": \"kept \\u0026 sound\"\n    },\n",
        1,
    );
    let path = dir.join("config.json");
    std::fs::write(&path, edit(text)).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
    path
}

/// `vestibule integrate mattermost --config <tree> ARGS`: (exit code, stdout, stderr).
fn integrate(cfg: &ConfigDir, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(bin())
        .args(["integrate", "mattermost", "--config"])
        .arg(cfg.main_file())
        .args(args)
        .output()
        .expect("run vestibule integrate");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn at<'a>(doc: &'a Value, key: &str) -> &'a Value {
    key.split('.')
        .try_fold(doc, |v, k| v.get(k))
        .unwrap_or(&Value::Null)
}

/// What vestibule sets for [`vestibule_tree`], packager defaults included.
fn expected() -> Vec<(&'static str, Value)> {
    vec![
        ("ServiceSettings.SiteURL", json!("https://chat.example.org:8443")),
        ("ServiceSettings.ListenAddress", json!("127.0.0.1:8065")),
        (
            "ServiceSettings.TrustedProxyIPHeader",
            json!(["X-Forwarded-For", "X-Real-IP"]),
        ),
        ("EmailSettings.SMTPServer", json!("127.0.0.1")),
        ("EmailSettings.SMTPPort", json!("2525")),
        ("EmailSettings.ConnectionSecurity", json!("")),
        ("EmailSettings.EnableSMTPAuth", json!(false)),
        ("EmailSettings.SendEmailNotifications", json!(true)),
        ("EmailSettings.FeedbackEmail", json!("noreply@example.org")),
        ("EmailSettings.SendPushNotifications", json!(true)),
        (
            "EmailSettings.PushNotificationServer",
            json!("http://127.0.0.1:8066"),
        ),
        ("EmailSettings.PushNotificationContents", json!("generic")),
        ("LogSettings.EnableDiagnostics", json!(false)),
        ("ServiceSettings.EnablePostUsernameOverride", json!(true)),
        ("ServiceSettings.EnablePostIconOverride", json!(true)),
        ("EmailSettings.EnableEmailBatching", json!(true)),
    ]
}

fn keys_in_order(doc: &Value) -> Vec<String> {
    let mut keys = Vec::new();
    if let Some(obj) = doc.as_object() {
        for (k, v) in obj {
            keys.push(k.clone());
            keys.extend(keys_in_order(v).into_iter().map(|sub| format!("{k}.{sub}")));
        }
    }
    keys
}

fn backups(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".vestibule-backup"))
        .collect();
    found.sort();
    found
}

#[test]
fn file_dry_run_apply_and_second_run() {
    let cfg = vestibule_tree();
    let mm = tempfile::tempdir().unwrap();
    let path = config_json(mm.path(), |t| t);
    let original = std::fs::read(&path).unwrap();
    let before = std::fs::metadata(&path).unwrap();
    let path_arg = path.to_str().unwrap();

    let (code, out, err) = integrate(
        &cfg,
        &["--config-json", path_arg, "--packager-defaults", "--dry-run"],
    );
    assert_eq!(code, 0, "{out}{err}");
    for line in [
        r#"ServiceSettings.SiteURL: "" -> "https://chat.example.org:8443""#,
        r#"ServiceSettings.ListenAddress: ":8065" -> "127.0.0.1:8065""#,
        r#"ServiceSettings.TrustedProxyIPHeader: [] -> ["X-Forwarded-For","X-Real-IP"]"#,
        r#"EmailSettings.SMTPPort: "10025" -> "2525""#,
        r#"EmailSettings.PushNotificationContents: "full" -> "generic""#,
        "LogSettings.EnableDiagnostics: true -> false",
    ] {
        assert!(out.contains(line), "no `{line}` in:\n{out}");
    }
    // Gone from recent Mattermost: said, not added.
    assert!(
        out.contains("note: TeamSettings.EnableTeamCreation not set"),
        "{out}"
    );
    assert_eq!(
        std::fs::read(&path).unwrap(),
        original,
        "a dry run wrote the file"
    );
    assert!(backups(mm.path()).is_empty());

    let (code, out, err) = integrate(&cfg, &["--config-json", path_arg, "--packager-defaults"]);
    assert_eq!(code, 0, "{out}{err}");
    let text = std::fs::read_to_string(&path).unwrap();
    let doc: Value = serde_json::from_str(&text).unwrap();
    for (key, want) in expected() {
        assert_eq!(at(&doc, key), &want, "{key}");
    }
    assert!(at(&doc, "TeamSettings.EnableTeamCreation").is_null());
    // Unknown keys and the order of every key survive; untouched text is byte for byte the same.
    let old_doc: Value = serde_json::from_slice(&original).unwrap();
    assert_eq!(keys_in_order(&doc), keys_in_order(&old_doc));
    assert!(
        text.starts_with("{\n    \"VendorSettings\": {\n        \"Note\": \"kept \\u0026 sound\"\n"),
        "{text}"
    );
    assert!(
        text.contains("sslmode=disable\\u0026connect_timeout=10"),
        "Go's escaping lost"
    );
    let old_text = String::from_utf8(original.clone()).unwrap();
    let old_lines: std::collections::HashSet<&str> = old_text.lines().collect();
    let new_lines = text.lines().filter(|l| !old_lines.contains(l)).count();
    // One line per changed setting, and the list's two entries and closing bracket.
    assert!(
        new_lines <= expected().len() + 3,
        "{new_lines} new lines:\n{text}"
    );
    assert_eq!(text.lines().count(), old_text.lines().count() + 3);
    // Mode and owner kept; the backup is the original, as closed as it.
    let after = std::fs::metadata(&path).unwrap();
    assert_eq!(after.permissions().mode() & 0o7777, 0o640);
    assert_eq!((after.uid(), after.gid()), (before.uid(), before.gid()));
    let found = backups(mm.path());
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(std::fs::read(&found[0]).unwrap(), original);
    let backup = std::fs::metadata(&found[0]).unwrap();
    assert_eq!(backup.permissions().mode() & 0o7777, 0o640);
    assert_eq!((backup.uid(), backup.gid()), (before.uid(), before.gid()));

    let (code, out, err) = integrate(&cfg, &["--config-json", path_arg, "--packager-defaults"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("nothing to change"), "{out}");
    assert!(!out.contains(" -> "), "{out}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
    assert_eq!(backups(mm.path()).len(), 1, "a run without changes made a backup");
}

#[test]
fn an_admins_value_is_refused_by_name_unless_forced() {
    let cfg = vestibule_tree();
    let mm = tempfile::tempdir().unwrap();
    let path = config_json(mm.path(), |t| {
        t.replacen(
            r#""SMTPServer": "localhost""#,
            r#""SMTPServer": "mail.corp.example""#,
            1,
        )
        .replacen(
            r#""SiteURL": """#,
            r#""SiteURL": "https://chat.example.org:8443""#,
            1,
        )
    });
    let original = std::fs::read(&path).unwrap();
    let path_arg = path.to_str().unwrap();

    let (code, out, err) = integrate(&cfg, &["--config-json", path_arg]);
    assert_eq!(code, 3, "{out}{err}");
    assert!(
        err.contains(r#"EmailSettings.SMTPServer: set to "mail.corp.example" by an admin; vestibule would set "127.0.0.1""#),
        "{err}"
    );
    assert!(err.contains("--force"), "{err}");
    // A value that already is what vestibule wants is no conflict.
    assert!(!err.contains("SiteURL"), "{err}");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        original,
        "a refused run wrote the file"
    );

    let (code, out, err) = integrate(&cfg, &["--config-json", path_arg, "--force"]);
    assert_eq!(code, 0, "{out}{err}");
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(at(&doc, "EmailSettings.SMTPServer"), "127.0.0.1");
}

#[test]
fn errors_say_what_and_how_to_fix() {
    // No Mattermost vhost.
    let plain = MainConfig::new()
        .vhost(Vhost::new("site.example.org").upstream("127.0.0.1:9000"))
        .build();
    let (code, _, err) = integrate(&plain, &["--config-json", "/nonexistent/config.json"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no vhost") && err.contains("--vhost"), "{err}");
    // --vhost names it.
    let (code, _, err) = integrate(
        &plain,
        &["--vhost", "site", "--config-json", "/nonexistent/config.json"],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("/nonexistent/config.json"), "{err}");

    let cfg = vestibule_tree();
    let mm = tempfile::tempdir().unwrap();
    // Nothing listens there: the cause is said, not only "error sending request".
    let token = token_file(mm.path(), "t", 0o600);
    let url = format!("http://127.0.0.1:{}", free_port());
    let (code, _, err) = integrate(&cfg, &["--url", &url, "--token-file", token.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("cannot reach Mattermost") && err.contains("refused"),
        "{err}"
    );

    let broken = mm.path().join("config.json");
    std::fs::write(&broken, "{\"ServiceSettings\": {").unwrap();
    let (code, _, err) = integrate(&cfg, &["--config-json", broken.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("not valid JSON"), "{err}");
}

/// A token file at `mode`.
fn token_file(dir: &Path, token: &str, mode: u32) -> PathBuf {
    let p = dir.join("token");
    std::fs::write(&p, format!("{token}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    p
}

async fn integrate_async(cfg: &ConfigDir, args: Vec<String>) -> (i32, String, String) {
    let main = cfg.main_file();
    tokio::task::spawn_blocking(move || {
        let out = Command::new(bin())
            .args(["integrate", "mattermost", "--config"])
            .arg(main)
            .args(args)
            .output()
            .expect("run vestibule integrate");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_patches_and_a_second_run_changes_nothing() {
    let cfg = vestibule_tree();
    let mm = Mattermost::start("s3cret-token").await;
    let dir = tempfile::tempdir().unwrap();
    let token = token_file(dir.path(), "s3cret-token", 0o600);
    let args = |extra: &[&str]| {
        let mut a = vec![
            "--url".to_string(),
            mm.url(),
            "--token-file".into(),
            token.display().to_string(),
        ];
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };

    let (code, out, err) = integrate_async(&cfg, args(&["--dry-run", "--packager-defaults"])).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(r#"EmailSettings.SMTPServer: "localhost" -> "127.0.0.1""#),
        "{out}"
    );
    assert_eq!(mm.patches.load(std::sync::atomic::Ordering::SeqCst), 0);

    let (code, out, err) = integrate_async(&cfg, args(&["--packager-defaults"])).await;
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(mm.patches.load(std::sync::atomic::Ordering::SeqCst), 1);
    for (key, want) in expected() {
        assert_eq!(mm.get(key), Some(want), "{key}");
    }

    let (code, out, err) = integrate_async(&cfg, args(&["--packager-defaults"])).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("nothing to change"), "{out}");
    assert_eq!(mm.patches.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_token_must_be_private_and_accepted() {
    let cfg = vestibule_tree();
    let mm = Mattermost::start("right").await;
    let dir = tempfile::tempdir().unwrap();

    let open = token_file(dir.path(), "right", 0o644);
    let args = vec![
        "--url".into(),
        mm.url(),
        "--token-file".into(),
        open.display().to_string(),
    ];
    let (code, _, err) = integrate_async(&cfg, args).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("chmod 600"), "{err}");

    let wrong = token_file(dir.path(), "wrong", 0o600);
    let args = vec![
        "--url".into(),
        mm.url(),
        "--token-file".into(),
        wrong.display().to_string(),
    ];
    let (code, _, err) = integrate_async(&cfg, args).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("refused the token") && err.contains("401"), "{err}");
    assert_eq!(mm.get("ServiceSettings.SiteURL"), Some(json!("")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_mattermost_lacks_or_keeps_are_reported() {
    let cfg = vestibule_tree();
    let mm = Mattermost::start("t").await;
    let dir = tempfile::tempdir().unwrap();
    let token = token_file(dir.path(), "t", 0o600);
    let args = || {
        vec![
            "--url".into(),
            mm.url(),
            "--token-file".into(),
            token.display().to_string(),
        ]
    };

    // A Mattermost without the setting: vestibule says so and does not send it.
    mm.config.lock().unwrap()["EmailSettings"]
        .as_object_mut()
        .unwrap()
        .shift_remove("PushNotificationContents");
    // A setting an MM_ environment variable pins: the patch is answered, the value stays.
    mm.pinned.lock().unwrap().push("EmailSettings.SMTPPort".into());

    let (code, out, err) = integrate_async(&cfg, args()).await;
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        out.contains("note: EmailSettings.PushNotificationContents not set"),
        "{out}"
    );
    assert!(err.contains("did not store EmailSettings.SMTPPort"), "{err}");
    assert_eq!(mm.get("EmailSettings.PushNotificationContents"), None);
}

/// The stand-in refuses what Mattermost refuses, so the tests above would catch a wrong type.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standin_refuses_wrong_types_and_drops_unknown_keys() {
    let mm = Mattermost::start("t").await;
    let put = |body: Value| {
        client()
            .put(format!("{}/api/v4/config/patch", mm.url()))
            .bearer_auth("t")
            .body(body.to_string())
            .send()
    };
    // SMTPPort is a string in Mattermost's configuration.
    let r = put(json!({"EmailSettings": {"SMTPPort": 2525}})).await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(mm.get("EmailSettings.SMTPPort"), Some(json!("10025")));
    let r = put(json!({"EmailSettings": {"SMTPPort": "2525", "NoSuchKey": true}}))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(mm.get("EmailSettings.SMTPPort"), Some(json!("2525")));
    assert_eq!(mm.get("EmailSettings.NoSuchKey"), None);
    let r = client()
        .get(format!("{}/api/v4/config", mm.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}
