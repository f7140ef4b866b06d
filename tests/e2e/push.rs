//! Covered (push relay with an upstream push proxy stand-in): Mattermost's exact body without a
//! Content-Type forwarded unchanged (unknown fields kept, `-vN` platforms routed), answers OK / REMOVE /
//! FAIL passed back as string maps, retry after a 503 then success, an upstream that never answers ->
//! FAIL within the total timeout, privacy ceilings, malformed bodies and unknown platforms -> FAIL,
//! per-client rate limit -> 429, body limit, acks relayed, clients outside `allow` refused, `/` and
//! `/version`, metrics.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};

use crate::support::*;

/// Mattermost's request body (server/public/model/push_notification.go), plus a field from the future.
pub const MM_BODY: &str = r#"{"ack_id":"ack1","platform":"apple_rn-v2","server_id":"srv1","device_id":"dev-ok","post_id":"post1","category":"CAN_REPLY","sound":"default","message":"hello there","badge":1,"cont_ava":1,"team_id":"team1","channel_id":"chan1","root_id":"","channel_name":"Town Square","type":"message","sender_id":"user1","sender_name":"alice","override_username":"","override_icon_url":"","from_webhook":"","version":"v2","is_crt_enabled":false,"is_id_loaded":false,"signature":"eyJhbGciOiJFUzI1NiJ9.e30.sig","future_field":{"nested":[1,2]}}"#;

/// What the stand-in push proxy does for a device id.
#[derive(Clone)]
enum Behaviour {
    Answer(&'static str),
    FailFirst(usize),
    Hang,
}

struct PushProxy {
    addr: std::net::SocketAddr,
    bodies: Arc<Mutex<Vec<(String, serde_json::Value)>>>,
    hits: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for PushProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl PushProxy {
    async fn start(behave: fn(&str) -> Behaviour) -> PushProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let hits = Arc::new(AtomicUsize::new(0));
        let (b, h) = (bodies.clone(), hits.clone());
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (b, h) = (b.clone(), h.clone());
                conns.spawn(async move {
                    let svc =
                        hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                            let (b, h) = (b.clone(), h.clone());
                            async move {
                                let path = req.uri().path().to_string();
                                let body = req.into_body().collect().await.unwrap().to_bytes();
                                let json: serde_json::Value =
                                    serde_json::from_slice(&body).unwrap_or_default();
                                let n = h.fetch_add(1, Ordering::SeqCst);
                                let device = json["device_id"].as_str().unwrap_or("").to_string();
                                b.lock().unwrap().push((path, json));
                                let (status, text) = match behave(&device) {
                                    Behaviour::Answer(a) => (200, a),
                                    Behaviour::FailFirst(k) if n < k => (503, "busy"),
                                    Behaviour::FailFirst(_) => (200, r#"{"status":"OK"}"#),
                                    Behaviour::Hang => {
                                        tokio::time::sleep(Duration::from_secs(60)).await;
                                        (200, r#"{"status":"OK"}"#)
                                    }
                                };
                                Ok::<_, std::convert::Infallible>(
                                    hyper::Response::builder()
                                        .status(status)
                                        .body(Full::new(Bytes::from(text)))
                                        .unwrap(),
                                )
                            }
                        });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        PushProxy {
            addr,
            bodies,
            hits,
            task,
        }
    }
}

/// The push relay forwarding `apple_rn` and `android_rn` to `upstream` (500 ms an attempt, 4 s in
/// all), with what `with` sets in `[push]`.
fn push_config(upstream: std::net::SocketAddr, with: impl FnOnce(Table) -> Table) -> MainConfig {
    MainConfig::new()
        .push(|p| with(p.set("attempt_timeout", "500ms").set("total_timeout", "4s")))
        .push_route(&["apple_rn", "android_rn"], |r| {
            r.set("upstream", format!("http://{upstream}"))
        })
}

/// POST like Mattermost does: no Content-Type, `Mattermost-Bot/1.1`.
async fn post(port: u16, path: &str, body: &str) -> (u16, serde_json::Map<String, serde_json::Value>) {
    let r = client()
        .post(format!("http://127.0.0.1:{port}{path}"))
        .header("user-agent", "Mattermost-Bot/1.1")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    let map: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("answer is not a JSON object ({e}): {text}"));
    assert!(
        map.values().all(|v| v.is_string()),
        "every value must be a string: {text}"
    );
    (status, map)
}

fn with(body: &str, f: impl FnOnce(&mut serde_json::Value)) -> String {
    let mut v: serde_json::Value = serde_json::from_str(body).unwrap();
    f(&mut v);
    v.to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn relays_to_an_upstream_push_proxy() {
    let up = PushProxy::start(|device| match device {
        "dev-remove" => Behaviour::Answer(r#"{"status":"REMOVE"}"#),
        "dev-fail" => Behaviour::Answer(r#"{"status":"FAIL","error":"upstream says no"}"#),
        _ => Behaviour::Answer(r#"{"status":"OK"}"#),
    })
    .await;
    let cfg = push_config(up.addr, |p| p);
    let v = Vestibule::start(cfg).await;
    let port = v.port("push");

    let (s, a) = post(port, "/api/v1/send_push", MM_BODY).await;
    assert_eq!((s, a["status"].as_str()), (200, Some("OK")));
    let (path, got) = up.bodies.lock().unwrap()[0].clone();
    assert_eq!(path, "/api/v1/send_push");
    let sent: serde_json::Value = serde_json::from_str(MM_BODY).unwrap();
    assert_eq!(got, sent, "forwarded unchanged, unknown fields included");

    let (_, a) = post(
        port,
        "/api/v1/send_push",
        &with(MM_BODY, |v| v["device_id"] = "dev-remove".into()),
    )
    .await;
    assert_eq!(a["status"], "REMOVE");
    let (_, a) = post(
        port,
        "/api/v1/send_push",
        &with(MM_BODY, |v| v["device_id"] = "dev-fail".into()),
    )
    .await;
    assert_eq!(
        (a["status"].as_str(), a["error"].as_str()),
        (Some("FAIL"), Some("upstream says no"))
    );

    // Malformed and unroutable bodies: FAIL with a clear error, never a panic.
    for (body, error) in [
        ("{not json", "malformed JSON"),
        ("[1,2]", "the body must be a JSON object"),
        (r#"{"platform":"apple_rn","device_id":"d"}"#, "missing server_id"),
        (r#"{"platform":"apple_rn","server_id":"s"}"#, "missing device_id"),
        (
            r#"{"platform":"blackberry","server_id":"s","device_id":"d"}"#,
            "unknown platform `blackberry`",
        ),
    ] {
        let (s, a) = post(port, "/api/v1/send_push", body).await;
        assert_eq!(s, 400, "{body}");
        assert_eq!(a["status"], "FAIL");
        assert!(a["error"].as_str().unwrap().starts_with(error), "{body}: {a:?}");
    }
    let big = with(MM_BODY, |v| v["message"] = "x".repeat(70 << 10).into());
    let (s, a) = post(port, "/api/v1/send_push", &big).await;
    assert_eq!((s, a["status"].as_str()), (413, Some("FAIL")));

    // Acks go upstream too.
    let ack = r#"{"id":"ack1","received_at":1700000000000,"platform":"android_rn-v2","type":"message","post_id":"post1","is_id_loaded":false}"#;
    let (s, a) = post(port, "/api/v1/ack", ack).await;
    assert_eq!((s, a["status"].as_str()), (200, Some("OK")));
    assert_eq!(up.bodies.lock().unwrap().last().unwrap().0, "/api/v1/ack");
    let (s, _) = post(port, "/api/v1/ack", r#"{"id":"x"}"#).await;
    assert_eq!(s, 400);

    let r = client()
        .get(format!("http://127.0.0.1:{port}/version"))
        .send()
        .await
        .unwrap();
    let version: serde_json::Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    assert_eq!(version["version"], env!("CARGO_PKG_VERSION"));
    let r = client()
        .get(format!("http://127.0.0.1:{port}/"))
        .send()
        .await
        .unwrap();
    assert!(r.text().await.unwrap().contains("Push Proxy"));

    let m = v.metrics().await;
    assert_eq!(
        metric(
            &m,
            "vestibule_push_notifications_total",
            &[("platform", "apple_rn"), ("result", "ok"), ("type", "message")]
        ),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            "vestibule_push_notifications_total",
            &[
                ("platform", "apple_rn"),
                ("result", "remove"),
                ("type", "message")
            ]
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &m,
            "vestibule_push_removals_total",
            &[("platform", "apple_rn"), ("reason", "upstream")]
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(&m, "vestibule_push_bad_requests_total", &[]),
        Some(7.0),
        "{m}"
    );
    assert!(
        !v.log().contains("hello there"),
        "message bodies are never logged"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn retries_then_succeeds_and_fails_in_time() {
    let up = PushProxy::start(|device| {
        if device == "dev-hang" {
            Behaviour::Hang
        } else {
            Behaviour::FailFirst(1)
        }
    })
    .await;
    let cfg = push_config(up.addr, |p| p);
    let _v = Vestibule::start(cfg).await;
    let port = _v.port("push");
    let started = Instant::now();
    let (_, a) = post(port, "/api/v1/send_push", MM_BODY).await;
    assert_eq!(a["status"], "OK");
    assert_eq!(up.hits.load(Ordering::SeqCst), 2, "one 503, then the retry");
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "the reference backoff waits 1 s first"
    );

    let started = Instant::now();
    let (s, a) = post(
        port,
        "/api/v1/send_push",
        &with(MM_BODY, |v| v["device_id"] = "dev-hang".into()),
    )
    .await;
    let took = started.elapsed();
    assert_eq!((s, a["status"].as_str()), (200, Some("FAIL")));
    assert!(a["error"].as_str().unwrap().contains("did not answer"), "{a:?}");
    assert!(
        took < Duration::from_secs(5),
        "bounded by total_timeout (4s), far under Mattermost's 30s: {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn privacy_ceiling_rate_limit_and_allowed_clients() {
    let up = PushProxy::start(|_| Behaviour::Answer(r#"{"status":"OK"}"#)).await;
    let cfg = push_config(up.addr, |p| {
        p.set("contents", "id_only")
            .set("rate_limit", inline(&[("per_second", &1u16), ("burst", &3u16)]))
            .set("allow", ["127.0.0.1/32"])
    });
    let _v = Vestibule::start(cfg).await;
    let port = _v.port("push");
    let (_, a) = post(port, "/api/v1/send_push", MM_BODY).await;
    assert_eq!(a["status"], "OK");
    let got = up.bodies.lock().unwrap()[0].1.clone();
    for k in ["message", "sender_name", "channel_name"] {
        assert!(got.get(k).is_none(), "{k} must not leave the site: {got}");
    }
    assert_eq!(got["is_id_loaded"], true);
    assert_eq!(got["post_id"], "post1");

    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(post(port, "/api/v1/send_push", MM_BODY).await.0);
    }
    assert!(statuses.contains(&429), "burst of 3 then 429: {statuses:?}");

    let r = reqwest::Client::builder()
        .no_proxy()
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .build()
        .unwrap()
        .post(format!("http://127.0.0.1:{port}/api/v1/send_push"))
        .body(MM_BODY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "only allowed networks may send");
}

#[test]
fn push_configuration_errors() {
    let apns = inline(&[
        ("key_file", &"/nonexistent.p8"),
        ("key_id", &"K"),
        ("team_id", &"T"),
        ("topic", &"com.x"),
    ]);
    let cfg = MainConfig::new()
        .table(Table::new("push").set("total_timeout", "45s"))
        .push_route(&["apple"], |r| r.set("upstream", "push.mattermost.com"))
        .push_route(&["apple"], |r| r.set("apns", apns))
        .build();
    let (code, _, err) = check(&cfg);
    assert_eq!(code, 1);
    assert!(err.contains("[push] total_timeout must stay under 30s"), "{err}");
    assert!(
        err.contains("`push.mattermost.com` is not an http(s) URL"),
        "{err}"
    );
    assert!(
        err.contains("platform `apple` is already served by [[push.route]] #1"),
        "{err}"
    );
    assert!(err.contains("cannot read /nonexistent.p8"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn push_relay_on_a_vhost_route() {
    let up = PushProxy::start(|_| Behaviour::Answer(r#"{"status":"OK"}"#)).await;
    let app = Upstream::start("mattermost").await;
    let cfg = MainConfig::new()
        .push(|p| p.set("allow", ["127.0.0.1/32"]))
        .push_route(&["apple_rn"], |r| {
            r.set("upstream", format!("http://{}", up.addr))
        })
        .vhost(
            Vhost::new("chat.test")
                .upstream(app.addr)
                .route("^/push/", |r| r.set("push", true)),
        );
    let v = Vestibule::start(cfg).await;
    // Mattermost's PushNotificationServer = http://chat.test/push
    let r = client()
        .post(v.url("/push/api/v1/send_push"))
        .header("host", "chat.test")
        .body(MM_BODY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), r#"{"status":"OK"}"#);
    assert_eq!(
        up.bodies.lock().unwrap()[0].1,
        serde_json::from_str::<serde_json::Value>(MM_BODY).unwrap()
    );
    assert_eq!(
        app.hits.load(Ordering::SeqCst),
        0,
        "answered by the relay, not proxied"
    );
    // The relay sees the real client address behind the vhost.
    let r = reqwest::Client::builder()
        .no_proxy()
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .build()
        .unwrap()
        .post(v.url("/push/api/v1/send_push"))
        .header("host", "chat.test")
        .body(MM_BODY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let (s, _) = (
        client()
            .get(v.url("/other"))
            .header("host", "chat.test")
            .send()
            .await
            .unwrap()
            .status(),
        (),
    );
    assert_eq!(s, 200, "other paths still go to Mattermost");
}
