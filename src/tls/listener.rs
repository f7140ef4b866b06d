//! The TLS side of vestibule's HTTPS listeners (the accept loop is crate::proxy::listener).
//!
//! pingora 0.9.1's TLS listener builds its rustls `ServerConfig` itself, with one fixed ALPN list and
//! no ticketer. Owning the config lets vestibule offer `h2`, `http/1.1` *and* `acme-tls/1` (ACME
//! TLS-ALPN-01) and issue stateless session tickets whose keys rotate (rustls' ring `Ticketer`: a new
//! key every 6 hours, the previous one still accepted; tickets live 12 hours). Everything after the handshake is pingora's:
//! the stream goes to the same `HttpProxy` the plain listeners use, h1 or h2 by ALPN.
//!

use std::net::SocketAddr;
use std::sync::Arc;

use pingora_core::listeners::tls::Acceptor;
use pingora_core::protocols::Stream;

use super::coalesce::Coalesced;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::acme::Registry;
use super::store::CertStore;
use super::HandshakeCallbacks;
use crate::metrics::Metrics;

/// ALPN protocol of ACME TLS-ALPN-01 validation (RFC 8737).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// The rustls configuration of an HTTPS listener: TLS 1.2 and 1.3, ring's AEAD-only suites, rotating
/// ticket keys, no 0-RTT, certificates from the store (and ACME challenge certificates).
pub fn server_config(
    store: Arc<CertStore>,
    acme: Arc<Registry>,
    h2: bool,
) -> Result<Arc<rustls::ServerConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS12, &rustls::version::TLS13])?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(Resolver::with_acme(store, acme)));
    cfg.ticketer = rustls::crypto::ring::Ticketer::new()?;
    cfg.max_early_data_size = 0;
    cfg.alpn_protocols = if h2 { vec![b"h2".to_vec()] } else { Vec::new() };
    cfg.alpn_protocols.push(b"http/1.1".to_vec());
    cfg.alpn_protocols.push(ACME_TLS_ALPN.to_vec());
    Ok(Arc::new(cfg))
}

/// The TLS handshake of one client connection on `io`: `None` when it failed (counted and logged
/// here) or when it was an ACME TLS-ALPN-01 validation, which is done once the certificate was seen.
pub async fn handshake(
    acceptor: &Acceptor,
    io: Coalesced,
    metrics: &Arc<Metrics>,
    peer: SocketAddr,
) -> Option<Stream> {
    let callbacks = HandshakeCallbacks {
        metrics: metrics.clone(),
    };
    let tls =
        match pingora_core::protocols::tls::server::handshake_with_callback(acceptor, io, &callbacks).await {
            Ok(t) => t,
            Err(e) => {
                // Unknown names are counted by the resolver; everything else here.
                if !e.to_string().contains("no server certificate chain resolved") {
                    metrics.tls_handshakes.with_label_values(&["error", "-"]).inc();
                }
                tracing::debug!(peer = %peer, error = %e, "TLS handshake failed");
                return None;
            }
        };
    // An ACME validation handshake has done its job once the certificate was seen.
    if pingora_core::protocols::Ssl::selected_alpn_proto(&tls)
        .is_some_and(|p| matches!(p, pingora_core::protocols::ALPN::Custom(_)))
    {
        return None;
    }
    Some(Box::new(tls))
}

/// The rustls resolver over the store (and, for ACME TLS-ALPN-01 validations, the challenge
/// certificates of the orders in progress).
#[derive(Clone)]
pub struct Resolver(pub Arc<CertStore>, pub Option<Arc<Registry>>);

impl Resolver {
    pub fn with_acme(store: Arc<CertStore>, acme: Arc<Registry>) -> Resolver {
        Resolver(store, Some(acme))
    }
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("vestibule::tls::Resolver")
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let acme_validation = hello
            .alpn()
            .is_some_and(|mut protos| protos.any(|p| p == ACME_TLS_ALPN));
        if acme_validation {
            // Only for names being ordered; anything else offering acme-tls/1 gets nothing.
            let challenge = self
                .1
                .as_ref()
                .zip(hello.server_name())
                .and_then(|(reg, sni)| reg.challenge_resolver(sni));
            return challenge.and_then(|r| r.resolve(hello));
        }
        self.0.resolve(hello.server_name())
    }
}
