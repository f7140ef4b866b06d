//! vestibule's own accept loop for every proxy listener, plain and TLS, handing connections to the
//! pingora proxy application through [`Guarded`].
//!
//! Owning the loop (rather than pingora's listeners) is what lets vestibule cap connections per
//! client address and in total, give TLS handshakes a deadline, back off when descriptors run out
//! (crate::listen), offer its own ALPN list and ticketer (crate::tls::listener), and bound request
//! heads and keep-alive ([`super::conn`]).

use std::collections::HashMap;
use std::net::IpAddr;
use std::os::unix::io::AsRawFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use pingora_core::apps::HttpServerApp;
use pingora_core::listeners::tls::Acceptor;
use pingora_core::protocols::{GetSocketDigest, SocketDigest, Stream};
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;

use super::config::ConnLimits;
use super::conn::Guarded;
use crate::metrics::Metrics;
use crate::tls::coalesce::Coalesced;

/// Open client connections, in total and per address, over all proxy listeners of one process.
#[derive(Debug)]
pub struct ConnCounter {
    /// `vestibule_http_connections_active`.
    gauge: prometheus::IntGauge,
    total: AtomicUsize,
    /// Locked once per accepted connection, never per request.
    per_ip: Mutex<HashMap<IpAddr, usize>>,
}

/// One counted connection; uncounted when dropped.
#[derive(Debug)]
pub struct ConnPermit {
    counter: Arc<ConnCounter>,
    ip: IpAddr,
}

impl Drop for ConnPermit {
    fn drop(&mut self) {
        self.counter.total.fetch_sub(1, Ordering::Relaxed);
        self.counter.gauge.dec();
        if let Ok(mut map) = self.counter.per_ip.lock() {
            if let Some(n) = map.get_mut(&self.ip) {
                *n -= 1;
                if *n == 0 {
                    map.remove(&self.ip);
                }
            }
        }
    }
}

impl ConnCounter {
    pub fn new(gauge: prometheus::IntGauge) -> ConnCounter {
        ConnCounter {
            gauge,
            total: AtomicUsize::new(0),
            per_ip: Mutex::default(),
        }
    }

    /// Count a new connection from `ip`, or say which cap it would break.
    pub fn acquire(self: &Arc<Self>, ip: IpAddr, limits: &ConnLimits) -> Result<ConnPermit, &'static str> {
        let mut map = self.per_ip.lock().map_err(|_| "max_connections")?;
        if self.total.load(Ordering::Relaxed) >= limits.max_connections {
            return Err("max_connections");
        }
        let n = map.entry(ip).or_insert(0);
        if *n >= limits.max_connections_per_ip {
            return Err("max_connections_per_ip");
        }
        *n += 1;
        self.total.fetch_add(1, Ordering::Relaxed);
        self.gauge.inc();
        Ok(ConnPermit {
            counter: self.clone(),
            ip,
        })
    }
}

/// One proxy listener: plain HTTP when `tls` is `None`, else HTTPS.
pub struct ProxyListener<A> {
    pub listener: Mutex<Option<std::net::TcpListener>>,
    pub tls: Option<Arc<Acceptor>>,
    pub app: Arc<Guarded<A>>,
    pub metrics: Arc<Metrics>,
    pub conns: Arc<ConnCounter>,
}

#[async_trait]
impl<A: HttpServerApp + Send + Sync + 'static> BackgroundService for ProxyListener<A> {
    async fn start(&self, shutdown: ShutdownWatch) {
        let Some(listener) = self.listener.lock().ok().and_then(|mut l| l.take()) else {
            return;
        };
        let what = if self.tls.is_some() { "HTTPS" } else { "HTTP" };
        let conn_shutdown = shutdown.clone();
        crate::listen::accept_loop(listener, shutdown, what, &self.metrics, |tcp, peer| {
            let snap = self.app.state.load();
            let permit = match self.conns.acquire(peer.ip(), &snap.conn) {
                Ok(p) => p,
                Err(reason) => {
                    self.metrics.http_refused.with_label_values(&[reason]).inc();
                    tracing::debug!(client = %peer.ip(), reason, "connection refused");
                    return;
                }
            };
            let handshake_timeout = snap.tls_handshake_timeout;
            drop(snap);
            let _ = tcp.set_nodelay(true);
            let (tls, app, metrics) = (self.tls.clone(), self.app.clone(), self.metrics.clone());
            let shutdown = conn_shutdown.clone();
            tokio::spawn(async move {
                let _permit = permit;
                let mut l4: pingora_core::protocols::l4::stream::Stream = tcp.into();
                let digest = SocketDigest::from_raw_fd(l4.as_raw_fd());
                let _ = digest.peer_addr.set(Some(peer.into()));
                l4.set_socket_digest(digest);
                let io = Coalesced::new(l4);
                let stream: Stream = match tls {
                    None => Box::new(io),
                    Some(acceptor) => {
                        let handshake = crate::tls::listener::handshake(&acceptor, io, &metrics, peer);
                        match tokio::time::timeout(handshake_timeout, handshake).await {
                            Ok(Some(tls)) => tls,
                            Ok(None) => return,
                            Err(_) => {
                                metrics.http_refused.with_label_values(&["tls_handshake_timeout"]).inc();
                                tracing::debug!(client = %peer.ip(), "TLS handshake not complete within handshake_timeout: closed");
                                return;
                            }
                        }
                    }
                };
                // A websocket continues in a task of its own, holding the connection's permit.
                if let Some(tunnel) = app.serve(stream, &shutdown).await {
                    tokio::spawn(tunnel.run(_permit, shutdown));
                }
            });
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_per_address_and_in_total() {
        let c = Arc::new(ConnCounter::new(prometheus::IntGauge::new("g", "g").unwrap()));
        let limits = ConnLimits {
            max_connections: 3,
            max_connections_per_ip: 2,
            ..ConnLimits::default()
        };
        let (a, b) = (IpAddr::from([192, 0, 2, 1]), IpAddr::from([192, 0, 2, 2]));
        let a1 = c.acquire(a, &limits).unwrap();
        let _a2 = c.acquire(a, &limits).unwrap();
        assert_eq!(c.acquire(a, &limits).unwrap_err(), "max_connections_per_ip");
        let _b1 = c.acquire(b, &limits).unwrap();
        assert_eq!(c.acquire(b, &limits).unwrap_err(), "max_connections");
        drop(a1);
        let _b2 = c.acquire(b, &limits).unwrap();
        assert_eq!(c.total.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn closed_connections_free_their_address() {
        let c = Arc::new(ConnCounter::new(prometheus::IntGauge::new("g", "g").unwrap()));
        let limits = ConnLimits::default();
        let ip = IpAddr::from([192, 0, 2, 1]);
        let permits: Vec<_> = (0..10).map(|_| c.acquire(ip, &limits).unwrap()).collect();
        drop(permits);
        assert!(c.per_ip.lock().unwrap().is_empty());
        assert_eq!(c.total.load(Ordering::Relaxed), 0);
    }
}
