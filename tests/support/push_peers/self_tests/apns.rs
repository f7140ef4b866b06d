//! The APNs stand-in against a minimal HTTP/2 provider client.

use super::*;

const TEAM: &str = "TEAM123456";
const KID: &str = "KEY1234567";
const TOPIC: &str = "com.example.chat";

fn apns_jwt(p8_pem: &str, kid: &str, team: &str, iat: i64) -> String {
    es256(
        p8_pem,
        &json!({"alg": "ES256", "kid": kid}),
        &json!({"iss": team, "iat": iat}),
    )
}

struct Apns {
    ca: TestCa,
    p8: String,
    peer: ApnsStandIn,
    client: reqwest::Client,
}

fn apns() -> Apns {
    let ca = TestCa::new("push test CA");
    let (p8, public) = apns_key(KID);
    let peer = ApnsStandIn::start(&ca, TEAM, KID, public);
    let client = https_client(&[&ca.der], &[APNS_HOST], peer.addr);
    Apns { ca, p8, peer, client }
}

impl Apns {
    /// POST a well-formed alert push; `tweak` may change the request first.
    async fn push(
        &self,
        token: &str,
        jwt: &str,
        tweak: impl FnOnce(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    ) -> (u16, reqwest::header::HeaderMap, String) {
        let req = self
            .client
            .post(format!("{}/3/device/{token}", self.peer.url()))
            .header("authorization", format!("bearer {jwt}"))
            .header("apns-topic", TOPIC)
            .header("apns-push-type", "alert")
            .header("apns-priority", "10")
            .body(
                json!({"aps": {"alert": {"title": "town-square", "body": "hi"}}, "ack_id": "a1"}).to_string(),
            );
        let resp = tweak(req).send().await.expect("APNs request");
        assert_eq!(resp.version(), reqwest::Version::HTTP_2);
        let (status, headers) = (resp.status().as_u16(), resp.headers().clone());
        (status, headers, resp.text().await.unwrap())
    }

    fn jwt(&self) -> String {
        apns_jwt(&self.p8, KID, TEAM, now_secs())
    }
}

fn reason(body: &str) -> String {
    serde_json::from_str::<Value>(body).unwrap()["reason"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn apns_key_is_pkcs8_and_its_raw_public_key() {
    let (pem, public) = apns_key(KID);
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"), "{pem}");
    let rng = ring::rand::SystemRandom::new();
    let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8(&pem), &rng).unwrap();
    use ring::signature::KeyPair;
    assert_eq!(key.public_key().as_ref(), public.as_slice());
    assert_eq!(public.len(), 65);
}

#[tokio::test]
async fn apns_accepts_and_records_a_valid_push() {
    let a = apns();
    let token = apns_device_token("phone-1");
    let id = "123e4567-e89b-12d3-a456-426614174000";
    let jwt = a.jwt();
    let (status, headers, body) = a.push(&token, &jwt, |r| r.header("apns-id", id)).await;
    assert_eq!((status, body.as_str()), (200, ""));
    assert_eq!(headers["apns-id"], id);
    // The same connection and token again: no token churn, a fresh apns-id.
    let (status, headers, _) = a.push(&token, &jwt, |r| r).await;
    assert_eq!(status, 200);
    assert!(is_uuid(headers["apns-id"].to_str().unwrap()));

    let reqs = a.peer.requests();
    assert_eq!(reqs.len(), 2);
    let r = &reqs[0];
    assert!(r.verified && r.http2, "{r:?}");
    assert_eq!(r.token, token);
    assert_eq!(r.headers["apns-topic"], TOPIC);
    assert_eq!(r.headers["apns-push-type"], "alert");
    assert_eq!(r.body["aps"]["alert"]["body"], "hi");
    assert_eq!(
        r.authority.as_deref(),
        Some(format!("{APNS_HOST}:{}", a.peer.addr.port()).as_str())
    );
    assert_eq!((r.status, r.reason.as_deref(), r.connection), (200, None, 1));
    assert_eq!(reqs[1].connection, 1, "one HTTP/2 connection carries both");
    assert_eq!(a.peer.connections(), 1);
}

#[tokio::test]
async fn apns_accepts_voip_and_an_spki_public_key() {
    let ca = TestCa::new("push test CA");
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let peer = ApnsStandIn::start(
        &ca,
        TEAM,
        KID,
        rcgen::PublicKeyData::subject_public_key_info(&key),
    );
    let client = https_client(&[&ca.der], &[APNS_HOST], peer.addr);
    let jwt = apns_jwt(&key.serialize_pem(), KID, TEAM, now_secs());
    let resp = client
        .post(format!("{}/3/device/{}", peer.url(), apns_device_token("voip")))
        .header("authorization", format!("bearer {jwt}"))
        .header("apns-topic", format!("{TOPIC}.voip"))
        .header("apns-push-type", "voip")
        .header("apns-priority", "10")
        .body(r#"{"aps":{}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(peer.requests()[0].verified);
}

#[tokio::test]
async fn apns_rejects_forged_and_wrong_provider_tokens() {
    let a = apns();
    let token = apns_device_token("phone-1");
    let (other_key, _) = apns_key(KID);
    let now = now_secs();
    let forged = apns_jwt(&other_key, KID, TEAM, now);
    let mut tampered = a.jwt();
    tampered.replace_range(tampered.len() - 4.., "AAAA");
    let der_sig = {
        // A DER-encoded signature (what some libraries produce) is not ES256 in a JWT.
        let jwt = a.jwt();
        let (input, _) = jwt.rsplit_once('.').unwrap();
        format!("{input}.{}", b64(&[0x30; 70]))
    };
    let cases = [
        (forged, "InvalidProviderToken"),
        (tampered, "InvalidProviderToken"),
        (der_sig, "InvalidProviderToken"),
        (apns_jwt(&a.p8, "OTHERKEY00", TEAM, now), "InvalidProviderToken"),
        (apns_jwt(&a.p8, KID, "OTHERTEAM0", now), "InvalidProviderToken"),
        (apns_jwt(&a.p8, KID, TEAM, now - 3700), "ExpiredProviderToken"),
        (apns_jwt(&a.p8, KID, TEAM, now + 3700), "InvalidProviderToken"),
        (
            es256(
                &a.p8,
                &json!({"alg": "ES256", "kid": KID}),
                &json!({"iss": TEAM, "iat": "now"}),
            ),
            "InvalidProviderToken",
        ),
        (
            es256(
                &a.p8,
                &json!({"alg": "HS256", "kid": KID}),
                &json!({"iss": TEAM, "iat": now}),
            ),
            "InvalidProviderToken",
        ),
        ("not-a-jwt".to_string(), "InvalidProviderToken"),
    ];
    for (jwt, want) in &cases {
        let (status, _, body) = a.push(&token, jwt, |r| r).await;
        assert_eq!((status, reason(&body).as_str()), (403, *want), "{jwt}");
    }
    let (status, _, body) = a
        .push(&token, "", |r| {
            // reqwest cannot remove a header: send a fresh request without authorization.
            let _ = r;
            a.client
                .post(format!("{}/3/device/{token}", a.peer.url()))
                .header("apns-topic", TOPIC)
                .header("apns-push-type", "alert")
                .header("apns-priority", "10")
                .body(r#"{"aps":{}}"#)
        })
        .await;
    assert_eq!((status, reason(&body).as_str()), (403, "MissingProviderToken"));
    let reqs = a.peer.requests();
    assert_eq!(reqs.len(), cases.len() + 1);
    assert!(reqs.iter().all(|r| !r.verified && r.status == 403), "{reqs:#?}");
    assert!(reqs[0].auth_error.as_deref().unwrap().contains("does not verify"));
}

#[tokio::test]
async fn apns_rejects_a_provider_token_changed_on_the_connection_too_soon() {
    let a = apns();
    let token = apns_device_token("phone-1");
    let now = now_secs();
    let first = apns_jwt(&a.p8, KID, TEAM, now - 10);
    assert_eq!(a.push(&token, &first, |r| r).await.0, 200);
    // Re-signing the same claims (ES256 signatures differ every time) is the same token.
    let resigned = apns_jwt(&a.p8, KID, TEAM, now - 10);
    assert_ne!(resigned, first);
    assert_eq!(a.push(&token, &resigned, |r| r).await.0, 200);
    let second = apns_jwt(&a.p8, KID, TEAM, now);
    let (status, _, body) = a.push(&token, &second, |r| r).await;
    assert_eq!(
        (status, reason(&body).as_str()),
        (429, "TooManyProviderTokenUpdates")
    );
    assert!(a.peer.requests()[2].verified, "the token itself is valid");
}

#[tokio::test]
async fn apns_rejects_bad_headers_tokens_and_payloads() {
    let a = apns();
    let jwt = a.jwt();
    let good = apns_device_token("phone-1");
    type Tweak = fn(reqwest::RequestBuilder) -> reqwest::RequestBuilder;
    let cases: [(&str, Tweak, u16, &str); 10] = [
        (
            &good,
            |r| r.header("apns-push-type", "background"),
            400,
            "InvalidPushType",
        ),
        (
            &good,
            |r| r.header("apns-topic", "com.example.chat.voip"),
            400,
            "InvalidPushType",
        ),
        (&good, |r| r.header("apns-priority", "7"), 400, "BadPriority"),
        (&good, |r| r.header("apns-id", "not-a-uuid"), 400, "BadMessageId"),
        (
            &good,
            |r| r.header("apns-expiration", "soon"),
            400,
            "BadExpirationDate",
        ),
        (
            &good,
            |r| r.header("apns-collapse-id", "x".repeat(65)),
            400,
            "BadCollapseId",
        ),
        (&good, |r| r.body(""), 400, "PayloadEmpty"),
        (&good, |r| r.body("not json"), 400, "BadPayload"),
        (
            &good,
            |r| r.body(format!(r#"{{"aps":{{}},"m":"{}"}}"#, "x".repeat(4100))),
            413,
            "PayloadTooLarge",
        ),
        ("phone-1", |r| r, 400, "BadDeviceToken"),
    ];
    for (i, (token, tweak, status, want)) in cases.into_iter().enumerate() {
        let (s, _, body) = a.push(token, &jwt, tweak).await;
        assert_eq!((s, reason(&body).as_str()), (status, want), "case {i}");
    }
    // Missing headers: build the request from scratch.
    let base = || {
        a.client
            .post(format!("{}/3/device/{good}", a.peer.url()))
            .header("authorization", format!("bearer {jwt}"))
            .body(r#"{"aps":{}}"#)
    };
    let missing = [
        (
            base()
                .header("apns-push-type", "alert")
                .header("apns-priority", "10"),
            "MissingTopic",
        ),
        (
            base().header("apns-topic", TOPIC).header("apns-priority", "10"),
            "InvalidPushType",
        ),
        (
            base()
                .header("apns-topic", TOPIC)
                .header("apns-push-type", "alert"),
            "BadPriority",
        ),
    ];
    for (req, want) in missing {
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 400);
        assert_eq!(reason(&resp.text().await.unwrap()), want);
    }
    let resp = a
        .client
        .get(format!("{}/3/device/{good}", a.peer.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 405);
    let resp = a
        .client
        .post(format!("{}/2/device/{good}", a.peer.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert!(a.peer.requests().iter().all(|r| r.status != 200));
}

#[tokio::test]
async fn apns_applies_behaviours() {
    let a = apns();
    let jwt = a.jwt();
    let [gone, bad, flaky, slow] = ["gone", "bad", "flaky", "slow"].map(apns_device_token);
    a.peer.behave(&gone, ApnsBehaviour::Reason(410, "Unregistered"));
    a.peer.behave(&bad, ApnsBehaviour::Reason(400, "BadDeviceToken"));
    a.peer.behave(&flaky, ApnsBehaviour::FailTimes(2, 503));
    a.peer
        .behave(&slow, ApnsBehaviour::Delay(Duration::from_millis(300)));

    let (status, headers, body) = a.push(&gone, &jwt, |r| r).await;
    assert_eq!(status, 410);
    assert!(headers.contains_key("apns-id"));
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["reason"], "Unregistered");
    assert!(v["timestamp"].as_i64().unwrap() > 1_600_000_000_000);
    let (status, _, body) = a.push(&bad, &jwt, |r| r).await;
    assert_eq!((status, reason(&body).as_str()), (400, "BadDeviceToken"));

    let mut flaky_statuses = Vec::new();
    for _ in 0..3 {
        flaky_statuses.push(a.push(&flaky, &jwt, |r| r).await.0);
    }
    assert_eq!(flaky_statuses, [503, 503, 200]);

    let started = Instant::now();
    assert_eq!(a.push(&slow, &jwt, |r| r).await.0, 200);
    assert!(started.elapsed() >= Duration::from_millis(300));
    let statuses: Vec<u16> = a.peer.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [410, 400, 503, 503, 200, 200]);
}

#[tokio::test]
async fn apns_speaks_only_h2_and_closes_everything_on_drop() {
    let a = apns();
    let ca = &a.ca;
    let err = handshake(a.peer.addr, APNS_HOST, client_config(&[&ca.der], &[b"http/1.1"])).await;
    assert!(err.is_err(), "an http/1.1-only client must fail the handshake");
    let h = handshake(a.peer.addr, APNS_HOST, client_config(&[&ca.der], &[]))
        .await
        .unwrap();
    assert_eq!(h.alpn, None);
    crate::support::eventually("the ALPN-less connection is closed", || async {
        (a.peer.non_h2_connections() == 1).then_some(())
    })
    .await;

    // A delayed answer in flight ends when the stand-in goes away.
    let token = apns_device_token("slow");
    a.peer
        .behave(&token, ApnsBehaviour::Delay(Duration::from_secs(3600)));
    let req = a
        .client
        .post(format!("{}/3/device/{token}", a.peer.url()))
        .header("authorization", format!("bearer {}", a.jwt()))
        .header("apns-topic", TOPIC)
        .header("apns-push-type", "alert")
        .header("apns-priority", "10")
        .body(r#"{"aps":{}}"#)
        .send();
    let pending = tokio::spawn(req);
    crate::support::eventually("the delayed push arrived", || async {
        (a.peer.requests().len() == 1).then_some(())
    })
    .await;
    let addr = a.peer.addr;
    drop(a);
    let outcome = tokio::time::timeout(crate::support::patience(), pending).await;
    let outcome = outcome.expect("the pending push ends").unwrap();
    assert!(outcome.is_err() || outcome.unwrap().status() != 200);
    crate::support::eventually("the listener is closed", || async {
        tokio::net::TcpStream::connect(addr).await.is_err().then_some(())
    })
    .await;
}
