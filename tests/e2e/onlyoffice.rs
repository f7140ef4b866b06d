//! Covered: the ONLYOFFICE JWT relay on a Mattermost vhost: `Authorization` moved to `AuthorizationJWT`
//! for the plugin's download/callback routes (other routes untouched); with a secret, tokens signed
//! here are verified: valid passes; expired, wrong signature, `alg: none`, mismatched file id and
//! missing are refused with 403 `{"error":1}`, counted by reason, also on websocket upgrades; a secret
//! file readable by others is refused by `check`.

use std::os::unix::fs::PermissionsExt;

use base64::Engine;
use hmac::Mac;

use crate::support::*;

const SECRET: &[u8] = b"onlyoffice-test-secret";
const DOWNLOAD: &str = "/plugins/com.onlyoffice.mattermost/api/download";
const CALLBACK: &str = "/plugins/com.onlyoffice.mattermost/api/callback";

fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

/// A compact JWS signed with HS256 (or carrying `alg` as given, for forgeries).
fn token(alg: &str, payload: &serde_json::Value, secret: &[u8]) -> String {
    let head = b64(format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#).as_bytes());
    let body = b64(payload.to_string().as_bytes());
    let signing_input = format!("{head}.{body}");
    let sig = if alg == "none" {
        String::new()
    } else {
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret).unwrap();
        mac.update(signing_input.as_bytes());
        b64(&mac.finalize().into_bytes())
    };
    format!("{signing_input}.{sig}")
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn download_payload(id: &str, exp: u64) -> serde_json::Value {
    serde_json::json!({ "payload": { "url": format!("https://chat.test{DOWNLOAD}?id={id}") }, "exp": exp })
}

/// `chat.test` with the ONLYOFFICE policy, verifying tokens with `secret_file` when given.
fn chat(upstream: impl Toml, secret_file: Option<&std::path::Path>) -> Vhost {
    let onlyoffice = Table::new("onlyoffice");
    let onlyoffice = match secret_file {
        Some(f) => onlyoffice.set("secret_file", f),
        None => onlyoffice,
    };
    Vhost::new("chat.test").upstream(upstream).table(onlyoffice)
}

#[tokio::test(flavor = "multi_thread")]
async fn relays_the_header_without_a_secret() {
    let a = Upstream::start("a").await;
    let v = Vestibule::start(chat(a.addr, None)).await;
    let r = client()
        .get(v.url(&format!("{DOWNLOAD}?id=f1")))
        .header("host", "chat.test")
        .header("authorization", "Bearer abc.def.ghi")
        .send()
        .await
        .unwrap();
    let body = r.text().await.unwrap();
    assert_eq!(
        seen_header(&body, "authorizationjwt"),
        ["Bearer abc.def.ghi"],
        "{body}"
    );
    assert!(seen_header(&body, "authorization").is_empty(), "{body}");

    // Already in the custom header (Document Server set up with JWT_HEADER): harmless.
    let r = client()
        .post(v.url(&format!("{CALLBACK}?file=f1")))
        .header("host", "chat.test")
        .header("AuthorizationJWT", "Bearer x.y.z")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(
        seen_header(&r.text().await.unwrap(), "authorizationjwt"),
        ["Bearer x.y.z"]
    );

    // Other routes keep their Authorization (Mattermost session tokens).
    let r = client()
        .get(v.url("/api/v4/users/me"))
        .header("host", "chat.test")
        .header("authorization", "Bearer session-token")
        .send()
        .await
        .unwrap();
    assert_eq!(
        seen_header(&r.text().await.unwrap(), "authorization"),
        ["Bearer session-token"]
    );
    let m = v.metrics().await;
    assert_eq!(
        metric(&m, "vestibule_onlyoffice_jwt_relayed_total", &[("vhost", "chat")]),
        Some(1.0),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn verifies_tokens_when_given_the_secret() {
    let a = Upstream::start("a").await;
    let secrets = tempfile::tempdir().unwrap();
    let secret_file = secrets.path().join("oo.jwt");
    std::fs::write(&secret_file, [SECRET, b"\n"].concat()).unwrap();
    std::fs::set_permissions(&secret_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let v = Vestibule::start(chat(a.addr, Some(&secret_file))).await;
    let send = |path: String, auth: Option<String>, upgrade: bool| {
        let mut r = client().get(v.url(&path)).header("host", "chat.test");
        if let Some(t) = auth {
            r = r.header("authorization", format!("Bearer {t}"));
        }
        if upgrade {
            r = r
                .header("connection", "upgrade")
                .header("upgrade", "websocket")
                .header("sec-websocket-version", "13")
                .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==");
        }
        r.send()
    };
    let exp = now() + 300;
    let valid = token("HS256", &download_payload("f1", exp), SECRET);
    let r = send(format!("{DOWNLOAD}?id=f1"), Some(valid.clone()), false)
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        seen_header(&r.text().await.unwrap(), "authorizationjwt"),
        [format!("Bearer {valid}").as_str()]
    );

    let hits = a.hits.load(std::sync::atomic::Ordering::SeqCst);
    let cases = [
        (
            "expired",
            format!("{DOWNLOAD}?id=f1"),
            Some(token("HS256", &download_payload("f1", now() - 120), SECRET)),
            false,
        ),
        (
            "bad_signature",
            format!("{DOWNLOAD}?id=f1"),
            Some(token("HS256", &download_payload("f1", exp), b"wrong")),
            false,
        ),
        (
            "wrong_algorithm",
            format!("{DOWNLOAD}?id=f1"),
            Some(token("none", &download_payload("f1", exp), SECRET)),
            false,
        ),
        (
            "id_mismatch",
            format!("{DOWNLOAD}?id=f2"),
            Some(valid.clone()),
            false,
        ),
        ("missing", format!("{CALLBACK}?file=f1"), None, false),
        (
            "bad_signature",
            format!("{CALLBACK}?file=f1"),
            Some(token("HS256", &download_payload("f1", exp), b"wrong")),
            true,
        ),
    ];
    for (reason, path, tok, upgrade) in cases {
        let r = send(path.clone(), tok, upgrade).await.unwrap();
        assert_eq!(r.status(), 403, "{reason} {path} upgrade={upgrade}");
        assert_eq!(r.headers()["content-type"], "application/json");
        assert_eq!(r.text().await.unwrap(), r#"{"error":1}"#);
    }
    assert_eq!(
        a.hits.load(std::sync::atomic::Ordering::SeqCst),
        hits,
        "refused requests never reach Mattermost"
    );
    let m = v.metrics().await;
    for (reason, n) in [
        ("expired", 1.0),
        ("bad_signature", 2.0),
        ("wrong_algorithm", 1.0),
        ("id_mismatch", 1.0),
        ("missing", 1.0),
    ] {
        assert_eq!(
            metric(
                &m,
                "vestibule_onlyoffice_jwt_rejected_total",
                &[("reason", reason), ("vhost", "chat")]
            ),
            Some(n),
            "{reason}: {m}"
        );
    }
    assert!(!v.log().contains(&valid), "tokens are never logged");
}

#[test]
fn secret_file_must_be_private() {
    let secrets = tempfile::tempdir().unwrap();
    let secret_file = secrets.path().join("oo.jwt");
    std::fs::write(&secret_file, SECRET).unwrap();
    std::fs::set_permissions(&secret_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let cfg = MainConfig::new()
        .vhost(chat("127.0.0.1:9", Some(&secret_file)))
        .build();
    let (code, _, err) = check(&cfg);
    assert_eq!(code, 1);
    assert!(
        err.contains("chat.toml:4:15: error: `secret_file` in [onlyoffice] of vhost `chat`"),
        "{err}"
    );
    assert!(err.contains("chmod 600"), "{err}");
    assert!(
        !err.contains("onlyoffice-test-secret"),
        "the secret is never printed"
    );
}
