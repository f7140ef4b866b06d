//! The TLS client configuration for vestibule's outgoing HTTPS (ACME directory, push destinations):
//! the system roots, plus an optional private CA, with the ring provider.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

/// Why the TLS client configuration could not be built: a private CA file that is missing or not
/// a PEM certificate file.
#[derive(Debug, thiserror::Error)]
pub enum ClientTlsError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is not a PEM certificate file", .0.display())]
    NotPem(std::path::PathBuf),
    #[error("{}: {source}", path.display())]
    BadCertificate {
        path: std::path::PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error("{} contains no PEM certificate", .0.display())]
    NoCertificate(std::path::PathBuf),
    #[error("no TLS protocol version available: {0}")]
    Protocol(#[source] rustls::Error),
}

pub fn config(ca_file: Option<&Path>, alpn: &[&[u8]]) -> Result<rustls::ClientConfig, ClientTlsError> {
    match ca_file {
        Some(path) => {
            let pem = std::fs::read(path).map_err(|source| ClientTlsError::Read {
                path: path.to_path_buf(),
                source,
            })?;
            config_with_pem(Some((&pem, path)), alpn)
        }
        None => config_with_pem(None, alpn),
    }
}

/// [`config`] with the private CA's PEM already read (`path` only names it in errors).
pub fn config_with_pem(
    ca: Option<(&[u8], &Path)>,
    alpn: &[&[u8]],
) -> Result<rustls::ClientConfig, ClientTlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(c);
    }
    if let Some((pem, path)) = ca {
        let mut n = 0;
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|_| ClientTlsError::NotPem(path.to_path_buf()))?;
            roots.add(cert).map_err(|source| ClientTlsError::BadCertificate {
                path: path.to_path_buf(),
                source,
            })?;
            n += 1;
        }
        if n == 0 {
            return Err(ClientTlsError::NoCertificate(path.to_path_buf()));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(ClientTlsError::Protocol)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(cfg)
}
