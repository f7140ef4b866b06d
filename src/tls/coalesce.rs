//! The TCP stream under our TLS listeners, with a one-segment write buffer.
//!
//! tokio-rustls writes each TLS record to its transport as soon as it is sealed, so a response's
//! header and body went out in two `writev` calls: one more syscall per request than pingora's own
//! listeners make (they give the TCP stream a 1,460-byte write buffer, but the setter is private to
//! pingora, and vestibule needs its own listener for the ACME ALPN). On loopback each send also runs
//! the receiver's TCP stack, so the extra call cost about a fifth of the CPU of a small TLS request.
//! Buffering up to one segment gives one send per response; larger writes go straight through, and
//! tokio-rustls flushes the transport whenever pingora flushes the TLS stream.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use async_trait::async_trait;
use pingora_core::protocols::l4::stream::Stream as L4Stream;
use pingora_core::protocols::raw_connect::ProxyDigest;
use pingora_core::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, Ssl, UniqueID, UniqueIDType,
};
use pingora_core::protocols::{SocketDigest, TimingDigest};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufWriter, ReadBuf};

/// One TCP segment on a 1,500-byte MTU: pingora's own listeners' write buffer.
pub const WRITE_BUFFER: usize = pingora_core::protocols::l4::stream::DEFAULT_L4_WRITE_BUFFER_SIZE;

#[derive(Debug)]
pub struct Coalesced(BufWriter<L4Stream>);

impl Coalesced {
    pub fn new(stream: L4Stream) -> Coalesced {
        Coalesced(BufWriter::with_capacity(WRITE_BUFFER, stream))
    }

    /// The stream underneath, if nothing is left in the write buffer.
    pub fn into_flushed(self: Box<Self>) -> Result<L4Stream, Box<Coalesced>> {
        if self.0.buffer().is_empty() {
            Ok(self.0.into_inner())
        } else {
            Err(self)
        }
    }
}

impl AsyncRead for Coalesced {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Coalesced {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[async_trait]
impl Shutdown for Coalesced {
    async fn shutdown(&mut self) {
        // Whatever is buffered goes out before the FIN.
        if let Err(e) = self.0.flush().await {
            tracing::debug!(error = %e, "flush before shutdown failed");
        }
        Shutdown::shutdown(self.0.get_mut()).await
    }
}

impl UniqueID for Coalesced {
    fn id(&self) -> UniqueIDType {
        self.0.get_ref().id()
    }
}

impl Ssl for Coalesced {}

#[async_trait]
impl Peek for Coalesced {
    async fn try_peek(&mut self, buf: &mut [u8]) -> std::io::Result<bool> {
        self.0.get_mut().try_peek(buf).await
    }
}

impl GetTimingDigest for Coalesced {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.0.get_ref().get_timing_digest()
    }
    fn get_read_pending_time(&self) -> std::time::Duration {
        self.0.get_ref().get_read_pending_time()
    }
    fn get_write_pending_time(&self) -> std::time::Duration {
        self.0.get_ref().get_write_pending_time()
    }
}

impl GetProxyDigest for Coalesced {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.0.get_ref().get_proxy_digest()
    }
    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.0.get_mut().set_proxy_digest(digest)
    }
}

impl GetSocketDigest for Coalesced {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.0.get_ref().get_socket_digest()
    }
    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.0.get_mut().set_socket_digest(digest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    async fn pair() -> (Coalesced, tokio::net::TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (Coalesced::new(server.into()), client)
    }

    /// Nothing has reached the peer: on loopback a send() has queued its data at the receiver by
    /// the time it returns, so an empty receive queue now means nothing was sent.
    fn nothing_arrived(peer: &tokio::net::TcpStream) -> bool {
        matches!(peer.try_read(&mut [0u8; 64]), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
    }

    async fn read(peer: &mut tokio::net::TcpStream, n: usize) -> Vec<u8> {
        let mut got = vec![0u8; n];
        peer.read_exact(&mut got).await.unwrap();
        got
    }

    #[tokio::test]
    async fn small_writes_wait_for_the_flush_and_leave_together() {
        let (mut s, mut peer) = pair().await;
        s.write_all(b"header record").await.unwrap();
        s.write_all(b"body record").await.unwrap();
        assert!(nothing_arrived(&peer), "nothing is sent before the flush");
        s.flush().await.unwrap();
        assert_eq!(read(&mut peer, 24).await, b"header recordbody record");
    }

    #[tokio::test]
    async fn a_large_write_goes_straight_through() {
        let (mut s, mut peer) = pair().await;
        let big = vec![7u8; 4 * WRITE_BUFFER];
        s.write_all(&big).await.unwrap();
        // No flush: it was not held back.
        assert_eq!(read(&mut peer, big.len()).await, big);
    }

    #[tokio::test]
    async fn shutdown_sends_what_is_buffered_then_the_fin() {
        let (mut s, mut peer) = pair().await;
        s.write_all(b"close_notify").await.unwrap();
        Shutdown::shutdown(&mut s).await;
        let mut all = Vec::new();
        peer.read_to_end(&mut all).await.unwrap();
        assert_eq!(all, b"close_notify");
    }
}
