//! ACME errors as an admin reads them: the CA's RFC 8555 problem document (section 6.7) as
//! `type: detail`, instead of rustls-acme's debug dump of the whole authorization or order.

use std::fmt::Debug;

use rustls_acme::acme::{AcmeError, Auth, Identifier, Problem};
use rustls_acme::{EventError, OrderError};

/// `type: detail`, or whichever half the CA sent.
pub fn problem(p: &Problem) -> String {
    match (p.typ.as_deref(), p.detail.as_deref()) {
        (Some(t), Some(d)) => format!("{t}: {d}"),
        (Some(t), None) => t.to_string(),
        (None, Some(d)) => d.to_string(),
        (None, None) => "the CA gave no details".to_string(),
    }
}

/// One line for the log, `cert status` and the admin listener.
pub fn describe<EC: Debug + std::fmt::Display, EA: Debug + std::fmt::Display>(
    err: &EventError<EC, EA>,
) -> String {
    match err {
        EventError::Order(o) => describe_order(o),
        other => other.to_string(),
    }
}

fn describe_order(err: &OrderError) -> String {
    match err {
        OrderError::BadAuth(auth) => describe_auth(auth),
        OrderError::BadOrder(order) => match &order.error {
            Some(p) => format!("the CA marked the order invalid: {}", problem(p)),
            None => "the CA marked the order invalid".to_string(),
        },
        OrderError::Acme(AcmeError::HttpRequest(e)) => {
            let text = e.to_string();
            match refused(&text) {
                Some((status, Some(p))) => format!("the CA refused the request ({status}): {}", problem(&p)),
                Some((status, None)) => format!("the CA refused the request ({status})"),
                None => format!("cannot reach the CA: {}", io_message(&text)),
            }
        }
        other => other.to_string(),
    }
}

fn describe_auth(auth: &Auth) -> String {
    let Identifier::Dns(name) = &auth.identifier;
    let problems: Vec<String> = auth
        .challenges
        .iter()
        .filter_map(|c| c.error.as_ref())
        .map(problem)
        .collect();
    if problems.is_empty() {
        let status = format!("{:?}", auth.status).to_lowercase();
        format!("validation of {name} failed: the authorization is {status}")
    } else {
        format!("validation of {name} failed: {}", problems.join("; "))
    }
}

/// rustls-acme keeps the CA's answer only as text: `non 2xx http status: 403 "<body, escaped>"`.
/// The status and the problem document in the body, if it has one.
fn refused(text: &str) -> Option<(u16, Option<Problem>)> {
    let rest = text.split("non 2xx http status: ").nth(1)?;
    let (status, body) = rest.split_once(' ')?;
    let status: u16 = status.parse().ok()?;
    let body = unescape_debug(body.trim().trim_matches('"'));
    let problem = serde_json::from_str::<Problem>(&body)
        .ok()
        .filter(|p| p.typ.is_some() || p.detail.is_some());
    Some((status, problem))
}

/// rustls-acme prints I/O errors with `{:?}` (`Os { code: 111, kind: ConnectionRefused, message:
/// "Connection refused" }`): the message alone, when there is one.
fn io_message(text: &str) -> String {
    text.split_once("message: \"")
        .and_then(|(_, rest)| rest.split_once('"'))
        .map_or_else(|| text.to_string(), |(m, _)| m.to_string())
}

/// Undo `{:?}` string escaping (`\"`, `\\`, `\n`, `\t`, `\r`, `\u{..}`).
fn unescape_debug(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('0') => out.push('\0'),
            Some('u') => {
                let hex: String = chars
                    .by_ref()
                    .skip_while(|c| *c == '{')
                    .take_while(|c| *c != '}')
                    .collect();
                if let Some(ch) = u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                    out.push(ch);
                }
            }
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problem_documents_are_type_colon_detail() {
        let p: Problem = serde_json::from_str(
            r#"{"type":"urn:ietf:params:acme:error:connection","detail":"127.0.0.1: Connection refused","status":400}"#,
        )
        .unwrap();
        assert_eq!(
            problem(&p),
            "urn:ietf:params:acme:error:connection: 127.0.0.1: Connection refused"
        );
    }

    #[test]
    fn a_failed_authorization_shows_the_challenge_problem() {
        let auth: Auth = serde_json::from_str(
            r#"{"status":"invalid","identifier":{"type":"dns","value":"acme.test"},
                "challenges":[{"type":"http-01","url":"https://ca/c/1","token":"t",
                "error":{"type":"urn:ietf:params:acme:error:unauthorized","detail":"wrong key authorization"}}]}"#,
        )
        .unwrap();
        assert_eq!(
            describe_order(&OrderError::BadAuth(auth)),
            "validation of acme.test failed: urn:ietf:params:acme:error:unauthorized: wrong key authorization"
        );
    }

    #[test]
    fn a_refused_request_shows_the_problem_in_its_body() {
        let body = r#"{"type":"urn:ietf:params:acme:error:rateLimited","detail":"too many failed authorizations (5) for \"acme.test\" in the last 1h0m0s"}"#;
        let text = format!("non 2xx http status: 429 {body:?}");
        let (status, p) = refused(&text).unwrap();
        assert_eq!(status, 429);
        assert_eq!(
            problem(&p.unwrap()),
            "urn:ietf:params:acme:error:rateLimited: too many failed authorizations (5) for \"acme.test\" in the last 1h0m0s"
        );
        assert!(matches!(
            refused("non 2xx http status: 502 \"<html>\""),
            Some((502, None))
        ));
        assert_eq!(unescape_debug(r"a\u{1b}b\\c"), "a\u{1b}b\\c");
        assert_eq!(
            io_message(
                r#"http request error: io error: Os { code: 111, kind: ConnectionRefused, message: "Connection refused" }"#
            ),
            "Connection refused"
        );
    }
}
