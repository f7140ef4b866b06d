//! The FCM stand-in against a minimal OAuth2 and FCM HTTP v1 client.

use super::*;

const PROJECT: &str = "vestibule-test";
const EMAIL: &str = "relay@vestibule-test.iam.gserviceaccount.com";

fn assertion(sa: &Value, tweak: impl FnOnce(&mut Value)) -> String {
    let now = now_secs();
    let mut claims = json!({
        "iss": sa["client_email"],
        "scope": FCM_SCOPE,
        "aud": sa["token_uri"],
        "iat": now,
        "exp": now + 3600,
    });
    tweak(&mut claims);
    let header = json!({"alg": "RS256", "typ": "JWT", "kid": sa["private_key_id"]});
    rs256(sa["private_key"].as_str().unwrap(), &header, &claims)
}

async fn get_token(client: &reqwest::Client, sa: &Value, assertion: &str) -> (u16, Value) {
    let body = format!(
        "grant_type={}&assertion={assertion}",
        JWT_BEARER_GRANT.replace(':', "%3A")
    );
    let resp = client
        .post(sa["token_uri"].as_str().unwrap())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    (
        resp.status().as_u16(),
        serde_json::from_str(&resp.text().await.unwrap()).unwrap(),
    )
}

async fn send(client: &reqwest::Client, peer: &FcmStandIn, access: &str, body: Value) -> (u16, Value) {
    let resp = client
        .post(format!("{}/v1/projects/{PROJECT}/messages:send", peer.base_url()))
        .header("authorization", format!("Bearer {access}"))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    (
        resp.status().as_u16(),
        serde_json::from_str(&resp.text().await.unwrap()).unwrap(),
    )
}

fn message(token: &str) -> Value {
    json!({"message": {
        "token": token,
        "data": {"ack_id": "a1", "type": "message", "badge": "2"},
        "android": {"priority": "high"},
    }})
}

struct Fcm {
    peer: FcmStandIn,
    sa: Value,
    client: reqwest::Client,
}

async fn fcm() -> Fcm {
    let peer = FcmStandIn::start();
    let sa: Value = serde_json::from_str(&peer.service_account_json(PROJECT, EMAIL)).unwrap();
    Fcm {
        peer,
        sa,
        client: crate::support::client(),
    }
}

impl Fcm {
    async fn access_token(&self) -> String {
        let (status, v) = get_token(&self.client, &self.sa, &assertion(&self.sa, |_| {})).await;
        assert_eq!(status, 200, "{v}");
        v["access_token"].as_str().unwrap().to_string()
    }
}

#[tokio::test]
async fn fcm_service_account_key_and_public_key_match() {
    let f = fcm().await;
    let sa = &f.sa;
    for k in [
        "type",
        "project_id",
        "private_key_id",
        "private_key",
        "client_email",
        "client_id",
        "auth_uri",
        "token_uri",
    ] {
        assert!(sa[k].is_string(), "{k} in {sa}");
    }
    assert_eq!(sa["type"], "service_account");
    assert_eq!(sa["project_id"], PROJECT);
    assert_eq!(sa["client_email"], EMAIL);
    assert_eq!(sa["token_uri"], f.peer.token_uri());
    let pem = sa["private_key"].as_str().unwrap();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
    let key = RsaKeyPair::from_pkcs8(&pkcs8(pem)).expect("PKCS#8 RSA key");
    assert_eq!(key.public().modulus_len(), 256, "RSA-2048");
    // What openssl derived is exactly the PKCS#1 RSAPublicKey ring verifies with.
    assert_eq!(key.public().as_ref(), f.peer.rsa_public_key());
    assert_eq!(f.peer.rsa_public_key()[0], 0x30);
}

#[tokio::test]
async fn fcm_issues_a_token_and_accepts_a_send() {
    let f = fcm().await;
    let (status, v) = get_token(&f.client, &f.sa, &assertion(&f.sa, |_| {})).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["token_type"], "Bearer");
    assert_eq!(v["expires_in"], 3599);
    let access = v["access_token"].as_str().unwrap();
    assert_eq!(f.peer.token_requests(), 1);

    let (status, v) = send(&f.client, &f.peer, access, message("fcm-tok-1")).await;
    assert_eq!(status, 200, "{v}");
    assert!(v["name"]
        .as_str()
        .unwrap()
        .starts_with(&format!("projects/{PROJECT}/messages/")));
    let (status, _) = send(&f.client, &f.peer, access, message("fcm-tok-2")).await;
    assert_eq!(status, 200);
    assert_eq!(f.peer.token_requests(), 1, "the token is reusable");

    let msgs = f.peer.messages();
    assert_eq!(msgs.len(), 2);
    let m = &msgs[0];
    assert_eq!((m.project.as_str(), m.token.as_str()), (PROJECT, "fcm-tok-1"));
    assert_eq!(m.data["ack_id"], "a1");
    assert_eq!(m.data["badge"], "2");
    assert!(m.data_all_strings && m.authorized);
    assert_eq!(m.android_priority.as_deref(), Some("high"));
    assert_eq!((m.status, m.error.as_deref()), (200, None));
}

#[tokio::test]
async fn fcm_rejects_forged_and_wrong_assertions() {
    let f = fcm().await;
    let other = FcmStandIn::start();
    let mut forged_sa = f.sa.clone();
    forged_sa["private_key"] = other.private_key_pem().into();
    let forged = assertion(&forged_sa, |_| {});
    let now = now_secs();
    let cases: Vec<(String, &str)> = vec![
        (forged, "invalid_grant"),
        (
            assertion(&f.sa, |c| c["aud"] = "https://oauth2.googleapis.com/token".into()),
            "invalid_grant",
        ),
        (
            assertion(&f.sa, |c| c["iss"] = "stranger@example.com".into()),
            "invalid_grant",
        ),
        (
            assertion(&f.sa, |c| c["exp"] = (now + 3601).into()),
            "invalid_grant",
        ),
        (
            assertion(&f.sa, |c| c["exp"] = (now - 3600).into()),
            "invalid_grant",
        ),
        (
            assertion(&f.sa, |c| c["iat"] = (now as f64 + 0.5).into()),
            "invalid_grant",
        ),
        (
            assertion(&f.sa, |c| {
                c["scope"] = "https://www.googleapis.com/auth/cloud-platform".into()
            }),
            "invalid_scope",
        ),
        (
            {
                let mut a = assertion(&f.sa, |_| {});
                a.replace_range(a.len() - 4.., "AAAA");
                a
            },
            "invalid_grant",
        ),
    ];
    for (i, (a, want)) in cases.iter().enumerate() {
        let (status, v) = get_token(&f.client, &f.sa, a).await;
        assert_eq!(
            (status, v["error"].as_str().unwrap()),
            (400, *want),
            "case {i}: {v}"
        );
    }
    assert_eq!(f.peer.token_errors().len(), cases.len());
    assert!(f.peer.token_errors()[0].contains("Invalid JWT Signature"));

    // Wrong grant type, and a JSON body instead of a form.
    let resp = f
        .client
        .post(f.peer.token_uri())
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(
        serde_json::from_str::<Value>(&resp.text().await.unwrap()).unwrap()["error"],
        "unsupported_grant_type"
    );
    let resp = f
        .client
        .post(f.peer.token_uri())
        .header("content-type", "application/json")
        .body(json!({"grant_type": JWT_BEARER_GRANT, "assertion": assertion(&f.sa, |_| {})}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(f.peer.token_requests(), cases.len() + 2);
}

#[tokio::test]
async fn fcm_send_needs_an_issued_token_for_the_project() {
    let f = fcm().await;
    let (status, v) = send(&f.client, &f.peer, "ya29.made-up", message("t")).await;
    assert_eq!(
        (status, v["error"]["status"].as_str().unwrap()),
        (401, "UNAUTHENTICATED")
    );
    assert_eq!(v["error"]["code"], 401);

    // A token of an account in another project.
    let sa2: Value =
        serde_json::from_str(&f.peer.service_account_json("other-project", "x@other.iam")).unwrap();
    let (_, v) = get_token(&f.client, &sa2, &assertion(&sa2, |_| {})).await;
    let (status, v) = send(
        &f.client,
        &f.peer,
        v["access_token"].as_str().unwrap(),
        message("t"),
    )
    .await;
    assert_eq!(
        (status, v["error"]["status"].as_str().unwrap()),
        (403, "PERMISSION_DENIED")
    );

    // Revoked and expired tokens.
    let access = f.access_token().await;
    f.peer.revoke_tokens();
    assert_eq!(send(&f.client, &f.peer, &access, message("t")).await.0, 401);
    f.peer.set_expires_in(0);
    let (_, v) = get_token(&f.client, &f.sa, &assertion(&f.sa, |_| {})).await;
    assert_eq!(v["expires_in"], 0);
    assert_eq!(
        send(
            &f.client,
            &f.peer,
            v["access_token"].as_str().unwrap(),
            message("t")
        )
        .await
        .0,
        401
    );

    let msgs = f.peer.messages();
    assert_eq!(msgs.len(), 4);
    assert!(msgs.iter().all(|m| !m.authorized && m.status != 200), "{msgs:#?}");
}

#[tokio::test]
async fn fcm_rejects_what_fcm_rejects() {
    let f = fcm().await;
    let access = f.access_token().await;
    let cases = [
        json!({"message": {"token": "t", "data": {"badge": 2}}}),
        json!({"message": {"token": "t", "data": {"x": null}}}),
        json!({"message": {"token": "t", "data": {"from": "me"}}}),
        json!({"message": {"token": "t", "data": {"google.x": "1"}}}),
        json!({"message": {"token": "t", "data": {"m": "x".repeat(4100)}}}),
        json!({"message": {"token": "t", "android": {"priority": "urgent"}}}),
        json!({"message": {"token": "t", "android": {"prio": "high"}}}),
        json!({"message": {"token": "t", "extra": 1}}),
        json!({"message": {"data": {"a": "b"}}}),
        json!({"message": {"token": "t", "topic": "news"}}),
        json!({"message": {"token": ""}}),
        json!({"token": "t"}),
        json!("not an object"),
    ];
    for (i, body) in cases.iter().enumerate() {
        let (status, v) = send(&f.client, &f.peer, &access, body.clone()).await;
        assert_eq!(status, 400, "case {i}: {v}");
        assert_eq!(v["error"]["status"], "INVALID_ARGUMENT", "case {i}");
    }
    let msgs = f.peer.messages();
    assert!(!msgs[0].data_all_strings && msgs[0].authorized);
    assert_eq!(msgs[0].data["badge"], "2");
    assert!(!msgs[1].data_all_strings);
    assert!(msgs[2].data_all_strings);
    assert_eq!(msgs[5].android_priority.as_deref(), Some("urgent"));
}

#[tokio::test]
async fn fcm_applies_behaviours_and_closes_on_drop() {
    let f = fcm().await;
    let access = f.access_token().await;
    f.peer.behave("gone", FcmBehaviour::Unregistered);
    f.peer.behave("mismatch", FcmBehaviour::SenderIdMismatch);
    f.peer.behave("flaky", FcmBehaviour::FailTimes(1, 503));
    f.peer
        .behave("slow", FcmBehaviour::Delay(Duration::from_millis(300)));

    let (status, v) = send(&f.client, &f.peer, &access, message("gone")).await;
    assert_eq!(status, 404);
    assert_eq!(
        v,
        json!({"error": {"code": 404, "message": "Requested entity was not found.", "status": "NOT_FOUND",
            "details": [{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
                         "errorCode": "UNREGISTERED"}]}})
    );
    let (status, v) = send(&f.client, &f.peer, &access, message("mismatch")).await;
    assert_eq!(status, 403);
    assert_eq!(v["error"]["status"], "PERMISSION_DENIED");
    assert_eq!(v["error"]["details"][0]["errorCode"], "SENDER_ID_MISMATCH");
    let (status, v) = send(&f.client, &f.peer, &access, message("flaky")).await;
    assert_eq!(
        (status, v["error"]["status"].as_str().unwrap()),
        (503, "UNAVAILABLE")
    );
    assert_eq!(send(&f.client, &f.peer, &access, message("flaky")).await.0, 200);
    let started = Instant::now();
    assert_eq!(send(&f.client, &f.peer, &access, message("slow")).await.0, 200);
    assert!(started.elapsed() >= Duration::from_millis(300));
    let statuses: Vec<u16> = f.peer.messages().iter().map(|m| m.status).collect();
    assert_eq!(statuses, [404, 403, 503, 200, 200]);

    // A delayed answer in flight ends when the stand-in goes away.
    f.peer
        .behave("stuck", FcmBehaviour::Delay(Duration::from_secs(3600)));
    let pending = tokio::spawn({
        let (client, url) = (
            f.client.clone(),
            format!("{}/v1/projects/{PROJECT}/messages:send", f.peer.base_url()),
        );
        let body = message("stuck").to_string();
        let auth = format!("Bearer {access}");
        async move {
            client
                .post(url)
                .header("authorization", auth)
                .body(body)
                .send()
                .await
        }
    });
    crate::support::eventually("the delayed send arrived", || async {
        (f.peer.messages().len() == 6).then_some(())
    })
    .await;
    let addr = f.peer.addr;
    drop(f);
    let outcome = tokio::time::timeout(crate::support::patience(), pending)
        .await
        .expect("the pending send ends")
        .unwrap();
    assert!(outcome.is_err(), "{outcome:?}");
    crate::support::eventually("the listener is closed", || async {
        tokio::net::TcpStream::connect(addr).await.is_err().then_some(())
    })
    .await;
}

#[tokio::test]
async fn fcm_unknown_paths_and_methods() {
    let f = fcm().await;
    let resp = f.client.get(f.peer.token_uri()).send().await.unwrap();
    assert_eq!(resp.status(), 405);
    let resp = f
        .client
        .post(format!("{}/v1/messages:send", f.peer.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(f.peer.token_requests(), 0);
}
