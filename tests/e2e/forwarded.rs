//! Covered: X-Forwarded-For / X-Real-IP / X-Forwarded-Proto / X-Forwarded-Host set from the real
//! peer; client-supplied copies dropped (spoofing attempt); a trusted proxy's chain appended; Host
//! passed unchanged; hop-by-hop headers (and those named in Connection) removed.

use crate::support::*;

async fn echo(v: &Vestibule, headers: &[(&str, &str)]) -> String {
    let mut req = client().get(v.url("/fwd")).header("host", "chat.example.org");
    for (k, val) in headers {
        req = req.header(*k, *val);
    }
    let r = req.send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.text().await.unwrap()
}

fn chat(a: &Upstream) -> Vhost {
    Vhost::new("chat.example.org").upstream(a.addr)
}

#[tokio::test(flavor = "multi_thread")]
async fn forwarded_headers_cannot_be_spoofed() {
    let a = Upstream::start("a").await;
    let v = Vestibule::start(chat(&a)).await;

    let body = echo(&v, &[]).await;
    assert_eq!(seen_header(&body, "x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(seen_header(&body, "x-real-ip"), ["127.0.0.1"]);
    assert_eq!(seen_header(&body, "x-forwarded-proto"), ["http"]);
    assert_eq!(seen_header(&body, "x-forwarded-host"), ["chat.example.org"]);
    assert_eq!(seen_header(&body, "host"), ["chat.example.org"]);

    let body = echo(
        &v,
        &[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-real-ip", "6.6.6.6"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "evil.test"),
            ("connection", "x-private"),
            ("x-private", "secret"),
            ("keep-alive", "timeout=5"),
        ],
    )
    .await;
    assert_eq!(seen_header(&body, "x-forwarded-for"), ["127.0.0.1"], "{body}");
    assert_eq!(seen_header(&body, "x-real-ip"), ["127.0.0.1"]);
    assert_eq!(seen_header(&body, "x-forwarded-proto"), ["http"]);
    assert_eq!(seen_header(&body, "x-forwarded-host"), ["chat.example.org"]);
    assert!(
        seen_header(&body, "x-private").is_empty(),
        "header named in Connection must go: {body}"
    );
    assert!(seen_header(&body, "keep-alive").is_empty(), "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn trusted_proxy_chain_is_kept() {
    let a = Upstream::start("a").await;
    let cfg = MainConfig::new()
        .proxy("trusted_proxies", ["127.0.0.0/8"])
        .vhost(chat(&a));
    let v = Vestibule::start(cfg).await;
    let body = echo(
        &v,
        &[
            ("x-forwarded-for", "198.51.100.7"),
            ("x-real-ip", "198.51.100.7"),
            ("x-forwarded-proto", "https"),
        ],
    )
    .await;
    assert_eq!(
        seen_header(&body, "x-forwarded-for"),
        ["198.51.100.7, 127.0.0.1"],
        "{body}"
    );
    assert_eq!(seen_header(&body, "x-real-ip"), ["198.51.100.7"]);
    assert_eq!(seen_header(&body, "x-forwarded-proto"), ["https"]);
}
