//! `vestibule integrate onlyoffice`, run as the real binary: one secret written into the vhost
//! file, a real-shaped Mattermost config.json (or the API stand-in) and a real-shaped Document
//! Server local.json; never printed.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use sha2::Digest;

use super::integrate::{config_json, vestibule_tree};
use crate::support::mattermost::Mattermost;
use crate::support::*;

const LOCAL_JSON: &str = include_str!("../fixtures/documentserver-local.json");

fn run(cfg: &ConfigDir, args: &[&str]) -> (i32, String, String) {
    run_main(&cfg.main_file(), args)
}

fn run_main(main: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(bin())
        .args(["integrate", "onlyoffice", "--config"])
        .arg(main)
        .args(args)
        .output()
        .expect("run vestibule integrate onlyoffice");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The file back ends' arguments: Mattermost's config.json, Document Server's local.json, the secret.
fn file_args<'a>(mm: &'a Path, ds: &'a Path, secret_file: &'a Path) -> [&'a str; 6] {
    [
        "--config-json",
        mm.to_str().unwrap(),
        "--documentserver-config",
        ds.to_str().unwrap(),
        "--secret-file",
        secret_file.to_str().unwrap(),
    ]
}

fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn sha(s: &str) -> Vec<u8> {
    sha2::Sha256::digest(s.as_bytes()).to_vec()
}

fn vhost_file(cfg: &ConfigDir) -> PathBuf {
    cfg.main_file()
        .parent()
        .unwrap()
        .join("vhosts/chat.example.org.toml")
}

#[test]
fn onlyoffice_one_secret_in_three_places_and_a_second_run_changes_nothing() {
    let cfg = vestibule_tree();
    let dir = tempfile::tempdir().unwrap();
    let mm = config_json(dir.path(), |t| t);
    let ds = dir.path().join("local.json");
    std::fs::write(&ds, LOCAL_JSON).unwrap();
    let secret_file = dir.path().join("secrets/onlyoffice.jwt");
    let vhost_before = std::fs::read_to_string(vhost_file(&cfg)).unwrap();
    let args = file_args(&mm, &ds, &secret_file);

    let mut dry = args.to_vec();
    dry.push("--dry-run");
    let (code, out, err) = run(&cfg, &dry);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("<secret: sha256 "), "{out}");
    assert!(
        out.contains("services.CoAuthoring.token.enable.browser: false -> true"),
        "{out}"
    );
    assert!(!secret_file.exists(), "a dry run created the secret");
    assert_eq!(std::fs::read_to_string(&ds).unwrap(), LOCAL_JSON);

    let (code, out, err) = run(&cfg, &args);
    assert_eq!(code, 0, "{out}{err}");
    let mode = std::fs::metadata(&secret_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let secret = std::fs::read_to_string(&secret_file).unwrap().trim().to_string();
    assert!(
        !out.contains(&secret) && !err.contains(&secret),
        "the secret was printed"
    );

    let want = sha(&secret);
    let ds_doc = json(&ds);
    for key in ["inbox", "outbox", "session"] {
        let v = ds_doc["services"]["CoAuthoring"]["secret"][key]["string"]
            .as_str()
            .unwrap();
        assert_eq!(sha(v), want, "Document Server's {key} secret");
    }
    assert_eq!(
        ds_doc["services"]["CoAuthoring"]["token"]["enable"]["browser"],
        true
    );
    assert_eq!(
        ds_doc["services"]["CoAuthoring"]["token"]["enable"]["request"]["inbox"],
        true
    );
    assert_eq!(
        ds_doc["services"]["CoAuthoring"]["token"]["outbox"]["header"],
        "Authorization"
    );
    // Keys vestibule does not manage are kept, in order.
    assert_eq!(ds_doc["rabbitmq"]["url"], "amqp://guest:guest@localhost");
    let top: Vec<_> = ds_doc.as_object().unwrap().keys().cloned().collect();
    assert_eq!(top, ["services", "rabbitmq", "storage"]);

    let plugin = &json(&mm)["PluginSettings"]["Plugins"]["com.onlyoffice.mattermost"];
    assert_eq!(sha(plugin["desjwt"].as_str().unwrap()), want, "{plugin}");
    assert_eq!(plugin["desjwtheader"], "AuthorizationJWT");
    assert_eq!(plugin["desjwtprefix"], "Bearer ");
    assert!(json(&mm)["PluginSettings"]["Plugins"]["playbooks"].is_object());

    let vhost = std::fs::read_to_string(vhost_file(&cfg)).unwrap();
    let table: toml_edit::DocumentMut = vhost.parse().unwrap();
    let file = table["onlyoffice"]["secret_file"].as_str().unwrap();
    assert_eq!(Path::new(file), secret_file);
    // The vhost's own text is kept around the new table.
    assert!(vhost.starts_with(vhost_before.trim_end()), "{vhost}");
    let check = Command::new(bin())
        .args(["check", "--config"])
        .arg(cfg.main_file())
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );

    let snapshot = |p: &Path| std::fs::read(p).unwrap();
    let (a, b, c) = (snapshot(&mm), snapshot(&ds), snapshot(&vhost_file(&cfg)));
    let (code, out, err) = run(&cfg, &args);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("nothing to change"), "{out}");
    assert_eq!(
        (snapshot(&mm), snapshot(&ds), snapshot(&vhost_file(&cfg))),
        (a, b, c)
    );
}

#[test]
fn onlyoffice_refuses_an_admins_secret_and_says_where() {
    let cfg = vestibule_tree();
    let dir = tempfile::tempdir().unwrap();
    let mm = config_json(dir.path(), |t| {
        t.replacen(
            "\"Plugins\": {\n",
            "\"Plugins\": {\n            \"com.onlyoffice.mattermost\": {\n                \"desjwt\": \"chosen-by-admin\"\n            },\n",
            1,
        )
    });
    let ds = dir.path().join("local.json");
    std::fs::write(&ds, LOCAL_JSON).unwrap();
    let secret_file = dir.path().join("onlyoffice.jwt");
    let args = file_args(&mm, &ds, &secret_file);
    let (code, out, err) = run(&cfg, &args);
    assert_eq!(code, 3, "{out}{err}");
    assert!(err.contains("desjwt: set to <secret: sha256"), "{err}");
    assert!(err.contains("--force"), "{err}");
    assert!(!err.contains("chosen-by-admin") && !out.contains("chosen-by-admin"));
    assert!(!secret_file.exists());
    assert_eq!(std::fs::read_to_string(&ds).unwrap(), LOCAL_JSON);

    // Missing local.json: what, where, how.
    let missing = dir.path().join("nope.json");
    let mut args2 = args.to_vec();
    args2[3] = missing.to_str().unwrap();
    let (code, _, err) = run(&cfg, &args2);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("nope.json"), "{err}");
}

/// Mattermost's config patch replaces a map such as `PluginSettings.Plugins` whole: a patch with only
/// the ONLYOFFICE plugin's keys would wipe every other plugin's settings. The stand-in does the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn onlyoffice_through_the_api_keeps_every_other_plugins_settings() {
    let cfg = vestibule_tree();
    let mm = Mattermost::start("s3cret-token").await;
    let before = mm
        .get("PluginSettings.Plugins.playbooks")
        .expect("the stand-in has playbooks");
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "s3cret-token\n").unwrap();
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    let ds = dir.path().join("local.json");
    std::fs::write(&ds, LOCAL_JSON).unwrap();
    let secret_file = dir.path().join("onlyoffice.jwt");
    let args: Vec<String> = [
        "--url",
        &mm.url(),
        "--token-file",
        token.to_str().unwrap(),
        "--documentserver-config",
        ds.to_str().unwrap(),
        "--secret-file",
        secret_file.to_str().unwrap(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let main = cfg.main_file();
    let (code, out, err) = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_main(&main, &args)
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(mm.patches.load(std::sync::atomic::Ordering::SeqCst), 1);
    let secret = std::fs::read_to_string(&secret_file).unwrap().trim().to_string();
    let plugins = mm.get("PluginSettings.Plugins").unwrap();
    assert_eq!(plugins["com.onlyoffice.mattermost"]["desjwt"], secret.as_str());
    assert_eq!(
        plugins["playbooks"], before,
        "another plugin's settings were wiped"
    );
}

/// The command runs as root (it writes Document Server's and Mattermost's files); the daemon as the
/// state directory's owner (`vestibule` in the package). A new secret file goes to that owner, mode
/// 600, and the vhost file keeps its owner and mode: otherwise the next reload could not read them.
#[test]
fn onlyoffice_gives_the_new_secret_to_the_daemons_user_and_keeps_the_vhosts_owner() {
    use std::os::unix::fs::MetadataExt;
    let cfg = vestibule_tree();
    let dir = tempfile::tempdir().unwrap();
    let mm = config_json(dir.path(), |t| t);
    let ds = dir.path().join("local.json");
    std::fs::write(&ds, LOCAL_JSON).unwrap();
    let secret_file = dir.path().join("secrets/onlyoffice.jwt");
    // The daemon's user: nobody (65534), as the package's `vestibule` would be.
    let state = cfg.state_dir();
    std::fs::create_dir_all(&state).unwrap();
    std::os::unix::fs::chown(&state, Some(65534), Some(65534)).expect("the tests run as root");
    let vhost = vhost_file(&cfg);
    std::os::unix::fs::chown(&vhost, Some(0), Some(65534)).unwrap();
    std::fs::set_permissions(&vhost, std::fs::Permissions::from_mode(0o640)).unwrap();
    let args = file_args(&mm, &ds, &secret_file);
    let (code, out, err) = run(&cfg, &args);
    assert_eq!(code, 0, "{out}{err}");
    let meta = std::fs::metadata(&secret_file).unwrap();
    assert_eq!(
        (meta.uid(), meta.gid(), meta.mode() & 0o777),
        (65534, 65534, 0o600)
    );
    let meta = std::fs::metadata(&vhost).unwrap();
    assert_eq!((meta.uid(), meta.gid(), meta.mode() & 0o777), (0, 65534, 0o640));
}

/// A secret an admin gave Document Server (another client of it uses it too) is not replaced by
/// vestibule's own unless forced: it is adopted only when vestibule has none yet.
#[test]
fn onlyoffice_refuses_to_replace_document_servers_secret_with_its_own() {
    let cfg = vestibule_tree();
    let dir = tempfile::tempdir().unwrap();
    let mm = config_json(dir.path(), |t| t);
    let ds = dir.path().join("local.json");
    let admins = LOCAL_JSON.replace("\"string\": \"secret\"", "\"string\": \"nextclouds-secret\"");
    std::fs::write(&ds, &admins).unwrap();
    let secret_file = dir.path().join("onlyoffice.jwt");
    std::fs::write(&secret_file, "vestibules-own-secret\n").unwrap();
    std::fs::set_permissions(&secret_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let args = file_args(&mm, &ds, &secret_file);
    let (code, out, err) = run(&cfg, &args);
    assert_eq!(code, 3, "{out}{err}");
    assert!(
        err.contains("services.CoAuthoring.secret.inbox.string: set to <secret: sha256"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(&ds).unwrap(),
        admins,
        "Document Server's file was written"
    );

    let mut forced = args.to_vec();
    forced.push("--force");
    let (code, out, err) = run(&cfg, &forced);
    assert_eq!(code, 0, "{out}{err}");
    let doc = json(&ds);
    assert_eq!(
        doc["services"]["CoAuthoring"]["secret"]["inbox"]["string"],
        "vestibules-own-secret"
    );
}
