//! A hostile client against the proxy listeners, over raw TCP (real clients normalise what an
//! attacker would not). Covered:
//! - every spelling of a guarded remote-cluster path (percent-encoded, `%2F`, doubled slashes, dot
//!   segments), plain and as a websocket upgrade, is refused from a foreign address, and reaches
//!   the upstream from an allowed one;
//! - `Content-Length: 5, 5` and a repeated identical header reach the upstream as one value;
//! - idle keep-alive connections (HTTP/1.1 and HTTP/2) are closed after `keepalive_timeout`;
//! - a head trickled a byte at a time, and an HTTP/2 preface that never comes, are cut at
//!   `client_header_timeout`;
//! - a head over `max_header_size` gets 431, over HTTP/1.1 and HTTP/2;
//! - a TLS connection that never finishes its handshake is closed at `handshake_timeout`;
//! - `max_connections_per_ip` refuses the extra connection of one address, not another's;
//! - pipelined HTTP/1.1 requests are answered in order;
//! - a push client outside `allow` gets 403 from its headers, without sending its body.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::*;

/// One request (sent as given, `Connection: close` added), the whole answer.
async fn raw(from: [u8; 4], to: SocketAddr, head: &str) -> String {
    let mut s = connect_from(&IpAddr::from(from).to_string(), to.port()).await;
    s.write_all(format!("{head}Connection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    until_closed(&mut s).await
}

/// A stand-in upstream behind vestibule's plain listener, as vhost `chat.test`.
async fn chat_behind_vestibule() -> (Upstream, Vestibule) {
    let a = Upstream::start("a").await;
    let v = Vestibule::start(Vhost::new("chat.test").upstream(a.addr)).await;
    (a, v)
}

fn status(resp: &str) -> u16 {
    resp.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn no_spelling_of_a_guarded_path_escapes_the_guard() {
    let a = Upstream::start("a").await;
    let chat = Vhost::new("chat.test")
        .upstream(a.addr)
        .remote_cluster(&["127.0.0.1/32"]);
    let v = Vestibule::start(chat).await;
    let to = SocketAddr::from(([127, 0, 0, 1], v.cfg.http_port));
    let spellings = [
        "/api/v4/remotecluster/ping",
        "/api/v4/%72emotecluster/ping",
        "/api/v4/remotecluster%2fping",
        "/api/v4/remotecluster%2Fping",
        "/%61pi/v4/remotecluster/ping",
        "/api/v4//remotecluster/ping",
        "//api/v4/remotecluster/ping",
        "/api/v4/./remotecluster/ping",
        "/api/v4/x/../remotecluster/ping",
        "/api/v4/x/%2e%2e/remotecluster/ping",
        "/api/v4/remotecluster/%70%69%6e%67",
        "/api/v4/remotecluster/ping/.",
        "/api/%76%34/remotecluster/msg",
        "/api/v4/remotecluster/upload/%75p1",
        "/api/v4/remotecluster/user1%2fimage",
    ];
    for path in spellings {
        for upgrade in [false, true] {
            let extra = if upgrade {
                "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            } else {
                ""
            };
            let before = a.hits.load(Ordering::SeqCst);
            let head = format!("GET {path} HTTP/1.1\r\nHost: chat.test\r\n{extra}");
            let resp = raw([127, 0, 0, 2], to, &head).await;
            assert_eq!(
                status(&resp),
                403,
                "{path} (upgrade: {upgrade}) from 127.0.0.2:\n{resp}"
            );
            assert_eq!(
                a.hits.load(Ordering::SeqCst),
                before,
                "{path} reached the upstream"
            );
        }
        // From the allowed network the same spelling reaches Mattermost, as sent.
        let resp = raw(
            [127, 0, 0, 1],
            to,
            &format!("GET {path} HTTP/1.1\r\nHost: chat.test\r\n"),
        )
        .await;
        assert_eq!(status(&resp), 200, "{path} from 127.0.0.1:\n{resp}");
        assert!(
            resp.contains(&format!("path={path}\n")) || resp.contains(path),
            "{resp}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn content_length_reaches_the_upstream_as_one_value() {
    let (_upstream, v) = chat_behind_vestibule().await;
    let to = SocketAddr::from(([127, 0, 0, 1], v.cfg.http_port));
    for lengths in [
        "Content-Length: 5, 5\r\n",
        "Content-Length: 5\r\nContent-Length: 5\r\n",
    ] {
        let mut s = connect_from("127.0.0.1", to.port()).await;
        let req = format!("POST /x HTTP/1.1\r\nHost: chat.test\r\n{lengths}Connection: close\r\n\r\nhello");
        s.write_all(req.as_bytes()).await.unwrap();
        let resp = until_closed(&mut s).await;
        assert_eq!(status(&resp), 200, "{lengths:?}:\n{resp}");
        assert_eq!(
            seen_header(&resp, "content-length"),
            ["5"],
            "{lengths:?}:\n{resp}"
        );
        assert!(resp.contains("body_bytes=5\n"), "{resp}");
    }
    let resp = raw(
        [127, 0, 0, 1],
        to,
        "POST /x HTTP/1.1\r\nHost: chat.test\r\nContent-Length: 5, 6\r\n",
    )
    .await;
    assert_eq!(status(&resp), 400, "{resp}");
}

/// Limits small enough to watch: 1 s keep-alive, 2 s for a head, 4 KiB heads, 2 connections per address.
fn limited(upstream: SocketAddr) -> MainConfig {
    MainConfig::new()
        .https()
        .proxy("keepalive_timeout", "1s")
        .proxy("client_header_timeout", "2s")
        .proxy("max_header_size", "4KiB")
        .proxy("max_connections_per_ip", 2u16)
        .table(Table::new("tls").set("handshake_timeout", "1s"))
        .vhost(
            Vhost::new("chat.test")
                .upstream(upstream)
                .self_signed()
                .no_redirect(),
        )
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_and_slow_clients_are_cut_off() {
    let a = Upstream::start("a").await;
    let v = Vestibule::start(limited(a.addr)).await;
    let to = SocketAddr::from(([127, 0, 0, 1], v.cfg.http_port));

    // Keep-alive: the first answer comes, then the idle connection is closed by the server.
    // Each client from its own address: the harness's readiness probes (from 127.0.0.1) may still
    // count against max_connections_per_ip = 2.
    let mut s = connect_from("127.0.0.11", to.port()).await;
    s.write_all(b"GET /one HTTP/1.1\r\nHost: chat.test\r\n\r\n")
        .await
        .unwrap();
    let resp = until_closed(&mut s).await;
    assert_eq!(status(&resp), 200, "{resp}");
    assert!(resp.contains("path=/one"), "{resp}");

    // A head trickled one byte every 200 ms keeps every read short; only the whole-head deadline
    // ends it, well before the 200 bytes would be through.
    let mut s = connect_from("127.0.0.12", to.port()).await;
    let head = format!(
        "GET /slow HTTP/1.1\r\nHost: chat.test\r\nX-Pad: {}\r\n\r\n",
        "p".repeat(200)
    );
    let mut cut = false;
    for b in head.bytes() {
        if s.write_all(&[b]).await.is_err() {
            cut = true;
            break;
        }
        let mut buf = [0u8; 64];
        match tokio::time::timeout(Duration::from_millis(200), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                cut = true;
                break;
            }
            Ok(Ok(_)) => panic!("no answer expected to an unfinished head"),
            Err(_) => {}
        }
    }
    assert!(cut, "a trickled head must be cut at client_header_timeout");
    let m = v.metrics().await;
    assert!(
        metric(
            &m,
            "vestibule_http_refused_total",
            &[("reason", "header_timeout")]
        ) >= Some(1.0),
        "{m}"
    );

    // A TLS client that never sends its ClientHello is closed at handshake_timeout.
    let mut s = connect_from("127.0.0.13", v.https_addr().port()).await;
    assert_eq!(until_closed(&mut s).await, "");
    let mut s = connect_from("127.0.0.14", v.https_addr().port()).await;
    s.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]).await.unwrap(); // a ClientHello that never ends
    assert_eq!(until_closed(&mut s).await, "");
    let m = v.metrics().await;
    assert!(
        metric(
            &m,
            "vestibule_http_refused_total",
            &[("reason", "tls_handshake_timeout")]
        ) >= Some(2.0),
        "{m}"
    );

    // An HTTP/2 client that never sends its connection preface is closed at client_header_timeout
    // (s_client negotiates h2, then waits for the server to close).
    let port = v.https_addr().port().to_string();
    let s_client = tokio::process::Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{port}"),
            "-servername",
            "chat.test",
        ])
        .args(["-alpn", "h2", "-ign_eof"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(patience(), s_client)
        .await
        .expect("an idle h2 connection must be closed")
        .expect("openssl is required: run `bash .ci/prereqs test`");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("ALPN protocol: h2"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_heads_and_connection_floods_are_refused() {
    let a = Upstream::start("a").await;
    let v = Vestibule::start(limited(a.addr)).await;
    let to = SocketAddr::from(([127, 0, 0, 1], v.cfg.http_port));

    let ok = raw(
        [127, 0, 0, 15],
        to,
        &format!(
            "GET /fits HTTP/1.1\r\nHost: chat.test\r\nX-Pad: {}\r\n",
            "p".repeat(3000)
        ),
    )
    .await;
    assert_eq!(status(&ok), 200, "{ok}");
    let hits = a.hits.load(Ordering::SeqCst);
    let big = raw(
        [127, 0, 0, 16],
        to,
        &format!(
            "GET /big HTTP/1.1\r\nHost: chat.test\r\nX-Pad: {}\r\n",
            "p".repeat(8000)
        ),
    )
    .await;
    assert_eq!(status(&big), 431, "{big}");
    assert_eq!(a.hits.load(Ordering::SeqCst), hits);
    // HTTP/2 has the same bound on a header list.
    let port = v.https_addr().port();
    for (pad, want) in [(3000, "200"), (8000, "431")] {
        let out = std::process::Command::new("curl")
            .args([
                "-sSk",
                "--http2",
                "--interface",
                "127.0.0.17",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
            ])
            .args(["--resolve", &format!("chat.test:{port}:127.0.0.1"), "-H"])
            .arg(format!("X-Pad: {}", "p".repeat(pad)))
            .arg(format!("https://chat.test:{port}/h2"))
            .output()
            .expect("curl is required: run `bash .ci/prereqs test`");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            want,
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // Two idle connections from 127.0.0.2 hold its share; its third is closed unanswered, while
    // another address is still served.
    let _held = [
        connect_from("127.0.0.2", to.port()).await,
        connect_from("127.0.0.2", to.port()).await,
    ];
    let m = eventually("both connections counted", || async {
        let m = v.metrics().await;
        (metric(&m, "vestibule_http_connections_active", &[]) == Some(2.0)).then_some(m)
    })
    .await;
    drop(m);
    let third = raw([127, 0, 0, 2], to, "GET / HTTP/1.1\r\nHost: chat.test\r\n").await;
    assert_eq!(third, "", "the third connection from one address is refused");
    let other = raw([127, 0, 0, 3], to, "GET / HTTP/1.1\r\nHost: chat.test\r\n").await;
    assert_eq!(status(&other), 200, "{other}");
    let m = v.metrics().await;
    assert!(
        metric(
            &m,
            "vestibule_http_refused_total",
            &[("reason", "max_connections_per_ip")]
        ) >= Some(1.0),
        "{m}"
    );
    assert!(
        metric(
            &m,
            "vestibule_http_refused_total",
            &[("reason", "header_too_large")]
        ) >= Some(1.0),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn pipelined_requests_are_answered_in_order() {
    let (_upstream, v) = chat_behind_vestibule().await;
    let to = SocketAddr::from(([127, 0, 0, 1], v.cfg.http_port));
    let mut s = connect_from("127.0.0.1", to.port()).await;
    s.write_all(
        b"GET /one HTTP/1.1\r\nHost: chat.test\r\n\r\nPOST /two HTTP/1.1\r\nHost: chat.test\r\nContent-Length: 3\r\n\r\nabcGET /three HTTP/1.1\r\nHost: chat.test\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    let all = until_closed(&mut s).await;
    let answers: Vec<&str> = all.matches("HTTP/1.1 200").collect();
    assert_eq!(answers.len(), 3, "{all}");
    let (one, two, three) = (
        all.find("path=/one").unwrap_or(usize::MAX),
        all.find("path=/two").unwrap_or(usize::MAX),
        all.find("path=/three").unwrap_or(usize::MAX),
    );
    assert!(one < two && two < three && three < usize::MAX, "{all}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_push_client_outside_allow_is_refused_from_its_headers() {
    let cfg = MainConfig::new()
        .push(|p| p.set("allow", ["127.0.0.1/32"]))
        .push_route(&["apple_rn"], |r| r.set("upstream", "http://127.0.0.1:9"));
    let v = Vestibule::start(cfg).await;
    let port = v.port("push");
    let to = SocketAddr::from(([127, 0, 0, 1], port));
    eventually("the push listener", || async {
        TcpStream::connect(to).await.ok()
    })
    .await;
    let mut s = connect_from("127.0.0.2", to.port()).await;
    // Headers announce 60 KB; the body never comes. The 403 must not wait for it.
    s.write_all(b"POST /api/v1/send_push HTTP/1.1\r\nHost: push\r\nContent-Length: 60000\r\n\r\n{")
        .await
        .unwrap();
    let mut buf = vec![0u8; 1024];
    let n = tokio::time::timeout(patience(), s.read(&mut buf))
        .await
        .expect("an answer before the body")
        .unwrap();
    let resp = String::from_utf8_lossy(&buf[..n]);
    assert_eq!(status(&resp), 403, "{resp}");
    let m = v.metrics().await;
    assert_eq!(
        metric(&m, "vestibule_push_forbidden_total", &[]),
        Some(1.0),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn descriptor_exhaustion_backs_off_and_admin_still_answers() {
    let (_upstream, v) = chat_behind_vestibule().await;
    // Every admin request on a new connection (closed after the answer), as curl or a health check
    // would: each needs an accept while descriptors are exhausted.
    let admin = SocketAddr::from(([127, 0, 0, 1], v.cfg.admin_port));
    let open = std::fs::read_dir(format!("/proc/{}/fd", v.pid()))
        .unwrap()
        .count();
    let before = std::process::Command::new("prlimit")
        .args([
            "--pid",
            &v.pid().to_string(),
            "--nofile",
            "--raw",
            "--noheadings",
            "--output=SOFT,HARD",
        ])
        .output()
        .expect("prlimit (util-linux) is needed for this test: apt-get install util-linux");
    let open_limit = String::from_utf8_lossy(&before.stdout)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(":");
    // Only the soft limit: raising a hard limit back needs privileges a sandbox may not have.
    let hard = open_limit.split(':').nth(1).unwrap_or("4096").to_string();
    let limit = format!("--nofile={}:{hard}", open + 4);
    let out = std::process::Command::new("prlimit")
        .args(["--pid", &v.pid().to_string(), &limit])
        .output()
        .expect("prlimit (util-linux) is needed for this test: apt-get install util-linux");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // More connections than descriptors: the rest wait in the backlog, and accept fails.
    let to = SocketAddr::from(([127, 0, 0, 1], v.cfg.http_port));
    let mut held = Vec::new();
    for _ in 0..20 {
        held.push(TcpStream::connect(to).await.unwrap());
    }
    // The loop backs off (100 ms doubling to 1 s, and waits while the admin listener needs its
    // reserve back): a few failures, not a spin of thousands.
    let m = eventually("accept failures counted", || async {
        let m = raw([127, 0, 0, 1], admin, "GET /metrics HTTP/1.1\r\nHost: admin\r\n").await;
        (metric(&m, "vestibule_accept_errors_total", &[("listener", "HTTP")])? >= 1.0).then_some(m)
    })
    .await;
    let failures = metric(&m, "vestibule_accept_errors_total", &[("listener", "HTTP")]).unwrap();
    assert!(failures < 100.0, "accept spins: {failures} failures\n{m}");
    for _ in 0..5 {
        let r = raw([127, 0, 0, 1], admin, "GET /healthz HTTP/1.1\r\nHost: admin\r\n").await;
        assert_eq!(status(&r), 200, "admin must still answer: {r}");
    }
    let lines = v.log().matches("cannot accept connections").count();
    assert!(
        (1..=3).contains(&lines),
        "one log line per interval, found {lines}:\n{}",
        v.log()
    );

    // Descriptors back: connections are served again.
    drop(held);
    let out = std::process::Command::new("prlimit")
        .args(["--pid", &v.pid().to_string(), &format!("--nofile={open_limit}")])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (status, _) = v.get("chat.test", "/again").await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn http2_clients_get_early_refusals_whole() {
    let a = Upstream::start("a").await;
    let cfg = MainConfig::new().https().vhost(
        Vhost::new("chat.test")
            .upstream(a.addr)
            .self_signed()
            .max_body("1KiB")
            .remote_cluster(&["10.0.0.0/8"]),
    );
    let v = Vestibule::start(cfg).await;
    let body = v.cfg.path().join("body");
    std::fs::write(&body, vec![b'x'; 200_000]).unwrap();
    let port = v.https_addr().port();
    // A request with a body the proxy refuses before reading it: the guard's 403 and max_body's 413.
    for (path, want) in [("/api/v4/remotecluster/ping", "403"), ("/upload", "413")] {
        for attempt in 0..10 {
            let out = std::process::Command::new("curl")
                .args([
                    "-sSk",
                    "--http2",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code} %{http_version}",
                ])
                .args([
                    "--resolve",
                    &format!("chat.test:{port}:127.0.0.1"),
                    "--data-binary",
                ])
                .arg(format!("@{}", body.display()))
                .arg(format!("https://chat.test:{port}{path}"))
                .output()
                .expect("curl is required: run `bash .ci/prereqs test`");
            let (stdout, stderr) = (
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
            );
            assert!(out.status.success(), "{path} attempt {attempt}: {stderr}");
            assert_eq!(stdout, format!("{want} 2"), "{path} attempt {attempt}: {stderr}");
        }
    }
    assert_eq!(a.hits.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_http2_connections_are_closed_after_keepalive_timeout() {
    use crate::support::tls::{client_config, TestCa};
    let a = Upstream::start("a").await;
    let ca = TestCa::new("hostile test CA");
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = ca
        .leaf(&["chat.test"], &rcgen::PKCS_ECDSA_P256_SHA256)
        .write(dir.path(), "chat");
    let cfg = MainConfig::new()
        .https()
        .proxy("keepalive_timeout", "1s")
        .vhost(Vhost::new("chat.test").upstream(a.addr).cert(&cert, &key));
    let v = Vestibule::start(cfg).await;
    let tcp = TcpStream::connect(v.https_addr()).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("chat.test").unwrap();
    let tls = tokio_rustls::TlsConnector::from(client_config(&[&ca.der], &[b"h2"]))
        .connect(name, tcp)
        .await
        .unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tls),
    )
    .await
    .unwrap();
    let conn = tokio::spawn(conn);
    let req = hyper::Request::get("https://chat.test/one")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    // Nothing more is sent: the server ends the connection (GOAWAY, close) after the idle timeout.
    tokio::time::timeout(patience(), conn)
        .await
        .expect("an idle HTTP/2 connection must be closed")
        .unwrap()
        .ok();
    assert!(sender.is_closed());
}
