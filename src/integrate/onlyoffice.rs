//! `vestibule integrate onlyoffice`: one JWT secret, and the header it travels in, in the three
//! places that must agree: vestibule's verification (the Mattermost vhost's `[onlyoffice]`), the
//! Mattermost ONLYOFFICE plugin's settings, and Document Server's `local.json`.
//!
//! The plugin's setting keys are those of its `plugin.json` (`DESJwt`, `DESJwtHeader`,
//! `DESJwtPrefix`), stored lowercased under `PluginSettings.Plugins["com.onlyoffice.mattermost"]`
//! as the System Console stores them. Document Server's keys are those of its
//! `Common/config/default.json` (`services.CoAuthoring.secret.*.string`,
//! `services.CoAuthoring.token.*`).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use sha2::Digest;

use super::plan::Setting;

/// Where Document Server's packages put the file that overrides its defaults.
pub const DOCUMENTSERVER_PATHS: &[&str] = &["/etc/onlyoffice/documentserver/local.json"];

/// Keys whose values are the secret: never printed.
pub const SECRET_KEYS: &[&str] = &[
    "PluginSettings.Plugins[com.onlyoffice.mattermost].desjwt",
    "services.CoAuthoring.secret.inbox.string",
    "services.CoAuthoring.secret.outbox.string",
    "services.CoAuthoring.secret.session.string",
];

/// Why the secret or the vhost file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum OnlyofficeError {
    #[error(transparent)]
    Secret(#[from] crate::secret::SecretError),
    #[error("cannot create the secret file {}: {source}; give a writable place with --secret-file PATH", path.display())]
    SecretWrite {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read random bytes for the secret from /dev/urandom: {0}")]
    Random(#[source] std::io::Error),
    #[error(transparent)]
    Vhost(#[from] super::vhost_file::VhostFileError),
}

/// The secret: its bytes, and a short hash that identifies it in messages without revealing it.
pub struct Secret {
    pub value: String,
    /// Whether it is new (its file does not exist yet).
    pub new: bool,
}

impl Secret {
    /// `<secret: sha256 0123abcd>`: the same secret shows the same label everywhere.
    ///
    /// The hash is keyed with a random value drawn once per process: labels match within one
    /// report, but a label in a log or a monitoring system cannot be used to test guesses of a
    /// secret an admin chose by hand.
    pub fn label(value: &str) -> String {
        static KEY: std::sync::OnceLock<[u8; 16]> = std::sync::OnceLock::new();
        let key = KEY.get_or_init(|| {
            use rand::RngCore;
            let mut k = [0u8; 16];
            rand::rngs::OsRng.fill_bytes(&mut k);
            k
        });
        let mut hasher = sha2::Sha256::new();
        hasher.update(key);
        hasher.update(value.as_bytes());
        let digest = hasher.finalize();
        let hex: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
        format!("<secret: sha256 {hex}>")
    }
}

/// Read the secret from `path`, or make a new one (not yet written: see [`write_secret`]).
pub fn read_or_generate(path: &Path) -> Result<Secret, OnlyofficeError> {
    if path.exists() {
        let bytes = crate::secret::load_secret(path)?;
        return Ok(Secret {
            value: String::from_utf8_lossy(&bytes).into_owned(),
            new: false,
        });
    }
    let mut raw = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut raw))
        .map_err(OnlyofficeError::Random)?;
    // Hex: the plugin's text field and Document Server's JSON take it as it is.
    let value = raw.iter().map(|b| format!("{b:02x}")).collect();
    Ok(Secret { value, new: true })
}

/// Create the secret file with mode 0600 (and, given, that owner) before anything is written to it.
pub fn write_secret(path: &Path, secret: &Secret, owner: Option<(u32, u32)>) -> Result<(), OnlyofficeError> {
    use std::os::unix::fs::OpenOptionsExt;
    let err = |source| OnlyofficeError::SecretWrite {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(err)?;
    if let Some((uid, gid)) = owner {
        use std::os::unix::fs::MetadataExt;
        let meta = f.metadata().map_err(err)?;
        // Only root may give a file away; anyone else runs vestibule as themselves.
        if (meta.uid(), meta.gid()) != (uid, gid) {
            match std::os::unix::fs::fchown(&f, Some(uid), Some(gid)) {
                Err(e) if e.raw_os_error() == Some(libc::EPERM) => {}
                other => other.map_err(err)?,
            }
        }
    }
    f.write_all(secret.value.as_bytes())
        .and_then(|()| f.write_all(b"\n"))
        .and_then(|()| f.sync_all())
        .map_err(err)
}

/// The header names and prefix the three places must agree on.
#[derive(Debug, Clone)]
pub struct Headers {
    /// What Document Server sends (and vestibule's rule reads): `Authorization`.
    pub document_server: String,
    /// What the plugin reads once vestibule moved the token: `[onlyoffice] header`.
    pub plugin: String,
    pub prefix: String,
}

/// The plugin's placeholder for Document Server's address.
const DESADDRESS_EXAMPLE: &str = "https://<documentserver>:<port>/";

/// The plugin's settings; `address` is Document Server's as browsers reach it, when known.
pub fn plugin_settings(secret: &str, h: &Headers, address: Option<&str>) -> Vec<Setting> {
    let mut v = vec![
        Setting::exact(
            "PluginSettings.Plugins[com.onlyoffice.mattermost].desjwt",
            json!(secret),
            &[json!("")],
        ),
        Setting::exact(
            "PluginSettings.Plugins[com.onlyoffice.mattermost].desjwtheader",
            json!(h.plugin),
            &[json!(crate::policy::onlyoffice::DEFAULT_CUSTOM_HEADER)],
        ),
        Setting::exact(
            "PluginSettings.Plugins[com.onlyoffice.mattermost].desjwtprefix",
            json!(h.prefix),
            &[json!(crate::policy::onlyoffice::DEFAULT_PREFIX)],
        ),
    ];
    if let Some(a) = address {
        v.push(Setting::exact(
            "PluginSettings.Plugins[com.onlyoffice.mattermost].desaddress",
            json!(a),
            &[json!(""), json!(DESADDRESS_EXAMPLE)],
        ));
    }
    v
}

/// Document Server's address from vestibule's vhosts: the one vhost whose upstream is health-checked
/// on `/healthcheck` (Document Server's health path, as the onlyoffice template renders it).
pub fn documentserver_address(cfg: &crate::config::Config) -> Option<String> {
    let found: Vec<_> = cfg
        .vhosts
        .iter()
        .filter(|v| {
            super::mattermost::upstream(cfg, v)
                .is_some_and(|u| u.health_check.path.as_deref() == Some("/healthcheck"))
        })
        .collect();
    match found[..] {
        [one] => super::mattermost::site_url(cfg, one)
            .ok()
            .map(|u| format!("{u}/")),
        _ => None,
    }
}

/// Document Server's settings. Its packages write a random secret into `local.json` on install:
/// that value is nobody's choice yet, so `adopt` (the secret found there when vestibule has none)
/// counts as a default.
pub fn documentserver_settings(secret: &str, h: &Headers, found: Option<&str>) -> Vec<Setting> {
    let mut secret_defaults = vec![json!(""), json!("secret")];
    if let Some(f) = found {
        secret_defaults.push(json!(f));
    }
    let mut v = vec![
        Setting::exact(
            "services.CoAuthoring.token.enable.browser",
            json!(true),
            &[json!(false)],
        ),
        Setting::exact(
            "services.CoAuthoring.token.enable.request.inbox",
            json!(true),
            &[json!(false)],
        ),
        Setting::exact(
            "services.CoAuthoring.token.enable.request.outbox",
            json!(true),
            &[json!(false)],
        ),
        Setting::exact(
            "services.CoAuthoring.token.inbox.header",
            json!(h.plugin),
            &[json!("Authorization")],
        ),
        Setting::exact(
            "services.CoAuthoring.token.outbox.header",
            json!(h.document_server),
            &[json!("Authorization")],
        ),
    ];
    for key in &SECRET_KEYS[1..] {
        v.push(Setting::exact(key, json!(secret), &secret_defaults));
    }
    v
}

/// The inbox secret of a `local.json`, if it has a real one (not the defaults' placeholder).
pub fn found_secret(doc: &Value) -> Option<&str> {
    super::plan::get(doc, "services.CoAuthoring.secret.inbox.string")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty() && *s != "secret")
}
