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

/// Accept on `listener` until shutdown, handing each connection to `on_conn` (which spawns what it
/// needs). Accept errors (a client gone before accept, fd limits) are logged and skipped.
pub async fn accept_loop(
    listener: std::net::TcpListener,
    mut shutdown: ShutdownWatch,
    what: &'static str,
    mut on_conn: impl FnMut(tokio::net::TcpStream, SocketAddr),
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "{what} listener unusable");
            return;
        }
    };
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => return,
        };
        match accepted {
            Ok((tcp, peer)) => on_conn(tcp, peer),
            Err(e) => tracing::warn!(error = %e, "{what}: accept failed"),
        }
    }
}

/// Serve `listener` until shutdown, answering each request with `handler(peer, request)`.
pub async fn serve<H, F>(
    listener: std::net::TcpListener,
    shutdown: ShutdownWatch,
    what: &'static str,
    handler: H,
) where
    H: Fn(SocketAddr, Request<hyper::body::Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    accept_loop(listener, shutdown, what, move |stream, peer| {
        let handler = handler.clone();
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
        });
    })
    .await;
}
