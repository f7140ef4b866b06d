//! Covered (push relay straight to APNs and FCM, against stand-ins that verify the real protocols):
//! APNs over HTTP/2 with an ES256 provider token (signature checked with the public key, token reused
//! across pushes), headers and the app's payload mapping, voip; REMOVE for BadDeviceToken and
//! Unregistered; retry after a 503. FCM HTTP v1 with an RS256 service-account assertion (verified),
//! the access token cached, string-only data with high priority; id-only pushes; REMOVE for
//! UNREGISTERED and SENDER_ID_MISMATCH; retry after a 503.

use std::os::unix::fs::PermissionsExt;

use crate::push::MM_BODY;
use crate::support::push_peers::*;
use crate::support::tls::TestCa;
use crate::support::*;

async fn send(port: u16, body: &str) -> serde_json::Map<String, serde_json::Value> {
    let r = client()
        .post(format!("http://127.0.0.1:{port}/api/v1/send_push"))
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    serde_json::from_str(&r.text().await.unwrap()).unwrap()
}

fn body(platform: &str, device: &str, f: impl FnOnce(&mut serde_json::Value)) -> String {
    let mut v: serde_json::Value = serde_json::from_str(MM_BODY).unwrap();
    v["platform"] = platform.into();
    v["device_id"] = device.into();
    f(&mut v);
    v.to_string()
}

fn secret_file(dir: &std::path::Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    p
}

#[tokio::test(flavor = "multi_thread")]
async fn apns_direct() {
    let ca = TestCa::new("vestibule test CA");
    let (p8, public) = apns_key("KEY123");
    let apns = ApnsStandIn::start(&ca, "TEAM123", "KEY123", public);
    let dir = tempfile::tempdir().unwrap();
    let key = secret_file(dir.path(), "AuthKey_KEY123.p8", &p8);
    let ca_file = secret_file(dir.path(), "ca.pem", &ca.pem);
    let endpoint = apns.url();
    let credentials = inline(&[
        ("key_file", &key),
        ("key_id", &"KEY123"),
        ("team_id", &"TEAM123"),
        ("topic", &"com.example.chat"),
        ("endpoint", &endpoint),
    ]);
    let cfg = MainConfig::new().push(|p| p).push_route(&["apple"], |r| {
        r.set("ca_file", &ca_file).set("apns", credentials)
    });
    let v = Vestibule::start(cfg).await;
    let port = v.port("push");

    let ok = apns_device_token("ok");
    for _ in 0..3 {
        assert_eq!(send(port, &body("apple-v2", &ok, |_| {})).await["status"], "OK");
    }
    let reqs = apns.requests();
    assert_eq!(reqs.len(), 3);
    let r = &reqs[0];
    assert!(r.verified && r.http2, "{:?}", r.auth_error);
    assert_eq!(r.token, ok);
    assert_eq!(r.headers["apns-topic"], "com.example.chat");
    assert_eq!(r.headers["apns-push-type"], "alert");
    assert_eq!(r.headers["apns-priority"], "10");
    let aps = &r.body["aps"];
    assert_eq!(
        aps["alert"],
        serde_json::json!({ "title": "Town Square", "body": "hello there" })
    );
    assert_eq!(aps["badge"], 1);
    assert_eq!(aps["category"], "CAN_REPLY");
    assert_eq!(aps["thread-id"], "chan1");
    assert_eq!(r.body["signature"], "eyJhbGciOiJFUzI1NiJ9.e30.sig");
    assert_eq!(r.body["post_id"], "post1");
    assert_eq!(r.body["sender_name"], "alice");
    let auth: Vec<&String> = reqs.iter().map(|r| &r.headers["authorization"]).collect();
    assert!(
        auth.windows(2).all(|w| w[0] == w[1]),
        "the provider token is cached, not re-signed per push"
    );

    let voip = apns_device_token("voip");
    assert_eq!(
        send(port, &body("apple", &voip, |v| v["transport"] = "voip".into())).await["status"],
        "OK"
    );
    let last = apns.requests().pop().unwrap();
    assert_eq!(
        (
            last.headers["apns-topic"].as_str(),
            last.headers["apns-push-type"].as_str()
        ),
        ("com.example.chat.voip", "voip")
    );

    for (seed, status, reason) in [("bad", 400, "BadDeviceToken"), ("gone", 410, "Unregistered")] {
        let t = apns_device_token(seed);
        apns.behave(&t, ApnsBehaviour::Reason(status, reason));
        assert_eq!(
            send(port, &body("apple", &t, |_| {})).await["status"],
            "REMOVE",
            "{reason}"
        );
    }
    let flaky = apns_device_token("flaky");
    apns.behave(&flaky, ApnsBehaviour::FailTimes(1, 503));
    let before = apns.requests().len();
    assert_eq!(send(port, &body("apple", &flaky, |_| {})).await["status"], "OK");
    assert_eq!(apns.requests().len() - before, 2, "a 503, then the retry");

    let m = v.metrics().await;
    assert_eq!(
        metric(
            &m,
            "vestibule_push_removals_total",
            &[("platform", "apple"), ("reason", "BadDeviceToken")]
        ),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            "vestibule_push_removals_total",
            &[("platform", "apple"), ("reason", "Unregistered")]
        ),
        Some(1.0)
    );
    assert!(
        metric(
            &m,
            "vestibule_push_destination_request_duration_seconds_count",
            &[("destination", "apns")]
        )
        .unwrap_or(0.0)
            >= 8.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn fcm_direct() {
    let fcm = FcmStandIn::start();
    let dir = tempfile::tempdir().unwrap();
    let sa = secret_file(
        dir.path(),
        "firebase.json",
        &fcm.service_account_json("proj-1", "push@proj-1.iam.gserviceaccount.com"),
    );
    let endpoint = fcm.base_url();
    let credentials = inline(&[("service_account_file", &sa), ("endpoint", &endpoint)]);
    let cfg = MainConfig::new()
        .push(|p| p)
        .push_route(&["android"], |r| r.set("fcm", credentials));
    let v = Vestibule::start(cfg).await;
    let port = v.port("push");

    for _ in 0..3 {
        assert_eq!(
            send(port, &body("android-v2", "tok-ok", |_| {})).await["status"],
            "OK"
        );
    }
    assert_eq!(
        fcm.token_requests(),
        1,
        "the access token is cached: {:?}",
        fcm.token_errors()
    );
    let msgs = fcm.messages();
    assert_eq!(msgs.len(), 3);
    let m = &msgs[0];
    assert!(m.authorized && m.data_all_strings, "{:?}", m.error);
    assert_eq!((m.project.as_str(), m.token.as_str()), ("proj-1", "tok-ok"));
    assert_eq!(m.android_priority.as_deref(), Some("high"));
    assert_eq!(m.data["message"], "hello there");
    assert_eq!(m.data["channel_name"], "Town Square");
    assert_eq!(m.data["badge"], "1");
    assert_eq!(m.data["post_id"], "post1");
    assert_eq!(m.data["is_crt_enabled"], "false");

    assert_eq!(
        send(
            port,
            &body("android", "tok-id", |v| v["is_id_loaded"] = true.into())
        )
        .await["status"],
        "OK"
    );
    let m = fcm.messages().pop().unwrap();
    assert_eq!(
        (m.data["id_loaded"].as_str(), m.data["sender_name"].as_str()),
        ("true", "Someone")
    );

    fcm.behave("tok-gone", FcmBehaviour::Unregistered);
    fcm.behave("tok-other", FcmBehaviour::SenderIdMismatch);
    fcm.behave("tok-flaky", FcmBehaviour::FailTimes(1, 503));
    assert_eq!(
        send(port, &body("android", "tok-gone", |_| {})).await["status"],
        "REMOVE"
    );
    assert_eq!(
        send(port, &body("android", "tok-other", |_| {})).await["status"],
        "REMOVE"
    );
    assert_eq!(
        send(port, &body("android", "tok-flaky", |_| {})).await["status"],
        "OK"
    );
}
