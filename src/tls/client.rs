//! The TLS client configuration for vestibule's outgoing HTTPS (ACME directory, push destinations):
//! the system roots, plus an optional private CA, with the ring provider.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

pub fn config(ca_file: Option<&Path>, alpn: &[&[u8]]) -> Result<rustls::ClientConfig, String> {
    match ca_file {
        Some(path) => {
            let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            config_with_pem(Some((&pem, path)), alpn)
        }
        None => config_with_pem(None, alpn),
    }
}

/// [`config`] with the private CA's PEM already read (`path` only names it in errors).
pub fn config_with_pem(ca: Option<(&[u8], &Path)>, alpn: &[&[u8]]) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(c);
    }
    if let Some((pem, path)) = ca {
        let mut n = 0;
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|_| format!("{} is not a PEM certificate file", path.display()))?;
            roots.add(cert).map_err(|e| format!("{}: {e}", path.display()))?;
            n += 1;
        }
        if n == 0 {
            return Err(format!("{} contains no PEM certificate", path.display()));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(cfg)
}
