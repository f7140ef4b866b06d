//! Stand-ins for the push services the relay talks to directly, speaking the real protocols and
//! rejecting what the real services reject (so a test fails when the relay gets the protocol wrong):
//!
//! - [`ApnsStandIn`]: Apple APNs provider API, HTTP/2 over TLS (ALPN `h2` only), token (ES256 JWT)
//!   authentication, `POST /3/device/<token>`.
//! - [`FcmStandIn`]: Google's OAuth2 token endpoint (RS256 JWT-bearer assertion of a service account)
//!   and FCM HTTP v1 `POST /v1/projects/<project>/messages:send`, plain HTTP/1.1.
//!
//! Both bind `127.0.0.1:0`, record what they receive, answer per device token as programmed, and
//! close their listener, every connection and every delayed answer when dropped. Their `start`
//! functions spawn tasks, so call them from within a Tokio runtime.
//!
//! One file per peer: [`apns`], [`fcm`] (its OAuth2 token endpoint and its send endpoint in files
//! of their own); what both need (JWT parsing, loopback listeners, JSON answers) is here.

mod apns;
mod fcm;
#[cfg(test)]
mod self_tests;

pub use apns::*;
pub use fcm::*;

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED, RSA_PKCS1_2048_8192_SHA256};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use super::tls::TestCa;

/// The host name the APNs stand-in's certificate is issued for.
pub const APNS_HOST: &str = "localhost";

/// The OAuth2 scope FCM HTTP v1 needs.
pub const FCM_SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";

/// The `grant_type` of a service-account token request (RFC 7523).
pub const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

// ---------------------------------------------------------------------------------------------
// Shared plumbing

type Body = Full<Bytes>;

fn now_secs() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

fn random_bytes<const N: usize>() -> [u8; N] {
    use ring::rand::SecureRandom;
    let mut b = [0u8; N];
    ring::rand::SystemRandom::new()
        .fill(&mut b)
        .expect("random bytes");
    b
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn random_uuid() -> String {
    let mut b = random_bytes::<16>();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex(&b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

fn is_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12])
        && groups.iter().all(|g| g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// A 64-hex-digit APNs device token derived from `seed` (APNs rejects tokens that are not hex).
pub fn apns_device_token(seed: &str) -> String {
    use sha2::{Digest, Sha256};
    hex(&Sha256::digest(seed.as_bytes()))
}

/// Bind 127.0.0.1:0 without awaiting (must run inside a Tokio runtime).
fn bind_loopback() -> (TcpListener, SocketAddr) {
    let std = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    std.set_nonblocking(true).unwrap();
    let addr = std.local_addr().unwrap();
    let listener = TcpListener::from_std(std).expect("stand-ins must be started inside a Tokio runtime");
    (listener, addr)
}

fn header_map(headers: &hyper::HeaderMap) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in headers {
        let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
        out.entry(k.as_str().to_string())
            .and_modify(|old| {
                old.push_str(", ");
                old.push_str(&v);
            })
            .or_insert(v);
    }
    out
}

fn json_response(status: u16, body: &Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json; charset=UTF-8")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

/// Sleep `d`, or give up when the stand-in is dropped (false).
async fn delay(d: Duration, mut closed: watch::Receiver<()>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => true,
        _ = closed.changed() => false,
    }
}

/// A JWT split into its parts; nothing is verified yet.
struct Jwt {
    header: Value,
    claims: Value,
    signing_input: String,
    signature: Vec<u8>,
}

fn parse_jwt(token: &str) -> Result<Jwt, String> {
    let parts: Vec<&str> = token.split('.').collect();
    let [h, c, s] = parts[..] else {
        return Err(format!("a JWT has 3 dot-separated parts, got {}", parts.len()));
    };
    let decode = |what: &str, part: &str| {
        URL_SAFE_NO_PAD
            .decode(part)
            .map_err(|e| format!("JWT {what} is not unpadded base64url: {e}"))
    };
    let object = |what: &str, bytes: Vec<u8>| -> Result<Value, String> {
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(v @ Value::Object(_)) => Ok(v),
            Ok(_) => Err(format!("JWT {what} is not a JSON object")),
            Err(e) => Err(format!("JWT {what} is not JSON: {e}")),
        }
    };
    Ok(Jwt {
        header: object("header", decode("header", h)?)?,
        claims: object("claims", decode("claims", c)?)?,
        signing_input: format!("{h}.{c}"),
        signature: decode("signature", s)?,
    })
}

/// The credentials of an `authorization: <scheme> <credentials>` header (scheme case-insensitive).
fn auth_credentials<'a>(headers: &'a hyper::HeaderMap, scheme: &str) -> Result<&'a str, String> {
    let value = headers
        .get("authorization")
        .ok_or("no authorization header")?
        .to_str()
        .map_err(|_| "authorization header is not ASCII")?;
    match value.split_once(' ') {
        Some((s, rest)) if s.eq_ignore_ascii_case(scheme) && !rest.trim().is_empty() => Ok(rest.trim()),
        _ => Err(format!(
            "authorization is not `{scheme} <credentials>`: {value:?}"
        )),
    }
}

fn int_claim(claims: &Value, name: &str) -> Result<i64, String> {
    claims[name]
        .as_i64()
        .ok_or_else(|| format!("claim {name} must be an integer (seconds), got {}", claims[name]))
}
