//! Certificate sources: PEM files (validated before use) and self-signed certificates made with rcgen.
//!
//! Everything here reads files or generates keys: call it from provisioning or from a blocking task,
//! never from the handshake path (rustls' `resolve()` is synchronous and must only look up memory).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use sha2::{Digest, Sha256};

use crate::host::HostPattern;

/// Where a served certificate came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Files {
        cert: PathBuf,
        key: PathBuf,
    },
    SelfSigned,
    /// Issued by the ACME CA.
    Acme,
    /// Temporary self-signed certificate until ACME delivers one.
    AcmePending,
}

impl Source {
    pub fn label(&self) -> &'static str {
        match self {
            Source::Files { .. } => "file",
            Source::SelfSigned => "self-signed",
            Source::Acme => "acme",
            Source::AcmePending => "acme-pending",
        }
    }
}

/// Identity of a file's current contents, cheap to compare: (modified, length, inode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
    ino: u64,
}

impl FileStamp {
    pub fn of(path: &Path) -> std::io::Result<FileStamp> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(path)?;
        Ok(FileStamp {
            modified: m.modified().ok(),
            len: m.len(),
            ino: m.ino(),
        })
    }
}

/// A certificate ready to serve, with what operators want to know about it. Cloning shares the key.
#[derive(Clone)]
pub struct Served {
    pub vhost: Arc<str>,
    pub source: Source,
    pub key: Arc<CertifiedKey>,
    /// DNS names and IP addresses the leaf certificate is valid for.
    pub names: Vec<String>,
    pub issuer: String,
    /// Unix time of the leaf's notAfter.
    pub not_after: i64,
    pub not_before: i64,
    /// SHA-256 of the leaf certificate, lowercase hex.
    pub fingerprint: String,
    /// Stamps of (cert file, key file) when loaded from files.
    pub stamps: Option<(FileStamp, FileStamp)>,
}

impl std::fmt::Debug for Served {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("Served")
            .field("vhost", &self.vhost)
            .field("source", &self.source)
            .field("names", &self.names)
            .field("not_after", &self.not_after)
            .finish()
    }
}

/// Why a certificate could not be used. Messages say what to do.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0} contains no PEM certificate")]
    NoCertificate(String),
    #[error("{0} contains no PEM private key (PKCS#8, PKCS#1 or SEC1)")]
    NoKey(String),
    #[error("unsupported private key in {0}: use an RSA, ECDSA (P-256/P-384) or Ed25519 key")]
    UnsupportedKey(String),
    #[error("the private key in {key} does not belong to the certificate in {cert}")]
    KeyMismatch { cert: String, key: String },
    #[error("the certificate in {path} cannot be parsed: {why}")]
    Parse { path: String, why: String },
    #[error("the certificate in {path} expired on {not_after}")]
    Expired { path: String, not_after: String },
    #[error("the certificate in {path} does not cover {name} (it covers: {covered})")]
    NameNotCovered {
        path: String,
        name: String,
        covered: String,
    },
    #[error("cannot generate a self-signed certificate: {0}")]
    Generate(String),
}

/// Load and validate a PEM chain and key for a vhost with these server names.
pub fn from_files(vhost: &str, cert: &Path, key: &Path, names: &[HostPattern]) -> Result<Served, LoadError> {
    let cert_s = cert.display().to_string();
    let key_s = key.display().to_string();
    let read = |p: &Path, s: &str| {
        std::fs::read(p).map_err(|source| LoadError::Read {
            path: s.to_string(),
            source,
        })
    };
    // Stamp before reading: a change racing with the read is then seen again on the next check.
    let stamps = (
        FileStamp::of(cert).map_err(|source| LoadError::Read {
            path: cert_s.clone(),
            source,
        })?,
        FileStamp::of(key).map_err(|source| LoadError::Read {
            path: key_s.clone(),
            source,
        })?,
    );
    let cert_pem = read(cert, &cert_s)?;
    let key_pem = read(key, &key_s)?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|_| LoadError::NoCertificate(cert_s.clone()))?;
    if chain.is_empty() {
        return Err(LoadError::NoCertificate(cert_s));
    }
    let key_der = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| LoadError::NoKey(key_s.clone()))?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&key_der)
        .map_err(|_| LoadError::UnsupportedKey(key_s.clone()))?;
    let certified = CertifiedKey::new(chain, signing);
    certified.keys_match().map_err(|_| LoadError::KeyMismatch {
        cert: cert_s.clone(),
        key: key_s.clone(),
    })?;
    let mut served = describe(
        vhost,
        Source::Files {
            cert: cert.into(),
            key: key.into(),
        },
        certified,
        &cert_s,
    )?;
    served.stamps = Some(stamps);
    let now = unix_now();
    if served.not_after < now {
        return Err(LoadError::Expired {
            path: cert_s,
            not_after: format_time(served.not_after),
        });
    }
    for n in names {
        if !covers(&served.names, n) {
            return Err(LoadError::NameNotCovered {
                path: cert_s,
                name: n.to_string(),
                covered: served.names.join(", "),
            });
        }
    }
    Ok(served)
}

/// A fresh self-signed certificate (ECDSA P-256) for the vhost's names.
pub fn self_signed(vhost: &str, names: &[HostPattern]) -> Result<Served, LoadError> {
    let sans: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let gen = |e: rcgen::Error| LoadError::Generate(e.to_string());
    let mut params = rcgen::CertificateParams::new(sans.clone()).map_err(gen)?;
    params.distinguished_name.push(
        rcgen::DnType::CommonName,
        format!("vestibule self-signed {}", sans.first().map_or("", |s| s)),
    );
    // A year from yesterday (clock skew): regenerated at every start, so it never runs out in service.
    let day = |t: chrono::DateTime<chrono::Utc>| {
        use chrono::Datelike;
        rcgen::date_time_ymd(t.year(), t.month() as u8, t.day() as u8)
    };
    let now = chrono::Utc::now();
    params.not_before = day(now - chrono::Duration::days(1));
    params.not_after = day(now + chrono::Duration::days(365));
    let signing_key = rcgen::KeyPair::generate().map_err(gen)?;
    let cert = params.self_signed(&signing_key).map_err(gen)?;
    let generated = rcgen::CertifiedKey { cert, signing_key };
    let key_der = PrivateKeyDer::try_from(generated.signing_key.serialize_der())
        .map_err(|e| LoadError::Generate(e.to_string()))?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&key_der)
        .map_err(|e| LoadError::Generate(e.to_string()))?;
    let certified = CertifiedKey::new(vec![generated.cert.der().clone()], signing);
    describe(vhost, Source::SelfSigned, certified, "self-signed certificate")
}

pub(crate) fn describe(
    vhost: &str,
    source: Source,
    key: CertifiedKey,
    what: &str,
) -> Result<Served, LoadError> {
    let leaf = key.end_entity_cert().map_err(|e| LoadError::Parse {
        path: what.to_string(),
        why: e.to_string(),
    })?;
    let (_, x509) = x509_parser::parse_x509_certificate(leaf.as_ref()).map_err(|e| LoadError::Parse {
        path: what.to_string(),
        why: e.to_string(),
    })?;
    let mut names = Vec::new();
    if let Ok(Some(san)) = x509.subject_alternative_name() {
        for gn in &san.value.general_names {
            match gn {
                x509_parser::extensions::GeneralName::DNSName(d) => names.push(d.to_ascii_lowercase()),
                x509_parser::extensions::GeneralName::IPAddress(ip) => match ip.len() {
                    4 => names.push(
                        std::net::Ipv4Addr::from(<[u8; 4]>::try_from(*ip).unwrap_or_default()).to_string(),
                    ),
                    16 => names.push(
                        std::net::Ipv6Addr::from(<[u8; 16]>::try_from(*ip).unwrap_or_default()).to_string(),
                    ),
                    _ => {}
                },
                _ => {}
            }
        }
    }
    let fingerprint = Sha256::digest(leaf.as_ref())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(Served {
        vhost: vhost.into(),
        source,
        names,
        issuer: x509.issuer().to_string(),
        not_after: x509.validity().not_after.timestamp(),
        not_before: x509.validity().not_before.timestamp(),
        fingerprint,
        stamps: None,
        key: Arc::new(key),
    })
}

/// Whether certificate names `sans` cover a vhost's server name (RFC 6125: a `*` covers one label).
pub fn covers(sans: &[String], name: &HostPattern) -> bool {
    match name {
        HostPattern::Exact(n) => sans.iter().any(|s| {
            s == n
                || s.strip_prefix("*.").is_some_and(|suffix| {
                    n.split_once('.')
                        .is_some_and(|(label, rest)| !label.is_empty() && rest == suffix)
                })
        }),
        HostPattern::Wildcard(suffix) => sans.iter().any(|s| s.strip_prefix('*') == Some(suffix.as_str())),
    }
}

/// Whether clients out on the internet would be expected to use this name (so a self-signed
/// certificate for it will be refused by mobile apps and browsers).
pub fn looks_public(name: &HostPattern) -> bool {
    let n = match name {
        HostPattern::Exact(n) => n.as_str(),
        HostPattern::Wildcard(s) => s.trim_start_matches('.'),
    };
    if let Ok(ip) = n.parse::<std::net::IpAddr>() {
        return match ip {
            std::net::IpAddr::V4(v4) => !(v4.is_private() || v4.is_loopback() || v4.is_link_local()),
            std::net::IpAddr::V6(v6) => !(v6.is_loopback() || (v6.segments()[0] & 0xfe00) == 0xfc00),
        };
    }
    const PRIVATE_SUFFIXES: [&str; 7] = [
        ".local",
        ".lan",
        ".test",
        ".localhost",
        ".internal",
        ".home.arpa",
        ".example",
    ];
    n.contains('.') && n != "localhost" && !PRIVATE_SUFFIXES.iter().any(|s| n.ends_with(s))
}

pub use crate::files::unix_now;

pub fn format_time(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0).map_or_else(
        || unix.to_string(),
        |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exact(s: &str) -> HostPattern {
        HostPattern::Exact(s.into())
    }

    #[test]
    fn wildcard_covers_one_label() {
        let sans = vec!["*.example.org".to_string(), "example.org".to_string()];
        assert!(covers(&sans, &exact("chat.example.org")));
        assert!(covers(&sans, &exact("example.org")));
        assert!(!covers(&sans, &exact("a.b.example.org")));
        assert!(covers(&sans, &HostPattern::Wildcard(".example.org".into())));
        assert!(!covers(&sans, &HostPattern::Wildcard(".other.org".into())));
    }

    #[test]
    fn public_looking_names() {
        assert!(looks_public(&exact("chat.example.org")));
        assert!(looks_public(&exact("203.0.113.9")));
        assert!(!looks_public(&exact("localhost")));
        assert!(!looks_public(&exact("chat.test")));
        assert!(!looks_public(&exact("nethserver.lan")));
        assert!(!looks_public(&exact("192.168.1.10")));
        assert!(!looks_public(&exact("127.0.0.1")));
    }

    #[test]
    fn self_signed_covers_its_names() {
        let names = [exact("chat.test"), HostPattern::Wildcard(".apps.test".into())];
        let s = self_signed("chat", &names).unwrap();
        assert!(names.iter().all(|n| covers(&s.names, n)), "{:?}", s.names);
        assert!(s.not_after > unix_now());
        assert_eq!(s.fingerprint.len(), 64);
    }
}
