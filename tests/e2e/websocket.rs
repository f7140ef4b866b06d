//! Covered: a websocket upgrade on Mattermost's path passes through the proxy (Host unchanged), echoes
//! both ways, counts in the websocket gauge while open, and is answered by the route's upstream.
//! A client that stops reading slows a flooding upstream down to its pace (backpressure): the
//! upstream stalls after what the sockets hold (about 8 MiB of 128 MiB here) and vestibule grows by
//! about 1 MiB.

use futures_util::{SinkExt, StreamExt};
use tungstenite::client::IntoClientRequest;

use crate::support::*;

/// Open a websocket to `path` through vestibule with the given Host.
pub async fn connect(
    v: &Vestibule,
    host: &str,
    path: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let mut req = format!("ws://127.0.0.1:{}{path}", v.cfg.http_port)
        .into_client_request()
        .unwrap();
    req.headers_mut().insert("host", host.parse().unwrap());
    let (ws, resp) = tokio_tungstenite::connect_async(req)
        .await
        .unwrap_or_else(|e| panic!("websocket connect: {e}\n{}", v.log()));
    assert_eq!(resp.status(), 101);
    ws
}

pub async fn roundtrip(
    ws: &mut tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    msg: &str,
) -> String {
    ws.send(tungstenite::Message::text(msg)).await.unwrap();
    loop {
        match ws.next().await.expect("websocket open").unwrap() {
            tungstenite::Message::Text(t) => return t.to_string(),
            _ => continue,
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn websocket_passthrough() {
    let a = Upstream::start("a").await;
    let ws_up = Upstream::start("ws").await;
    let cfg = ConfigDir::new(
        "",
        "",
        &[(
            "chat",
            format!(
                "server_names = [\"chat.example.org\"]\nupstream = [\"{}\"]\n\n[[route]]\npath = \"^/api/v[0-9]+/(users/)?websocket$\"\nupstream = [\"{}\"]\nread_timeout = \"600s\"\n",
                a.addr, ws_up.addr
            ),
        )],
    );
    let v = Vestibule::start(cfg).await;
    let mut ws = connect(&v, "chat.example.org", "/api/v4/websocket").await;
    assert_eq!(roundtrip(&mut ws, "hello").await, "ws:hello");
    assert_eq!(roundtrip(&mut ws, "again").await, "ws:again");
    let m = v.metrics().await;
    assert_eq!(
        metric(&m, "vestibule_websocket_connections_active", &[]),
        Some(1.0),
        "{m}"
    );
    ws.close(None).await.unwrap();
    eventually("websocket gauge back to 0", || async {
        (metric(&v.metrics().await, "vestibule_websocket_connections_active", &[]) == Some(0.0)).then_some(())
    })
    .await;
}

/// Upgrades the teardown test makes: `VESTIBULE_WS_UPGRADES` (100000 for the full check), else 5,000.
fn upgrades() -> usize {
    match std::env::var("VESTIBULE_WS_UPGRADES") {
        Ok(n) => n.trim().parse().unwrap_or_else(|e| {
            panic!("VESTIBULE_WS_UPGRADES={n:?}: {e} (a number of upgrades, e.g. 100000)")
        }),
        Err(_) => 5_000,
    }
}

/// The configuration of a vestibule serving `chat.test` over HTTP and HTTPS, its websocket route
/// going to `ws_upstream` (with `route_extra` added to the route, `extra_main` to the main file),
/// and a client TLS configuration trusting it (the certificates live in the directory returned).
pub fn chat_config(
    ws_upstream: std::net::SocketAddr,
    route_extra: &str,
    extra_main: &str,
) -> (ConfigDir, std::sync::Arc<rustls::ClientConfig>, tempfile::TempDir) {
    let ca = crate::support::tls::TestCa::new("vestibule test CA");
    let leaf = ca.leaf(&["chat.test"], &rcgen::PKCS_ECDSA_P256_SHA256);
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = leaf.write(certs.path(), "chat");
    let cfg = ConfigDir::with_tls(
        "",
        extra_main,
        &[(
            "chat",
            format!(
                "server_names = [\"chat.test\"]\nupstream = [\"{ws_upstream}\"]\nredirect = false\ntls = {{ cert = \"{}\", key = \"{}\" }}\n\n[[route]]\npath = \"^/api/v4/websocket$\"\n{route_extra}",
                cert.display(),
                key.display()
            ),
        )],
    );
    let tls = crate::support::tls::client_config(&[&ca.der], &[b"http/1.1"]);
    (cfg, tls, certs)
}

/// [`chat_config`], started.
pub async fn chat_with_tls(
    ws_upstream: std::net::SocketAddr,
    route_extra: &str,
    extra_main: &str,
) -> (Vestibule, std::sync::Arc<rustls::ClientConfig>, tempfile::TempDir) {
    let (cfg, tls, certs) = chat_config(ws_upstream, route_extra, extra_main);
    (Vestibule::start(cfg).await, tls, certs)
}

/// Where a vestibule listens (shareable between tasks, unlike the process handle).
#[derive(Clone, Copy)]
pub struct Listening {
    http: u16,
    https: std::net::SocketAddr,
}

impl Listening {
    pub fn of(v: &Vestibule) -> Listening {
        Listening {
            http: v.cfg.http_port,
            https: v.https_addr(),
        }
    }
}

/// Open a websocket to `chat.test` over HTTP, or over HTTPS with `tls`.
pub async fn open(
    v: &Vestibule,
    tls: Option<&std::sync::Arc<rustls::ClientConfig>>,
) -> Result<WsStream, tungstenite::Error> {
    open_at(Listening::of(v), tls).await
}

/// [`open`] by address.
pub async fn open_at(
    v: Listening,
    tls: Option<&std::sync::Arc<rustls::ClientConfig>>,
) -> Result<WsStream, tungstenite::Error> {
    match tls {
        None => {
            let mut req = format!("ws://127.0.0.1:{}/api/v4/websocket", v.http)
                .into_client_request()
                .unwrap();
            req.headers_mut().insert("host", "chat.test".parse().unwrap());
            Ok(tokio_tungstenite::connect_async(req).await?.0)
        }
        Some(tls) => {
            let tcp = tokio::net::TcpStream::connect(v.https).await?;
            let req = "wss://chat.test/api/v4/websocket".into_client_request().unwrap();
            let connector = tokio_tungstenite::Connector::Rustls(tls.clone());
            Ok(
                tokio_tungstenite::client_async_tls_with_config(req, tcp, None, Some(connector))
                    .await?
                    .0,
            )
        }
    }
}

/// The next text message, skipping control frames.
async fn next_text(ws: &mut WsStream) -> Result<String, String> {
    loop {
        match ws.next().await {
            Some(Ok(tungstenite::Message::Text(t))) => return Ok(t.to_string()),
            Some(Ok(tungstenite::Message::Close(c))) => return Err(format!("closed: {c:?}")),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(e.to_string()),
            None => return Err("connection ended".into()),
        }
    }
}

/// One Mattermost-like session: upgrade, `hello` first, one echo, a clean close.
async fn session(
    v: Listening,
    tls: Option<&std::sync::Arc<rustls::ClientConfig>>,
    i: usize,
) -> Result<(), String> {
    let mut ws = open_at(v, tls).await.map_err(|e| format!("upgrade: {e}"))?;
    let hello = next_text(&mut ws).await?;
    if hello != crate::support::hello::HELLO {
        return Err(format!("first message {hello:?}, not hello"));
    }
    let msg = format!("m{i}");
    ws.send(tungstenite::Message::text(msg.clone()))
        .await
        .map_err(|e| format!("send: {e}"))?;
    let echo = next_text(&mut ws).await?;
    if echo != format!("echo:{msg}") {
        return Err(format!("echo {echo:?}"));
    }
    ws.close(None).await.map_err(|e| format!("close: {e}"))?;
    while let Some(Ok(_)) = ws.next().await {}
    Ok(())
}

/// Mattermost sends `hello` the moment the upgrade completes: no upgrade may be torn down after
/// its 101, over ws or wss, with 32 at a time.
#[tokio::test(flavor = "multi_thread")]
async fn hello_first_upgrades_are_never_torn_down() {
    let hello = crate::support::hello::HelloUpstream::start().await;
    let (v, tls, _certs) = chat_with_tls(hello.addr, "", "").await;
    let at = Listening::of(&v);
    let n = upgrades();
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..32 {
        let (tls, next) = (tls.clone(), next.clone());
        workers.spawn(async move {
            let mut failures = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= n {
                    return failures;
                }
                let over_tls = (i % 2 == 1).then_some(&tls);
                let scheme = if over_tls.is_some() { "wss" } else { "ws" };
                match tokio::time::timeout(patience(), session(at, over_tls, i)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => failures.push(format!("#{i} {scheme}: {e}")),
                    Err(_) => failures.push(format!("#{i} {scheme}: no answer within {:?}", patience())),
                }
            }
        });
    }
    let mut failures = Vec::new();
    while let Some(w) = workers.join_next().await {
        failures.extend(w.expect("worker"));
    }
    assert!(
        failures.is_empty(),
        "{} of {n} upgrades failed; the first: {:?}\n{}",
        failures.len(),
        &failures[..failures.len().min(10)],
        v.log()
    );
    eprintln!("{n} upgrades (ws and wss, 32 at a time), 0 failed");
    eventually("websocket gauge back to 0", || async {
        (metric(&v.metrics().await, "vestibule_websocket_connections_active", &[]) == Some(0.0)).then_some(())
    })
    .await;
}

/// Read until the connection ends: the close frame's code, if one came.
async fn close_code(ws: &mut WsStream) -> Option<tungstenite::protocol::frame::coding::CloseCode> {
    loop {
        match ws.next().await {
            Some(Ok(tungstenite::Message::Close(frame))) => return frame.map(|f| f.code),
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => return None,
        }
    }
}

/// A stop must not wait its whole grace period for websockets that never end by themselves:
/// every tunnel is closed with 1001 (going away) at once, and the process exits.
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_closes_websockets_with_1001_at_once() {
    let hello = crate::support::hello::HelloUpstream::start().await;
    let (cfg, tls, _certs) = chat_config(hello.addr, "", "");
    // 30 s of grace: a stop that waited for the websockets would take that long.
    let main = std::fs::read_to_string(cfg.main_file()).unwrap();
    cfg.write(
        "vestibule.toml",
        &main.replace("grace_period = \"1s\"", "grace_period = \"30s\""),
    );
    let mut v = Vestibule::start(cfg).await;
    let mut ws = open(&v, None).await.expect("ws");
    let mut wss = open(&v, Some(&tls)).await.expect("wss");
    for s in [&mut ws, &mut wss] {
        assert_eq!(next_text(s).await.unwrap(), crate::support::hello::HELLO);
    }
    v.signal(libc::SIGTERM);
    for (name, s) in [("ws", &mut ws), ("wss", &mut wss)] {
        let code = tokio::time::timeout(std::time::Duration::from_secs(15), close_code(s))
            .await
            .unwrap_or_else(|_| panic!("{name}: still open 15 s after SIGTERM\n{}", v.log()));
        assert_eq!(
            code,
            Some(tungstenite::protocol::frame::coding::CloseCode::Away),
            "{name}\n{}",
            v.log()
        );
    }
    let status = v.exit_within(std::time::Duration::from_secs(15)).await;
    assert!(
        status.is_some_and(|s| s.success()),
        "not stopped after its websockets were closed ({status:?}):\n{}",
        v.log()
    );
}

/// An idle websocket is closed after its route's `read_timeout`, and logged at close with its
/// duration and the bytes of both directions.
#[tokio::test(flavor = "multi_thread")]
async fn idle_websockets_close_after_read_timeout_and_are_logged() {
    let hello = crate::support::hello::HelloUpstream::start().await;
    let (v, _tls, _certs) = chat_with_tls(
        hello.addr,
        "read_timeout = \"1s\"\n",
        "[log]\nformat = \"json\"\n",
    )
    .await;
    let mut ws = open(&v, None).await.expect("ws");
    assert_eq!(next_text(&mut ws).await.unwrap(), crate::support::hello::HELLO);
    ws.send(tungstenite::Message::text("ping")).await.unwrap();
    assert_eq!(next_text(&mut ws).await.unwrap(), "echo:ping");
    // Nothing moves from here: the tunnel ends by itself.
    let ended = tokio::time::timeout(patience(), close_code(&mut ws)).await;
    assert!(ended.is_ok(), "an idle websocket stayed open\n{}", v.log());
    let line = eventually("the websocket's access-log line", || async {
        v.log()
            .lines()
            .find(|l| l.contains("vestibule::access") && l.contains("/api/v4/websocket"))
            .map(str::to_string)
    })
    .await;
    let entry: serde_json::Value = serde_json::from_str(&line).unwrap();
    let f = &entry["fields"];
    assert_eq!(f["status"], 101, "{line}");
    // The client sent one masked 4-byte text frame (10 bytes); hello and the echo came back.
    assert_eq!(f["bytes_received"], 10, "{line}");
    let sent = f["body_bytes_sent"].as_u64().unwrap();
    assert_eq!(
        sent as usize,
        2 + crate::support::hello::HELLO.len() + 2 + "echo:ping".len(),
        "{line}"
    );
    assert!(f["request_time"].as_f64().unwrap() >= 1.0, "{line}");
    eventually("websocket gauge back to 0", || async {
        (metric(&v.metrics().await, "vestibule_websocket_connections_active", &[]) == Some(0.0)).then_some(())
    })
    .await;
}

/// A FIN from either side reaches the other at once (half-close), without waiting for the idle
/// limit: the client's FIN ends the upstream's session, whose own close comes back to the client.
#[tokio::test(flavor = "multi_thread")]
async fn fin_is_forwarded_both_ways() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let hello = crate::support::hello::HelloUpstream::start().await;
    let (v, _tls, _certs) = chat_with_tls(hello.addr, "", "").await;
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", v.cfg.http_port))
        .await
        .unwrap();
    s.write_all(b"GET /api/v4/websocket HTTP/1.1\r\nHost: chat.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
        .await
        .unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("hello") {
        let n = s.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed before hello: {:?}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    assert!(
        seen.starts_with(b"HTTP/1.1 101"),
        "{:?}",
        String::from_utf8_lossy(&seen)
    );
    s.shutdown().await.unwrap();
    // The route's read_timeout is 600 s: only the forwarded FINs end this within the patience.
    let rest = until_closed(&mut s).await;
    assert!(rest.is_empty(), "{rest:?}");
}

/// Resident memory of process `pid`, in bytes (`VmRSS` of /proc/PID/status).
fn rss_bytes(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS in /proc/PID/status");
    kib * 1024
}

/// Backpressure: an upstream that floods a client who stops reading is slowed down to the client's
/// pace. vestibule holds at most what the sockets hold, not the flood: the upstream's writes block
/// well before it sent everything, vestibule's memory does not grow with the flood, and once the
/// client reads again every byte arrives, in order.
#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_stops_reading_slows_the_upstream_down() {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // 128 MiB in binary frames of 64 KiB whose bytes count up (mod 251), so order is checkable.
    const FRAME: usize = 64 << 10;
    const FRAMES: u64 = 2048;
    let total = FRAMES * FRAME as u64;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = listener.local_addr().unwrap();
    let written = Arc::new(AtomicU64::new(0));
    let sent = written.clone();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0);
            head.extend_from_slice(&buf[..n]);
        }
        let text = String::from_utf8_lossy(&head).to_string();
        let key = text
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("sec-websocket-key")
                    .then(|| value.trim().to_string())
            })
            .unwrap();
        let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
        s.write_all(format!("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut frame = vec![0x82u8, 127];
        frame.extend_from_slice(&(FRAME as u64).to_be_bytes());
        frame.extend((0..FRAME).map(|i| (i % 251) as u8));
        for _ in 0..FRAMES {
            if s.write_all(&frame).await.is_err() {
                return;
            }
            sent.fetch_add(FRAME as u64, Ordering::Relaxed);
        }
    });
    let v = Vestibule::start(
        MainConfig::new().vhost(
            Vhost::new("chat.test")
                .upstream(upstream)
                .route("^/api/v4/websocket$", |r| r),
        ),
    )
    .await;
    let rss_before = rss_bytes(v.pid());
    let mut c = tokio::net::TcpStream::connect(("127.0.0.1", v.cfg.http_port))
        .await
        .unwrap();
    c.write_all(b"GET /api/v4/websocket HTTP/1.1\r\nHost: chat.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
        .await
        .unwrap();
    // The client reads nothing now. The flood stalls once the sockets on the way are full: wait
    // until the upstream's progress stops (there is no readiness signal for "buffers are full").
    // Stalled: no progress over 20 polls in a row (about a second).
    let (mut last, mut still) = (0, 0);
    let stalled = eventually("the upstream's writes stall", || {
        let now = written.load(Ordering::Relaxed);
        still = if now > 0 && now == last { still + 1 } else { 0 };
        last = now;
        std::future::ready((still >= 20).then_some(now))
    })
    .await;
    assert!(
        stalled < total / 4,
        "the upstream sent {stalled} of {total} bytes to a client that reads nothing: vestibule buffers the flood"
    );
    let grown = rss_bytes(v.pid()).saturating_sub(rss_before);
    assert!(
        grown < 32 << 20,
        "vestibule's memory grew by {grown} bytes while the client read nothing"
    );
    eprintln!("backpressure: the upstream stalled after {stalled} bytes; vestibule grew by {grown} bytes");
    // Reading again: the 101, then every frame whole and in order.
    let mut got = Vec::with_capacity(1 << 20);
    let mut buf = vec![0u8; 256 << 10];
    let mut head_done = None;
    let mut payload = 0u64;
    let mut checked = 0usize;
    while payload < total {
        let n = c.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed after {payload} of {total} payload bytes");
        got.extend_from_slice(&buf[..n]);
        if head_done.is_none() {
            if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                assert!(
                    got.starts_with(b"HTTP/1.1 101"),
                    "{:?}",
                    String::from_utf8_lossy(&got)
                );
                head_done = Some(());
                got.drain(..end + 4);
            } else {
                continue;
            }
        }
        // Whole frames: 10 bytes of header, then FRAME bytes counting up mod 251.
        while got.len() >= 10 + FRAME {
            assert_eq!(&got[..2], &[0x82, 127], "frame {checked} header");
            assert!(
                got[10..10 + FRAME]
                    .iter()
                    .enumerate()
                    .all(|(i, b)| *b == (i % 251) as u8),
                "frame {checked} payload out of order"
            );
            got.drain(..10 + FRAME);
            payload += FRAME as u64;
            checked += 1;
        }
    }
    assert_eq!(checked as u64, FRAMES);
}
