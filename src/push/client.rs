//! The HTTPS client every push destination shares: pooled, HTTP/2 where the peer offers it (APNs
//! requires it), trusting the system roots plus an optional private CA.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

pub fn build(ca_file: Option<&Path>) -> Result<reqwest::Client, String> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for c in native.certs {
        let _ = roots.add(c);
    }
    if let Some(path) = ca_file {
        let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let mut n = 0;
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|_| format!("{} is not a PEM certificate file", path.display()))?;
            roots.add(cert).map_err(|e| format!("{}: {e}", path.display()))?;
            n += 1;
        }
        if n == 0 {
            return Err(format!("{} contains no PEM certificate", path.display()));
        }
    }
    let mut cfg = rustls::ClientConfig::builder()
        .with_root_certificates(Arc::new(roots))
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
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

pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
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
