//! The SMTP listener: sockets, STARTTLS and timeouts around the pure [`super::session`] machine,
//! and the spool behind its `Deliver` action.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use async_trait::async_trait;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::session::{Action, DeliveryResult, Output, Peer, Session, SessionConfig, COMMAND_TIMEOUT};
use super::spool::{is_disk_full, Spool};
use crate::metrics::Metrics;

pub struct Limits {
    pub max_connections: usize,
    pub max_per_ip: usize,
}

pub struct SmtpService {
    pub listener: Mutex<Option<std::net::TcpListener>>,
    /// TLS from the first byte (submissions, RFC 8314) rather than STARTTLS.
    pub implicit_tls: bool,
    pub inner: Arc<Smtp>,
}

/// Everything a connection needs (shared by the connection tasks).
pub struct Smtp {
    pub config: Arc<SessionConfig>,
    pub trusted: Vec<ipnet::IpNet>,
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// Who may relay after AUTH (over TLS only; the session never offers AUTH in plaintext).
    pub users: Option<Arc<super::users::Users>>,
    pub spool: Arc<Spool>,
    pub limits: Limits,
    pub metrics: Arc<Metrics>,
    pub connections: Arc<Mutex<HashMap<IpAddr, usize>>>,
    /// Hands each queued message to the delivery runner.
    pub control: Arc<super::control::Control>,
}

/// Releases a connection slot when the connection ends.
struct Slot(Arc<Mutex<HashMap<IpAddr, usize>>>, IpAddr);

impl Drop for Slot {
    fn drop(&mut self) {
        if let Ok(mut m) = self.0.lock() {
            if let Some(n) = m.get_mut(&self.1) {
                *n -= 1;
                if *n == 0 {
                    m.remove(&self.1);
                }
            }
        }
    }
}

enum Io {
    Plain(tokio::net::TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<tokio::net::TcpStream>>),
}

impl Io {
    async fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Io::Plain(s) => s.read(buf).await,
            Io::Tls(s) => s.read(buf).await,
        }
    }

    async fn write_all(&mut self, data: &[u8]) -> std::io::Result<()> {
        match self {
            Io::Plain(s) => write_flush(s, data).await,
            Io::Tls(s) => write_flush(s.as_mut(), data).await,
        }
    }
}

async fn write_flush<S: AsyncWrite + Unpin>(s: &mut S, data: &[u8]) -> std::io::Result<()> {
    s.write_all(data).await?;
    s.flush().await
}

impl Smtp {
    async fn connection(&self, tcp: tokio::net::TcpStream, peer_ip: IpAddr, implicit_tls: bool) {
        let trusted = self.trusted.iter().any(|n| n.contains(&peer_ip));
        let mut io = Io::Plain(tcp);
        if implicit_tls {
            let (Io::Plain(tcp), Some(acceptor)) = (io, self.tls.clone()) else {
                return;
            };
            match tokio::time::timeout(COMMAND_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => io = Io::Tls(Box::new(tls)),
                _ => return,
            }
        }
        let (mut session, out) =
            Session::new(self.config.clone(), Peer { ip: peer_ip, trusted }, implicit_tls);
        let mut pending = Some(out);
        let mut buf = vec![0u8; 8192];
        // Held while a message is being received or queued: a stop waits for it (crate::drain).
        let mut busy: Option<crate::drain::Busy> = None;
        loop {
            // Work through outputs until the machine wants more input.
            while let Some(out) = pending.take() {
                let Output {
                    replies,
                    action,
                    close,
                } = out;
                if !replies.is_empty() && io.write_all(&replies).await.is_err() {
                    return;
                }
                if close {
                    return;
                }
                let now = SystemTime::now();
                pending = match action {
                    None => None,
                    Some(Action::StartTls { discarded }) => {
                        if discarded > 0 {
                            tracing::warn!(client = %peer_ip, discarded, "bytes pipelined after STARTTLS were discarded");
                        }
                        let (Io::Plain(tcp), Some(acceptor)) = (io, self.tls.clone()) else {
                            return;
                        };
                        match acceptor.accept(tcp).await {
                            Ok(tls) => {
                                io = Io::Tls(Box::new(tls));
                                if session.tls_established().is_err() {
                                    return;
                                }
                                None
                            }
                            Err(e) => {
                                tracing::debug!(client = %peer_ip, error = %e, "STARTTLS handshake failed");
                                return;
                            }
                        }
                    }
                    Some(Action::CheckCredentials {
                        mechanism,
                        username,
                        password,
                    }) => {
                        // argon2 is slow on purpose: off the async threads.
                        let ok = match self.users.clone() {
                            Some(users) => {
                                let user = username.clone();
                                tokio::task::spawn_blocking(move || users.verify(&user, password.expose()))
                                    .await
                                    .unwrap_or(false)
                            }
                            None => false,
                        };
                        if ok {
                            tracing::info!(target: "vestibule::mail", client = %peer_ip, user = %username, ?mechanism, "authenticated");
                        } else {
                            self.metrics.mail_rejected.with_label_values(&["auth"]).inc();
                            tracing::warn!(target: "vestibule::mail", client = %peer_ip, user = %username, ?mechanism, "authentication failed");
                            tokio::time::sleep(super::session::AUTH_FAILURE_DELAY).await;
                        }
                        session.auth_result(ok, now).ok()
                    }
                    Some(Action::Deliver(envelope)) => {
                        let spool = self.spool.clone();
                        let rcpts = envelope.recipients.len();
                        let size = envelope.body.len();
                        let sender = envelope
                            .sender
                            .as_ref()
                            .map_or_else(|| "<>".to_string(), |a| a.to_string());
                        let stored = tokio::task::spawn_blocking(move || spool.store(&envelope)).await;
                        let result = match stored {
                            Ok(Ok(id)) => {
                                self.metrics.mail_received.inc();
                                self.control.queued(id.clone());
                                tracing::info!(target: "vestibule::mail", queue_id = %id, client = %peer_ip, sender = %sender, recipients = rcpts, size, "queued");
                                DeliveryResult::Queued(id)
                            }
                            Ok(Err(e)) => {
                                tracing::error!(client = %peer_ip, error = %e, "cannot queue a message; the client was told to retry");
                                self.metrics.mail_rejected.with_label_values(&["spool"]).inc();
                                if is_disk_full(&e) {
                                    DeliveryResult::InsufficientStorage
                                } else {
                                    DeliveryResult::TemporaryFailure
                                }
                            }
                            Err(_) => DeliveryResult::TemporaryFailure,
                        };
                        session.delivered(result, SystemTime::now()).ok()
                    }
                };
            }
            if session.in_message() != busy.is_some() {
                busy = session.in_message().then(crate::drain::Busy::enter);
            }
            let n = match tokio::time::timeout(COMMAND_TIMEOUT, io.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return,
                Ok(Ok(n)) => n,
                Err(_) => {
                    let out = session.timeout();
                    let _ = io.write_all(&out.replies).await;
                    return;
                }
            };
            pending = Some(session.feed(&buf[..n], SystemTime::now()));
            if session.in_message() && busy.is_none() {
                busy = Some(crate::drain::Busy::enter());
            }
        }
    }
}

#[async_trait]
impl BackgroundService for SmtpService {
    async fn start(&self, shutdown: ShutdownWatch) {
        let Some(listener) = self.listener.lock().ok().and_then(|mut l| l.take()) else {
            return;
        };
        let this = self.inner.clone();
        let implicit_tls = self.implicit_tls;
        crate::listen::accept_loop(
            listener,
            shutdown,
            "SMTP",
            &self.inner.metrics.clone(),
            |tcp, peer| {
                // Take a connection slot (total and per address) without holding the lock across I/O.
                let slot = (|| {
                    let mut m = this.connections.lock().ok()?;
                    let total: usize = m.values().sum();
                    let mine = m.get(&peer.ip()).copied().unwrap_or(0);
                    if total >= this.limits.max_connections || mine >= this.limits.max_per_ip {
                        return None;
                    }
                    *m.entry(peer.ip()).or_insert(0) += 1;
                    Some(Slot(this.connections.clone(), peer.ip()))
                })();
                let Some(slot) = slot else {
                    this.metrics
                        .mail_rejected
                        .with_label_values(&["connection_limit"])
                        .inc();
                    tokio::spawn(async move {
                        let mut tcp = tcp;
                        let _ = tcp
                            .write_all(b"421 4.7.0 Too many connections, try again later\r\n")
                            .await;
                    });
                    return;
                };
                let conn = this.clone();
                tokio::spawn(async move {
                    let _slot = slot;
                    conn.connection(tcp, peer.ip(), implicit_tls).await;
                });
            },
        )
        .await;
    }
}
