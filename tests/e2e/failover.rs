//! Covered: round robin over two servers; when one dies, requests keep succeeding (passive marking and
//! retry on connect failure), the active health check marks it down in metrics, and traffic goes to
//! the survivor only; when it comes back (same port), health checks bring it back into rotation.

use std::sync::atomic::Ordering;

use crate::support::*;

#[tokio::test(flavor = "multi_thread")]
async fn failover_when_one_server_dies() {
    let a = Upstream::start("a").await;
    let b = Upstream::start("b").await;
    let b_addr = b.addr;
    let health = inline(&[("path", &"/ping"), ("interval", &"200ms"), ("timeout", &"500ms")]);
    let cfg = MainConfig::new()
        .table(
            Table::new("upstream.mm")
                .set("servers", [a.addr, b.addr])
                .set("health_check", health),
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

    drop(b);
    // Every request succeeds even before the health check notices.
    for _ in 0..10 {
        let (s, body) = v.get("chat.example.org", "/").await;
        assert_eq!(s, 200, "{body}");
        assert!(body.starts_with("upstream=a\n"));
    }
    let server = b_addr.to_string();
    let label = [("server", server.as_str()), ("upstream", "mm")];
    eventually("health check marks b down", || async {
        (metric(&v.metrics().await, "vestibule_upstream_healthy", &label) == Some(0.0)).then_some(())
    })
    .await;
    let m = v.metrics().await;
    assert!(
        metric(
            &m,
            "vestibule_upstream_failures_total",
            &[("kind", "connect"), ("upstream", "mm")]
        )
        .unwrap_or(0.0)
            >= 1.0,
        "{m}"
    );

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
