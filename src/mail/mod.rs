//! The `mail` module: the built-in SMTP relay (spec/mail-relay.md).
//!
//! Mattermost (and any local application) submits mail here; each message is stored durably
//! ([`spool`]) before the `250`, by the SMTP machine ([`session`]) driven by the listener
//! ([`server`]). Never an open relay: only trusted networks, or users who authenticated over TLS
//! ([`users`]), may relay. [`delivery`] sends queued mail to a smarthost or to each domain's MX
//! ([`mx`]) and reports failures to senders ([`bounce`]); [`control`] is `mail flush` and `mail drop`.

pub mod address;
pub(crate) mod bounce;
pub(crate) mod client;
pub(crate) mod config;
pub(crate) mod control;
pub(crate) mod date;
pub(crate) mod delivery;
pub(crate) mod envelope;
pub(crate) mod mx;
pub(crate) mod record;
pub(crate) mod refusal;
pub(crate) mod server;
pub mod session;
pub(crate) mod slots;
pub(crate) mod smarthost;
pub mod spool;
pub(crate) mod users;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use pingora_core::server::Server;

use crate::config::source::Loc;
use crate::config::{Config, Diagnostic, Diagnostics};
use crate::module::{Context, Module, ServiceError};
use config::MailConfig;

/// The `mail` module: the SMTP listeners, the spool and the delivery runner of `[mail]`.
pub struct MailModule {
    config: Option<MailConfig>,
    state_dir: std::path::PathBuf,
    /// Loaded at provision, so that `check` reports a bad file and a reload never half-applies.
    users: Option<Arc<users::Users>>,
    smarthost_credentials: Option<(String, String)>,
    smarthost_ca: Option<(std::path::PathBuf, Vec<u8>)>,
    /// The queue's flush/drop control, for the admin listener (`None` without `[mail]`).
    control: Option<Arc<control::Control>>,
}

impl MailModule {
    /// The queue control, for the admin listener (handed over by the loader when services start).
    pub fn control(&self) -> Option<Arc<control::Control>> {
        self.control.clone()
    }

    /// The smarthost as the delivery runner would reach it, and the name to greet it with.
    pub fn smarthost(&self) -> Option<(smarthost::SmarthostSettings, String)> {
        let m = self.config.as_ref()?;
        let s = m.smarthost.as_ref()?;
        Some((
            smarthost::SmarthostSettings {
                smarthost: s.value.target.clone(),
                credentials: self.smarthost_credentials.clone(),
                ca: self.smarthost_ca.clone(),
            },
            m.hostname.value.to_string(),
        ))
    }

    /// Whether the configuration asks for SMTP AUTH (a non-empty users file).
    pub fn offers_auth(&self) -> bool {
        self.users.as_ref().is_some_and(|u| !u.is_empty())
    }
}

fn diag(loc: &Loc, message: String, hint: &str) -> Diagnostics {
    let mut d = Diagnostics::default();
    d.push(Diagnostic::at(loc, message).hint(hint.to_string()));
    d
}

/// Why the smarthost credentials file cannot be used.
#[derive(Debug, thiserror::Error)]
enum CredentialsError {
    #[error(transparent)]
    Read(#[from] crate::secret::SecretError),
    #[error("{} is not UTF-8", .0.display())]
    NotUtf8(std::path::PathBuf),
    #[error("{}: expected `username:password` on the first line", .0.display())]
    Format(std::path::PathBuf),
}

/// `username:password` on the first line of a 0600 file.
fn read_credentials(path: &std::path::Path) -> Result<(String, String), CredentialsError> {
    let secret = crate::secret::load_secret(path)?;
    let text = String::from_utf8(secret).map_err(|_| CredentialsError::NotUtf8(path.to_path_buf()))?;
    let line = text.lines().next().unwrap_or("");
    match line.split_once(':') {
        Some((user, password)) if !user.is_empty() && !password.is_empty() => {
            Ok((user.to_string(), password.to_string()))
        }
        _ => Err(CredentialsError::Format(path.to_path_buf())),
    }
}

impl Module for MailModule {
    const NAME: &'static str = "mail";
    type Inputs = ();

    fn provision(cfg: &Config, _ctx: &Context, _previous: Option<&Self>) -> Result<Self, Diagnostics> {
        let mut module = MailModule {
            config: cfg.mail.clone(),
            state_dir: cfg.state_dir.clone(),
            users: None,
            smarthost_credentials: None,
            smarthost_ca: None,
            control: None,
        };
        let Some(m) = &cfg.mail else { return Ok(module) };
        module.control = Some(Arc::new(control::Control::new(
            cfg.state_dir.join("mail").join("queue"),
            Arc::new(tokio::sync::Notify::new()),
        )));
        // The section's own values were checked when it was read; here only the files it names.
        if let Some(path) = &m.smarthost_auth_file {
            module.smarthost_credentials = Some(read_credentials(&path.value).map_err(|e| {
                diag(
                    &path.loc,
                    format!("[mail] smarthost_auth_file: {e}"),
                    "write `username:password` in a file only vestibule's user can read (chmod 600)",
                )
            })?);
        }
        if let Some(path) = &m.smarthost_ca_file {
            let pem = std::fs::read(&path.value)
                .map_err(|e| format!("cannot read {}: {e}", path.value.display()))
                .and_then(|pem| {
                    crate::tls::client::config_with_pem(Some((&pem, &path.value)), &[])
                        .map(|_| pem)
                        .map_err(|e| e.to_string())
                })
                .map_err(|e| {
                    diag(
                        &path.loc,
                        format!("[mail] smarthost_ca_file: {e}"),
                        "give a PEM file with the CA certificate that signed the smarthost's",
                    )
                })?;
            module.smarthost_ca = Some((path.value.clone(), pem));
        }
        if let Some(path) = &m.users_file {
            let users = users::Users::load(&path.value).map_err(|e| {
                diag(
                    &path.loc,
                    format!("[mail] users_file: {e}"),
                    "one `name:hash` per line; make hashes with `vestibule mail hash-password`",
                )
            })?;
            module.users = Some(Arc::new(users));
        }
        Ok(module)
    }

    fn services(&self, server: &mut Server, ctx: &Context, (): ()) -> Result<(), ServiceError> {
        let (Some(m), Some(control)) = (&self.config, &self.control) else {
            return Ok(());
        };
        let dir = self.state_dir.join("mail");
        let spool = Arc::new(spool::Spool::open(&dir).map_err(|e| ServiceError::Spool(e.into()))?);
        let mut config = session::SessionConfig::new(m.hostname.value.clone());
        config.max_message_size = m.max_message_size as usize;
        config.max_recipients = m.max_recipients;
        config.sender_domains = m.sender_domains.as_ref().map(|d| d.value.clone());
        config.recipient_domains = m.recipient_domains.as_ref().map(|d| d.value.clone());
        // STARTTLS with the certificate store (the mail hostname's certificate, else the default one,
        // else any): a self-signed certificate is acceptable for a relay that only trusts loopback.
        let tls = mail_tls(ctx).map_err(ServiceError::Tls)?;
        config.tls_available = tls.is_some();
        // Without a certificate AUTH is not offered (the loader warned) and `listen_tls` was
        // refused by the loader's cross-check.
        config.auth_enabled = self.offers_auth();
        let config = Arc::new(config);
        let inner = Arc::new(server::Smtp {
            config: config.clone(),
            trusted: m.trusted_networks.clone(),
            tls: tls.clone(),
            users: self.users.clone(),
            spool: spool.clone(),
            slots: slots::Slots::new(slots::Limits {
                max_connections: m.max_connections,
                max_per_ip: m.max_connections_per_ip,
                reserved_for_trusted: m.reserved_for_trusted,
                stress_from: slots::Limits::stress_from_percent(m.max_connections, m.stress_threshold),
                idle_timeout: m.idle_timeout,
                stress_idle_timeout: m.stress_idle_timeout,
            }),
            tls_handshake_timeout: m.tls_handshake_timeout,
            metrics: ctx.metrics.clone(),
            control: control.clone(),
        });
        let listeners = m
            .listen
            .iter()
            .map(|a| (a, false))
            .chain(m.listen_tls.iter().map(|a| (a, true)));
        for (addr, implicit_tls) in listeners {
            let listener = crate::handover::bind(*addr, "the SMTP relay")?;
            let svc = server::SmtpService {
                listener: Mutex::new(Some(listener)),
                implicit_tls,
                inner: inner.clone(),
            };
            let name = if implicit_tls {
                format!("smtps {addr}")
            } else {
                format!("smtp {addr}")
            };
            server.add_service(pingora_core::services::background::background_service(&name, svc));
        }
        let smarthost = m.smarthost.as_ref().map(|s| smarthost::SmarthostSettings {
            smarthost: s.value.target.clone(),
            credentials: self.smarthost_credentials.clone(),
            ca: self.smarthost_ca.clone(),
        });
        if !m.hold && smarthost.is_none() {
            tracing::info!("[mail] has no smarthost: delivering to each recipient domain's MX");
        }
        if !m.hold {
            server.add_service(pingora_core::services::background::background_service(
                "mail delivery",
                delivery::Runner {
                    control: control.clone(),
                    smarthost,
                    dns: ctx.dns.clone(),
                    mx_port: m.mx_port,
                    hostname: m.hostname.value.to_string(),
                    spool: spool.clone(),
                    lifetime: m.queue_lifetime,
                    first_retry: m.first_retry,
                    metrics: ctx.metrics.clone(),
                },
            ));
        }
        tracing::info!(queued = spool.list().len(), dir = %dir.display(), "mail spool ready");
        Ok(())
    }

    fn apply(&self, next: Self) -> Vec<String> {
        // Everything of [mail] is read once at start (listeners, users, smarthost): say so.
        let changed = self.config != next.config;
        if changed {
            vec!["[mail] changed: restart to apply".into()]
        } else {
            Vec::new()
        }
    }

    fn warnings(&self) -> Vec<String> {
        match &self.config {
            Some(m) if m.hold => vec!["[mail] hold = true: messages are queued, not delivered".into()],
            _ => Vec::new(),
        }
    }

    fn summary(&self) -> Vec<String> {
        self.config
            .as_ref()
            .map(|m| {
                let mut lines: Vec<String> = m
                    .listen
                    .iter()
                    .map(|a: &SocketAddr| format!("listen smtp://{a} as {}", m.hostname.value))
                    .chain(m.listen_tls.iter().map(|a| format!("listen smtps://{a}")))
                    .collect();
                lines.push(match &m.smarthost {
                    _ if m.hold => "hold: queue only, no delivery".to_string(),
                    Some(s) => format!("deliver via {}", s.value.url),
                    None => "deliver to each domain's MX".to_string(),
                });
                lines
            })
            .unwrap_or_default()
    }
}

/// A TLS acceptor for STARTTLS over the live certificate store, or `None` with no certificate at all.
fn mail_tls(ctx: &Context) -> Result<Option<tokio_rustls::TlsAcceptor>, rustls::Error> {
    if ctx.certs.load().certs.is_empty() {
        return Ok(None);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS12, &rustls::version::TLS13])?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(AnyCert(ctx.certs.clone())));
    Ok(Some(tokio_rustls::TlsAcceptor::from(Arc::new(cfg))))
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
