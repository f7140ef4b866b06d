//! Covered: vhost by exact Host, by wildcard (one and several labels deep), longest wildcard, Host with
//! port and odd case, path routes with their own upstream, unknown host -> 421 page or 404 page,
//! default vhost, and responses streamed (first chunk arrives before the upstream finishes).

use crate::support::*;

fn chat(a: &Upstream) -> Vhost {
    Vhost::new("chat.example.org").upstream(a.addr)
}

#[tokio::test(flavor = "multi_thread")]
async fn routes_by_host_wildcard_and_path() {
    let a = Upstream::start("a").await;
    let b = Upstream::start("b").await;
    let c = Upstream::start("c").await;
    let cfg = MainConfig::new()
        .vhost(chat(&a))
        .vhost(
            Vhost::new("*.example.org")
                .upstream(b.addr)
                .route("^/api/", |r| r.set("upstream", [c.addr])),
        )
        .vhost(Vhost::new("*.office.example.org").file("office").upstream(c.addr));
    let v = Vestibule::start(cfg).await;

    let (s, body) = v.get("chat.example.org", "/").await;
    assert_eq!(s, 200);
    assert!(body.starts_with("upstream=a\n"), "{body}");
    let (_, body) = v.get("CHAT.example.org:8080", "/x?y=1").await;
    assert!(
        body.starts_with("upstream=a\n") && body.contains("path=/x?y=1\n"),
        "{body}"
    );

    let (_, body) = v.get("www.example.org", "/").await;
    assert!(body.starts_with("upstream=b\n"), "{body}");
    let (_, body) = v.get("deep.www.example.org", "/").await;
    assert!(body.starts_with("upstream=b\n"), "{body}");
    let (_, body) = v.get("docs.office.example.org", "/").await;
    assert!(body.starts_with("upstream=c\n"), "longest wildcard: {body}");

    let (_, body) = v.get("www.example.org", "/api/v4/users").await;
    assert!(body.starts_with("upstream=c\n"), "path route: {body}");
    let (_, body) = v.get("www.example.org", "/apix").await;
    assert!(body.starts_with("upstream=b\n"), "{body}");

    let (s, body) = v.get("unknown.test", "/").await;
    assert_eq!(s, 421);
    assert!(body.contains("does not serve the requested site name"), "{body}");
    assert_eq!(a.hits.load(std::sync::atomic::Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_host_status_and_default_vhost() {
    let a = Upstream::start("a").await;
    let cfg = MainConfig::new()
        .proxy("unknown_host_status", 404u16)
        .vhost(chat(&a));
    let v = Vestibule::start(cfg).await;
    let (s, body) = v.get("other.test", "/").await;
    assert_eq!(s, 404);
    assert!(body.starts_with("404 Not Found"), "{body}");
    drop(v);

    let cfg = MainConfig::new().proxy("default_vhost", "chat").vhost(chat(&a));
    let v = Vestibule::start(cfg).await;
    let (s, body) = v.get("other.test", "/").await;
    assert_eq!(s, 200);
    assert!(body.starts_with("upstream=a\n"), "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn responses_are_streamed() {
    let a = Upstream::start("a").await;
    let v = Vestibule::start(chat(&a)).await;
    let mut resp = client()
        .get(v.url("/stream"))
        .header("host", "chat.example.org")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // The upstream sends its second chunk only after we saw the first: a buffering proxy would hang here.
    let first = resp.chunk().await.unwrap().expect("first chunk");
    assert_eq!(&first[..], b"first;");
    a.release.notify_one();
    let rest = resp.chunk().await.unwrap().expect("second chunk");
    assert_eq!(&rest[..], b"second");
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_names_resolve_and_connections_are_reused() {
    let a = Upstream::start("a").await;
    // `localhost` goes through hickory (hosts file); it may also yield ::1, where nothing listens:
    // that address must be skipped transparently.
    let chat = Vhost::new("chat.example.org").table(
        Table::new("upstream")
            .set("servers", [format!("localhost:{}", a.addr.port())])
            .set("health_check", false),
    );
    let v = Vestibule::start(chat).await;
    for _ in 0..5 {
        let (s, body) = v.get("chat.example.org", "/").await;
        assert_eq!(s, 200, "{body}");
        assert!(body.starts_with("upstream=a\n"));
    }
    let before = a.conns.load(std::sync::atomic::Ordering::SeqCst);
    for _ in 0..10 {
        assert_eq!(v.get("chat.example.org", "/").await.0, 200);
    }
    assert_eq!(
        a.conns.load(std::sync::atomic::Ordering::SeqCst),
        before,
        "sequential requests reuse the kept-alive upstream connection"
    );
}
