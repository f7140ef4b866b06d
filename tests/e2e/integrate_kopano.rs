//! `vestibule integrate kopano` and `integrate all`, run as the real binary: the Mattermost vhost's
//! embedding, Notifymatters' trusted origins in a real-shaped config.json, and Kopano WebApp's
//! Intranet plugin configuration; and the README's whole sequence from the packaged configuration.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use super::integrate::{config_json, vestibule_tree};
use crate::support::*;

const INTRANET: &str = include_str!("../fixtures/kopano-config-intranet.php");
const LOCAL_JSON: &str = include_str!("../fixtures/documentserver-local.json");

fn run(main: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(bin())
        .arg("integrate")
        .args(args)
        .arg("--config")
        .arg(main)
        .output()
        .expect("run vestibule integrate");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `integrate kopano` for WebApp at https://mail.example.org, with these Mattermost and WebApp files.
fn kopano_args<'a>(mm: &'a Path, webapp_config: &'a Path) -> [&'a str; 7] {
    [
        "kopano",
        "--webapp-origin",
        "https://mail.example.org",
        "--config-json",
        mm.to_str().unwrap(),
        "--webapp-config",
        webapp_config.to_str().unwrap(),
    ]
}

fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn vhost_file(cfg: &ConfigDir, name: &str) -> PathBuf {
    cfg.main_file()
        .parent()
        .unwrap()
        .join(format!("vhosts/{name}.toml"))
}

fn embed_origins(path: &Path) -> Vec<String> {
    let doc: toml_edit::DocumentMut = std::fs::read_to_string(path).unwrap().parse().unwrap();
    doc.get("embed")
        .and_then(|e| e.get("allow_origins"))
        .and_then(|a| a.as_array())
        .map(|a| a.iter().map(|v| v.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

fn trusted_origin(mm: &Path) -> Value {
    json(mm)["PluginSettings"]["Plugins"]["notifymatters"]["trustedorigin"].clone()
}

#[test]
fn kopano_wires_embedding_notifymatters_and_the_intranet_button_once() {
    let cfg = vestibule_tree();
    let dir = tempfile::tempdir().unwrap();
    let mm = config_json(dir.path(), |t| t);
    let php = dir.path().join("config-intranet.php");
    std::fs::write(&php, INTRANET).unwrap();
    let vhost = vhost_file(&cfg, "chat.example.org");
    let args = kopano_args(&mm, &php);

    let mut dry = args.to_vec();
    dry.push("--dry-run");
    let snapshot = || {
        (
            std::fs::read(&mm).unwrap(),
            std::fs::read(&php).unwrap(),
            std::fs::read(&vhost).unwrap(),
        )
    };
    let before = snapshot();
    let (code, out, err) = run(&cfg.main_file(), &dry);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(r#"[embed] allow_origins: [] -> ["https://mail.example.org"]"#),
        "{out}"
    );
    assert!(
        out.contains(
            r#"PluginSettings.Plugins[notifymatters].trustedorigin: (absent) -> "https://mail.example.org""#
        ),
        "{out}"
    );
    assert!(
        out.contains("PLUGIN_INTRANET_URL: 'http://www.kopano.io/' -> 'https://chat.example.org:8443'"),
        "{out}"
    );
    assert!(out.contains("dry run: 5 settings would change"), "{out}");
    assert_eq!(snapshot(), before, "a dry run wrote");

    let (code, out, err) = run(&cfg.main_file(), &args);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(embed_origins(&vhost), ["https://mail.example.org"]);
    assert_eq!(trusted_origin(&mm), "https://mail.example.org");
    let text = std::fs::read_to_string(&php).unwrap();
    assert!(
        text.contains("define('PLUGIN_INTRANET_USER_DEFAULT_ENABLE', true);"),
        "{text}"
    );
    assert!(
        text.contains("define('PLUGIN_INTRANET_BUTTON_TITLE', 'Mattermost');"),
        "{text}"
    );
    assert!(
        text.contains("define('PLUGIN_INTRANET_URL', 'https://chat.example.org:8443');"),
        "{text}"
    );
    assert!(
        text.contains("/** Open the tab when WebApp starts */"),
        "comments kept: {text}"
    );
    let backups: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("config-intranet.php.")
        })
        .collect();
    assert_eq!(backups.len(), 1, "one backup of the WebApp file");
    // What vestibule serves now: the vhost still checks, and Mattermost may be framed by WebApp.
    let check = cfg.vestibule(&["check"]);
    assert_eq!(check.code, 0, "{}", check.stderr);

    let after = snapshot();
    let (code, out, err) = run(&cfg.main_file(), &args);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("nothing to change"), "{out}");
    assert_eq!(snapshot(), after, "a second run wrote");
}

#[test]
fn kopano_keeps_an_admins_intranet_site_and_trusted_origins() {
    let cfg = vestibule_tree();
    let dir = tempfile::tempdir().unwrap();
    let mm = config_json(dir.path(), |t| {
        t.replacen(
            "\"Plugins\": {\n",
            "\"Plugins\": {\n            \"notifymatters\": {\n                \"trustedorigin\": \"https://intranet.example.org\"\n            },\n",
            1,
        )
    });
    let php = dir.path().join("config-intranet.php");
    let admins = INTRANET.replace("http://www.kopano.io/", "https://wiki.example.org/");
    std::fs::write(&php, &admins).unwrap();
    let args = kopano_args(&mm, &php);
    let (code, out, err) = run(&cfg.main_file(), &args);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        trusted_origin(&mm),
        "https://intranet.example.org https://mail.example.org"
    );
    let text = std::fs::read_to_string(&php).unwrap();
    assert!(
        text.contains("define('PLUGIN_INTRANET_URL', 'https://wiki.example.org/');"),
        "{text}"
    );
    assert!(
        text.contains("define('PLUGIN_INTRANET_URL_1', 'https://chat.example.org:8443');"),
        "{text}"
    );
    assert!(
        text.contains("define('PLUGIN_INTRANET_BUTTON_TITLE_1', 'Mattermost');"),
        "{text}"
    );
    assert!(text.trim_end().ends_with("?>"), "{text}");
}

#[test]
fn kopano_says_what_is_missing_or_wrong() {
    let cfg = vestibule_tree();
    let dir = tempfile::tempdir().unwrap();
    let mm = config_json(dir.path(), |t| t);
    let before = std::fs::read(&mm).unwrap();
    let base = ["kopano", "--config-json", mm.to_str().unwrap()];

    // No origin anywhere: say how to give it.
    let (code, _, err) = run(&cfg.main_file(), &base);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("--webapp-origin"), "{err}");

    // WebApp over http, Mattermost over https: WebApp cannot show it.
    let mut args = base.to_vec();
    args.extend(["--webapp-origin", "http://mail.example.org"]);
    let (code, _, err) = run(&cfg.main_file(), &args);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("different schemes"), "{err}");

    // Not an origin.
    let mut args = base.to_vec();
    args.extend(["--webapp-origin", "https://mail.example.org/webapp/"]);
    let (code, _, err) = run(&cfg.main_file(), &args);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("webapp"), "{err}");
    assert_eq!(std::fs::read(&mm).unwrap(), before, "nothing written on an error");

    // No Intranet configuration on this machine: the lines are printed, the rest is written.
    let mut args = base.to_vec();
    args.extend(["--webapp-origin", "https://mail.example.org"]);
    let (code, out, err) = run(&cfg.main_file(), &args);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("define('PLUGIN_INTRANET_URL', 'https://chat.example.org:8443');"),
        "{out}"
    );
    assert_eq!(trusted_origin(&mm), "https://mail.example.org");
}

/// The README's sequence ("From the package to a wired Mattermost, ONLYOFFICE and Kopano WebApp"),
/// run on the packaged vestibule.toml: three hand-edited lines there (`[acme]`, its `contact`, the
/// mail hostname), two `vhost new` and one `integrate all`. The test only points the state directory
/// and the products' files (at their packaged locations on a real machine) into a temporary directory.
#[test]
fn the_readme_sequence_wires_mattermost_onlyoffice_and_webapp() {
    let dir = tempfile::tempdir().unwrap();
    let etc = dir.path().join("etc");
    std::fs::create_dir_all(etc.join("vhosts")).unwrap();
    let packaged =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/packaging/vestibule.toml")).unwrap();
    let hand_edited = packaged
        .replacen(
            "# [acme]\n# contact = \"admin@example.org\"",
            "[acme]\ncontact = \"admin@example.org\"",
            1,
        )
        .replacen("hostname = \"localhost\"", "hostname = \"mail.example.org\"", 1);
    assert_ne!(hand_edited, packaged);
    let products = format!(
        "state_dir = {:?}\n{hand_edited}\n[integrate]\nmattermost_config = {:?}\ndocumentserver_config = {:?}\nwebapp_config = {:?}\n",
        dir.path().join("state"),
        dir.path().join("config.json"),
        dir.path().join("local.json"),
        dir.path().join("config-intranet.php"),
    )
    .replacen("state_dir = \"/var/lib/vestibule\"\n", "", 1);
    let main = etc.join("vestibule.toml");
    std::fs::write(&main, products).unwrap();
    let mm = config_json(dir.path(), |t| t);
    std::fs::write(dir.path().join("local.json"), LOCAL_JSON).unwrap();
    std::fs::write(dir.path().join("config-intranet.php"), INTRANET).unwrap();

    let vestibule = |args: &[&str]| {
        let out = Command::new(bin())
            .args(args)
            .arg("--config")
            .arg(&main)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "vestibule {args:?}: {text}");
        text
    };
    vestibule(&[
        "vhost",
        "new",
        "--template",
        "onlyoffice",
        "--name",
        "office.example.org",
        "--upstream",
        "127.0.0.1:8080",
        "--tls",
        "acme",
    ]);
    vestibule(&[
        "vhost",
        "new",
        "--template",
        "mattermost",
        "--name",
        "chat.example.org",
        "--upstream",
        "127.0.0.1:8065",
        "--tls",
        "acme",
        "--onlyoffice",
        "--embed-from",
        "https://mail.example.org",
    ]);
    let out = vestibule(&["integrate", "all", "--packager-defaults"]);
    assert!(!out.contains("skipped"), "{out}");

    let doc = json(&mm);
    assert_eq!(doc["ServiceSettings"]["SiteURL"], "https://chat.example.org");
    assert_eq!(doc["EmailSettings"]["SMTPServer"], "127.0.0.1");
    assert_eq!(doc["EmailSettings"]["SMTPPort"], "25");
    assert_eq!(
        doc["EmailSettings"]["PushNotificationServer"],
        "http://127.0.0.1:8066"
    );
    assert_eq!(doc["LogSettings"]["EnableDiagnostics"], false);
    assert_eq!(doc["ServiceSettings"]["EnablePostUsernameOverride"], true);
    let plugins = &doc["PluginSettings"]["Plugins"];
    assert_eq!(
        plugins["com.onlyoffice.mattermost"]["desaddress"],
        "https://office.example.org/"
    );
    assert_eq!(
        plugins["notifymatters"]["trustedorigin"],
        "https://mail.example.org"
    );
    let secret = std::fs::read_to_string(etc.join("secrets/onlyoffice.jwt"))
        .unwrap()
        .trim()
        .to_string();
    assert_eq!(plugins["com.onlyoffice.mattermost"]["desjwt"], secret.as_str());
    let ds = json(&dir.path().join("local.json"));
    assert_eq!(
        ds["services"]["CoAuthoring"]["secret"]["inbox"]["string"],
        secret.as_str()
    );
    let php = std::fs::read_to_string(dir.path().join("config-intranet.php")).unwrap();
    assert!(
        php.contains("define('PLUGIN_INTRANET_URL', 'https://chat.example.org');"),
        "{php}"
    );
    vestibule(&["check"]);

    let files = || {
        [
            "config.json",
            "local.json",
            "config-intranet.php",
            "etc/vhosts/chat.example.org.toml",
        ]
        .map(|f| std::fs::read(dir.path().join(f)).unwrap())
    };
    let before = files();
    let out = vestibule(&["integrate", "all", "--packager-defaults"]);
    assert_eq!(out.matches("nothing to change").count(), 3, "{out}");
    assert_eq!(files(), before, "a second run wrote");
}

/// `[integrate]` is provisioned like every module's section: `vestibule check` refuses what
/// `integrate` and `doctor` could not use.
#[test]
fn check_refuses_a_broken_integrate_section() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "t\n").unwrap();
    std::fs::set_permissions(&token, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    for (section, want) in [
        (
            format!("mattermost_url = \"http://127.0.0.1:8065\"\nmattermost_token_file = {token:?}"),
            "mattermost_token_file",
        ),
        (
            "mattermost_url = \"http://127.0.0.1:8065\"".to_string(),
            "needs mattermost_token_file",
        ),
        (
            "mattermost_url = \"127.0.0.1:8065\"\nmattermost_config = \"/x\"".to_string(),
            "both mattermost_url and mattermost_config",
        ),
        (
            "webapp_origin = \"https://mail.example.org/webapp\"".to_string(),
            "webapp_origin",
        ),
        (
            "webapp_orgin = \"https://mail.example.org\"".to_string(),
            "did you mean `webapp_origin`",
        ),
    ] {
        let cfg = crate::support::config::MainConfig::new()
            .table(crate::support::config::Table::new("integrate").raw(&section))
            .build();
        let out = cfg.vestibule(&["check"]);
        assert_eq!(out.code, 1, "{section}: {}", out.stderr);
        assert!(out.stderr.contains(want), "{section}: {}", out.stderr);
        assert!(
            out.stderr.contains("vestibule.toml:"),
            "says where: {}",
            out.stderr
        );
    }
}

/// Debian links a plugin's config.php from /usr/share into /etc: the file behind the link is edited
/// (and backed up next to it), the link stays a link.
#[test]
fn kopano_edits_the_file_behind_a_symbolic_link() {
    let cfg = vestibule_tree();
    let dir = tempfile::tempdir().unwrap();
    let mm = config_json(dir.path(), |t| t);
    let real = dir.path().join("etc-config-intranet.php");
    std::fs::write(&real, INTRANET).unwrap();
    let link = dir.path().join("config.php");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let args = kopano_args(&mm, &link);
    let (code, out, err) = run(&cfg.main_file(), &args);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink(),
        "the link was replaced by a file"
    );
    assert!(std::fs::read_to_string(&real)
        .unwrap()
        .contains("'https://chat.example.org:8443'"));
    assert!(
        out.contains("etc-config-intranet.php."),
        "the backup sits next to the real file: {out}"
    );
}
