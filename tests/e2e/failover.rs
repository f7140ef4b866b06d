//! Covered: round robin over two servers; when one dies, requests keep succeeding: the connection it
//! refuses is counted and the request retried on the other server, which then takes the traffic
//! alone (passive marking); an active health check marks a dead server down in metrics, keeps
//! requests off it, and brings it back into rotation when it comes back (same port).

use std::sync::atomic::Ordering;

use crate::support::*;

/// Two servers `a` and `b` behind `chat.example.org`, with `health_check` as given, and a check
/// that round robin uses both.
async fn two_servers(health_check: &str) -> (Upstream, Upstream, Vestibule) {
    let a = Upstream::start("a").await;
    let b = Upstream::start("b").await;
    let cfg = MainConfig::new()
        .table(
            Table::new("upstream.mm")
                .set("servers", [a.addr, b.addr])
                .set("health_check", raw(health_check)),
        )
        .vhost(Vhost::new("chat.example.org").upstream_named("mm"));
    let v = Vestibule::start(cfg).await;
    let mut seen = std::collections::HashSet::new();
    for _ in 0..6 {
        let (s, body) = v.get("chat.example.org", "/").await;
        assert_eq!(s, 200);
        seen.insert(body.lines().next().unwrap().to_string());
    }
    assert_eq!(seen.len(), 2, "round robin uses both servers: {seen:?}");
    (a, b, v)
}

async fn connect_failures(v: &Vestibule) -> f64 {
    let m = v.metrics().await;
    metric(
        &m,
        "vestibule_upstream_failures_total",
        &[("kind", "connect"), ("upstream", "mm")],
    )
    .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread")]
async fn failover_when_one_server_dies() {
    // No active check: it could notice the death before any request, and none would be tried on b.
    let (_a, b, v) = two_servers("false").await;
    b.stop().await;
    // Every request succeeds: round robin still picks b, whose refusal makes vestibule retry on a.
    for _ in 0..10 {
        let (s, body) = v.get("chat.example.org", "/").await;
        assert_eq!(s, 200, "{body}");
        assert!(body.starts_with("upstream=a\n"), "{body}");
    }
    assert!(connect_failures(&v).await >= 1.0, "{}", v.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn health_check_takes_a_dead_server_out_and_back() {
    let (_a, b, v) = two_servers("{ path = \"/ping\", interval = \"200ms\", timeout = \"500ms\" }").await;
    let b_addr = b.addr;
    b.stop().await;
    let server = b_addr.to_string();
    let label = [("server", server.as_str()), ("upstream", "mm")];
    eventually("health check marks b down", || async {
        (metric(&v.metrics().await, "vestibule_upstream_healthy", &label) == Some(0.0)).then_some(())
    })
    .await;
    // Marked down, b is not even tried: a takes every request.
    let failures = connect_failures(&v).await;
    for _ in 0..10 {
        let (s, body) = v.get("chat.example.org", "/").await;
        assert_eq!(s, 200, "{body}");
        assert!(body.starts_with("upstream=a\n"), "{body}");
    }
    assert_eq!(connect_failures(&v).await, failures);

    // Bring b back on the same port: health checks put it back in rotation.
    let b2 = Upstream::start_on(b_addr, "b2").await;
    eventually("b2 serves again", || async {
        let (_, body) = v.get("chat.example.org", "/").await;
        body.starts_with("upstream=b2\n").then_some(())
    })
    .await;
    assert!(b2.hits.load(Ordering::SeqCst) > 0);
    eventually("health check marks b up", || async {
        (metric(&v.metrics().await, "vestibule_upstream_healthy", &label) == Some(1.0)).then_some(())
    })
    .await;
}

/// A server that answers the first request of each connection, and holds the next one on a kept-alive
/// connection (reports it, waits for `go`), then stops listening and drops that connection unanswered:
/// a server that died while vestibule kept a pooled connection to it.
struct DyingServer {
    addr: std::net::SocketAddr,
    held: tokio::sync::mpsc::Receiver<()>,
    go: Option<tokio::sync::oneshot::Sender<()>>,
}

impl DyingServer {
    async fn start() -> DyingServer {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (held_tx, held) = tokio::sync::mpsc::channel(1);
        let (go, go_rx) = tokio::sync::oneshot::channel::<()>();
        let go_rx = std::sync::Arc::new(tokio::sync::Mutex::new(Some(go_rx)));
        tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                let (held_tx, go_rx) = (held_tx.clone(), go_rx.clone());
                let task = async move {
                    let mut served = 0;
                    let mut buf = Vec::new();
                    loop {
                        let mut chunk = [0u8; 4096];
                        let Ok(n) = sock.read(&mut chunk).await else {
                            return false;
                        };
                        if n == 0 {
                            return false;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                            continue;
                        };
                        buf.drain(..end + 4);
                        if served == 0 {
                            let body = "upstream=a\n";
                            let head =
                                format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len());
                            if sock.write_all(head.as_bytes()).await.is_err() {
                                return false;
                            }
                            served += 1;
                            continue;
                        }
                        // The second request on this connection: hold it until the test says go.
                        let _ = held_tx.send(()).await;
                        if let Some(rx) = go_rx.lock().await.take() {
                            let _ = rx.await;
                        }
                        return true; // the connection drops unanswered
                    }
                };
                // The listener goes away with the held connection: the server is dead.
                if task.await {
                    return;
                }
            }
        });
        DyingServer {
            addr,
            held,
            go: Some(go),
        }
    }
}

/// A request whose kept-alive connection to a dead server broke is retried on another server, even
/// when other requests moved round robin on meanwhile (it used to be retried on the dead one, whose
/// refused connection then ended it with a 502).
#[tokio::test(flavor = "multi_thread")]
async fn a_request_broken_on_a_reused_connection_is_retried_on_another_server() {
    let mut a = DyingServer::start().await;
    let b = Upstream::start("b").await;
    let cfg = MainConfig::new()
        .table(
            Table::new("upstream.mm")
                .set("servers", [a.addr, b.addr])
                .set("health_check", raw("false")),
        )
        .vhost(Vhost::new("chat.example.org").upstream_named("mm"));
    let v = Vestibule::start(cfg).await;
    // Two requests: one answered by a (which leaves a kept-alive connection to it in vestibule's pool),
    // one by b; if a answered the second, b takes a third. Then round robin's next pick is a.
    let mut answers = Vec::new();
    for _request in 0..2 {
        let (s, body) = v.get("chat.example.org", "/").await;
        assert_eq!(s, 200, "{body}");
        answers.push(body.lines().next().unwrap_or("").to_string());
    }
    let mut sorted = answers.clone();
    sorted.sort();
    assert_eq!(sorted, ["upstream=a", "upstream=b"], "round robin uses both");
    if answers[1] == "upstream=a" {
        let (s, body) = v.get("chat.example.org", "/").await;
        assert_eq!((s, body.lines().next()), (200, Some("upstream=b")), "{body}");
    }

    let url = v.url("/");
    let broken = tokio::spawn(async move {
        let r = client()
            .get(url)
            .header("host", "chat.example.org")
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    });
    tokio::time::timeout(patience(), a.held.recv())
        .await
        .expect("the request reached a on its kept-alive connection")
        .unwrap();
    // Meanwhile another request takes b's turn: round robin's next pick is a again.
    let (s, body) = v.get("chat.example.org", "/").await;
    assert_eq!((s, body.lines().next()), (200, Some("upstream=b")), "{body}");
    a.go.take().unwrap().send(()).unwrap();
    let (s, body) = broken.await.unwrap();
    assert_eq!(s, 200, "{body}\n{}", v.log());
    assert!(body.starts_with("upstream=b\n"), "{body}");
}
