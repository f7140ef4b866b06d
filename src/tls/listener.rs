//! vestibule's own HTTPS accept loop, handing TLS streams to the pingora proxy.
//!
//! pingora 0.9.1's TLS listener builds its rustls `ServerConfig` itself, with one fixed ALPN list and
//! no ticketer. Owning the config lets vestibule offer `h2`, `http/1.1` *and* `acme-tls/1` (ACME
//! TLS-ALPN-01) and issue stateless session tickets whose keys rotate (rustls' ring `Ticketer`: a new
//! key every 6 hours, the previous one still accepted; tickets live 12 hours). Everything after the handshake is pingora's:
//! the stream goes to the same `HttpProxy` the plain listeners use, h1 or h2 by ALPN.
//!
//! Trade-off: pingora's graceful upgrade (fd handover on SIGQUIT) does not cover these sockets; a
//! restart of the HTTPS listener closes idle keep-alive connections (clients reconnect).

use std::net::SocketAddr;
use std::os::unix::io::AsRawFd;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use pingora_core::apps::ServerApp;
use pingora_core::listeners::tls::Acceptor;
use pingora_core::protocols::{GetSocketDigest, SocketDigest};
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;

use super::store::{CertStore, Resolver};
use super::HandshakeCallbacks;
use crate::metrics::Metrics;

/// ALPN protocol of ACME TLS-ALPN-01 validation (RFC 8737).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// The rustls configuration of an HTTPS listener: TLS 1.2 and 1.3, ring's AEAD-only suites, rotating
/// ticket keys, no 0-RTT, certificates from the store (and ACME challenge certificates).
pub fn server_config(
    store: Arc<CertStore>,
    acme: Arc<super::acme::Registry>,
    h2: bool,
) -> Result<Arc<rustls::ServerConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS12, &rustls::version::TLS13])
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(Resolver::with_acme(store, acme)));
    cfg.ticketer = rustls::crypto::ring::Ticketer::new().map_err(|e| e.to_string())?;
    cfg.max_early_data_size = 0;
    cfg.alpn_protocols = if h2 { vec![b"h2".to_vec()] } else { Vec::new() };
    cfg.alpn_protocols.push(b"http/1.1".to_vec());
    cfg.alpn_protocols.push(ACME_TLS_ALPN.to_vec());
    Ok(Arc::new(cfg))
}

pub struct TlsListener<A> {
    pub addr: SocketAddr,
    pub listener: Mutex<Option<std::net::TcpListener>>,
    pub acceptor: Arc<Acceptor>,
    pub app: Arc<A>,
    pub metrics: Arc<Metrics>,
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> BackgroundService for TlsListener<A> {
    async fn start(&self, shutdown: ShutdownWatch) {
        let Some(listener) = self.listener.lock().ok().and_then(|mut l| l.take()) else {
            return;
        };
        let conn_shutdown = shutdown.clone();
        crate::listen::accept_loop(listener, shutdown, "HTTPS", |tcp, peer| {
            let _ = tcp.set_nodelay(true);
            let (acceptor, app, metrics) = (self.acceptor.clone(), self.app.clone(), self.metrics.clone());
            let shutdown = conn_shutdown.clone();
            tokio::spawn(async move {
                let mut l4: pingora_core::protocols::l4::stream::Stream = tcp.into();
                let digest = SocketDigest::from_raw_fd(l4.as_raw_fd());
                let _ = digest.peer_addr.set(Some(peer.into()));
                l4.set_socket_digest(digest);
                let callbacks = HandshakeCallbacks {
                    metrics: metrics.clone(),
                };
                let io = super::coalesce::Coalesced::new(l4);
                let tls = match pingora_core::protocols::tls::server::handshake_with_callback(
                    &acceptor, io, &callbacks,
                )
                .await
                {
                    Ok(t) => t,
                    Err(e) => {
                        // Unknown names are counted by the resolver; everything else here.
                        if !e.to_string().contains("no server certificate chain resolved") {
                            metrics.tls_handshakes.with_label_values(&["error", "-"]).inc();
                        }
                        tracing::debug!(peer = %peer, error = %e, "TLS handshake failed");
                        return;
                    }
                };
                // An ACME validation handshake has done its job once the certificate was seen.
                if pingora_core::protocols::Ssl::selected_alpn_proto(&tls)
                    .is_some_and(|p| matches!(p, pingora_core::protocols::ALPN::Custom(_)))
                {
                    return;
                }
                let mut stream: pingora_core::protocols::Stream = Box::new(tls);
                while let Some(next) = app.process_new(stream, &shutdown).await {
                    stream = next;
                }
            });
        })
        .await;
    }
}
