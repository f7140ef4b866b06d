//! One access-log line per request, formatted for `crate::access_log`'s writer.
//!
//! Text lines are nginx's "combined" format byte for byte,
//! `$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer"
//! "$http_user_agent"`, escaped as nginx escapes them (`"`, `\`, control and non-ASCII bytes as
//! `\xHH`), so fail2ban's stock nginx filters and log tools read them unchanged. `$request` is the
//! request line as the client sent it (HTTP/1) or as nginx writes it for HTTP/2: method,
//! origin-form target, `HTTP/2.0`. JSON lines carry the same fields plus vhost, upstream and time.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use pingora_http::RequestHeader;

use crate::config::core::LogFormat;

/// What the proxy knows about a request once it is over.
pub struct Entry<'a> {
    pub client: Option<IpAddr>,
    pub req: &'a RequestHeader,
    /// 0: no response was written (the client went away): logged as nginx does, 499.
    pub status: u16,
    pub body_bytes_sent: usize,
    /// Bytes the client sent through a websocket tunnel (JSON lines only: the combined format has
    /// no field for them).
    pub bytes_received: Option<u64>,
    pub vhost: &'a str,
    pub upstream: Option<SocketAddr>,
    pub elapsed: Duration,
}

/// The status nginx would log.
fn logged_status(status: u16) -> u16 {
    if status == 0 {
        499
    } else {
        status
    }
}

fn version(req: &RequestHeader) -> &'static str {
    match req.version {
        http::Version::HTTP_09 => "HTTP/0.9",
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_2 => "HTTP/2.0",
        http::Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}

/// Append `bytes` the way nginx's log module escapes variables.
fn escaped(out: &mut String, bytes: &[u8]) {
    for &b in bytes {
        if b == b'"' || b == b'\\' || !(0x20..0x7f).contains(&b) {
            let _ = write!(out, "\\x{b:02X}");
        } else {
            out.push(b as char);
        }
    }
}

/// A header's value, or `-` when absent (nginx's `$http_*`).
fn header_or_dash(out: &mut String, req: &RequestHeader, name: http::header::HeaderName) {
    match req.headers.get(name) {
        Some(v) => escaped(out, v.as_bytes()),
        None => out.push('-'),
    }
}

/// The user name of `Authorization: Basic`, as nginx's `$remote_user` (whether or not anything
/// checked the password).
fn remote_user(req: &RequestHeader) -> Option<Vec<u8>> {
    let value = req.headers.get(http::header::AUTHORIZATION)?.as_bytes();
    let (scheme, creds) = value.split_at_checked(6)?;
    if !scheme.eq_ignore_ascii_case(b"basic ") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(creds.trim_ascii())
        .ok()?;
    let user = decoded.split(|&b| b == b':').next()?;
    (!user.is_empty()).then(|| user.to_vec())
}

/// `"$request"` without the quotes.
fn request_line(out: &mut String, req: &RequestHeader) {
    escaped(out, req.method.as_str().as_bytes());
    out.push(' ');
    // HTTP/1: the target as sent; HTTP/2 has none on the wire, and its URI is absolute: nginx logs
    // the origin form (path and query).
    let target: &[u8] = if req.version == http::Version::HTTP_2 {
        req.uri.path_and_query().map_or(b"/", |pq| pq.as_str().as_bytes())
    } else {
        req.raw_path()
    };
    escaped(out, target);
    out.push(' ');
    out.push_str(version(req));
}

/// The combined line for `e`, ending in `\n`, at `now`.
pub fn combined(e: &Entry, now: SystemTime) -> String {
    let mut out = String::with_capacity(256);
    match e.client {
        Some(ip) => {
            let _ = write!(out, "{ip}");
        }
        None => out.push('-'),
    }
    out.push_str(" - ");
    match remote_user(e.req) {
        Some(user) => escaped(&mut out, &user),
        None => out.push('-'),
    }
    let local: chrono::DateTime<chrono::Local> = now.into();
    let _ = write!(out, " [{}] \"", local.format("%d/%b/%Y:%H:%M:%S %z"));
    request_line(&mut out, e.req);
    let _ = write!(out, "\" {} {} \"", logged_status(e.status), e.body_bytes_sent);
    header_or_dash(&mut out, e.req, http::header::REFERER);
    out.push_str("\" \"");
    header_or_dash(&mut out, e.req, http::header::USER_AGENT);
    out.push_str("\"\n");
    out
}

/// The JSON line for `e` (the shape of vestibule's other JSON log lines), ending in `\n`.
pub fn json(e: &Entry, now: SystemTime) -> String {
    let text = |name: http::header::HeaderName| {
        e.req
            .headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    };
    let mut request = String::new();
    request_line(&mut request, e.req);
    let ts: chrono::DateTime<chrono::Utc> = now.into();
    let mut v = serde_json::json!({
        "timestamp": ts.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "level": "INFO",
        "fields": {
            "remote_addr": e.client.map(|c| c.to_string()),
            "remote_user": remote_user(e.req).map(|u| String::from_utf8_lossy(&u).into_owned()),
            "request": request,
            "method": e.req.method.as_str(),
            "uri": String::from_utf8_lossy(if e.req.version == http::Version::HTTP_2 {
                e.req.uri.path_and_query().map_or(b"/".as_slice(), |pq| pq.as_str().as_bytes())
            } else {
                e.req.raw_path()
            }),
            "protocol": version(e.req),
            "status": logged_status(e.status),
            "body_bytes_sent": e.body_bytes_sent,
            "referer": text(http::header::REFERER),
            "user_agent": text(http::header::USER_AGENT),
            "vhost": e.vhost,
            "upstream": e.upstream.map(|u| u.to_string()),
            "request_time": e.elapsed.as_secs_f64(),
        },
        "target": "vestibule::access",
    });
    if let (Some(n), Some(fields)) = (e.bytes_received, v.get_mut("fields")) {
        fields["bytes_received"] = n.into();
    }
    let mut line = v.to_string();
    line.push('\n');
    line
}

/// The line for a request the proxy never got (see `super::refused`): `request_line` is what the
/// client sent as its first line (or `-`); no headers are known, no body was sent.
pub fn refused_line(
    format: LogFormat,
    client: Option<IpAddr>,
    request_line: &[u8],
    status: u16,
    now: SystemTime,
) -> String {
    match format {
        LogFormat::Text => {
            let mut out = String::with_capacity(128 + request_line.len());
            match client {
                Some(ip) => {
                    let _ = write!(out, "{ip}");
                }
                None => out.push('-'),
            }
            let local: chrono::DateTime<chrono::Local> = now.into();
            let _ = write!(out, " - - [{}] \"", local.format("%d/%b/%Y:%H:%M:%S %z"));
            escaped(&mut out, request_line);
            let _ = writeln!(out, "\" {status} 0 \"-\" \"-\"");
            out
        }
        LogFormat::Json => {
            let ts: chrono::DateTime<chrono::Utc> = now.into();
            let mut request = String::new();
            escaped(&mut request, request_line);
            let v = serde_json::json!({
                "timestamp": ts.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                "level": "INFO",
                "fields": {
                    "remote_addr": client.map(|c| c.to_string()),
                    "request": request,
                    "status": status,
                    "body_bytes_sent": 0,
                    "vhost": "-",
                },
                "target": "vestibule::access",
            });
            let mut line = v.to_string();
            line.push('\n');
            line
        }
    }
}

/// Format and queue the line for `e`.
pub fn log(format: LogFormat, e: &Entry) {
    let now = SystemTime::now();
    crate::access_log::write(match format {
        LogFormat::Text => combined(e, now),
        LogFormat::Json => json(e, now),
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(req: &RequestHeader) -> Entry<'_> {
        Entry {
            client: Some("192.0.2.7".parse().unwrap()),
            req,
            status: 200,
            body_bytes_sent: 384,
            bytes_received: None,
            vhost: "chat",
            upstream: None,
            elapsed: Duration::from_millis(2),
        }
    }

    fn at() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_000_000)
    }

    #[test]
    fn combined_is_nginx_byte_for_byte() {
        let mut req = RequestHeader::build("GET", b"/api/v4/users/me?x=1", None).unwrap();
        req.insert_header("user-agent", "Mozilla/5.0").unwrap();
        let line = combined(&entry(&req), at());
        let local: chrono::DateTime<chrono::Local> = at().into();
        let time = local.format("%d/%b/%Y:%H:%M:%S %z").to_string();
        assert_eq!(
            line,
            format!("192.0.2.7 - - [{time}] \"GET /api/v4/users/me?x=1 HTTP/1.1\" 200 384 \"-\" \"Mozilla/5.0\"\n")
        );
    }

    #[test]
    fn http2_logs_the_origin_form() {
        let mut req = RequestHeader::build("POST", b"/", None).unwrap();
        req.set_version(http::Version::HTTP_2);
        req.set_uri("https://chat.example.org/api/v4/posts?a=b".parse().unwrap());
        let line = combined(&entry(&req), at());
        assert!(line.contains("\"POST /api/v4/posts?a=b HTTP/2.0\" 200"), "{line}");
    }

    #[test]
    fn quotes_and_control_bytes_are_escaped_and_basic_user_shown() {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.insert_header("user-agent", "a\"b\\c\tz").unwrap();
        // "alice:secret"
        req.insert_header("authorization", "Basic YWxpY2U6c2VjcmV0")
            .unwrap();
        let mut e = entry(&req);
        e.status = 0;
        let line = combined(&e, at());
        assert!(line.starts_with("192.0.2.7 - alice ["), "{line}");
        assert!(
            line.ends_with("\" 499 384 \"-\" \"a\\x22b\\x5Cc\\x09z\"\n"),
            "{line}"
        );
    }

    #[test]
    fn refused_requests_are_combined_lines_too() {
        let line = refused_line(
            LogFormat::Text,
            Some("192.0.2.7".parse().unwrap()),
            b"GET /\x01 HTTP/1.1",
            400,
            at(),
        );
        assert!(line.starts_with("192.0.2.7 - - ["), "{line}");
        assert!(
            line.ends_with("] \"GET /\\x01 HTTP/1.1\" 400 0 \"-\" \"-\"\n"),
            "{line}"
        );
    }

    #[test]
    fn json_has_the_fields() {
        let req = RequestHeader::build("GET", b"/p", None).unwrap();
        let line = json(&entry(&req), at());
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["target"], "vestibule::access");
        assert_eq!(v["fields"]["uri"], "/p");
        assert_eq!(v["fields"]["status"], 200);
        assert_eq!(v["fields"]["vhost"], "chat");
        assert!(line.ends_with("}\n"));
    }
}
