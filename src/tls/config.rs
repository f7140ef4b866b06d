//! `[tls]`, `[acme]` and a vhost's `tls` and `hsts` keys.

use std::path::PathBuf;
use std::time::Duration;

use crate::config::diag::{Diagnostic, Diagnostics};
use crate::config::read::{self, positive_duration, TableReader};
use crate::config::source::{Loc, Node, Value};

/// Six months: Mattermost's documented value.
pub const HSTS_MAX_AGE: u64 = 15_768_000;
pub const CERT_WATCH_INTERVAL: Duration = Duration::from_secs(60);
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

pub const LETS_ENCRYPT: &str = rustls_acme::acme::LETS_ENCRYPT_PRODUCTION_DIRECTORY;
pub const LETS_ENCRYPT_STAGING: &str = rustls_acme::acme::LETS_ENCRYPT_STAGING_DIRECTORY;

/// `[acme]` of the main file.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AcmeSettings {
    pub directory: String,
    pub contact: Vec<String>,
    pub ca_file: Option<PathBuf>,
    /// TLS-ALPN-01 on the HTTPS listener instead of HTTP-01 on port 80.
    pub tls_alpn: bool,
}

#[derive(Debug, Clone)]
pub struct TlsConfig {
    /// What to do with a handshake whose SNI names no vhost (or that sends none):
    /// `None` = serve the default vhost's certificate if it has one, else refuse.
    pub unknown_sni: Option<UnknownSni>,
    /// How often certificate files are checked for changes (besides SIGHUP).
    pub watch_interval: Duration,
    /// How long a client has to complete a TLS handshake.
    pub handshake_timeout: Duration,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            unknown_sni: None,
            watch_interval: CERT_WATCH_INTERVAL,
            handshake_timeout: HANDSHAKE_TIMEOUT,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnknownSni {
    Refuse,
    Default,
}

/// Where a vhost's certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsSource {
    /// PEM files: the full chain, and the private key (RSA, ECDSA or Ed25519).
    Files { cert: PathBuf, key: PathBuf },
    /// Generated at start-up for the vhost's names.
    SelfSigned,
    /// Ordered from the ACME CA of `[acme]` (Let's Encrypt by default).
    Acme,
}

/// `Strict-Transport-Security` for a vhost's HTTPS responses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hsts {
    pub max_age: u64,
    pub include_subdomains: bool,
    pub preload: bool,
}

impl Hsts {
    pub fn header_value(&self) -> String {
        let mut v = format!("max-age={}", self.max_age);
        if self.include_subdomains {
            v.push_str("; includeSubDomains");
        }
        if self.preload {
            v.push_str("; preload");
        }
        v
    }
}

/// `[acme] contact = "mailto:admin@example.org"`, `directory = "letsencrypt" | "staging" | URL`, `ca_file`.
pub fn read_acme(node: &Node, diags: &mut Diagnostics) -> Option<AcmeSettings> {
    let mut t = TableReader::new(node, "[acme]", diags)?;
    let contact = t.opt(
        "contact",
        diags,
        read::list(|n, name, d| {
            let s = read::string(n, name, d)?;
            let s = if s.contains(':') { s } else { format!("mailto:{s}") };
            Some(s)
        }),
    );
    let directory = t.opt("directory", diags, |n, name, d| {
        let s = read::string(n, name, d)?;
        match s.as_str() {
            "letsencrypt" | "production" => Some(LETS_ENCRYPT.to_string()),
            "staging" | "letsencrypt-staging" => Some(LETS_ENCRYPT_STAGING.to_string()),
            url if url.starts_with("https://") => Some(url.to_string()),
            _ => {
                d.push(
                    Diagnostic::at(&n.loc, format!("{name}: `{s}` is not an ACME directory"))
                        .hint("write \"letsencrypt\", \"staging\" or the https:// URL of a directory"),
                );
                None
            }
        }
    });
    let ca_file = t.opt("ca_file", diags, read::string).map(PathBuf::from);
    let challenge = t.opt("challenge", diags, read::one_of(&["http-01", "tls-alpn-01"]));
    t.finish(diags);
    Some(AcmeSettings {
        directory: directory.unwrap_or_else(|| LETS_ENCRYPT.to_string()),
        contact: contact.unwrap_or_default(),
        ca_file,
        tls_alpn: challenge == Some("tls-alpn-01"),
    })
}

pub fn read_tls(node: &Node, diags: &mut Diagnostics) -> Option<TlsConfig> {
    let mut t = TableReader::new(node, "[tls]", diags)?;
    let unknown = t.opt("unknown_sni", diags, read::one_of(&["refuse", "default"]));
    let watch = t.opt("watch_interval", diags, read::duration);
    let handshake = t.opt("handshake_timeout", diags, positive_duration);
    t.finish(diags);
    Some(TlsConfig {
        unknown_sni: unknown.map(|u| {
            if u == "refuse" {
                UnknownSni::Refuse
            } else {
                UnknownSni::Default
            }
        }),
        watch_interval: watch
            .unwrap_or(CERT_WATCH_INTERVAL)
            .max(Duration::from_millis(100)),
        handshake_timeout: handshake.unwrap_or(HANDSHAKE_TIMEOUT),
    })
}

/// `tls = "self-signed"`, `tls = { cert = "...", key = "..." }` (`"acme"` comes with the ACME module).
pub fn read_vhost_tls(node: &Node, what: &str, diags: &mut Diagnostics) -> Option<(TlsSource, Loc)> {
    let name = format!("`tls` in {what}");
    let hint = "write tls = \"self-signed\" or tls = { cert = \"/etc/ssl/chat/fullchain.pem\", key = \"/etc/ssl/chat/privkey.pem\" }";
    match &node.value {
        Value::Str(s) if s == "self-signed" => Some((TlsSource::SelfSigned, node.loc.clone())),
        Value::Str(s) if s == "acme" => Some((TlsSource::Acme, node.loc.clone())),
        Value::Str(s) => {
            diags.push(
                Diagnostic::at(&node.loc, format!("{name}: `{s}` is not a certificate source")).hint(hint),
            );
            None
        }
        Value::Table(_) => {
            let mut t = TableReader::new(node, name.clone(), diags)?;
            let cert = t.opt("cert", diags, read::string);
            let key = t.opt("key", diags, read::string);
            t.finish(diags);
            match (cert, key) {
                (Some(c), Some(k)) => Some((
                    TlsSource::Files {
                        cert: c.into(),
                        key: k.into(),
                    },
                    node.loc.clone(),
                )),
                _ => {
                    diags.push(
                        Diagnostic::at(&node.loc, format!("{name} needs both `cert` and `key`")).hint(hint),
                    );
                    None
                }
            }
        }
        other => {
            diags.push(
                Diagnostic::at(
                    &node.loc,
                    format!("{name} must be a string or a table, found {}", other.type_name()),
                )
                .hint(hint),
            );
            None
        }
    }
}

/// `hsts = false`, `hsts = true`, or `hsts = { max_age = "182d", include_subdomains = true, preload = true }`.
pub fn read_hsts(node: &Node, what: &str, diags: &mut Diagnostics) -> Option<Option<Hsts>> {
    let default = Hsts {
        max_age: HSTS_MAX_AGE,
        include_subdomains: false,
        preload: false,
    };
    match node.value {
        Value::Bool(false) => Some(None),
        Value::Bool(true) => Some(Some(default)),
        _ => {
            let mut t = TableReader::new(node, format!("`hsts` in {what}"), diags)?;
            let max_age = t.opt("max_age", diags, read::duration);
            let sub = t.opt("include_subdomains", diags, read::boolean);
            let preload = t.opt("preload", diags, read::boolean);
            t.finish(diags);
            Some(Some(Hsts {
                max_age: max_age.map_or(default.max_age, |d| d.as_secs()),
                include_subdomains: sub.unwrap_or(false),
                preload: preload.unwrap_or(false),
            }))
        }
    }
}

/// `[acme]` when the section is absent: Let's Encrypt, no contact, HTTP-01.
pub fn default_acme() -> AcmeSettings {
    AcmeSettings {
        directory: LETS_ENCRYPT.to_string(),
        contact: Vec::new(),
        ca_file: None,
        tls_alpn: false,
    }
}
