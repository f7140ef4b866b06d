//! Covered: SIGHUP with a changed upstream switches new requests to it while an open websocket keeps
//! working on the old one; a broken configuration on SIGHUP is refused, logged with its position, and
//! the previous configuration keeps serving; reload results counted in metrics.

use crate::support::*;
use crate::websocket::{connect, roundtrip};

fn chat(upstream: std::net::SocketAddr) -> Vhost {
    Vhost::new("chat.example.org")
        .upstream(upstream)
        .route("^/api/v4/websocket$", |r| r)
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_swaps_upstream_without_dropping_websocket() {
    let a = Upstream::start("a").await;
    let b = Upstream::start("b").await;
    let v = Vestibule::start(chat(a.addr)).await;
    let mut ws = connect(&v, "chat.example.org", "/api/v4/websocket").await;
    assert_eq!(roundtrip(&mut ws, "before").await, "a:before");

    v.cfg.update(|tree| tree.vhost(chat(b.addr)));
    v.signal(libc::SIGHUP);
    eventually("new requests reach b", || async {
        let (_, body) = v.get("chat.example.org", "/").await;
        body.starts_with("upstream=b\n").then_some(())
    })
    .await;
    assert_eq!(
        roundtrip(&mut ws, "after").await,
        "a:after",
        "the open websocket survives the reload"
    );
    let m = v.metrics().await;
    assert_eq!(
        metric(&m, "vestibule_config_reloads_total", &[("result", "success")]),
        Some(1.0),
        "{m}"
    );

    // A broken tree is refused; b keeps serving.
    let misspelt = Vhost::new("chat.example.org").set("upstrem", [a.addr]);
    v.cfg.update(|tree| tree.vhost(misspelt));
    v.signal(libc::SIGHUP);
    eventually("failed reload counted", || async {
        (metric(
            &v.metrics().await,
            "vestibule_config_reloads_total",
            &[("result", "failure")],
        ) == Some(1.0))
        .then_some(())
    })
    .await;
    let (s, body) = v.get("chat.example.org", "/").await;
    assert_eq!(s, 200);
    assert!(body.starts_with("upstream=b\n"), "{body}");
    let log = v.log();
    assert!(
        log.contains("chat.toml:2:1") && log.contains("unknown key `upstrem`"),
        "{log}"
    );
    assert!(log.contains("still serving the previous configuration"), "{log}");
    assert_eq!(roundtrip(&mut ws, "still").await, "a:still");
}
