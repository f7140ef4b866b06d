//! vestibule's own websocket tunnel.
//!
//! An HTTP/1.1 `Upgrade: websocket` request runs through every request policy on pingora's path
//! (router, remote-cluster guard, ONLYOFFICE verification, forwarded headers, header rules), then
//! [`handshake`] sends it upstream itself, applies the response policies to the answer and writes
//! it through pingora's session. On a 101 the client connection is taken out of pingora's session
//! and joined to the upstream connection by a [`Tunnel`], which runs in a task of its own: the
//! connection task, sized for pingora's whole request state machine, ends.
//!
//! Why not pingora's own upgrade path: pingora 0.9.1 can tear an upgrade down right after the 101
//! when the upstream speaks first (Mattermost sends `hello` at once; cloudflare/pingora#946), and it
//! holds a 64 KiB buffer and its request state per open websocket.
//!
//! While a side is idle the tunnel holds no buffer: it reads into a per-thread scratch buffer when
//! the socket has data and writes it on at once; only bytes the other side cannot take yet are
//! copied into a buffer of their own, and nothing more is read from that side until they are gone
//! (backpressure: one read's worth per direction at most). One deadline covers the idle limit.

pub mod exchange;
pub mod frames;
pub mod handshake;

use std::cell::RefCell;
use std::future::poll_fn;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use pingora_core::protocols::Stream;
use pingora_core::server::ShutdownWatch;
use pingora_http::RequestHeader;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::gauge::GaugeGuard;
use crate::config::core::LogFormat;
use crate::metrics::VhostMetrics;
use frames::Frames;

/// One read's worth: a TLS record's plaintext.
const SCRATCH: usize = 16 << 10;
/// How long the other direction may stay idle once one side has closed: a websocket ends with its
/// close handshake, so a side that sent FIN is normally gone altogether (nginx ends the tunnel at
/// once; this leaves the peer time to finish its close handshake).
const LINGER: Duration = Duration::from_secs(2);
/// Reads per direction before the tunnel yields to other tasks.
const BUDGET: usize = 16;

thread_local! {
    /// The read buffer of every tunnel on this thread: nothing stays in it between two polls.
    static READ: RefCell<Box<[u8]>> = RefCell::new(vec![0u8; SCRATCH].into_boxed_slice());
}

/// What the access log and the vhost metrics need once the tunnel closes.
pub struct CloseLog {
    /// The request line and the few headers the log shows (not the whole head).
    pub req: RequestHeader,
    pub client: Option<IpAddr>,
    pub vhost: Arc<str>,
    pub upstream: Option<SocketAddr>,
    /// `None`: the access log is off.
    pub format: Option<LogFormat>,
    pub metrics: VhostMetrics,
    pub start: Instant,
}

/// One direction: what was read and not yet written, and where its frames stand.
#[derive(Default)]
struct Half {
    /// Bytes the destination did not take yet (empty, unallocated, while it keeps up).
    pending: Vec<u8>,
    sent: usize,
    flush: bool,
    /// The source ended (or the tunnel stops): shut the destination's write side once flushed.
    eof: bool,
    shut: bool,
    frames: Frames,
    bytes: u64,
    moved: bool,
}

impl Half {
    /// Drive this direction; `Ready(Ok)` once the source ended and the destination was shut.
    fn poll<R, W>(
        &mut self,
        cx: &mut Context<'_>,
        src: &mut R,
        dst: &mut W,
        stop: Option<&[u8]>,
    ) -> Poll<io::Result<()>>
    where
        R: AsyncRead + Unpin + ?Sized,
        W: AsyncWrite + Unpin + ?Sized,
    {
        for _ in 0..BUDGET {
            while self.sent < self.pending.len() {
                let n = ready!(Pin::new(&mut *dst).poll_write(cx, &self.pending[self.sent..]))?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                self.sent += n;
                self.bytes += n as u64;
                self.moved = true;
            }
            if !self.pending.is_empty() {
                self.pending = Vec::new();
                self.sent = 0;
            }
            if self.flush {
                ready!(Pin::new(&mut *dst).poll_flush(cx))?;
                self.flush = false;
            }
            if self.eof {
                if !self.shut {
                    ready!(Pin::new(&mut *dst).poll_shutdown(cx))?;
                    self.shut = true;
                }
                return Poll::Ready(Ok(()));
            }
            if let Some(close) = stop.filter(|_| self.frames.at_boundary()) {
                // Between two frames: the stopping server's close frame goes next, then FIN.
                self.pending = close.to_vec();
                self.eof = true;
                self.flush = true;
                continue;
            }
            ready!(READ.with_borrow_mut(|buf| self.read_and_pass(cx, buf, src, dst, stop.is_some())))?;
        }
        // Plenty moved: let other tasks run, then carry on.
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// One read into `buf`, written on to `dst` at once; what `dst` does not take is kept.
    fn read_and_pass<R, W>(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
        src: &mut R,
        dst: &mut W,
        stopping: bool,
    ) -> Poll<io::Result<()>>
    where
        R: AsyncRead + Unpin + ?Sized,
        W: AsyncWrite + Unpin + ?Sized,
    {
        let mut rb = ReadBuf::new(buf);
        ready!(Pin::new(&mut *src).poll_read(cx, &mut rb))?;
        let mut data = rb.filled();
        if data.is_empty() {
            self.eof = true;
            return Poll::Ready(Ok(()));
        }
        self.moved = true;
        let boundary = self.frames.advance(data);
        if let (true, Some(end)) = (stopping, boundary) {
            // Stopping: pass the frames that are whole, drop what follows (the close comes next).
            data = &data[..end];
            self.frames = Frames::default();
        }
        match Pin::new(&mut *dst).poll_write(cx, data) {
            Poll::Ready(Ok(n)) => {
                self.bytes += n as u64;
                if n < data.len() {
                    self.pending = data[n..].to_vec();
                }
            }
            Poll::Pending => self.pending = data.to_vec(),
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
        }
        self.flush = true;
        Poll::Ready(Ok(()))
    }
}

/// The client side of a tunnel: the bare socket of a plain connection, pingora's stream (TLS).
pub enum Client {
    Tcp(TcpStream),
    Stream(Stream),
}

impl From<Result<TcpStream, Stream>> for Client {
    /// The bare socket when the connection could give it up (`conn::into_plain_socket`), else the
    /// stream as it is.
    fn from(stream: Result<TcpStream, Stream>) -> Client {
        match stream {
            Ok(tcp) => Client::Tcp(tcp),
            Err(stream) => Client::Stream(stream),
        }
    }
}

impl AsyncRead for Client {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Client::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Client::Stream(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Client {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Client::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Client::Stream(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Client::Tcp(s) => Pin::new(s).poll_flush(cx),
            Client::Stream(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Client::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Client::Stream(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// A client connection joined to its upstream after a 101.
pub struct Tunnel {
    client: Client,
    upstream: TcpStream,
    /// Upstream to client.
    down: Half,
    /// Client to upstream.
    up: Half,
    idle: Duration,
    /// The close frame for the upstream, drawn once a stop begins.
    stopping: Option<[u8; 8]>,
    /// One side has ended: the other gets [`LINGER`] to follow.
    half_closed: bool,
    log: Box<CloseLog>,
    _websocket: Option<GaugeGuard>,
    _active: GaugeGuard,
}

impl std::fmt::Debug for Tunnel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tunnel")
            .field("vhost", &self.log.vhost)
            .field("upstream", &self.log.upstream)
            .finish_non_exhaustive()
    }
}

/// Why a tunnel ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Closed,
    Idle,
    Stopped,
}

impl Tunnel {
    /// `to_client`: what the upstream sent after its 101 head (a hello-first upstream's first
    /// frame); `to_upstream`: what the client sent after its request head, if anything.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        client: Client,
        upstream: TcpStream,
        to_client: Vec<u8>,
        to_upstream: Vec<u8>,
        idle: Duration,
        log: Box<CloseLog>,
        websocket: Option<GaugeGuard>,
        active: GaugeGuard,
    ) -> Tunnel {
        let mut down = Half::default();
        down.frames.advance(&to_client);
        down.flush = !to_client.is_empty();
        down.pending = to_client;
        let mut up = Half::default();
        up.frames.advance(&to_upstream);
        up.flush = !to_upstream.is_empty();
        up.pending = to_upstream;
        Tunnel {
            client,
            upstream,
            down,
            up,
            idle,
            stopping: None,
            half_closed: false,
            log,
            _websocket: websocket,
            _active: active,
        }
    }

    /// `Ready(Ok(true))` once both directions are done; `Ready(Ok(false))` once, when the first
    /// of them is.
    fn poll_pump(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<bool>> {
        let to_client = self.stopping.map(|_| &frames::GOING_AWAY_TO_CLIENT[..]);
        let down = self
            .down
            .poll(cx, &mut self.upstream, &mut self.client, to_client);
        let to_upstream = self.stopping.as_ref().map(|c| &c[..]);
        let up = self
            .up
            .poll(cx, &mut self.client, &mut self.upstream, to_upstream);
        match (down, up) {
            (Poll::Ready(Err(e)), _) | (_, Poll::Ready(Err(e))) => Poll::Ready(Err(e)),
            (Poll::Ready(Ok(())), Poll::Ready(Ok(()))) => Poll::Ready(Ok(true)),
            (Poll::Ready(Ok(())), _) | (_, Poll::Ready(Ok(()))) if !self.half_closed => {
                self.half_closed = true;
                Poll::Ready(Ok(false))
            }
            _ => Poll::Pending,
        }
    }

    /// The server stops: both sides get a 1001 close frame. When a new process took over (a
    /// graceful upgrade), the session instead carries on here until it ends or the grace period
    /// does, as every connection of the old process does.
    fn on_shutdown(&mut self) {
        if !crate::handover::replaced() {
            self.stop();
        }
    }

    fn stop(&mut self) {
        if self.stopping.is_none() {
            self.stopping = Some(frames::going_away_to_upstream());
        }
    }

    /// Relay until both sides closed, the idle limit passed with nothing moving, or the server
    /// stops (see [`Self::on_shutdown`]). `permit` (the connection's place under the
    /// connection caps) is held until then.
    pub async fn run<P: Send>(mut self, permit: P, mut shutdown: ShutdownWatch) {
        let _permit = permit;
        let mut watching = true;
        if *shutdown.borrow() {
            watching = false;
            self.on_shutdown();
        }
        let mut last = Instant::now();
        let mut idle = self.idle;
        let deadline = tokio::time::sleep(idle);
        tokio::pin!(deadline);
        let end = loop {
            tokio::select! {
                r = poll_fn(|cx| self.poll_pump(cx)) => match r {
                    Ok(true) if self.stopping.is_some() => break End::Stopped,
                    Ok(true) => break End::Closed,
                    Ok(false) => {
                        idle = idle.min(LINGER);
                        last = Instant::now();
                        deadline.as_mut().reset((last + idle).into());
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "websocket tunnel ended by an I/O error");
                        break End::Closed;
                    }
                },
                r = shutdown.changed(), if watching => {
                    let _ = r;
                    watching = false;
                    self.on_shutdown();
                }
                () = &mut deadline => {
                    if self.down.moved || self.up.moved {
                        self.down.moved = false;
                        self.up.moved = false;
                        last = Instant::now();
                    }
                    let due = last + idle;
                    if Instant::now() >= due {
                        break End::Idle;
                    }
                    deadline.as_mut().reset(due.into());
                }
            }
            // Any traffic moves the idle deadline (checked lazily when it fires).
            if self.down.moved || self.up.moved {
                self.down.moved = false;
                self.up.moved = false;
                last = Instant::now();
            }
        };
        if end == End::Idle {
            tracing::debug!(?idle, "websocket idle for the route's read_timeout: closed");
        }
        self.finish();
    }

    /// The access-log line and the vhost metrics of the whole session.
    fn finish(self) {
        let log = &self.log;
        let elapsed = log.start.elapsed();
        log.metrics.by_class[1].inc();
        log.metrics.duration.observe(elapsed.as_secs_f64());
        if let Some(format) = log.format {
            let entry = super::access::Entry {
                client: log.client,
                req: &log.req,
                status: 101,
                body_bytes_sent: usize::try_from(self.down.bytes).unwrap_or(usize::MAX),
                bytes_received: Some(self.up.bytes),
                vhost: &log.vhost,
                upstream: log.upstream,
                elapsed,
            };
            super::access::log(format, &entry);
        }
    }
}
