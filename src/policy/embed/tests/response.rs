//! [`EmbedRule::apply`] on whole response headers, as the proxy calls it on every upstream response of
//! a virtual host with `[embed]`.

use http::header::{
    HeaderName, CONTENT_SECURITY_POLICY as CSP, CONTENT_SECURITY_POLICY_REPORT_ONLY as CSP_REPORT_ONLY,
};
use pingora_http::ResponseHeader;

use super::super::EmbedRule;
use super::origin;

/// The directive [`rule`] puts in every policy.
const OURS: &str = "frame-ancestors 'self' https://webapp.example.org";

/// The rule for the Kopano WebApp of the spec.
fn rule() -> EmbedRule {
    EmbedRule::new(&[origin("https://webapp.example.org")])
}

/// A 200 response with `headers`, in order.
fn response(headers: &[(&'static str, &'static str)]) -> ResponseHeader {
    let mut resp = ResponseHeader::build(200, None).unwrap();
    for &(name, value) in headers {
        resp.append_header(name, value).unwrap();
    }
    resp
}

fn values<'r>(resp: &'r ResponseHeader, name: &HeaderName) -> Vec<&'r str> {
    resp.headers
        .get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect()
}

#[test]
fn mattermost_keeps_its_policy_and_loses_x_frame_options() {
    let mut resp = response(&[
        ("X-Frame-Options", "SAMEORIGIN"),
        (
            "Content-Security-Policy",
            "frame-ancestors 'self' ; script-src 'self' cdn.rudderlabs.com",
        ),
        ("Content-Type", "text/html"),
    ]);
    rule().apply(&mut resp);
    assert!(resp.headers.get("x-frame-options").is_none());
    assert_eq!(
        values(&resp, &CSP),
        ["frame-ancestors 'self' https://webapp.example.org ; script-src 'self' cdn.rudderlabs.com"]
    );
    assert_eq!(resp.headers["content-type"], "text/html");
    assert_eq!(resp.headers.len(), 2);
}

#[test]
fn a_response_without_csp_gets_the_directive_alone() {
    for headers in [
        &[("X-Frame-Options", "DENY")][..],
        &[("Content-Type", "image/png")],
    ] {
        let mut resp = response(headers);
        rule().apply(&mut resp);
        assert!(resp.headers.get("x-frame-options").is_none(), "{headers:?}");
        assert_eq!(values(&resp, &CSP), [OURS], "{headers:?}");
    }
    let several = EmbedRule::new(&[
        origin("https://webapp.example.org"),
        origin("http://deskapp.example.org:8080"),
        origin("https://WEBAPP.example.org/"),
    ]);
    let mut resp = response(&[]);
    several.apply(&mut resp);
    assert_eq!(
        values(&resp, &CSP),
        ["frame-ancestors 'self' https://webapp.example.org http://deskapp.example.org:8080"]
    );
}

#[test]
fn report_only_alone_is_rewritten_and_an_enforcing_policy_added() {
    // With X-Frame-Options gone, a policy that enforces nothing would let any site frame the page.
    let mut resp = response(&[
        ("X-Frame-Options", "SAMEORIGIN"),
        ("Content-Security-Policy-Report-Only", "default-src 'self'"),
    ]);
    rule().apply(&mut resp);
    assert_eq!(
        values(&resp, &CSP_REPORT_ONLY),
        ["default-src 'self'; frame-ancestors 'self' https://webapp.example.org"]
    );
    assert_eq!(values(&resp, &CSP), [OURS]);
    assert_eq!(resp.headers.len(), 2);
}

#[test]
fn every_value_of_a_repeated_header_is_rewritten_on_its_own() {
    let mut resp = response(&[
        ("Content-Security-Policy", "script-src 'self'"),
        ("Content-Security-Policy-Report-Only", "frame-ancestors 'none'"),
        ("Content-Security-Policy", "frame-ancestors *; img-src data:"),
    ]);
    rule().apply(&mut resp);
    assert_eq!(
        values(&resp, &CSP),
        [
            "script-src 'self'; frame-ancestors 'self' https://webapp.example.org",
            "frame-ancestors 'self' https://webapp.example.org; img-src data:",
        ]
    );
    assert_eq!(values(&resp, &CSP_REPORT_ONLY), [OURS]);
    assert_eq!(resp.headers.len(), 3);
}

#[test]
fn applying_twice_changes_nothing_more() {
    for headers in [
        &[][..],
        &[("Content-Security-Policy-Report-Only", "img-src *")],
        &[
            ("X-Frame-Options", "DENY"),
            ("Content-Security-Policy", "frame-ancestors 'none', script-src a"),
        ],
    ] {
        let mut once = response(headers);
        rule().apply(&mut once);
        let mut twice = once.clone();
        rule().apply(&mut twice);
        assert_eq!(once.headers, twice.headers, "{headers:?}");
    }
}
