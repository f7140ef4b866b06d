//! [`RelayRule`] on requests: which are relayed, which are left alone, which are refused, and how
//! the headers look on the wire afterwards.

use http::header::AUTHORIZATION;
use regex::Regex;

use super::super::jwt::MAX_TOKEN_LEN;
use super::super::{Algorithm, Applied, Reject, RelayRule, RuleError, SecretError, Verifier, DEFAULT_PATHS};
use super::*;

#[test]
fn valid_token_is_relayed_to_the_custom_header() {
    let token = valid_token();
    let mut req = download_request(&format!("Bearer {token}"));
    assert_eq!(verifying_rule().apply_at(&mut req, now()), Ok(Applied::Relayed));
    assert_eq!(header(&req, "authorization"), None);
    assert_eq!(
        header(&req, "authorizationjwt"),
        Some(format!("Bearer {token}").as_str())
    );
    // The case map was kept in sync: the wire has the configured spelling and no Authorization.
    let wire = wire(&req);
    assert!(
        wire.contains(&format!("AuthorizationJWT: Bearer {token}\r\n")),
        "{wire}"
    );
    assert!(!wire.to_ascii_lowercase().contains("authorization:"), "{wire}");
}

#[test]
fn relay_without_verifier_only_renames() {
    let mut req = request(
        "POST",
        CALLBACK,
        &[("Authorization", "Bearer opaque"), ("X-Other", "1")],
    );
    assert_eq!(
        RelayRule::default().apply_at(&mut req, now()),
        Ok(Applied::Relayed)
    );
    assert_eq!(header(&req, "authorizationjwt"), Some("Bearer opaque"));
    assert_eq!(header(&req, "authorization"), None);
    assert_eq!(header(&req, "x-other"), Some("1"));
}

#[test]
fn missing_header() {
    let mut req = request("GET", &format!("{DOWNLOAD}?id={FILE_ID}"), &[]);
    assert_eq!(verifying_rule().apply_at(&mut req, now()), Err(Reject::Missing));
    // Without a verifier the rule has nothing to move and leaves the decision to the plugin.
    assert_eq!(
        RelayRule::mattermost().apply_at(&mut req, now()),
        Ok(Applied::NoToken)
    );
    assert!(req.headers.is_empty());
}

#[test]
fn malformed_values_are_rejected() {
    let token = valid_token();
    let two_parts: String = token.rsplit_once('.').unwrap().0.to_string();
    for auth in [
        "Bearer not-a-jwt".to_string(),
        "Bearer a.b.c".to_string(),
        format!("Bearer {two_parts}"),
        format!("Bearer {token}.extra"),
        format!("Bearer {token}="),
        format!("Bearer {}", "A".repeat(MAX_TOKEN_LEN + 1)),
    ] {
        let mut req = download_request(&auth);
        assert_eq!(
            verifying_rule().apply_at(&mut req, now()),
            Err(Reject::Malformed),
            "{auth}"
        );
    }
    // Not a single token: refused even without a verifier, as nothing sensible can be relayed.
    for auth in ["Basic dXNlcjpwYXNz", "Bearer", "Bearer   ", "", "Bearer a b"] {
        let mut req = download_request(auth);
        assert_eq!(
            RelayRule::mattermost().apply_at(&mut req, now()),
            Err(Reject::Malformed),
            "{auth:?}"
        );
    }
    // Two Authorization headers: the proxy and the upstream could pick different ones.
    let auth = format!("Bearer {token}");
    let mut req = request(
        "GET",
        &format!("{DOWNLOAD}?id={FILE_ID}"),
        &[("Authorization", auth.as_str()), ("Authorization", auth.as_str())],
    );
    assert_eq!(verifying_rule().apply_at(&mut req, now()), Err(Reject::Malformed));
    // A header JSON that is not an object, or lacks alg.
    let claims = b64(br#"{"exp":1}"#);
    for header in [b64(b"[1]"), b64(br#"{"typ":"JWT"}"#), "!!".to_string()] {
        let mut req = download_request(&format!("Bearer {header}.{claims}.c2ln"));
        assert_eq!(verifying_rule().apply_at(&mut req, now()), Err(Reject::Malformed));
    }
}

#[test]
fn token_already_in_custom_header_is_accepted() {
    let token = valid_token();
    let mut req = request(
        "GET",
        &format!("{DOWNLOAD}?id={FILE_ID}"),
        &[("AuthorizationJWT", &format!("bearer  {token}"))],
    );
    assert_eq!(
        verifying_rule().apply_at(&mut req, now()),
        Ok(Applied::AlreadyCustom)
    );
    assert_eq!(
        header(&req, "authorizationjwt"),
        Some(format!("Bearer {token}").as_str())
    );
    assert_eq!(req.headers.len(), 1);

    // A forged one in the custom header is verified just the same.
    let forged = sign_with("HS256", b"guess", &serde_json::json!({ "exp": NOW + 240 }));
    let mut req = request(
        "GET",
        &format!("{DOWNLOAD}?id={FILE_ID}"),
        &[("AuthorizationJWT", &format!("Bearer {forged}"))],
    );
    assert_eq!(
        verifying_rule().apply_at(&mut req, now()),
        Err(Reject::BadSignature)
    );

    // When both carry one, `from` wins and a client's copy of `to` is replaced by the verified one.
    let mut req = request(
        "GET",
        &format!("{DOWNLOAD}?id={FILE_ID}"),
        &[
            ("Authorization", &format!("Bearer {token}")),
            ("AuthorizationJWT", "Bearer planted"),
        ],
    );
    assert_eq!(verifying_rule().apply_at(&mut req, now()), Ok(Applied::Relayed));
    assert_eq!(
        header(&req, "authorizationjwt"),
        Some(format!("Bearer {token}").as_str())
    );
    assert_eq!(req.headers.len(), 1);
}

#[test]
fn lower_case_bearer_and_extra_spaces_are_normalised() {
    let token = valid_token();
    for auth in [
        format!("bearer {token}"),
        format!("BEARER   {token}"),
        format!("  Bearer\t{token}  "),
        token.clone(), // bare token, no prefix
    ] {
        let mut req = download_request(&auth);
        assert_eq!(
            verifying_rule().apply_at(&mut req, now()),
            Ok(Applied::Relayed),
            "{auth:?}"
        );
        assert_eq!(
            header(&req, "authorizationjwt"),
            Some(format!("Bearer {token}").as_str())
        );
    }
}

#[test]
fn non_matching_paths_are_untouched() {
    let auth = "Bearer mattermost-session-token";
    for path in [
        "/api/v4/users/me",
        "/plugins/com.onlyoffice.mattermost/api/editor",
        "/plugins/com.onlyoffice.mattermost/api/download/",
        "/plugins/com.onlyoffice.mattermost/api/downloads",
        "/x/plugins/com.onlyoffice.mattermost/api/download",
        "/plugins/com.onlyoffice.mattermost/api/download%3Fid=1",
    ] {
        let mut req = request(
            "GET",
            path,
            &[("Authorization", auth), ("AuthorizationJWT", "Bearer x")],
        );
        assert_eq!(
            verifying_rule().apply_at(&mut req, now()),
            Ok(Applied::NotMatched),
            "{path}"
        );
        assert_eq!(header(&req, "authorization"), Some(auth));
        assert_eq!(header(&req, "authorizationjwt"), Some("Bearer x"));
        assert!(wire(&req).contains("Authorization: Bearer mattermost-session-token\r\n"));
    }
}

#[test]
fn percent_encoded_path_does_not_escape_the_rule() {
    let forged = sign_with("HS256", b"guess", &serde_json::json!({ "exp": NOW + 240 }));
    for path in [
        "/plugins/com.onlyoffice.mattermost/api/%64ownload",
        "/plugins/com%2Eonlyoffice.mattermost/api/download",
        "/plugins/com.onlyoffice.mattermost/api%2Fcallback",
    ] {
        let mut req = request(
            "GET",
            &format!("{path}?id={FILE_ID}"),
            &[("AuthorizationJWT", &format!("Bearer {forged}"))],
        );
        assert_eq!(
            verifying_rule().apply_at(&mut req, now()),
            Err(Reject::BadSignature),
            "{path}"
        );
    }
    let mut req = request(
        "GET",
        &format!("/plugins/com.onlyoffice.mattermost/api/%64ownload?id={FILE_ID}"),
        &[("Authorization", &format!("Bearer {}", valid_token()))],
    );
    assert_eq!(verifying_rule().apply_at(&mut req, now()), Ok(Applied::Relayed));
}

#[test]
fn websocket_upgrade_gets_the_same_treatment() {
    let upgrade = |auth: &str| {
        request(
            "GET",
            &format!("{DOWNLOAD}?id={FILE_ID}"),
            &[
                ("Upgrade", "websocket"),
                ("Connection", "Upgrade"),
                ("Sec-WebSocket-Version", "13"),
                ("Authorization", auth),
            ],
        )
    };
    let forged = sign_with("HS256", b"guess", &serde_json::json!({ "exp": NOW + 240 }));
    let mut req = upgrade(&format!("Bearer {forged}"));
    assert_eq!(
        verifying_rule().apply_at(&mut req, now()),
        Err(Reject::BadSignature)
    );

    let token = valid_token();
    let mut req = upgrade(&format!("Bearer {token}"));
    assert_eq!(verifying_rule().apply_at(&mut req, now()), Ok(Applied::Relayed));
    assert_eq!(header(&req, "authorization"), None);
    assert_eq!(
        header(&req, "authorizationjwt"),
        Some(format!("Bearer {token}").as_str())
    );
    // Nothing else is renamed or dropped.
    assert_eq!(header(&req, "upgrade"), Some("websocket"));
    assert_eq!(header(&req, "connection"), Some("Upgrade"));

    // Any method, same result.
    for method in ["HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"] {
        let mut req = request(
            method,
            &format!("{DOWNLOAD}?id={FILE_ID}"),
            &[("Authorization", &format!("Bearer {forged}"))],
        );
        assert_eq!(
            verifying_rule().apply_at(&mut req, now()),
            Err(Reject::BadSignature),
            "{method}"
        );
    }
}

#[test]
fn reverse_direction_for_the_document_server() {
    let paths = Regex::new(r"^/(coauthoring/CommandService\.ashx|ConvertService\.ashx)$").unwrap();
    let rule = RelayRule::document_server("AuthorizationJWT", paths).unwrap();
    let mut req = request(
        "POST",
        "/ConvertService.ashx",
        &[("AuthorizationJWT", "bearer tok.en.sig")],
    );
    assert_eq!(rule.apply_at(&mut req, now()), Ok(Applied::Relayed));
    assert_eq!(header(&req, "authorizationjwt"), None);
    assert_eq!(header(&req, "authorization"), Some("Bearer tok.en.sig"));
    assert!(wire(&req).contains("Authorization: Bearer tok.en.sig\r\n"));
    let mut req = request(
        "GET",
        "/web-apps/apps/api/documents/api.js",
        &[("AuthorizationJWT", "Bearer t")],
    );
    assert_eq!(rule.apply_at(&mut req, now()), Ok(Applied::NotMatched));
}

#[test]
fn rule_configuration_is_validated() {
    let paths = || Regex::new(DEFAULT_PATHS).unwrap();
    assert!(matches!(
        RelayRule::new("Authorization", "AUTHORIZATION", "Bearer ", paths()),
        Err(RuleError::SameHeader(_))
    ));
    assert!(matches!(
        RelayRule::new("Author ization", "X", "Bearer ", paths()),
        Err(RuleError::InvalidHeaderName(_))
    ));
    for prefix in ["Bearer\n", "Bearer\t", "Bearé "] {
        assert!(matches!(
            RelayRule::new("Authorization", "X-JWT", prefix, paths()),
            Err(RuleError::InvalidPrefix(_))
        ));
    }
    assert!(matches!(
        "RS256".parse::<Algorithm>(),
        Err(RuleError::UnsupportedAlgorithm(_))
    ));
    assert!(matches!(
        Verifier::new(Algorithm::HS256, Vec::new()),
        Err(SecretError::EmptyKey)
    ));

    // A custom header and an empty prefix: the token travels bare on both sides, and a value with a
    // scheme is not a bare token.
    let rule = RelayRule::new("Authorization", "X-OO-Token", "", paths()).unwrap();
    let mut req = download_request("abc");
    assert_eq!(rule.apply_at(&mut req, now()), Ok(Applied::Relayed));
    assert_eq!(header(&req, "x-oo-token"), Some("abc"));
    let mut req = download_request("Bearer abc");
    assert_eq!(rule.apply_at(&mut req, now()), Err(Reject::Malformed));
}

#[test]
fn default_rule_matches_the_spec() {
    let rule = RelayRule::default();
    assert_eq!(rule.from(), &AUTHORIZATION);
    assert_eq!(rule.to().as_str(), "authorizationjwt");
    assert_eq!(rule.prefix(), "Bearer ");
    assert_eq!(rule.paths().as_str(), DEFAULT_PATHS);
    assert!(rule.verifier().is_none());
    assert!(rule.paths().is_match(DOWNLOAD) && rule.paths().is_match(CALLBACK));
    assert_eq!(Applied::AlreadyCustom.as_str(), "already_custom");
}
