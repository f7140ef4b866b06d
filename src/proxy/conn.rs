//! One client connection to a proxy listener, from accept to close: what it may hold and how long.
//!
//! pingora reads request heads with a deadline per read (a client trickling one byte a minute
//! never times out), lets a head grow to 1 MiB, keeps idle HTTP/1.1 connections forever and drops
//! pipelined requests. vestibule runs every proxy connection through [`Guarded`], which drives
//! pingora's HTTP/1 session loop itself:
//! - the whole head must arrive within `client_header_timeout` (from the connection's start; on a
//!   kept-alive connection, `keepalive_timeout` to start the next request plus that);
//! - an idle kept-alive connection is closed after `keepalive_timeout`;
//! - a head over `max_header_size` bytes is answered 431 and the connection closed
//!   ([`HeadLimited`] counts the bytes read while a head is being parsed);
//! - pipelined HTTP/1.1 requests are answered in order (pingora's opt-in pipelining).
//!
//! HTTP/2 connections go to pingora's own h2 loop (the h2 layer bounds header lists itself).
//! The per-address and total connection caps and the TLS handshake deadline are applied by the
//! listener ([`super::listener`]) before a connection gets here.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora_core::apps::{HttpServerApp, ServerApp};
use pingora_core::protocols::http::ServerSession;
use pingora_core::protocols::raw_connect::ProxyDigest;
use pingora_core::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl, Stream,
    TimingDigest, UniqueID, UniqueIDType, ALPN,
};
use pingora_core::server::ShutdownWatch;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::snapshot::Snapshot;
use crate::metrics::Metrics;

/// Sent, best effort, to a client whose request head is over the limit (nginx answers 400 here;
/// RFC 6585's 431 says which limit it was).
const TOO_LARGE: &[u8] = b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 33\r\nConnection: close\r\n\r\nRequest header fields too large.\n";

/// Where the head of the current request stands, shared by [`Guarded`] and [`HeadLimited`].
#[derive(Debug)]
pub struct HeadState {
    limit: usize,
    /// A request head is being read (cleared once pingora hands the request to the proxy).
    reading: AtomicBool,
    /// Bytes read since the current head started.
    bytes: AtomicUsize,
    /// The head went over `limit`.
    too_large: AtomicBool,
    /// For the access log: requests answered without the proxy (super::refused).
    seen: super::refused::Seen,
    /// A websocket the proxy accepted: the connection continues as this tunnel.
    tunnel: std::sync::Mutex<Option<super::tunnel::Tunnel>>,
}

impl HeadState {
    fn new(limit: usize) -> HeadState {
        HeadState {
            limit,
            reading: AtomicBool::new(false),
            bytes: AtomicUsize::new(0),
            too_large: AtomicBool::new(false),
            seen: super::refused::Seen::default(),
            tunnel: std::sync::Mutex::new(None),
        }
    }

    fn start(&self) {
        self.bytes.store(0, Ordering::Relaxed);
        self.reading.store(true, Ordering::Relaxed);
    }

    fn complete(&self) {
        self.reading.store(false, Ordering::Relaxed);
    }

    fn is_reading(&self) -> bool {
        self.reading.load(Ordering::Relaxed)
    }
}

tokio::task_local! {
    /// The head state of the HTTP/1 connection this task serves.
    static HEAD: Arc<HeadState>;
}

/// Called by the proxy once pingora parsed a request head: the head deadline and size limit stop
/// applying until the next request. A no-op outside a [`Guarded`] HTTP/1 task (HTTP/2 streams).
pub fn head_complete() {
    let _ = HEAD.try_with(|h| h.complete());
}

/// Whether the current task serves an HTTP/1 connection that can continue as a websocket tunnel.
pub fn can_hand_off() -> bool {
    HEAD.try_with(|_| ()).is_ok()
}

/// Continue this HTTP/1 connection as `tunnel` once pingora is done with the request (see
/// [`Guarded::serve`]); `false` (and the tunnel closed) outside such a connection.
pub fn hand_off(tunnel: super::tunnel::Tunnel) -> bool {
    let mut tunnel = Some(tunnel);
    let _ = HEAD.try_with(|h| {
        if let Ok(mut slot) = h.tunnel.lock() {
            *slot = tunnel.take();
        }
    });
    tunnel.is_none()
}

/// The TCP socket of a plain-HTTP client connection whose pingora layers hold nothing (the head
/// counter, the write buffer, pingora's stream with its digests): a websocket tunnel keeps only the
/// socket. Any other stream is given back.
#[allow(unsafe_code)] // borrows pingora's socket descriptor to duplicate it (see SAFETY below)
pub fn into_plain_socket(stream: Stream) -> Result<tokio::net::TcpStream, Stream> {
    use std::os::fd::AsRawFd;
    let plain = stream
        .as_any()
        .downcast_ref::<HeadLimited>()
        .is_some_and(|h| h.inner.as_any().is::<crate::tls::coalesce::Coalesced>());
    if !plain {
        return Err(stream);
    }
    let Ok(limited) = stream.into_any().downcast::<HeadLimited>() else {
        unreachable!("checked above")
    };
    let HeadLimited { inner, head } = *limited;
    let Ok(coalesced) = inner.into_any().downcast::<crate::tls::coalesce::Coalesced>() else {
        unreachable!("checked above")
    };
    let l4 = match coalesced.into_flushed() {
        Ok(l4) => l4,
        Err(c) => return Err(Box::new(HeadLimited { inner: c, head })),
    };
    // pingora's stream cannot give its tokio socket back: a second descriptor of the same socket
    // outlives it (its own descriptor is closed, and deregistered, when it drops).
    // SAFETY: `l4` owns this descriptor and keeps it open while it is borrowed here.
    let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(l4.as_raw_fd()) };
    let owned = match fd.try_clone_to_owned() {
        Ok(fd) => fd,
        Err(_) => {
            let c = crate::tls::coalesce::Coalesced::new(l4);
            return Err(Box::new(HeadLimited {
                inner: Box::new(c),
                head,
            }));
        }
    };
    drop(l4);
    let std = std::net::TcpStream::from(owned);
    // Non-blocking already (the flag belongs to the socket, shared by both descriptors).
    match tokio::net::TcpStream::from_std(std) {
        Ok(s) => Ok(s),
        Err(e) => {
            tracing::debug!(error = %e, "cannot register the websocket's client socket");
            Err(Box::new(std::io::Cursor::new(Vec::new())))
        }
    }
}

/// The client stream, counting what is read while a head is parsed.
#[derive(Debug)]
pub struct HeadLimited {
    inner: Stream,
    head: Arc<HeadState>,
}

impl AsyncRead for HeadLimited {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if !this.head.is_reading() {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        let used = this.head.bytes.load(Ordering::Relaxed);
        if used > this.head.limit {
            // The parser wants more than `limit` bytes: the head is too large.
            if !this.head.too_large.swap(true, Ordering::Relaxed) {
                let _ = Pin::new(&mut this.inner).poll_write(cx, TOO_LARGE);
                let _ = Pin::new(&mut this.inner).poll_flush(cx);
            }
            return Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "request head larger than max_header_size",
            )));
        }
        // Read at most one byte past the limit, so a head that ends within it parses and the
        // bytes of a larger one never pile up.
        let room = this.head.limit + 1 - used;
        let n = if buf.remaining() > room {
            let mut part = ReadBuf::new(buf.initialize_unfilled_to(room));
            std::task::ready!(Pin::new(&mut this.inner).poll_read(cx, &mut part))?;
            let n = part.filled().len();
            this.head.seen.on_read(part.filled());
            buf.advance(n);
            n
        } else {
            let before = buf.filled().len();
            std::task::ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
            this.head.seen.on_read(&buf.filled()[before..]);
            buf.filled().len() - before
        };
        this.head.bytes.fetch_add(n, Ordering::Relaxed);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for HeadLimited {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.head.seen.on_write(buf);
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        if let Some(first) = bufs.first() {
            self.head.seen.on_write(first);
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[async_trait]
impl Shutdown for HeadLimited {
    async fn shutdown(&mut self) {
        self.inner.shutdown().await
    }
}

impl UniqueID for HeadLimited {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for HeadLimited {
    fn get_ssl(&self) -> Option<&pingora_core::protocols::tls::TlsRef> {
        self.inner.get_ssl()
    }
    fn get_ssl_digest(&self) -> Option<Arc<pingora_core::protocols::tls::SslDigest>> {
        self.inner.get_ssl_digest()
    }
    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

#[async_trait]
impl Peek for HeadLimited {
    async fn try_peek(&mut self, buf: &mut [u8]) -> std::io::Result<bool> {
        self.inner.try_peek(buf).await
    }
}

impl GetTimingDigest for HeadLimited {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }
    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }
    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for HeadLimited {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }
    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.inner.set_proxy_digest(digest)
    }
}

impl GetSocketDigest for HeadLimited {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }
    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.inner.set_socket_digest(digest)
    }
}

/// pingora's keep-alive timer counts whole seconds (0 would mean "forever").
fn keepalive_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// The proxy application behind every proxy listener, with the connection limits above.
pub struct Guarded<A> {
    pub inner: Arc<A>,
    pub state: Arc<ArcSwap<Snapshot>>,
    pub metrics: Arc<Metrics>,
}

enum Outcome<T> {
    Served(T),
    HeadTimeout,
}

/// Run `fut` (one request on the connection), giving up if the head is not complete by `deadline`.
async fn with_head_deadline<F: std::future::Future>(
    fut: F,
    head: &HeadState,
    deadline: Duration,
) -> Outcome<F::Output> {
    tokio::pin!(fut);
    tokio::select! {
        out = &mut fut => return Outcome::Served(out),
        _ = tokio::time::sleep(deadline) => {}
    }
    if head.is_reading() {
        return Outcome::HeadTimeout;
    }
    Outcome::Served(fut.await)
}

/// The client connection preface of HTTP/2 (RFC 9113 3.4).
const H2_PREFACE_LEN: usize = 24;

impl<A> Guarded<A>
where
    A: HttpServerApp + Send + Sync + 'static,
{
    /// An HTTP/2 connection goes to pingora's h2 loop, which closes it after `keepalive_timeout`
    /// idle (set on the application) but would wait forever for a client that never sends its
    /// connection preface: that must come within `client_header_timeout`.
    async fn process_h2(self: &Arc<Self>, stream: Stream, shutdown: &ShutdownWatch) -> Option<Stream> {
        let deadline = self.state.load().conn.client_header_timeout;
        // Counts what is read until the preface is in (no size limit: h2 bounds header lists).
        let head = Arc::new(HeadState::new(usize::MAX - 1));
        head.start();
        let stream: Stream = Box::new(HeadLimited {
            inner: stream,
            head: head.clone(),
        });
        let conn = ServerApp::process_new(&self.inner, stream, shutdown);
        tokio::pin!(conn);
        tokio::select! {
            out = &mut conn => return out,
            _ = tokio::time::sleep(deadline) => {}
        }
        if head.bytes.load(Ordering::Relaxed) < H2_PREFACE_LEN {
            self.metrics
                .http_refused
                .with_label_values(&["header_timeout"])
                .inc();
            tracing::debug!("HTTP/2 preface not received within client_header_timeout: closed");
            return None;
        }
        head.complete();
        conn.await
    }

    /// Serve one client connection until it closes, or until it became a websocket: then the
    /// tunnel it continues as is returned, for the caller to run in a task of its own (this
    /// future, sized for pingora's request handling, is done with).
    pub async fn serve(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<super::tunnel::Tunnel> {
        match stream.selected_alpn_proto() {
            Some(ALPN::H2) => {
                self.process_h2(stream, shutdown).await;
                return None;
            }
            Some(ALPN::Custom(_)) => {
                let mut next = ServerApp::process_new(&self.inner, stream, shutdown).await;
                while let Some(stream) = next {
                    next = ServerApp::process_new(&self.inner, stream, shutdown).await;
                }
                return None;
            }
            _ => {}
        }
        let limits = self.state.load().conn.clone();
        let keepalive = keepalive_secs(limits.keepalive_timeout);
        let client = stream
            .get_socket_digest()
            .and_then(|d| d.peer_addr().and_then(|a| a.as_inet()).map(|a| a.ip()));
        let head = Arc::new(HeadState::new(
            usize::try_from(limits.max_header_size).unwrap_or(usize::MAX),
        ));
        let stream: Stream = Box::new(HeadLimited {
            inner: stream,
            head: head.clone(),
        });
        let mut session = ServerSession::new_http1(stream);
        session.set_keepalive(if *shutdown.borrow() { None } else { Some(keepalive) });
        session.set_pipelining_enabled(true);
        let mut deadline = limits.client_header_timeout;
        loop {
            head.start();
            let request = self.inner.process_new_http(session, shutdown);
            let outcome = HEAD
                .scope(head.clone(), with_head_deadline(request, &head, deadline))
                .await;
            let reused = match outcome {
                Outcome::Served(r) => r,
                Outcome::HeadTimeout => {
                    self.metrics
                        .http_refused
                        .with_label_values(&["header_timeout"])
                        .inc();
                    // A request was started and not finished in time: logged as nginx does (408);
                    // an idle kept-alive connection closing is not a request.
                    if head.bytes.load(Ordering::Relaxed) > 0 {
                        head.seen.log(408, &self.state.load(), client);
                    }
                    tracing::debug!("request head not complete within client_header_timeout: closed");
                    return None;
                }
            };
            if head.too_large.load(Ordering::Relaxed) {
                self.metrics
                    .http_refused
                    .with_label_values(&["header_too_large"])
                    .inc();
                head.seen.log(431, &self.state.load(), client);
                return None;
            }
            // pingora's own answers (400 to a malformed head, 405 to CONNECT) never reach the
            // proxy's logging hook: the head was never handed to the proxy.
            head.seen
                .request_done(!head.is_reading(), &self.state.load(), client);
            if let Some(tunnel) = head.tunnel.lock().ok().and_then(|mut t| t.take()) {
                return Some(tunnel);
            }
            let (stream, settings) = reused?.consume();
            session = ServerSession::new_http1(stream);
            if let Some(settings) = settings {
                settings.apply_to_session(&mut session);
            }
            // pingora sets "forever" for HTTP/1.1 keep-alive; ours bounds the idle wait.
            session.set_keepalive(if *shutdown.borrow() { None } else { Some(keepalive) });
            session.set_pipelining_enabled(true);
            deadline = limits.keepalive_timeout + limits.client_header_timeout;
        }
    }
}

#[async_trait]
impl<A> ServerApp for Guarded<A>
where
    A: HttpServerApp + Send + Sync + 'static,
{
    async fn process_new(self: &Arc<Self>, stream: Stream, shutdown: &ShutdownWatch) -> Option<Stream> {
        if let Some(tunnel) = self.serve(stream, shutdown).await {
            tokio::spawn(tunnel.run((), shutdown.clone()));
        }
        None
    }

    async fn cleanup(&self) {
        ServerApp::cleanup(&*self.inner).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keepalive_rounds_up_to_whole_seconds() {
        assert_eq!(keepalive_secs(Duration::from_millis(1)), 1);
        assert_eq!(keepalive_secs(Duration::from_secs(75)), 75);
        assert_eq!(keepalive_secs(Duration::from_millis(1500)), 2);
    }
}
