//! vestibule's own listeners (admin, push, SMTP, HTTPS): one accept loop, and the small HTTP/1.1
//! server behind the admin and push endpoints. Listeners are bound before start-up (so a taken port
//! is a clear start-up error) and handed over here.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use pingora_core::server::ShutdownWatch;

/// The first pause after an accept failed for lack of resources, doubled up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// Resource failures are logged at most once per this interval, with how many there were.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// Whether the admin listener holds its reserve descriptor. While it does not, the other listeners,
/// once out of descriptors, wait instead of retrying: a retry would take the descriptor the admin
/// listener needs back (a kept-alive client then holds it for good).
static ADMIN_RESERVE_HELD: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Out of descriptors or memory: accepting again at once would fail again, and spin.
fn is_resource_error(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOMEM | libc::ENOBUFS)
    )
}

/// Accept on `listener` until shutdown, handing each connection to `on_conn` (which spawns what it
/// needs).
///
/// A client gone before accept is skipped. When descriptors (or memory) run out, the loop backs off
/// (100 ms doubling to 1 s, reset by the next success) instead of spinning, counts each failure in
/// `vestibule_accept_errors_total{listener}` and logs one line per 10 s with the count. The admin
/// listener keeps one descriptor in reserve: when accept fails for lack of descriptors it gives the
/// reserve up to take the connection, so `/healthz` and `/metrics` still answer (see [`serve`]).
pub async fn accept_loop(
    listener: std::net::TcpListener,
    shutdown: ShutdownWatch,
    what: &'static str,
    metrics: &crate::metrics::Metrics,
    on_conn: impl FnMut(tokio::net::TcpStream, SocketAddr),
) {
    accept_with_reserve(listener, shutdown, what, metrics, None, on_conn).await
}

/// [`accept_loop`], keeping a reserve descriptor when `reserve_freed` is given: it is notified when
/// a connection closes, so the reserve is taken back at once, before a proxy listener's next retry
/// can take the freed descriptor.
async fn accept_with_reserve(
    listener: std::net::TcpListener,
    mut shutdown: ShutdownWatch,
    what: &'static str,
    metrics: &crate::metrics::Metrics,
    reserve_freed: Option<std::sync::Arc<tokio::sync::Notify>>,
    mut on_conn: impl FnMut(tokio::net::TcpStream, SocketAddr),
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "{what} listener unusable");
            return;
        }
    };
    let errors = metrics.accept_errors.with_label_values(&[what]);
    let keeps_reserve = reserve_freed.is_some();
    let freed = reserve_freed.unwrap_or_default();
    let mut reserve = None;
    // Set when the reserve was just given up for the connection waiting in the backlog: it must not
    // be taken back before that accept.
    let mut released = false;
    let mut backoff = FIRST_BACKOFF;
    let (mut unlogged, mut last_log) = (0u64, None::<std::time::Instant>);
    loop {
        if keeps_reserve {
            if reserve.is_none() && !released {
                reserve = std::fs::File::open("/dev/null").ok();
            }
            ADMIN_RESERVE_HELD.store(reserve.is_some(), std::sync::atomic::Ordering::Relaxed);
        }
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = freed.notified(), if keeps_reserve && reserve.is_none() => continue,
            _ = shutdown.changed() => return,
        };
        match accepted {
            Ok((tcp, peer)) => {
                backoff = FIRST_BACKOFF;
                released = false;
                on_conn(tcp, peer)
            }
            Err(e) if is_resource_error(&e) => {
                errors.inc();
                unlogged += 1;
                if last_log.is_none_or(|t: std::time::Instant| t.elapsed() >= LOG_EVERY) {
                    tracing::error!(
                        error = %e,
                        failures = unlogged,
                        "{what}: cannot accept connections (out of descriptors or memory); retrying with backoff"
                    );
                    (unlogged, last_log) = (0, Some(std::time::Instant::now()));
                }
                if reserve.take().is_some() {
                    // The freed descriptor is for the connection waiting in the backlog.
                    released = true;
                    continue;
                }
                released = false;
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.changed() => return,
                    }
                    if keeps_reserve || ADMIN_RESERVE_HELD.load(std::sync::atomic::Ordering::Relaxed) {
                        break;
                    }
                }
                // The admin listener keeps polling at the first interval, to catch the next freed
                // descriptor before the proxy listeners (backing off to 1 s) take it.
                if !keeps_reserve {
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
            Err(e) => tracing::debug!(error = %e, "{what}: accept failed"),
        }
    }
}

/// Serve `listener` until shutdown, answering each request with `handler(peer, request)`.
pub async fn serve<H, F>(
    listener: std::net::TcpListener,
    shutdown: ShutdownWatch,
    what: &'static str,
    metrics: &crate::metrics::Metrics,
    handler: H,
) where
    H: Fn(SocketAddr, Request<hyper::body::Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    // The admin listener keeps a descriptor in reserve (see accept_loop).
    let freed = (what == "admin").then(|| std::sync::Arc::new(tokio::sync::Notify::new()));
    let on_close = freed.clone();
    accept_with_reserve(listener, shutdown, what, metrics, freed, move |stream, peer| {
        let handler = handler.clone();
        let on_close = on_close.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let fut = handler(peer, req);
                async move { Ok::<_, std::convert::Infallible>(fut.await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(30))
                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                .await;
            if let Some(n) = on_close {
                n.notify_one();
            }
        });
    })
    .await;
}
