//! Covered: body over the limit by Content-Length -> 413 before the upstream sees anything; chunked
//! body over the limit -> 413; route-specific limit; upstream refused -> 502 page; upstream too slow
//! -> 504 page within the route's read timeout.

use std::sync::atomic::Ordering;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

#[tokio::test(flavor = "multi_thread")]
async fn body_limits() {
    let a = Upstream::start("a").await;
    let chat = Vhost::new("chat.example.org")
        .upstream(a.addr)
        .max_body("1KiB")
        .route("^/upload$", |r| r.set("max_body", "64KiB"));
    let v = Vestibule::start(chat).await;
    let c = client();

    let small = c
        .post(v.url("/x"))
        .header("host", "chat.example.org")
        .body(vec![b'x'; 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(small.status(), 200);
    assert!(small.text().await.unwrap().contains("body_bytes=1024\n"));
    let hits = a.hits.load(Ordering::SeqCst);

    let big = c
        .post(v.url("/x"))
        .header("host", "chat.example.org")
        .body(vec![b'x'; 1025])
        .send()
        .await
        .unwrap();
    assert_eq!(big.status(), 413);
    assert!(big
        .text()
        .await
        .unwrap()
        .contains("larger than this site accepts"));
    assert_eq!(
        a.hits.load(Ordering::SeqCst),
        hits,
        "the upstream must not see a refused body"
    );

    let upload = c
        .post(v.url("/upload"))
        .header("host", "chat.example.org")
        .body(vec![b'x'; 60 << 10])
        .send()
        .await
        .unwrap();
    assert_eq!(upload.status(), 200, "route limit applies");

    // Chunked: no length up front, so the limit is enforced while streaming: what passed the limit
    // is cut off, and the upstream never gets a whole request.
    let complete = a.complete.load(Ordering::SeqCst);
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", v.cfg.http_port))
        .await
        .unwrap();
    let mut req =
        b"POST /x HTTP/1.1\r\nHost: chat.example.org\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..4 {
        req.extend_from_slice(b"200\r\n");
        req.extend_from_slice(&[b'y'; 0x200]);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    s.write_all(&req).await.unwrap();
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp).await;
    let resp = String::from_utf8_lossy(&resp);
    assert!(resp.starts_with("HTTP/1.1 413"), "{resp}");
    assert_eq!(
        a.complete.load(Ordering::SeqCst),
        complete,
        "the upstream must not get the whole body"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_gateway_and_gateway_timeout() {
    let a = Upstream::start("a").await;
    let closed = free_port();
    let cfg = MainConfig::new()
        .vhost(Vhost::new("down.test").upstream(format!("127.0.0.1:{closed}")))
        .vhost(
            Vhost::new("slow.test")
                .upstream(a.addr)
                .route("^/slow$", |r| r.set("read_timeout", "1s")),
        );
    let v = Vestibule::start(cfg).await;
    let (s, body) = v.get("down.test", "/").await;
    assert_eq!(s, 502);
    assert!(body.starts_with("502 Bad Gateway"), "{body}");

    let started = std::time::Instant::now();
    let (s, body) = v.get("slow.test", "/slow").await;
    assert_eq!(s, 504);
    assert!(body.starts_with("504 Gateway Timeout"), "{body}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "answered before the upstream did"
    );
}
