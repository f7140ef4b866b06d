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
