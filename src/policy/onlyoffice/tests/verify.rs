//! [`Verifier`]: signature, algorithm, time claims and the `download` file binding, and that nothing
//! secret shows in a message or `Debug`.

use super::super::{Algorithm, Applied, Reject, RelayRule, Verifier, REJECT_BODY};
use super::*;

#[test]
fn expired_token_is_rejected() {
    // exp + 60 s leeway is one second in the past.
    let token = download_token(FILE_ID, NOW - 61);
    let mut req = download_request(&format!("Bearer {token}"));
    assert_eq!(verifying_rule().apply_at(&mut req, now()), Err(Reject::Expired));
    // A refused request is left as it came: the caller answers 403 without forwarding it.
    assert_eq!(header(&req, "authorizationjwt"), None);
}

#[test]
fn expired_token_within_leeway_is_accepted() {
    let token = download_token(FILE_ID, NOW - 30);
    let mut req = download_request(&format!("Bearer {token}"));
    assert_eq!(verifying_rule().apply_at(&mut req, now()), Ok(Applied::Relayed));
    // At exactly exp + leeway the token is still good ("now > exp + 60" rejects).
    let token = download_token(FILE_ID, NOW - 60);
    let mut req = download_request(&format!("Bearer {token}"));
    assert_eq!(verifying_rule().apply_at(&mut req, now()), Ok(Applied::Relayed));
    // A custom leeway replaces the default.
    let strict = RelayRule::mattermost().with_verifier(
        Verifier::new(Algorithm::HS256, SECRET.to_vec())
            .unwrap()
            .with_leeway(Duration::ZERO),
    );
    let mut req = download_request(&format!("Bearer {token}"));
    assert_eq!(strict.apply_at(&mut req, now()), Err(Reject::Expired));
}

#[test]
fn future_nbf_and_iat_are_refused_beyond_the_leeway() {
    let rule = verifying_rule();
    let with = |claims: Value| {
        let token = sign_with("HS256", SECRET, &claims);
        let mut req = request("POST", CALLBACK, &[("Authorization", &format!("Bearer {token}"))]);
        rule.apply_at(&mut req, now())
    };
    for claim in ["nbf", "iat"] {
        // Within the leeway (clock skew), at or before now: accepted.
        for at in [NOW - 600, NOW, NOW + 30] {
            assert_eq!(
                with(serde_json::json!({ claim: at, "exp": NOW + 240 })),
                Ok(Applied::Relayed),
                "{claim}={at}"
            );
        }
        // Later than now plus the leeway: not valid yet.
        for at in [NOW + 61, NOW + 3600, NOW + 10 * 365 * 86400] {
            assert_eq!(
                with(serde_json::json!({ claim: at, "exp": NOW + 7200 })),
                Err(Reject::NotYetValid),
                "{claim}={at}"
            );
        }
        assert_eq!(
            with(serde_json::json!({ claim: "soon" })),
            Err(Reject::Malformed),
            "{claim}"
        );
    }
}

#[test]
fn missing_exp_is_accepted_and_non_numeric_exp_is_malformed() {
    let url = format!("https://chat.example.com{DOWNLOAD}?id={FILE_ID}");
    let token = sign_with("HS256", SECRET, &serde_json::json!({ "payload": { "url": url } }));
    let mut req = download_request(&format!("Bearer {token}"));
    assert_eq!(verifying_rule().apply_at(&mut req, now()), Ok(Applied::Relayed));

    let token = sign_with(
        "HS256",
        SECRET,
        &serde_json::json!({ "payload": { "url": url }, "exp": "soon" }),
    );
    let mut req = download_request(&format!("Bearer {token}"));
    assert_eq!(verifying_rule().apply_at(&mut req, now()), Err(Reject::Malformed));
}

#[test]
fn wrong_signature_is_rejected() {
    let url = format!("https://chat.example.com{DOWNLOAD}?id={FILE_ID}");
    let claims = serde_json::json!({ "payload": { "url": url }, "exp": NOW + 240 });
    let forged = sign_with("HS256", b"not-the-secret", &claims);
    let mut req = download_request(&format!("Bearer {forged}"));
    assert_eq!(
        verifying_rule().apply_at(&mut req, now()),
        Err(Reject::BadSignature)
    );

    // A valid signature over a different payload: swap the payload of a genuine token.
    let genuine = valid_token();
    let other = download_token("otherfileid0000000000000000", NOW + 240);
    let mut parts: Vec<&str> = genuine.split('.').collect();
    parts[1] = other.split('.').nth(1).unwrap();
    let mut req = download_request(&format!("Bearer {}", parts.join(".")));
    assert_eq!(
        verifying_rule().apply_at(&mut req, now()),
        Err(Reject::BadSignature)
    );

    // A truncated signature (whole base64 quanta, 30 bytes) has the wrong length: still a bad
    // signature, never a panic.
    let truncated = &genuine[..genuine.len() - 3];
    let mut req = download_request(&format!("Bearer {truncated}"));
    assert_eq!(
        verifying_rule().apply_at(&mut req, now()),
        Err(Reject::BadSignature)
    );
}

#[test]
fn alg_none_is_rejected() {
    let url = format!("https://chat.example.com{DOWNLOAD}?id={FILE_ID}");
    let claims = serde_json::json!({ "payload": { "url": url }, "exp": NOW + 240 });
    for alg in ["none", "None", "hs256"] {
        let token = sign_with(alg, SECRET, &claims);
        let mut req = download_request(&format!("Bearer {token}"));
        assert_eq!(
            verifying_rule().apply_at(&mut req, now()),
            Err(Reject::WrongAlgorithm),
            "{alg}"
        );
    }
}

#[test]
fn other_hmac_than_configured_is_rejected() {
    let url = format!("https://chat.example.com{DOWNLOAD}?id={FILE_ID}");
    let claims = serde_json::json!({ "payload": { "url": url }, "exp": NOW + 240 });
    let hs512 = sign_with("HS512", SECRET, &claims);
    let mut req = download_request(&format!("Bearer {hs512}"));
    assert_eq!(
        verifying_rule().apply_at(&mut req, now()),
        Err(Reject::WrongAlgorithm)
    );

    // Configured for HS512, the same token passes and an HS256 one does not.
    let rule = RelayRule::mattermost()
        .with_verifier(Verifier::new("hs512".parse().unwrap(), SECRET.to_vec()).unwrap());
    let mut req = download_request(&format!("Bearer {hs512}"));
    assert_eq!(rule.apply_at(&mut req, now()), Ok(Applied::Relayed));
    let mut req = download_request(&format!("Bearer {}", valid_token()));
    assert_eq!(rule.apply_at(&mut req, now()), Err(Reject::WrongAlgorithm));

    let hs384 = sign_with("HS384", SECRET, &claims);
    let rule =
        RelayRule::mattermost().with_verifier(Verifier::new(Algorithm::HS384, SECRET.to_vec()).unwrap());
    let mut req = download_request(&format!("Bearer {hs384}"));
    assert_eq!(rule.apply_at(&mut req, now()), Ok(Applied::Relayed));
}

#[test]
fn mismatched_file_id_is_rejected() {
    let token = download_token("someotherfile00000000000000", NOW + 240);
    let mut req = download_request(&format!("Bearer {token}"));
    assert_eq!(
        verifying_rule().apply_at(&mut req, now()),
        Err(Reject::IdMismatch)
    );

    let token = valid_token();
    let auth = format!("Bearer {token}");
    for target in [
        DOWNLOAD.to_string(),                            // no query
        format!("{DOWNLOAD}?file={FILE_ID}"),            // no id
        format!("{DOWNLOAD}?id={FILE_ID}&id=otherfile"), // repeated: which one would the plugin use?
        format!("{DOWNLOAD}?id=otherfile&id={FILE_ID}"),
    ] {
        let mut req = request("GET", &target, &[("Authorization", &auth)]);
        assert_eq!(
            verifying_rule().apply_at(&mut req, now()),
            Err(Reject::IdMismatch),
            "{target}"
        );
    }

    // Encoded the same way or differently, the same id matches.
    let mut req = request(
        "GET",
        &format!("{DOWNLOAD}?x=1&%69d={FILE_ID}"),
        &[("Authorization", &auth)],
    );
    assert_eq!(verifying_rule().apply_at(&mut req, now()), Ok(Applied::Relayed));

    // A token with no payload.url does not authorise any download.
    let bare = sign_with("HS256", SECRET, &serde_json::json!({ "exp": NOW + 240 }));
    let mut req = download_request(&format!("Bearer {bare}"));
    assert_eq!(
        verifying_rule().apply_at(&mut req, now()),
        Err(Reject::IdMismatch)
    );
}

#[test]
fn callback_is_not_bound_to_a_file_id() {
    // The callback's header token signs the body, which this layer does not see.
    let body_token = sign_with(
        "HS256",
        SECRET,
        &serde_json::json!({ "payload": { "status": 2 }, "exp": NOW + 240 }),
    );
    let mut req = request(
        "POST",
        &format!("{CALLBACK}?file={FILE_ID}"),
        &[("Authorization", &format!("Bearer {body_token}"))],
    );
    assert_eq!(verifying_rule().apply_at(&mut req, now()), Ok(Applied::Relayed));
}

#[test]
fn rfc7515_hs256_example_verifies() {
    // RFC 7515 appendix A.1: an independent known-answer test of the HMAC and base64url path.
    let key = URL_SAFE_NO_PAD
        .decode("AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow")
        .unwrap();
    let token = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9\
                 .eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ\
                 .dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    let verifier = Verifier::new(Algorithm::HS256, key).unwrap();
    let at = UNIX_EPOCH + Duration::from_secs(1_300_819_380);
    assert_eq!(verifier.verify(token, at, None), Ok(()));
    assert_eq!(
        verifier.verify(token, at + Duration::from_secs(61), None),
        Err(Reject::Expired)
    );
}

#[test]
fn nothing_secret_in_errors_or_debug() {
    let token = valid_token();
    let verifier = Verifier::new(Algorithm::HS256, SECRET.to_vec()).unwrap();
    let secret = std::str::from_utf8(SECRET).unwrap();
    for shown in [format!("{verifier:?}"), format!("{:?}", verifying_rule())] {
        assert!(!shown.contains(secret), "{shown}");
        assert!(!shown.contains(&format!("{:?}", SECRET)), "{shown}");
    }
    let all = [
        Reject::Missing,
        Reject::Malformed,
        Reject::WrongAlgorithm,
        Reject::BadSignature,
        Reject::Expired,
        Reject::IdMismatch,
    ];
    let mut reasons: Vec<&str> = all.iter().map(Reject::reason).collect();
    for r in all {
        let (shown, debug) = (r.to_string(), format!("{r:?}"));
        assert_eq!(shown, shown.to_lowercase());
        assert!(!shown.contains(&token) && !debug.contains(&token));
        assert!(r.reason().bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
    }
    reasons.dedup();
    assert_eq!(reasons.len(), 6);
    assert_eq!(Reject::BadSignature.reason(), "bad_signature");
    assert_eq!(REJECT_BODY, br#"{"error":1}"#);
}
