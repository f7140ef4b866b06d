//! The SMTP listener: sockets, STARTTLS and timeouts around the pure [`super::session`] machine,
//! and the spool behind its `Deliver` action.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;

use super::refusal::{self, Refusal};
use super::session::{Action, DeliveryResult, Output, Peer, Session, SessionConfig};
use super::slots::{Slots, Stress};
use super::spool::{is_disk_full, Spool};
use crate::metrics::Metrics;

/// What a refused connection reads before we close it (the dialogue has not started: no greeting).
const TOO_MANY_CONNECTIONS: &[u8] = b"421 4.7.0 Too many connections, try again later\r\n";

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
    /// Connection caps, idle timeouts and stress mode, shared by every SMTP listener.
    pub slots: Arc<Slots>,
    /// The whole TLS handshake (implicit TLS, or after STARTTLS) must finish within this, however
    /// the client trickles it.
    pub tls_handshake_timeout: Duration,
    pub metrics: Arc<Metrics>,
    /// Hands each queued message to the delivery runner.
    pub control: Arc<super::control::Control>,
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

/// Resolves when stress mode flips; never, should the sender be gone (it lives as long as the
/// listener, so that is only a safeguard against a busy loop).
async fn stress_changed(stress: &mut watch::Receiver<Stress>) {
    if stress.changed().await.is_err() {
        std::future::pending::<()>().await;
    }
}

impl Smtp {
    fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|n| n.contains(&ip))
    }

    /// The TLS handshake within [`Smtp::tls_handshake_timeout`]; `None` ends the connection.
    async fn handshake(
        &self,
        tcp: TcpStream,
        peer_ip: IpAddr,
    ) -> Option<Box<tokio_rustls::server::TlsStream<TcpStream>>> {
        let acceptor = self.tls.as_ref()?;
        match tokio::time::timeout(self.tls_handshake_timeout, acceptor.accept(tcp)).await {
            Ok(Ok(tls)) => Some(Box::new(tls)),
            Ok(Err(e)) => {
                tracing::debug!(client = %peer_ip, error = %e, "TLS handshake failed");
                None
            }
            Err(_) => {
                refusal::record(&self.metrics, peer_ip, Refusal::TlsHandshakeTimeout);
                None
            }
        }
    }

    /// Writes within the current idle timeout: a client that stops reading our replies cannot
    /// hold the session either. `false` ends the connection.
    async fn write(&self, io: &mut Io, data: &[u8], stressed: bool, peer_ip: IpAddr) -> bool {
        let limit = self.slots.limits.idle_timeout(stressed);
        match tokio::time::timeout(limit, io.write_all(data)).await {
            Ok(Ok(())) => true,
            Ok(Err(_)) => false,
            Err(_) => {
                refusal::record(&self.metrics, peer_ip, Refusal::Timeout);
                false
            }
        }
    }

    async fn connection(&self, tcp: TcpStream, peer_ip: IpAddr, trusted: bool, implicit_tls: bool) {
        let mut stress = self.slots.stress();
        let mut io = Io::Plain(tcp);
        if implicit_tls {
            let Io::Plain(tcp) = io else { return };
            match self.handshake(tcp, peer_ip).await {
                Some(tls) => io = Io::Tls(tls),
                None => return,
            }
        }
        let (mut session, out) =
            Session::new(self.config.clone(), Peer { ip: peer_ip, trusted }, implicit_tls);
        let mut pending = Some(out);
        let mut buf = vec![0u8; 8192];
        // When the line being read began: the deadline is for the whole line, not for each read,
        // so a client trickling a byte at a time gets no more time than an idle one.
        let mut line_began = Instant::now();
        // Held while a message is being received or queued: a stop waits for it (crate::drain).
        let mut busy: Option<crate::drain::Busy> = None;
        loop {
            // Work through outputs until the machine wants more input.
            while let Some(out) = pending.take() {
                let Output {
                    replies,
                    action,
                    close,
                    refusals,
                } = out;
                for r in refusals {
                    refusal::record(&self.metrics, peer_ip, r);
                }
                // A reply or an action answers a complete line; an empty output (part of a line
                // arrived) must not move the deadline.
                let answered = !replies.is_empty() || action.is_some();
                let stressed = stress.borrow().on();
                if !replies.is_empty() && !self.write(&mut io, &replies, stressed, peer_ip).await {
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
                        let Io::Plain(tcp) = io else { return };
                        match self.handshake(tcp, peer_ip).await {
                            Some(tls) => {
                                io = Io::Tls(tls);
                                if session.tls_established().is_err() {
                                    return;
                                }
                                None
                            }
                            None => return,
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
                            tracing::info!(target: "vestibule::mail", client = %peer_ip, user = %username, ?mechanism, "authentication failed");
                            refusal::record(&self.metrics, peer_ip, Refusal::Auth);
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
                // Time spent on our side (writing, handshake, password check, fsync) is not the
                // client's.
                if answered {
                    line_began = Instant::now();
                }
            }
            if session.in_message() != busy.is_some() {
                busy = session.in_message().then(crate::drain::Busy::enter);
            }
            let n = loop {
                let deadline = self
                    .slots
                    .limits
                    .idle_deadline(line_began, *stress.borrow_and_update());
                tokio::select! {
                    read = io.read(&mut buf) => break read,
                    () = tokio::time::sleep_until(deadline) => {
                        refusal::record(&self.metrics, peer_ip, Refusal::Timeout);
                        let out = session.timeout();
                        // Counted once: a client that does not read this either is not counted again.
                        let limit = self.slots.limits.stress_idle_timeout;
                        let _ = tokio::time::timeout(limit, io.write_all(&out.replies)).await;
                        return;
                    }
                    // Stress began (or ended) while we wait: the deadline moves, maybe into the
                    // past (also when the stress ended after it: see `Limits::idle_deadline`).
                    () = stress_changed(&mut stress) => {}
                }
            };
            let n = match n {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if buf[..n].contains(&b'\n') {
                // A line ended (in DATA, a line of text): the next one gets a fresh deadline.
                line_began = Instant::now();
            }
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
        let metrics = self.inner.metrics.clone();
        crate::listen::accept_loop(listener, shutdown, "SMTP", &metrics, |tcp, peer| {
            // An IPv4 client on a dual-stack listener is matched (and logged) as IPv4.
            let ip = peer.ip().to_canonical();
            let trusted = this.is_trusted(ip);
            match this.slots.acquire(ip, trusted) {
                Ok(slot) => {
                    let conn = this.clone();
                    tokio::spawn(async move {
                        let _slot = slot;
                        conn.connection(tcp, ip, trusted, implicit_tls).await;
                    });
                }
                Err(refused) => {
                    refusal::record(&this.metrics, ip, refused);
                    // A fresh socket's send buffer is empty: this never blocks, and a flood of
                    // refused connections costs no task each.
                    let _ = tcp.try_write(TOO_MANY_CONNECTIONS);
                }
            }
        })
        .await;
    }
}
