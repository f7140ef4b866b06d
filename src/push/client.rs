//! The HTTPS client every push destination shares: pooled, HTTP/2 where the peer offers it (APNs
//! requires it), trusting the system roots plus an optional private CA.

use std::path::Path;

use rustls::pki_types::pem::PemObject;

/// Why a push destination cannot be set up from its configuration (reported against its
/// `[[push.route]]`): a CA, key or service-account file that is missing or of the wrong kind.
#[derive(Debug, thiserror::Error)]
pub enum DestinationError {
    #[error(transparent)]
    Tls(#[from] crate::tls::client::ClientTlsError),
    #[error("cannot build the HTTPS client: {0}")]
    Client(#[source] reqwest::Error),
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0} is not a PKCS#8 key (-----BEGIN PRIVATE KEY-----)")]
    NotPkcs8(String),
    #[error("{0} contains no PEM private key")]
    NoPrivateKey(String),
    #[error("{} is not an ES256 (P-256) key as Apple issues them (.p8)", .0.display())]
    NotEs256(std::path::PathBuf),
    #[error("{what} is not a service-account JSON file: {source}")]
    NotServiceAccount {
        what: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{what} has no `{key}`: download the key again from the Firebase console")]
    MissingField { what: String, key: &'static str },
    #[error("`private_key` in {what} is not an RSA key: {reason}")]
    NotRsa {
        what: String,
        reason: ring::error::KeyRejected,
    },
}

pub fn build(ca_file: Option<&Path>) -> Result<reqwest::Client, DestinationError> {
    // reqwest checks for a process-wide provider even with a preconfigured TLS backend.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cfg = crate::tls::client::config(ca_file, &[b"h2", b"http/1.1"])?;
    reqwest::Client::builder()
        .tls_backend_preconfigured(cfg)
        .pool_idle_timeout(std::time::Duration::from_secs(90))
        .connect_timeout(std::time::Duration::from_secs(3))
        .user_agent(concat!("vestibule/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(DestinationError::Client)
}

/// Base64url without padding, as JWTs use it.
pub fn b64url(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

/// The PKCS#8 DER inside a PEM private key file (`-----BEGIN PRIVATE KEY-----`).
pub fn pkcs8_from_pem(pem: &[u8], what: &str) -> Result<Vec<u8>, DestinationError> {
    match rustls::pki_types::PrivateKeyDer::from_pem_slice(pem) {
        Ok(rustls::pki_types::PrivateKeyDer::Pkcs8(k)) => Ok(k.secret_pkcs8_der().to_vec()),
        Ok(_) => Err(DestinationError::NotPkcs8(what.to_string())),
        Err(_) => Err(DestinationError::NoPrivateKey(what.to_string())),
    }
}
