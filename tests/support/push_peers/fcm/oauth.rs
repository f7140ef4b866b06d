//! Google's OAuth2 token endpoint: a service account's RS256 JWT-bearer assertion for a token.

use super::*;

fn percent_decode(s: &str) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hi = (bytes.next()? as char).to_digit(16)?;
                let lo = (bytes.next()? as char).to_digit(16)?;
                out.push((hi * 16 + lo) as u8);
            }
            b => out.push(b),
        }
    }
    String::from_utf8(out).ok()
}

fn parse_form(body: &[u8]) -> Option<HashMap<String, String>> {
    let text = std::str::from_utf8(body).ok()?;
    let mut form = HashMap::new();
    for pair in text.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        form.insert(percent_decode(k)?, percent_decode(v)?);
    }
    Some(form)
}

fn oauth_error(st: &FcmShared, error: &str, description: String) -> Response<Body> {
    st.token_errors
        .lock()
        .unwrap()
        .push(format!("{error}: {description}"));
    json_response(400, &json!({ "error": error, "error_description": description }))
}

pub(super) fn fcm_token(st: &FcmShared, parts: &hyper::http::request::Parts, body: &[u8]) -> Response<Body> {
    st.token_requests.fetch_add(1, Ordering::SeqCst);
    let form_type = parts
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        });
    if !form_type {
        return oauth_error(
            st,
            "invalid_request",
            "content-type must be application/x-www-form-urlencoded".into(),
        );
    }
    let Some(form) = parse_form(body) else {
        return oauth_error(st, "invalid_request", "malformed form body".into());
    };
    let grant = form.get("grant_type").map(String::as_str).unwrap_or("");
    if grant != JWT_BEARER_GRANT {
        return oauth_error(
            st,
            "unsupported_grant_type",
            format!("Invalid grant_type: {grant}"),
        );
    }
    let Some(assertion) = form.get("assertion") else {
        return oauth_error(
            st,
            "invalid_request",
            "Missing required parameter: assertion".into(),
        );
    };
    let jwt = match parse_jwt(assertion) {
        Ok(j) => j,
        Err(e) => return oauth_error(st, "invalid_grant", format!("Invalid JWT: {e}")),
    };
    let invalid_sig = "Invalid JWT Signature.".to_string();
    if jwt.header["alg"] != "RS256" {
        return oauth_error(
            st,
            "invalid_grant",
            format!("Invalid JWT: alg must be RS256: {}", jwt.header),
        );
    }
    if jwt.header.get("typ").is_some_and(|t| t != "JWT") {
        return oauth_error(
            st,
            "invalid_grant",
            format!("Invalid JWT: typ must be JWT: {}", jwt.header),
        );
    }
    if jwt
        .header
        .get("kid")
        .is_some_and(|k| k != st.private_key_id.as_str())
    {
        return oauth_error(st, "invalid_grant", invalid_sig);
    }
    let c = &jwt.claims;
    let Some(email) = c["iss"]
        .as_str()
        .filter(|e| st.accounts.lock().unwrap().contains_key(*e))
    else {
        return oauth_error(
            st,
            "invalid_grant",
            format!("Invalid grant: account not found ({})", c["iss"]),
        );
    };
    let token_uri = format!("http://127.0.0.1:{}/token", st.port);
    if c["aud"] != token_uri.as_str() {
        return oauth_error(
            st,
            "invalid_grant",
            format!("Invalid JWT: Failed audience check. The right audience is {token_uri}"),
        );
    }
    let (iat, exp) = match (int_claim(c, "iat"), int_claim(c, "exp")) {
        (Ok(i), Ok(e)) => (i, e),
        (Err(e), _) | (_, Err(e)) => return oauth_error(st, "invalid_grant", format!("Invalid JWT: {e}")),
    };
    let now = now_secs();
    if exp <= iat || exp - iat > 3600 || iat > now + 300 || exp < now - 300 {
        return oauth_error(
            st,
            "invalid_grant",
            format!(
                "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable \
                 timeframe. Check your iat and exp values in the JWT claim. (iat {iat}, exp {exp}, now {now})"
            ),
        );
    }
    if UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &st.rsa_public_key)
        .verify(jwt.signing_input.as_bytes(), &jwt.signature)
        .is_err()
    {
        return oauth_error(st, "invalid_grant", invalid_sig);
    }
    let scopes = c["scope"].as_str().unwrap_or("");
    if !scopes.split(' ').any(|s| s == FCM_SCOPE) {
        return oauth_error(
            st,
            "invalid_scope",
            format!("Invalid OAuth scope or ID token audience provided ({scopes:?})."),
        );
    }
    let access = format!("ya29.{}", hex(&random_bytes::<32>()));
    let expires_in = st.expires_in.load(Ordering::SeqCst);
    st.tokens.lock().unwrap().insert(
        access.clone(),
        (
            email.to_string(),
            Instant::now() + Duration::from_secs(expires_in),
        ),
    );
    json_response(
        200,
        &json!({ "access_token": access, "expires_in": expires_in, "token_type": "Bearer" }),
    )
}
