//! Outgoing SMTP connections for delivery, on lettre's protocol client (`AsyncSmtpConnection`) over
//! sockets we open ourselves, for two reasons lettre's transport does not cover:
//! - `TCP_NODELAY`: lettre writes the final `.` of DATA as its own small segment; with Nagle on, it
//!   waits for the peer's delayed ACK, about 40 ms per message on Linux. With it off a transaction
//!   takes a few round trips on loopback.
//! - names resolve through hickory (the shared resolver), never through a blocking getaddrinfo.
//!
//! [`Pool`] keeps a few idle smarthost connections: a transaction on a warm connection is MAIL,
//! RCPT, DATA and the body, with no greeting, EHLO, STARTTLS or AUTH.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, AsyncTokioStream, Certificate, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::smarthost::{Security, SmarthostSettings};
use crate::dns::Dns;

pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// For each command and for the answer after "." (short ones cause duplicates: the spec's 300 s).
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(300);
/// Idle pooled connections older than this are closed rather than reused (servers drop idle
/// clients after a while; Postfix after 300 s).
const POOL_IDLE: Duration = Duration::from_secs(30);
const POOL_MAX: usize = 10;

/// Implicit TLS under lettre: it only needs a byte stream with a peer address.
#[derive(Debug)]
struct Tls(Box<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>);

impl AsyncRead for Tls {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Tls {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut *self.0).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.0).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.0).poll_shutdown(cx)
    }
}

impl AsyncTokioStream for Tls {
    fn peer_addr(&self) -> std::io::Result<SocketAddr> {
        self.0.get_ref().0.peer_addr()
    }
}

/// How to secure a connection.
pub enum Secure<'a> {
    /// Plaintext (MX delivery decides about STARTTLS itself, smarthost `smarthost_tls = "none"`).
    None,
    /// STARTTLS, required.
    StartTls(&'a TlsParameters),
    /// TLS from the first byte.
    Implicit(&'a Arc<rustls::ClientConfig>, &'a str),
}

async fn timed<T>(
    what: &str,
    f: impl std::future::Future<Output = Result<T, lettre::transport::smtp::Error>>,
) -> Result<T, Failure> {
    match tokio::time::timeout(COMMAND_TIMEOUT, f).await {
        Ok(r) => r.map_err(Failure::from),
        Err(_) => Err(Failure::Temporary(format!("{what} timed out"))),
    }
}

/// Connect to `addr`, read the greeting, EHLO, and secure the session as asked.
pub async fn connect(
    addr: SocketAddr,
    hello: &ClientId,
    secure: Secure<'_>,
) -> Result<AsyncSmtpConnection, Failure> {
    connect_within(addr, hello, secure, CONNECT_TIMEOUT).await
}

/// [`connect`] with `connect_timeout` for the TCP connection and the TLS handshake.
async fn connect_within(
    addr: SocketAddr,
    hello: &ClientId,
    secure: Secure<'_>,
    connect_timeout: Duration,
) -> Result<AsyncSmtpConnection, Failure> {
    let tcp = tokio::time::timeout(connect_timeout, tokio::net::TcpStream::connect(addr))
        .await
        .map_err(|_| Failure::Temporary(format!("connecting to {addr} timed out")))?
        .map_err(|e| Failure::Temporary(format!("cannot connect to {addr}: {e}")))?;
    let _ = tcp.set_nodelay(true);
    let stream: Box<dyn AsyncTokioStream> = match &secure {
        Secure::Implicit(config, name) => {
            let server_name = rustls::pki_types::ServerName::try_from(name.to_string())
                .map_err(|e| Failure::Permanent(format!("`{name}` is not a TLS server name: {e}")))?;
            let tls = tokio::time::timeout(
                connect_timeout,
                tokio_rustls::TlsConnector::from((*config).clone()).connect(server_name, tcp),
            )
            .await
            .map_err(|_| Failure::Temporary(format!("TLS handshake with {addr} timed out")))?
            .map_err(|e| Failure::Temporary(format!("TLS handshake with {addr}: {e}")))?;
            Box::new(Tls(Box::new(tls)))
        }
        _ => Box::new(tcp),
    };
    let mut conn = timed(
        "greeting",
        AsyncSmtpConnection::connect_with_transport(stream, hello),
    )
    .await?;
    if let Secure::StartTls(params) = secure {
        if !conn.can_starttls() {
            conn.abort().await;
            return Err(Failure::Temporary(format!(
                "{addr} does not offer STARTTLS, which is required"
            )));
        }
        timed("STARTTLS", conn.starttls((*params).clone(), hello)).await?;
    }
    Ok(conn)
}

/// One transaction on `conn`.
pub async fn send(conn: &mut AsyncSmtpConnection, envelope: &Envelope, body: &[u8]) -> Result<(), Failure> {
    timed("the transaction", conn.send(envelope, body))
        .await
        .map(|_| ())
}

/// How smarthost sessions are secured, built once.
enum PoolTls {
    None,
    StartTls(TlsParameters),
    Implicit(Arc<rustls::ClientConfig>),
}

/// The smarthost: where it is, how to secure and authenticate, and idle connections to reuse.
/// Why the smarthost connection pool cannot be set up (its TLS: the CA file from
/// `[mail] smarthost_ca_file` is checked at load, so this is rare). Delivery then does not start.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("cannot set up STARTTLS to the smarthost: {0}")]
    StartTls(#[source] lettre::transport::smtp::Error),
    #[error(transparent)]
    Tls(#[from] crate::tls::client::ClientTlsError),
}

pub struct Pool {
    host: String,
    port: u16,
    tls: PoolTls,
    credentials: Option<Credentials>,
    hello: ClientId,
    dns: Arc<Dns>,
    idle: Mutex<Vec<(AsyncSmtpConnection, Instant)>>,
}

impl Pool {
    /// TLS as configured (the CA of `smarthost_ca_file` trusted besides the system roots), AUTH
    /// when credentials are given.
    pub fn for_smarthost(
        settings: &SmarthostSettings,
        hello: ClientId,
        dns: Arc<Dns>,
    ) -> Result<Pool, PoolError> {
        let host = settings.smarthost.host.clone();
        let tls = match settings.smarthost.security {
            Security::StartTls => {
                let mut b = TlsParameters::builder(host.clone());
                if let Some((_, pem)) = &settings.ca {
                    b = b.add_root_certificate(Certificate::from_pem(pem).map_err(PoolError::StartTls)?);
                }
                PoolTls::StartTls(b.build_rustls().map_err(PoolError::StartTls)?)
            }
            Security::Implicit => {
                let ca = settings
                    .ca
                    .as_ref()
                    .map(|(path, pem)| (pem.as_slice(), path.as_path()));
                PoolTls::Implicit(Arc::new(crate::tls::client::config_with_pem(ca, &[])?))
            }
            Security::None => PoolTls::None,
        };
        Ok(Pool {
            host,
            port: settings.smarthost.port,
            tls,
            credentials: settings
                .credentials
                .as_ref()
                .map(|(u, p)| Credentials::new(u.clone(), p.clone())),
            hello,
            dns,
            idle: Mutex::default(),
        })
    }

    /// Greeting, EHLO, STARTTLS and AUTH as a delivery would do them, then QUIT: what
    /// `vestibule doctor` checks. AUTH's failure is told apart (a wrong password, not a dead peer).
    /// `connect_timeout` per address: a smarthost whose first address does not answer must leave the
    /// probe time to try the next one, as delivery would.
    pub async fn probe(&self, connect_timeout: Duration) -> Result<(), Probe> {
        let mut conn = self.secured(connect_timeout).await.map_err(Probe::Connect)?;
        if let Some(creds) = &self.credentials {
            timed("AUTH", conn.auth(&[Mechanism::Plain, Mechanism::Login], creds))
                .await
                .map_err(Probe::Auth)?;
        }
        let _ = conn.quit().await;
        Ok(())
    }

    async fn fresh(&self) -> Result<AsyncSmtpConnection, Failure> {
        let mut conn = self.secured(CONNECT_TIMEOUT).await?;
        if let Some(creds) = &self.credentials {
            timed("AUTH", conn.auth(&[Mechanism::Plain, Mechanism::Login], creds)).await?;
        }
        Ok(conn)
    }

    /// A connection to the first address that answers, greeted and secured, before AUTH.
    async fn secured(&self, connect_timeout: Duration) -> Result<AsyncSmtpConnection, Failure> {
        let addrs = self
            .dns
            .lookup_ip(&self.host)
            .await
            .map_err(|e| Failure::Temporary(format!("smarthost {}: {e}", self.host)))?
            .addrs;
        let mut last = Failure::Temporary(format!("smarthost {} has no address", self.host));
        for ip in addrs {
            let addr = SocketAddr::new(ip, self.port);
            let secure = match &self.tls {
                PoolTls::StartTls(p) => Secure::StartTls(p),
                PoolTls::Implicit(c) => Secure::Implicit(c, &self.host),
                PoolTls::None => Secure::None,
            };
            match connect_within(addr, &self.hello, secure, connect_timeout).await {
                Ok(conn) => return Ok(conn),
                Err(e @ Failure::Permanent(_)) => return Err(e),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    fn take_idle(&self) -> Option<AsyncSmtpConnection> {
        let mut idle = self.idle.lock().ok()?;
        while let Some((conn, since)) = idle.pop() {
            if since.elapsed() < POOL_IDLE {
                return Some(conn);
            }
        }
        None
    }

    /// One transaction. A warm connection that turns out dead before the server answered anything
    /// is replaced by a fresh one once (a network error, not an SMTP reply).
    pub async fn send(&self, envelope: &Envelope, body: &[u8]) -> Result<(), Failure> {
        let (mut conn, warm) = match self.take_idle() {
            Some(c) => (c, true),
            None => (self.fresh().await?, false),
        };
        let mut result = tokio::time::timeout(COMMAND_TIMEOUT, conn.send(envelope, body)).await;
        // Retry only a network failure (no SMTP status): a 4xx on a warm connection is an answer.
        let dead = matches!(&result, Ok(Err(e)) if e.status().is_none());
        if warm && dead {
            conn = self.fresh().await?;
            result = tokio::time::timeout(COMMAND_TIMEOUT, conn.send(envelope, body)).await;
        }
        let (result, reusable) = match result {
            Ok(r) => (r.map(|_| ()).map_err(Failure::from), !conn.has_broken()),
            // In the middle of who knows what: never reuse.
            Err(_) => (Err(Failure::Temporary("the transaction timed out".into())), false),
        };
        if reusable {
            if let Ok(mut idle) = self.idle.lock() {
                if idle.len() < POOL_MAX {
                    idle.push((conn, Instant::now()));
                }
            }
        }
        result
    }
}

/// Why [`Pool::probe`] failed.
#[derive(Debug)]
pub enum Probe {
    /// No connection, greeting, EHLO or STARTTLS.
    Connect(Failure),
    /// The smarthost refused the credentials.
    Auth(Failure),
}

/// How one delivery attempt ended badly.
#[derive(Debug)]
pub enum Failure {
    /// 4xx, timeout, network or TLS error, DNS SERVFAIL: try again later.
    Temporary(String),
    /// 5xx, null MX, no such domain: bounce.
    Permanent(String),
}

impl From<lettre::transport::smtp::Error> for Failure {
    fn from(e: lettre::transport::smtp::Error) -> Self {
        if e.is_permanent() {
            Failure::Permanent(e.to_string())
        } else {
            Failure::Temporary(e.to_string())
        }
    }
}
