//! The `mail` module: the built-in SMTP relay (spec/mail-relay.md).
//!
//! Mattermost (and any local application) submits mail here; each message is stored durably
//! ([`spool`]) before the `250`, by the SMTP machine ([`session`]) driven by the listener
//! ([`server`]). Never an open relay: only trusted networks (or, later, authenticated users) may
//! relay. Delivery to a smarthost or MX (lettre) builds on the queue this module fills.

pub mod delivery;
pub mod server;
pub mod session;
pub mod spool;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use pingora_core::server::Server;

use crate::config::model::MailConfig;
use crate::config::{Config, Diagnostic, Diagnostics};
use crate::module::{Context, Module, ServiceError};

pub struct MailModule {
    config: Option<MailConfig>,
    state_dir: std::path::PathBuf,
}

impl Module for MailModule {
    const NAME: &'static str = "mail";

    fn provision(cfg: &Config, _ctx: &Context, _previous: Option<&Self>) -> Result<Self, Diagnostics> {
        if let Some(m) = &cfg.mail {
            if let Some(url) = &m.smarthost {
                if let Err(e) = delivery::parse_url(url, m.smarthost_plaintext) {
                    let mut d = Diagnostics::default();
                    d.push(
                        Diagnostic::in_file(&cfg.origin, format!("[mail] smarthost: {e}"))
                            .hint("write smarthost = \"smtp://relay.example.org:587\" (STARTTLS) or \"smtps://relay.example.org:465\""),
                    );
                    return Err(d);
                }
            }
            if let Err(e) = session::Hostname::new(&m.hostname) {
                let mut d = Diagnostics::default();
                d.push(
                    Diagnostic::in_file(
                        &cfg.origin,
                        format!("[mail] hostname `{}`: {}", m.hostname, e.reason),
                    )
                    .hint("the relay's fully qualified name, e.g. \"chat.example.org\""),
                );
                return Err(d);
            }
        }
        Ok(MailModule {
            config: cfg.mail.clone(),
            state_dir: cfg.state_dir.clone(),
        })
    }

    fn services(&self, server: &mut Server, ctx: &Context) -> Result<(), ServiceError> {
        let Some(m) = &self.config else { return Ok(()) };
        let dir = self.state_dir.join("mail");
        let spool = Arc::new(spool::Spool::open(&dir).map_err(|e| ServiceError::Mail(e.to_string()))?);
        let mut config = session::SessionConfig::new(
            session::Hostname::new(&m.hostname).map_err(|e| ServiceError::Mail(e.reason.to_string()))?,
        );
        config.max_message_size = m.max_message_size as usize;
        config.max_recipients = m.max_recipients;
        // STARTTLS with the certificate store (the mail hostname's certificate, else the default one,
        // else any): a self-signed certificate is acceptable for a relay that only trusts loopback.
        let tls = mail_tls(ctx);
        config.tls_available = tls.is_some();
        let config = Arc::new(config);
        let wake = Arc::new(tokio::sync::Notify::new());
        for addr in &m.listen {
            let listener = std::net::TcpListener::bind(addr)
                .and_then(|l| l.set_nonblocking(true).map(|_| l))
                .map_err(|source| ServiceError::Bind {
                    what: "the SMTP relay",
                    addr: *addr,
                    source,
                })?;
            let svc = server::SmtpService {
                listener: Mutex::new(Some(listener)),
                inner: Arc::new(server::Smtp {
                    config: config.clone(),
                    trusted: m.trusted_networks.clone(),
                    tls: tls.clone(),
                    spool: spool.clone(),
                    limits: server::Limits {
                        max_connections: m.max_connections,
                        max_per_ip: m.max_connections_per_ip,
                    },
                    metrics: ctx.metrics.clone(),
                    connections: Arc::default(),
                    wake: wake.clone(),
                }),
            };
            server.add_service(pingora_core::services::background::background_service(
                &format!("smtp {addr}"),
                svc,
            ));
        }
        if let Some(url) = &m.smarthost {
            let smarthost = delivery::parse_url(url, m.smarthost_plaintext).map_err(ServiceError::Mail)?;
            server.add_service(pingora_core::services::background::background_service(
                "mail delivery",
                delivery::Runner {
                    queue: dir.join("queue"),
                    smarthost,
                    hostname: m.hostname.clone(),
                    first_retry: m.first_retry,
                    metrics: ctx.metrics.clone(),
                    wake: wake.clone(),
                },
            ));
        } else {
            tracing::warn!("[mail] has no smarthost: messages are queued but not delivered");
        }
        tracing::info!(queued = spool.list().len(), dir = %dir.display(), "mail spool ready");
        Ok(())
    }

    fn apply(&self, next: Self) -> Vec<String> {
        let changed = match (&self.config, &next.config) {
            (None, None) => false,
            (Some(a), Some(b)) => a.listen != b.listen || a.hostname != b.hostname,
            _ => true,
        };
        if changed {
            vec!["[mail] changed: restart to apply".into()]
        } else {
            Vec::new()
        }
    }

    fn summary(&self) -> Vec<String> {
        self.config
            .as_ref()
            .map(|m| {
                m.listen
                    .iter()
                    .map(|a: &SocketAddr| format!("listen smtp://{a} as {}", m.hostname))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// A TLS acceptor for STARTTLS over the live certificate store, or `None` with no certificate at all.
fn mail_tls(ctx: &Context) -> Option<tokio_rustls::TlsAcceptor> {
    if ctx.certs.load().certs.is_empty() {
        return None;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS12, &rustls::version::TLS13])
        .ok()?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(AnyCert(ctx.certs.clone())));
    Some(tokio_rustls::TlsAcceptor::from(Arc::new(cfg)))
}

/// SMTP clients send the relay's name (or nothing): serve the matching certificate, else any.
struct AnyCert(Arc<crate::tls::store::CertStore>);

impl std::fmt::Debug for AnyCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("vestibule::mail::AnyCert")
    }
}

impl rustls::server::ResolvesServerCert for AnyCert {
    fn resolve(&self, hello: rustls::server::ClientHello<'_>) -> Option<Arc<rustls::sign::CertifiedKey>> {
        let snap = self.0.load();
        snap.lookup(hello.server_name())
            .or_else(|| snap.certs.first())
            .map(|c| c.key.clone())
    }
}
