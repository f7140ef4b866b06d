//! Forwarded headers and hop-by-hop cleanup for requests going upstream.
//!
//! Mattermost derives the client address and the cookie `Secure` flag from `X-Real-IP`,
//! `X-Forwarded-For` and `X-Forwarded-Proto` (spec/mattermost-proxy.md), so a client must never be
//! able to choose them: copies sent by a client that is not a configured trusted proxy are dropped.

use std::net::IpAddr;

use http::header::{HeaderName, HeaderValue, CONNECTION, TE, TRAILER, UPGRADE};
use pingora_http::RequestHeader;

/// The client chain, each proxy appending the address it saw.
pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// `http` or `https`, as the client reached the edge.
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
/// The Host the client asked for.
pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
/// The client address alone (nginx's convention, which Mattermost reads).
pub const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
const FORWARDED: HeaderName = HeaderName::from_static("forwarded");
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Remove a header only if present: pingora's `remove_header` hashes into two maps (values and the
/// original case), and on the request path the header is almost always absent.
fn remove(req: &mut RequestHeader, name: &HeaderName) {
    if req.headers.contains_key(name) {
        req.remove_header(name);
    }
}

/// Whether the request asks for a protocol upgrade (websocket).
pub fn is_upgrade(req: &RequestHeader) -> bool {
    req.headers.contains_key(UPGRADE)
        && req.headers.get_all(CONNECTION).iter().any(|v| {
            v.as_bytes()
                .split(|&b| b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"upgrade"))
        })
}

/// Remove hop-by-hop headers (RFC 9110 7.6.1): those named in `Connection`, and the fixed set.
/// An upgrade keeps `Upgrade` and `Connection: upgrade`, which the upstream needs to switch.
pub fn strip_hop_by_hop(req: &mut RequestHeader, upgrade: bool) {
    let listed: Vec<HeaderName> = req
        .headers
        .get_all(CONNECTION)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .filter_map(|t| HeaderName::from_bytes(t.trim_ascii()).ok())
        .filter(|n| !(upgrade && n == UPGRADE))
        .collect();
    for name in listed {
        remove(req, &name);
    }
    for name in [KEEP_ALIVE, PROXY_CONNECTION, TE, TRAILER, CONNECTION] {
        remove(req, &name);
    }
    if upgrade {
        // Cannot fail: a static header value.
        let _ = req.insert_header(CONNECTION, HeaderValue::from_static("upgrade"));
    } else {
        remove(req, &UPGRADE);
    }
}

/// Set `X-Forwarded-For` (appended), `X-Real-IP`, `X-Forwarded-Proto`, `X-Forwarded-Host`.
/// `trusted`: the direct peer is a configured trusted proxy, whose copies are kept.
pub fn apply(req: &mut RequestHeader, client: Option<IpAddr>, trusted: bool, proto: &'static str) {
    if !trusted {
        for name in [
            X_FORWARDED_FOR,
            X_FORWARDED_PROTO,
            X_FORWARDED_HOST,
            X_REAL_IP,
            FORWARDED,
        ] {
            remove(req, &name);
        }
    }
    if let Some(ip) = client {
        // One allocation: the formatted address becomes the header value's buffer.
        let ip_value = HeaderValue::from_maybe_shared(bytes::Bytes::from(ip.to_string()))
            .expect("an IP address is a valid header value");
        let prior: Vec<&[u8]> = req
            .headers
            .get_all(X_FORWARDED_FOR)
            .iter()
            .map(|v| v.as_bytes())
            .collect();
        let xff = if prior.is_empty() {
            ip_value.clone()
        } else {
            let mut joined = prior.join(&b", "[..]);
            joined.extend_from_slice(b", ");
            joined.extend_from_slice(ip_value.as_bytes());
            HeaderValue::from_bytes(&joined).unwrap_or_else(|_| ip_value.clone())
        };
        // Names as `&'static str`: pingora keeps them as the wire case without copying them (a
        // `HeaderName` it does not know would be copied into a new buffer per request).
        let _ = req.insert_header("X-Forwarded-For", xff);
        if !req.headers.contains_key(X_REAL_IP) {
            let _ = req.insert_header("X-Real-IP", ip_value);
        }
    }
    if !req.headers.contains_key(X_FORWARDED_PROTO) {
        let _ = req.insert_header("X-Forwarded-Proto", HeaderValue::from_static(proto));
    }
    if !req.headers.contains_key(X_FORWARDED_HOST) {
        let host = req.headers.get(http::header::HOST).cloned().or_else(|| {
            req.uri
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        });
        if let Some(h) = host {
            let _ = req.insert_header("X-Forwarded-Host", h);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build("GET", b"/x", None).unwrap();
        for (k, v) in headers {
            r.append_header(k.to_string(), *v).unwrap();
        }
        r
    }

    fn get<'a>(r: &'a RequestHeader, name: &str) -> Option<&'a str> {
        r.headers.get(name).map(|v| v.to_str().unwrap())
    }

    #[test]
    fn untrusted_client_cannot_spoof() {
        let mut r = req(&[
            ("host", "chat.example.org"),
            ("x-forwarded-for", "6.6.6.6"),
            ("x-real-ip", "6.6.6.6"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "evil.test"),
        ]);
        apply(&mut r, Some("192.0.2.7".parse().unwrap()), false, "http");
        assert_eq!(get(&r, "x-forwarded-for"), Some("192.0.2.7"));
        assert_eq!(get(&r, "x-real-ip"), Some("192.0.2.7"));
        assert_eq!(get(&r, "x-forwarded-proto"), Some("http"));
        assert_eq!(get(&r, "x-forwarded-host"), Some("chat.example.org"));
    }

    #[test]
    fn trusted_proxy_chain_is_appended() {
        let mut r = req(&[
            ("host", "chat.example.org"),
            ("x-forwarded-for", "198.51.100.1"),
            ("x-forwarded-for", "198.51.100.2"),
            ("x-real-ip", "198.51.100.1"),
            ("x-forwarded-proto", "https"),
        ]);
        apply(&mut r, Some("10.0.0.1".parse().unwrap()), true, "http");
        assert_eq!(
            get(&r, "x-forwarded-for"),
            Some("198.51.100.1, 198.51.100.2, 10.0.0.1")
        );
        assert_eq!(get(&r, "x-real-ip"), Some("198.51.100.1"));
        assert_eq!(get(&r, "x-forwarded-proto"), Some("https"));
    }

    #[test]
    fn hop_by_hop_removed_but_upgrade_kept() {
        let mut r = req(&[
            ("connection", "keep-alive, x-secret, Upgrade"),
            ("x-secret", "1"),
            ("keep-alive", "timeout=5"),
            ("upgrade", "websocket"),
            ("te", "trailers"),
        ]);
        assert!(is_upgrade(&r));
        strip_hop_by_hop(&mut r, true);
        assert_eq!(get(&r, "x-secret"), None);
        assert_eq!(get(&r, "keep-alive"), None);
        assert_eq!(get(&r, "te"), None);
        assert_eq!(get(&r, "upgrade"), Some("websocket"));
        assert_eq!(get(&r, "connection"), Some("upgrade"));

        let mut plain = req(&[("connection", "close"), ("upgrade", "h2c")]);
        assert!(!is_upgrade(&plain));
        strip_hop_by_hop(&mut plain, false);
        assert_eq!(get(&plain, "upgrade"), None);
        assert_eq!(get(&plain, "connection"), None);
    }
}
