//! Covered: SIGTERM stops an idle vestibule at once rather than after its whole grace period, and a
//! request in flight when the signal arrives still completes before the process exits.

use std::time::Duration;

use crate::support::*;

/// Well under the 30 s grace period the tests configure: a stop that waited for it would miss this.
const PROMPT: Duration = Duration::from_secs(15);

fn with_grace(vhosts: &[(&str, String)]) -> ConfigDir {
    let cfg = ConfigDir::new("", "", vhosts);
    let main = std::fs::read_to_string(cfg.main_file()).unwrap();
    cfg.write(
        "vestibule.toml",
        &main.replace("grace_period = \"1s\"", "grace_period = \"30s\""),
    );
    cfg
}

fn chat(upstream: std::net::SocketAddr) -> String {
    format!("server_names = [\"chat.example.org\"]\nupstream = [\"{upstream}\"]\n")
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_stops_an_idle_server_without_waiting_for_the_grace_period() {
    let a = Upstream::start("a").await;
    let mut v = Vestibule::start(with_grace(&[("chat", chat(a.addr))])).await;
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
    let mut v = Vestibule::start(with_grace(&[("chat", chat(a.addr))])).await;
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
    v.signal(libc::SIGTERM);
    eventually("vestibule saw SIGTERM", || async {
        v.log().contains("SIGTERM received").then_some(())
    })
    .await;
    assert!(
        v.exit_within(Duration::ZERO).await.is_none(),
        "exited with a request in flight:\n{}",
        v.log()
    );
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
