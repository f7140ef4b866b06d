//! vestibule's own listeners (admin, push, SMTP, HTTPS): one accept loop, and the small HTTP/1.1
//! server behind the admin and push endpoints. Listeners are bound before start-up (so a taken port
//! is a clear start-up error) and handed over here.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::FutureExt;

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
    let mut backoff = FIRST_BACKOFF;
    let (mut unlogged, mut last_log) = (0u64, None::<std::time::Instant>);
    let mut failed = |e: &std::io::Error| {
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
    };
    loop {
        if keeps_reserve {
            if reserve.is_none() {
                reserve = std::fs::File::open("/dev/null").ok();
            }
            ADMIN_RESERVE_HELD.store(reserve.is_some(), Ordering::Relaxed);
        }
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = freed.notified(), if keeps_reserve && reserve.is_none() => continue,
            // Without the reserve the proxy listeners wait, so keep trying to take it back:
            // descriptors also come free with no admin connection closing.
            _ = tokio::time::sleep(FIRST_BACKOFF), if keeps_reserve && reserve.is_none() => continue,
            _ = shutdown.changed() => return,
        };
        match accepted {
            Ok((tcp, peer)) => {
                backoff = FIRST_BACKOFF;
                on_conn(tcp, peer)
            }
            Err(e) if is_resource_error(&e) => {
                failed(&e);
                if let Some(file) = reserve.take() {
                    // Give the reserve up and accept with it in one step that no proxy accept can
                    // run inside (see HANDOFF). Accept also fails for lack of descriptors with no
                    // connection waiting: then the loop takes the reserve straight back.
                    let accepted = {
                        let _handoff = handoff();
                        ADMIN_RESERVE_HELD.store(false, Ordering::Relaxed);
                        drop(file);
                        listener.accept().now_or_never()
                    };
                    match accepted {
                        Some(Ok((tcp, peer))) => on_conn(tcp, peer),
                        Some(Err(e)) if is_resource_error(&e) => failed(&e),
                        _ => {}
                    }
                    continue;
                }
                if keeps_reserve {
                    // No reserve to give (a connection holds it): retry when one closes, or at the
                    // first interval (accepting again at once would fail again, and spin).
                    tokio::select! {
                        _ = tokio::time::sleep(FIRST_BACKOFF) => {}
                        _ = freed.notified() => {}
                        _ = shutdown.changed() => return,
                    }
                    continue;
                }
                // A proxy listener: from now on accept only in steps checked against the admin
                // listener's reserve, until the backlog is empty.
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.changed() => return,
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    let drained = loop {
                        let attempt = {
                            let _handoff = handoff();
                            ADMIN_RESERVE_HELD
                                .load(Ordering::Relaxed)
                                .then(|| listener.accept().now_or_never())
                        };
                        match attempt {
                            // The admin listener is without its reserve: wait for it.
                            None => break false,
                            // Nothing waiting: back to the plain accept.
                            Some(None) => break true,
                            Some(Some(Ok((tcp, peer)))) => {
                                backoff = FIRST_BACKOFF;
                                on_conn(tcp, peer);
                            }
                            Some(Some(Err(e))) if is_resource_error(&e) => {
                                failed(&e);
                                break false;
                            }
                            Some(Some(Err(e))) => {
                                tracing::debug!(error = %e, "{what}: accept failed");
                            }
                        }
                    };
                    if drained {
                        break;
                    }
                }
            }
            Err(e) => tracing::debug!(error = %e, "{what}: accept failed"),
        }
    }
}

/// Held while the admin listener gives its reserve descriptor up and accepts with it, and while a
/// proxy listener out of descriptors checks that the reserve is held and accepts: so a proxy
/// accept cannot take the descriptor freed for an admin connection (the admin listener would then
/// have none until that proxy connection closes). Only taken while descriptors run out, and only
/// around one non-blocking accept.
static HANDOFF: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn handoff() -> std::sync::MutexGuard<'static, ()> {
    HANDOFF.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;
    use std::sync::Arc;

    /// Set in the child process that runs [`reserve_scenario`].
    const ALONE: &str = "VESTIBULE_TEST_RESERVE_ALONE";

    /// Accept fails for lack of descriptors even when no connection waits. The reserve the admin
    /// listener gives up then must come back once descriptors are free, with no admin traffic,
    /// or the proxy listeners (which wait for it) never accept again.
    #[test]
    fn reserve_given_up_for_no_connection_comes_back() {
        if std::env::var_os(ALONE).is_some() {
            return reserve_scenario();
        }
        // The scenario lowers the descriptor limit, which would starve the tests running beside
        // it: it runs alone, in a child process of this test binary.
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "listen::tests::reserve_given_up_for_no_connection_comes_back",
                "--test-threads=1",
                "--nocapture",
            ])
            .env(ALONE, "1")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Polls `cond` (the state has no signal of its own) for up to 5 s.
    async fn within_5s(what: &str, cond: impl Fn() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !cond() {
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting for: {what}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn reserve_scenario() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.set_nonblocking(true).unwrap();
            let addr = listener.local_addr().unwrap();
            let (_stop, shutdown) = tokio::sync::watch::channel(false);
            let metrics: &'static _ = Box::leak(Box::new(crate::metrics::Metrics::new()));
            let freed = Arc::new(tokio::sync::Notify::new());
            let on_close = freed.clone();
            tokio::spawn(accept_with_reserve(
                listener,
                shutdown,
                "admin",
                metrics,
                Some(freed),
                move |tcp, _| {
                    drop(tcp);
                    on_close.notify_one();
                },
            ));
            let held = || ADMIN_RESERVE_HELD.load(Ordering::Relaxed);
            within_5s("the reserve taken", held).await;

            // Every descriptor taken: a limit just above the open ones, and the gaps filled.
            let highest = std::fs::read_dir("/proc/self/fd")
                .unwrap()
                .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<usize>().ok())
                .max()
                .unwrap();
            let limit = format!("--nofile={}:", highest + 8);
            let pid = std::process::id().to_string();
            let out = std::process::Command::new("prlimit")
                .args(["--pid", &pid, &limit])
                .output()
                .expect("prlimit (util-linux)");
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            let mut fill = Vec::new();
            while let Ok(f) = std::fs::File::open("/dev/null") {
                fill.push(f);
            }
            // One admin connection, served and closed while descriptors are still exhausted: the
            // reserve, taken back, leaves none for the next accept, which fails with no
            // connection waiting.
            drop(fill.pop());
            let client = std::net::TcpStream::connect(addr).unwrap();
            let errors = metrics.accept_errors.with_label_values(&["admin"]);
            within_5s("the accept failing with no connection waiting", || {
                errors.get() >= 2
            })
            .await;

            // Descriptors free again, and no admin traffic: the reserve must come back.
            drop((fill, client));
            within_5s("the reserve taken back", held).await;
        });
    }
}
