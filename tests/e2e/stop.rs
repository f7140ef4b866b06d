//! Covered: SIGTERM stops an idle vestibule at once rather than after its whole grace period; a
//! request in flight, and an SMTP message in the middle of DATA, when the signal arrives still
//! complete before the process exits.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

/// Well under the 30 s grace period the tests configure: a stop that waited for it would miss this.
const PROMPT: Duration = Duration::from_secs(15);

/// A 30 s grace period: a stop that took it would show.
fn grace_30s() -> MainConfig {
    MainConfig::new().grace_period("30s")
}

/// SIGTERM while work is in flight (`busy` says which): vestibule receives it and keeps running.
async fn sigterm_while_busy(v: &mut Vestibule, busy: &str) {
    v.signal(libc::SIGTERM);
    eventually("vestibule saw SIGTERM", || async {
        v.log().contains("SIGTERM received").then_some(())
    })
    .await;
    assert!(
        v.exit_within(Duration::ZERO).await.is_none(),
        "exited {busy}:\n{}",
        v.log()
    );
}

fn chat(upstream: std::net::SocketAddr) -> MainConfig {
    grace_30s().vhost(Vhost::new("chat.example.org").upstream(upstream))
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_stops_an_idle_server_without_waiting_for_the_grace_period() {
    let a = Upstream::start("a").await;
    let mut v = Vestibule::start(chat(a.addr)).await;
    assert_eq!(v.get("chat.example.org", "/").await.0, 200);
    v.signal(libc::SIGTERM);
    let status = v.exit_within(PROMPT).await;
    assert!(
        status.is_some_and(|s| s.success()),
        "still running (or failed: {status:?}) {PROMPT:?} after SIGTERM with nothing in flight:\n{}",
        v.log()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_lets_a_request_in_flight_finish() {
    let a = Upstream::start("a").await;
    let mut v = Vestibule::start(chat(a.addr)).await;
    let mut resp = client()
        .get(v.url("/stream"))
        .header("host", "chat.example.org")
        .send()
        .await
        .expect("GET /stream");
    assert_eq!(resp.status(), 200);
    // The first chunk is through: the request is in flight until the upstream is released.
    let first = resp.chunk().await.expect("first chunk").expect("a chunk");
    assert_eq!(&first[..], b"first;");
    sigterm_while_busy(&mut v, "with a request in flight").await;
    a.release.notify_one();
    let mut rest = Vec::new();
    while let Some(chunk) = resp.chunk().await.expect("the rest of the body") {
        rest.extend_from_slice(&chunk);
    }
    assert_eq!(rest, b"second");
    let status = v.exit_within(PROMPT).await;
    assert!(
        status.is_some_and(|s| s.success()),
        "not stopped {PROMPT:?} after the last request finished ({status:?}):\n{}",
        v.log()
    );
}

/// Read from `s` until `what` shows up.
async fn read_until(s: &mut tokio::net::TcpStream, what: &str) -> String {
    let mut buf = vec![0u8; 4096];
    let mut seen = String::new();
    while !seen.contains(what) {
        let n = s.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed before {what}: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    seen
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_lets_an_smtp_message_in_data_finish() {
    let cfg = grace_30s().mail(crate::mail::relay_test);
    let mut v = Vestibule::start(cfg).await;
    let port = v.port("smtp");
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    read_until(&mut s, "220").await;
    s.write_all(b"EHLO client.test\r\nMAIL FROM:<a@relay.test>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n")
        .await
        .unwrap();
    read_until(&mut s, "354").await;
    s.write_all(b"Subject: stop\r\n\r\nfirst half, ").await.unwrap();
    sigterm_while_busy(&mut v, "in the middle of DATA").await;
    s.write_all(b"second half\r\n.\r\n").await.unwrap();
    let reply = read_until(&mut s, "\r\n").await;
    assert!(reply.starts_with("250 "), "{reply}");
    let status = v.exit_within(PROMPT).await;
    assert!(
        status.is_some_and(|s| s.success()),
        "not stopped {PROMPT:?} after the message was queued ({status:?}):\n{}",
        v.log()
    );
}
