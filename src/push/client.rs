//! The HTTPS client every push destination shares: pooled, HTTP/2 where the peer offers it (APNs
//! requires it), trusting the system roots plus an optional private CA.

use std::path::Path;

use rustls::pki_types::pem::PemObject;

pub fn build(ca_file: Option<&Path>) -> Result<reqwest::Client, String> {
    // reqwest checks for a process-wide provider even with a preconfigured TLS backend.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cfg = crate::tls::client::config(ca_file, &[b"h2", b"http/1.1"])?;
    reqwest::Client::builder()
        .tls_backend_preconfigured(cfg)
        .pool_idle_timeout(std::time::Duration::from_secs(90))
        .connect_timeout(std::time::Duration::from_secs(3))
        .user_agent(concat!("vestibule/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| e.to_string())
}

/// Base64url without padding, as JWTs use it.
pub fn b64url(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

/// The PKCS#8 DER inside a PEM private key file (`-----BEGIN PRIVATE KEY-----`).
pub fn pkcs8_from_pem(pem: &[u8], what: &str) -> Result<Vec<u8>, String> {
    match rustls::pki_types::PrivateKeyDer::from_pem_slice(pem) {
        Ok(rustls::pki_types::PrivateKeyDer::Pkcs8(k)) => Ok(k.secret_pkcs8_der().to_vec()),
        Ok(_) => Err(format!(
            "{what} is not a PKCS#8 key (-----BEGIN PRIVATE KEY-----)"
        )),
        Err(_) => Err(format!("{what} contains no PEM private key")),
    }
}
