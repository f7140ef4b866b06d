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

// ---------------------------------------------------------------------------------------------
// APNs

/// A `.p8` signing key as Apple hands it out (PKCS#8 PEM of a P-256 key) and its public key as
/// [`ApnsStandIn::start`] takes it: the uncompressed SEC1 point (65 bytes, `04 || X || Y`).
/// (Apple names the file `AuthKey_<key_id>.p8`; the key id is not inside the file.)
pub fn apns_key(_key_id: &str) -> (String, Vec<u8>) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("P-256 key");
    (key.serialize_pem(), key.public_key_raw().to_vec())
}

/// What the APNs stand-in answers for a device token (default: [`ApnsBehaviour::Ok`]).
#[derive(Debug, Clone, PartialEq)]
pub enum ApnsBehaviour {
    /// 200, empty body, `apns-id` header.
    Ok,
    /// `status` with Apple's error body `{"reason":"..."}` (plus `timestamp` in ms for 410), e.g.
    /// `Reason(400, "BadDeviceToken")`, `Reason(410, "Unregistered")`.
    Reason(u16, &'static str),
    /// The next `n` requests get `status` (503 `ServiceUnavailable`, 500 `InternalServerError`,
    /// 429 `TooManyRequests`), then 200.
    FailTimes(u32, u16),
    /// 200 after this long.
    Delay(Duration),
}

/// One request the APNs stand-in received (recorded whatever it answered).
#[derive(Debug, Clone)]
pub struct ApnsRequest {
    /// The `<token>` of `/3/device/<token>` (empty for other paths).
    pub token: String,
    pub method: String,
    pub path: String,
    /// Always true (the stand-in only speaks HTTP/2); kept so tests can assert it.
    pub http2: bool,
    /// The `:authority` pseudo-header (`apns.test:<port>`).
    pub authority: Option<String>,
    /// Lower-case header names; repeated headers joined with `, `.
    pub headers: BTreeMap<String, String>,
    /// The body as JSON (`Value::Null` when it is not JSON).
    pub body: Value,
    pub raw_body: Bytes,
    /// The provider token (JWT) passed every check.
    pub verified: bool,
    /// Why the provider token was rejected.
    pub auth_error: Option<String>,
    /// The status answered (for a `Delay`, the status it answers once the delay is over).
    pub status: u16,
    /// Apple's `reason` in the error body.
    pub reason: Option<String>,
    /// Which TLS connection (1, 2, ...) carried it.
    pub connection: usize,
}

struct ApnsShared {
    team_id: String,
    key_id: String,
    /// Uncompressed P-256 point.
    public_key: Vec<u8>,
    requests: Arc<Mutex<Vec<ApnsRequest>>>,
    behaviours: Mutex<HashMap<String, ApnsBehaviour>>,
    connections: AtomicUsize,
    non_h2: AtomicUsize,
}

/// Per connection: the provider token in use (`kid:iat`) and when it was first used.
type ConnToken = Arc<Mutex<Option<(String, Instant)>>>;

/// Apple answers 429 `TooManyProviderTokenUpdates` when a connection changes its token sooner.
const APNS_MIN_TOKEN_AGE: Duration = Duration::from_secs(20 * 60);

/// An APNs provider API stand-in: HTTP/2 over TLS (ALPN `h2` only; a connection that negotiated
/// anything else is closed and counted in [`non_h2_connections`](Self::non_h2_connections)) with a
/// certificate for `apns.test` issued by the given [`TestCa`].
///
/// Checks, in order, answering as Apple does:
/// - `POST` (405 `MethodNotAllowed`) to `/3/device/<token>` (404 `BadPath`);
/// - `authorization: bearer <JWT>` (403 `MissingProviderToken`): header exactly `alg` `ES256` with
///   `kid` = key id, claims `iss` = team id and integer `iat` within ±1 h of now (older: 403
///   `ExpiredProviderToken`), 64-byte raw `r||s` base64url ES256 signature verifying with the
///   public key (else 403 `InvalidProviderToken`); a connection switching to a different token
///   less than 20 min after starting to use the previous one gets 429 `TooManyProviderTokenUpdates`;
/// - token non-empty (400 `MissingDeviceToken`), an even number of hex digits (400 `BadDeviceToken`);
/// - `apns-topic` (400 `MissingTopic`); `apns-push-type` `alert` or `voip`, `voip` exactly when the
///   topic ends in `.voip` (400 `InvalidPushType`); `apns-priority` present (stricter than Apple,
///   which defaults it) and 10, 5 or 1 (400 `BadPriority`); `apns-id` a UUID when present (400
///   `BadMessageId`); `apns-expiration` an integer when present (400 `BadExpirationDate`);
///   `apns-collapse-id` at most 64 bytes (400 `BadCollapseId`);
/// - body non-empty (400 `PayloadEmpty`), at most 4096 bytes (5120 for voip; 413
///   `PayloadTooLarge`), a JSON object with an `aps` object (400 `BadPayload`: Apple documents no
///   reason for this, the stand-in is stricter).
///
/// Then it answers as programmed with [`behave`](Self::behave). Every answer carries `apns-id`
/// (the request's, else a fresh UUID).
pub struct ApnsStandIn {
    pub addr: SocketAddr,
    shared: Arc<ApnsShared>,
    _closed: watch::Sender<()>,
    task: JoinHandle<()>,
}

impl Drop for ApnsStandIn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ApnsStandIn {
    /// `public_key`: the P-256 public key the relay signs with, either the uncompressed SEC1 point
    /// (65 bytes, what [`apns_key`] returns) or its DER SubjectPublicKeyInfo (91 bytes).
    pub fn start(ca: &TestCa, team_id: &str, key_id: &str, public_key: Vec<u8>) -> ApnsStandIn {
        let public_key = match public_key.len() {
            65 if public_key[0] == 4 => public_key,
            91 if public_key[0] == 0x30 && public_key[26] == 4 => public_key[26..].to_vec(),
            n => panic!("ApnsStandIn::start wants an uncompressed P-256 point or its SPKI, got {n} bytes"),
        };
        let leaf = ca.leaf(&[APNS_HOST], &rcgen::PKCS_ECDSA_P256_SHA256);
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let chain = CertificateDer::pem_slice_iter(leaf.chain_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .expect("leaf chain PEM");
        let key = PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).expect("leaf key PEM");
        let mut config =
            rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(chain, key)
                .expect("server certificate");
        config.alpn_protocols = vec![b"h2".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));

        let shared = Arc::new(ApnsShared {
            team_id: team_id.to_string(),
            key_id: key_id.to_string(),
            public_key,
            requests: Arc::new(Mutex::new(Vec::new())),
            behaviours: Mutex::new(HashMap::new()),
            connections: AtomicUsize::new(0),
            non_h2: AtomicUsize::new(0),
        });
        let (closed_tx, closed_rx) = watch::channel(());
        let (listener, addr) = bind_loopback();
        let st = shared.clone();
        let task = tokio::spawn(async move {
            let mut conns = JoinSet::new();
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                while conns.try_join_next().is_some() {}
                let conn_id = st.connections.fetch_add(1, Ordering::SeqCst) + 1;
                let (acceptor, st, closed) = (acceptor.clone(), st.clone(), closed_rx.clone());
                conns.spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    if tls.get_ref().1.alpn_protocol() != Some(b"h2".as_slice()) {
                        st.non_h2.fetch_add(1, Ordering::SeqCst);
                        return;
                    }
                    let conn_token: ConnToken = Arc::default();
                    let svc = hyper::service::service_fn(move |req| {
                        apns_handle(st.clone(), conn_id, conn_token.clone(), closed.clone(), req)
                    });
                    let _ = hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                        .max_concurrent_streams(1000)
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                        .await;
                });
            }
        });
        ApnsStandIn {
            addr,
            shared,
            _closed: closed_tx,
            task,
        }
    }

    /// The base URL the relay is pointed at (`apns.test` must resolve to 127.0.0.1).
    pub fn url(&self) -> String {
        format!("https://{APNS_HOST}:{}", self.addr.port())
    }

    /// Program the answer for `token`.
    pub fn behave(&self, token: &str, b: ApnsBehaviour) {
        self.shared
            .behaviours
            .lock()
            .unwrap()
            .insert(token.to_string(), b);
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<ApnsRequest> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// TLS connections closed because they did not negotiate `h2`.
    pub fn non_h2_connections(&self) -> usize {
        self.shared.non_h2.load(Ordering::SeqCst)
    }
}

/// Ok: the token's identity (`kid` and `iat`: ES256 signatures are randomised, so re-signing the same
/// claims is not a new token; a new `iat` is).
fn verify_apns_jwt(st: &ApnsShared, headers: &hyper::HeaderMap) -> Result<String, (&'static str, String)> {
    if !headers.contains_key("authorization") {
        return Err(("MissingProviderToken", "no authorization header".into()));
    }
    let invalid = |e: String| ("InvalidProviderToken", e);
    let token = auth_credentials(headers, "bearer").map_err(invalid)?;
    let jwt = parse_jwt(token).map_err(invalid)?;
    if jwt.header["alg"] != "ES256" {
        return Err(invalid(format!("JWT alg must be ES256: {}", jwt.header)));
    }
    if jwt.header["kid"] != st.key_id.as_str() {
        return Err(invalid(format!(
            "JWT kid must be {:?}: {}",
            st.key_id, jwt.header
        )));
    }
    if jwt.claims["iss"] != st.team_id.as_str() {
        return Err(invalid(format!(
            "JWT iss must be the team id {:?}: {}",
            st.team_id, jwt.claims
        )));
    }
    let iat = int_claim(&jwt.claims, "iat").map_err(invalid)?;
    let now = now_secs();
    if iat < now - 3600 {
        return Err((
            "ExpiredProviderToken",
            format!("iat {iat} is over an hour old (now {now})"),
        ));
    }
    if iat > now + 3600 {
        return Err(invalid(format!(
            "iat {iat} is over an hour in the future (now {now})"
        )));
    }
    if jwt.signature.len() != 64 {
        return Err(invalid(format!(
            "ES256 signature must be raw r||s (64 bytes), got {} bytes",
            jwt.signature.len()
        )));
    }
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &st.public_key)
        .verify(jwt.signing_input.as_bytes(), &jwt.signature)
        .map_err(|_| invalid("ES256 signature does not verify with the team's key".into()))?;
    Ok(format!("{}:{iat}", st.key_id))
}

async fn apns_handle(
    st: Arc<ApnsShared>,
    connection: usize,
    conn_token: ConnToken,
    closed: watch::Receiver<()>,
    req: Request<hyper::body::Incoming>,
) -> Result<Response<Body>, Infallible> {
    let (parts, body) = req.into_parts();
    let raw_body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let path = parts.uri.path().to_string();
    let token = path.strip_prefix("/3/device/").unwrap_or("").to_string();
    let headers = header_map(&parts.headers);
    let json_body: Value = serde_json::from_slice(&raw_body).unwrap_or(Value::Null);
    let auth = verify_apns_jwt(&st, &parts.headers);
    let header = |n: &str| headers.get(n).map(String::as_str);

    let check = || -> Result<(), (u16, &'static str)> {
        if parts.method != hyper::Method::POST {
            return Err((405, "MethodNotAllowed"));
        }
        if !path.starts_with("/3/device/") {
            return Err((404, "BadPath"));
        }
        let jwt = auth.as_ref().map_err(|(reason, _)| (403, *reason))?;
        {
            let mut current = conn_token.lock().unwrap();
            match current.as_ref() {
                Some((t, _)) if t == jwt => {}
                Some((_, since)) if since.elapsed() < APNS_MIN_TOKEN_AGE => {
                    return Err((429, "TooManyProviderTokenUpdates"))
                }
                _ => *current = Some((jwt.clone(), Instant::now())),
            }
        }
        if token.is_empty() {
            return Err((400, "MissingDeviceToken"));
        }
        if token.len() % 2 != 0 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err((400, "BadDeviceToken"));
        }
        let topic = header("apns-topic")
            .filter(|t| !t.is_empty())
            .ok_or((400, "MissingTopic"))?;
        let voip = match header("apns-push-type") {
            Some("alert") => false,
            Some("voip") => true,
            _ => return Err((400, "InvalidPushType")),
        };
        if voip != topic.ends_with(".voip") {
            return Err((400, "InvalidPushType"));
        }
        if !matches!(header("apns-priority"), Some("10" | "5" | "1")) {
            return Err((400, "BadPriority"));
        }
        if header("apns-id").is_some_and(|id| !is_uuid(id)) {
            return Err((400, "BadMessageId"));
        }
        if header("apns-expiration").is_some_and(|e| e.parse::<u64>().is_err()) {
            return Err((400, "BadExpirationDate"));
        }
        if header("apns-collapse-id").is_some_and(|c| c.len() > 64) {
            return Err((400, "BadCollapseId"));
        }
        if raw_body.is_empty() {
            return Err((400, "PayloadEmpty"));
        }
        if raw_body.len() > if voip { 5120 } else { 4096 } {
            return Err((413, "PayloadTooLarge"));
        }
        if !json_body["aps"].is_object() {
            return Err((400, "BadPayload"));
        }
        Ok(())
    };

    // The answer: an error from the checks, else the programmed behaviour.
    let mut wait = None;
    let (status, reason) = match check() {
        Err((s, r)) => (s, Some(r)),
        Ok(()) => {
            let mut behaviours = st.behaviours.lock().unwrap();
            match behaviours.get_mut(&token) {
                None | Some(ApnsBehaviour::Ok) => (200, None),
                Some(ApnsBehaviour::Reason(s, r)) => (*s, Some(*r)),
                Some(ApnsBehaviour::FailTimes(n, s)) if *n > 0 => {
                    *n -= 1;
                    let reason = match *s {
                        503 => "ServiceUnavailable",
                        429 => "TooManyRequests",
                        _ => "InternalServerError",
                    };
                    (*s, Some(reason))
                }
                Some(ApnsBehaviour::FailTimes(..)) => (200, None),
                Some(ApnsBehaviour::Delay(d)) => {
                    wait = Some(*d);
                    (200, None)
                }
            }
        }
    };
    let apns_id = header("apns-id")
        .filter(|id| is_uuid(id))
        .map(str::to_string)
        .unwrap_or_else(random_uuid);
    st.requests.lock().unwrap().push(ApnsRequest {
        token,
        method: parts.method.to_string(),
        path,
        http2: parts.version == hyper::Version::HTTP_2,
        authority: parts.uri.authority().map(|a| a.to_string()),
        headers,
        body: json_body,
        raw_body,
        verified: auth.is_ok(),
        auth_error: auth.err().map(|(_, e)| e),
        status,
        reason: reason.map(str::to_string),
        connection,
    });
    if let Some(d) = wait {
        if !delay(d, closed).await {
            return Ok(json_response(503, &json!({"reason": "Shutdown"})));
        }
    }
    let mut resp = match reason {
        None => Response::builder()
            .status(status)
            .body(Full::new(Bytes::new()))
            .unwrap(),
        Some(r) => {
            let mut body = json!({ "reason": r });
            if status == 410 {
                body["timestamp"] = json!(now_secs() * 1000);
            }
            json_response(status, &body)
        }
    };
    resp.headers_mut()
        .insert("apns-id", apns_id.parse().expect("uuid header"));
    Ok(resp)
}

// ---------------------------------------------------------------------------------------------
// FCM HTTP v1 and Google's OAuth2 token endpoint

/// What the FCM stand-in answers for a device token (default: [`FcmBehaviour::Ok`]).
#[derive(Debug, Clone, PartialEq)]
pub enum FcmBehaviour {
    /// 200 `{"name":"projects/<project>/messages/<n>"}`.
    Ok,
    /// 404 `NOT_FOUND`, `errorCode` `UNREGISTERED`.
    Unregistered,
    /// 403 `PERMISSION_DENIED`, `errorCode` `SENDER_ID_MISMATCH`.
    SenderIdMismatch,
    /// The next `n` requests get `status` (503 `UNAVAILABLE`, 500 `INTERNAL`, 429
    /// `RESOURCE_EXHAUSTED`/`QUOTA_EXCEEDED`), then 200.
    FailTimes(u32, u16),
    /// 200 after this long.
    Delay(Duration),
}

/// One `messages:send` request the FCM stand-in received (recorded whatever it answered).
#[derive(Debug, Clone)]
pub struct FcmMessage {
    /// The `<project_id>` of the path.
    pub project: String,
    /// `message.token` (empty when absent).
    pub token: String,
    /// `message.data`; a value that is not a string is kept as its JSON text.
    pub data: BTreeMap<String, String>,
    /// Every `message.data` value was a JSON string (FCM rejects anything else).
    pub data_all_strings: bool,
    /// `message.android.priority`.
    pub android_priority: Option<String>,
    /// The whole body (`Value::Null` when it is not JSON).
    pub body: Value,
    /// Lower-case header names; repeated headers joined with `, `.
    pub headers: BTreeMap<String, String>,
    /// It carried an access token the stand-in issued, still valid, for this project.
    pub authorized: bool,
    /// The status answered (for a `Delay`, the status it answers once the delay is over).
    pub status: u16,
    /// Google's `error.message` when it answered an error.
    pub error: Option<String>,
}

struct FcmShared {
    port: u16,
    private_key_pem: String,
    private_key_id: String,
    /// PKCS#1 RSAPublicKey DER, as ring's RSA verification wants it.
    rsa_public_key: Vec<u8>,
    /// client_email -> project_id, one per `service_account_json`.
    accounts: Mutex<HashMap<String, String>>,
    /// access token -> (client_email, expiry).
    tokens: Mutex<HashMap<String, (String, Instant)>>,
    expires_in: AtomicU64,
    token_requests: AtomicUsize,
    token_errors: Mutex<Vec<String>>,
    messages: Mutex<Vec<FcmMessage>>,
    behaviours: Mutex<HashMap<String, FcmBehaviour>>,
    next_id: AtomicU64,
}

/// Google's OAuth2 token endpoint and FCM HTTP v1, over plain HTTP/1.1 on one port.
///
/// `POST /token` (form body, `content-type: application/x-www-form-urlencoded`, else 400
/// `invalid_request`): `grant_type` = `urn:ietf:params:oauth:grant-type:jwt-bearer` (else 400
/// `unsupported_grant_type`) and `assertion` = a JWT with header `alg` `RS256` (`typ` `JWT` and
/// `kid` = the `private_key_id` when present), claims `iss` = the `client_email` of a service
/// account made by [`service_account_json`](Self::service_account_json), `aud` = the `token_uri`,
/// integer `iat`/`exp` with `0 < exp - iat <= 3600`, `iat` not over 5 min in the future, `exp` not
/// past, and an RS256 signature verifying with the account's key (else 400 `invalid_grant`);
/// `scope` (space-separated) must contain the firebase.messaging scope (else 400 `invalid_scope`).
/// Answers `{"access_token":"ya29.<random>","expires_in":3599,"token_type":"Bearer"}`.
///
/// `POST /v1/projects/<project_id>/messages:send`: `authorization: Bearer <token>` issued here and
/// not expired (else 401 `UNAUTHENTICATED`), for an account of that project (else 403
/// `PERMISSION_DENIED`); a JSON body with only known fields (`message`, `validate_only`; the
/// fields of `Message` and `AndroidConfig`), exactly one of `token`/`topic`/`condition`, `data`
/// with string values only, no reserved keys (`from`, `notification`, `message_type`, `google.*`,
/// `gcm.*`) and at most 4096 bytes, `android.priority` `normal` or `high` (else 400
/// `INVALID_ARGUMENT`). Then it answers as programmed with [`behave`](Self::behave).
pub struct FcmStandIn {
    pub addr: SocketAddr,
    shared: Arc<FcmShared>,
    _closed: watch::Sender<()>,
    task: JoinHandle<()>,
}

impl Drop for FcmStandIn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Make the service account's RSA-2048 key with the real `openssl` binary: (PKCS#8 PEM, PKCS#1
/// RSAPublicKey DER).
fn openssl_rsa_key() -> (String, Vec<u8>) {
    let run = |args: &[&str], stdin: &str| {
        let out = super::tls::openssl(args, stdin);
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    let pem = run(
        &["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
        "",
    );
    let pem = String::from_utf8(pem).expect("PEM is text");
    assert!(
        pem.contains("-----BEGIN PRIVATE KEY-----"),
        "openssl genpkey gave no PKCS#8 PEM: {pem}"
    );
    let public = run(&["rsa", "-RSAPublicKey_out", "-outform", "DER"], &pem);
    (pem, public)
}

impl FcmStandIn {
    /// Generates the service accounts' RSA key (with `openssl`) and starts serving.
    pub fn start() -> FcmStandIn {
        let (private_key_pem, rsa_public_key) = openssl_rsa_key();
        let (listener, addr) = bind_loopback();
        let shared = Arc::new(FcmShared {
            port: addr.port(),
            private_key_pem,
            private_key_id: hex(&random_bytes::<20>()),
            rsa_public_key,
            accounts: Mutex::new(HashMap::new()),
            tokens: Mutex::new(HashMap::new()),
            expires_in: AtomicU64::new(3599),
            token_requests: AtomicUsize::new(0),
            token_errors: Mutex::new(Vec::new()),
            messages: Mutex::new(Vec::new()),
            behaviours: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
        });
        let (closed_tx, closed_rx) = watch::channel(());
        let st = shared.clone();
        let task = tokio::spawn(async move {
            let mut conns = JoinSet::new();
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                while conns.try_join_next().is_some() {}
                let (st, closed) = (st.clone(), closed_rx.clone());
                conns.spawn(async move {
                    let svc =
                        hyper::service::service_fn(move |req| fcm_handle(st.clone(), closed.clone(), req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc)
                        .await;
                });
            }
        });
        FcmStandIn {
            addr,
            shared,
            _closed: closed_tx,
            task,
        }
    }

    /// `http://127.0.0.1:<port>`: the FCM endpoint to configure the relay with.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.addr.port())
    }

    /// The token endpoint (`token_uri` of the service accounts, the assertion's `aud`).
    pub fn token_uri(&self) -> String {
        format!("{}/token", self.base_url())
    }

    /// The Google service-account JSON (key file) for `client_email` in `project_id`, signed with
    /// this stand-in's key; the stand-in accepts assertions from every account made here.
    pub fn service_account_json(&self, project_id: &str, client_email: &str) -> String {
        self.shared
            .accounts
            .lock()
            .unwrap()
            .insert(client_email.to_string(), project_id.to_string());
        let client_id: String = random_bytes::<21>()
            .iter()
            .map(|b| char::from(b'0' + b % 10))
            .collect();
        let email_path: String = client_email.replace('@', "%40");
        serde_json::to_string_pretty(&json!({
            "type": "service_account",
            "project_id": project_id,
            "private_key_id": self.shared.private_key_id,
            "private_key": self.shared.private_key_pem,
            "client_email": client_email,
            "client_id": client_id,
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": self.token_uri(),
            "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
            "client_x509_cert_url": format!("https://www.googleapis.com/robot/v1/metadata/x509/{email_path}"),
            "universe_domain": "googleapis.com",
        }))
        .unwrap()
    }

    /// The service accounts' private key (PKCS#8 PEM).
    pub fn private_key_pem(&self) -> &str {
        &self.shared.private_key_pem
    }

    /// The `private_key_id` of the service accounts (the assertion's optional `kid`).
    pub fn private_key_id(&self) -> &str {
        &self.shared.private_key_id
    }

    /// The public key the assertions are verified with: PKCS#1 `RSAPublicKey` DER (derived by
    /// `openssl rsa -RSAPublicKey_out`), the form ring's `RSA_PKCS1_2048_8192_SHA256` takes.
    pub fn rsa_public_key(&self) -> &[u8] {
        &self.shared.rsa_public_key
    }

    /// `expires_in` of the access tokens issued from now on (default 3599 s); tokens stop being
    /// accepted when they expire.
    pub fn set_expires_in(&self, secs: u64) {
        self.shared.expires_in.store(secs, Ordering::SeqCst);
    }

    /// Forget every access token issued so far (sends with them get 401 from now on).
    pub fn revoke_tokens(&self) {
        self.shared.tokens.lock().unwrap().clear();
    }

    /// Program the answer for device `token`.
    pub fn behave(&self, token: &str, b: FcmBehaviour) {
        self.shared
            .behaviours
            .lock()
            .unwrap()
            .insert(token.to_string(), b);
    }

    /// Requests to the token endpoint so far (granted or not).
    pub fn token_requests(&self) -> usize {
        self.shared.token_requests.load(Ordering::SeqCst)
    }

    /// Why token requests were refused (`error: description`), in order.
    pub fn token_errors(&self) -> Vec<String> {
        self.shared.token_errors.lock().unwrap().clone()
    }

    /// Every `messages:send` request received so far, in order.
    pub fn messages(&self) -> Vec<FcmMessage> {
        self.shared.messages.lock().unwrap().clone()
    }
}

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

fn fcm_token(st: &FcmShared, parts: &hyper::http::request::Parts, body: &[u8]) -> Response<Body> {
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

/// Google's error body: `{"error":{"code","message","status","details"?}}`.
fn google_error(code: u16, status: &str, message: &str, fcm_code: Option<&str>) -> Value {
    let mut error = json!({ "code": code, "message": message, "status": status });
    if let Some(fcm_code) = fcm_code {
        error["details"] = json!([{
            "@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
            "errorCode": fcm_code,
        }]);
    }
    json!({ "error": error })
}

const MESSAGE_FIELDS: &[&str] = &[
    "name",
    "data",
    "notification",
    "android",
    "webpush",
    "apns",
    "fcm_options",
    "fcmOptions",
    "token",
    "topic",
    "condition",
];
const ANDROID_FIELDS: &[&str] = &[
    "collapse_key",
    "collapseKey",
    "priority",
    "ttl",
    "restricted_package_name",
    "restrictedPackageName",
    "data",
    "notification",
    "fcm_options",
    "fcmOptions",
    "direct_boot_ok",
    "directBootOk",
    "bandwidth_constrained_ok",
    "bandwidthConstrainedOk",
    "restricted_satellite_ok",
    "restrictedSatelliteOk",
];

fn unknown_field(obj: &serde_json::Map<String, Value>, known: &[&str], at: &str) -> Result<(), String> {
    match obj.keys().find(|k| !known.contains(&k.as_str())) {
        Some(k) => Err(format!(
            "Invalid JSON payload received. Unknown name \"{k}\" at '{at}': Cannot find field."
        )),
        None => Ok(()),
    }
}

/// FCM's validation of a send request: Err(message) answers 400 INVALID_ARGUMENT.
fn validate_fcm_body(body: &Value) -> Result<(), String> {
    let top = body
        .as_object()
        .ok_or("Invalid JSON payload received. Expected an object.")?;
    unknown_field(top, &["message", "validate_only", "validateOnly"], "")?;
    let msg = top
        .get("message")
        .and_then(Value::as_object)
        .ok_or("Invalid JSON payload received. 'message' must be an object.")?;
    unknown_field(msg, MESSAGE_FIELDS, "message")?;
    let targets: Vec<&str> = ["token", "topic", "condition"]
        .into_iter()
        .filter(|t| msg.contains_key(*t))
        .collect();
    match targets[..] {
        [] => return Err("Recipient of the message is not set.".into()),
        [_] => {}
        [..] => {
            return Err(format!(
                "Invalid value at 'message' (oneof), oneof field 'target' is already set. Cannot set '{}'",
                targets[1]
            ))
        }
    }
    if let Some(t) = msg.get("token") {
        if t.as_str().is_none_or(str::is_empty) {
            return Err("The registration token is not a valid FCM registration token".into());
        }
    }
    let check_data = |data: Option<&Value>, at: &str| -> Result<usize, String> {
        let Some(data) = data else { return Ok(0) };
        let map = data
            .as_object()
            .ok_or_else(|| format!("Invalid value at '{at}' (map), {data}"))?;
        let mut size = 0;
        for (i, (k, v)) in map.iter().enumerate() {
            let Some(v) = v.as_str() else {
                return Err(format!("Invalid value at '{at}[{i}].value' (TYPE_STRING), {v}"));
            };
            let reserved = ["from", "notification", "message_type"].contains(&k.as_str())
                || k.starts_with("google.")
                || k.starts_with("gcm.");
            if reserved {
                return Err(format!("Invalid data payload key: {k}"));
            }
            size += k.len() + v.len();
        }
        Ok(size)
    };
    let mut size = check_data(msg.get("data"), "message.data")?;
    if let Some(android) = msg.get("android") {
        let android = android
            .as_object()
            .ok_or("Invalid value at 'message.android': must be an object")?;
        unknown_field(android, ANDROID_FIELDS, "message.android")?;
        if let Some(p) = android.get("priority") {
            let ok = p
                .as_str()
                .is_some_and(|p| p.eq_ignore_ascii_case("normal") || p.eq_ignore_ascii_case("high"));
            if !ok {
                return Err(format!(
                    "Invalid value at 'message.android.priority' \
                     (type.googleapis.com/google.firebase.fcm.v1.AndroidMessagePriority), {p}"
                ));
            }
        }
        size += check_data(android.get("data"), "message.android.data")?;
    }
    if size > 4096 {
        return Err("Android message is too big".into());
    }
    Ok(())
}

async fn fcm_send(
    st: Arc<FcmShared>,
    closed: watch::Receiver<()>,
    project: String,
    parts: hyper::http::request::Parts,
    raw: Bytes,
) -> Response<Body> {
    let body: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    let msg = &body["message"];
    let token = msg["token"].as_str().unwrap_or("").to_string();
    let (mut data, mut data_all_strings) = (BTreeMap::new(), true);
    if let Some(map) = msg["data"].as_object() {
        for (k, v) in map {
            let v = match v {
                Value::String(s) => s.clone(),
                other => {
                    data_all_strings = false;
                    other.to_string()
                }
            };
            data.insert(k.clone(), v);
        }
    }

    let account = auth_credentials(&parts.headers, "bearer").ok().and_then(|t| {
        let mut tokens = st.tokens.lock().unwrap();
        match tokens.get(t) {
            Some((email, expiry)) if *expiry > Instant::now() => Some(email.clone()),
            Some(_) => {
                tokens.remove(t);
                None
            }
            None => None,
        }
    });
    let authorized = account
        .as_ref()
        .is_some_and(|email| st.accounts.lock().unwrap().get(email) == Some(&project));

    let mut wait = None;
    let (status, answer) = if account.is_none() {
        let m = "Request had invalid authentication credentials. Expected OAuth 2 access token, login \
                 cookie or other valid authentication credential. See \
                 https://developers.google.com/identity/sign-in/web/devconsole-project.";
        (401, google_error(401, "UNAUTHENTICATED", m, None))
    } else if !authorized {
        let m = format!(
            "Permission 'cloudmessaging.messages.create' denied on resource \
             '//cloudresourcemanager.googleapis.com/projects/{project}' (or it may not exist)."
        );
        (403, google_error(403, "PERMISSION_DENIED", &m, None))
    } else if let Err(m) = validate_fcm_body(&body) {
        (
            400,
            google_error(400, "INVALID_ARGUMENT", &m, Some("INVALID_ARGUMENT")),
        )
    } else {
        let ok = || {
            let id = st.next_id.fetch_add(1, Ordering::SeqCst);
            (
                200,
                json!({ "name": format!("projects/{project}/messages/{id}") }),
            )
        };
        let mut behaviours = st.behaviours.lock().unwrap();
        match behaviours.get_mut(&token) {
            None | Some(FcmBehaviour::Ok) => ok(),
            Some(FcmBehaviour::Unregistered) => (
                404,
                google_error(
                    404,
                    "NOT_FOUND",
                    "Requested entity was not found.",
                    Some("UNREGISTERED"),
                ),
            ),
            Some(FcmBehaviour::SenderIdMismatch) => (
                403,
                google_error(
                    403,
                    "PERMISSION_DENIED",
                    "SenderId mismatch",
                    Some("SENDER_ID_MISMATCH"),
                ),
            ),
            Some(FcmBehaviour::FailTimes(n, s)) if *n > 0 => {
                *n -= 1;
                let (status, code, m) = match *s {
                    503 => (
                        "UNAVAILABLE",
                        "UNAVAILABLE",
                        "The service is currently unavailable.",
                    ),
                    429 => (
                        "RESOURCE_EXHAUSTED",
                        "QUOTA_EXCEEDED",
                        "Quota exceeded for quota metric 'Send messages'.",
                    ),
                    _ => ("INTERNAL", "INTERNAL", "Internal error encountered."),
                };
                (*s, google_error(*s, status, m, Some(code)))
            }
            Some(FcmBehaviour::FailTimes(..)) => ok(),
            Some(FcmBehaviour::Delay(d)) => {
                wait = Some(*d);
                ok()
            }
        }
    };
    st.messages.lock().unwrap().push(FcmMessage {
        project,
        token,
        data,
        data_all_strings,
        android_priority: msg["android"]["priority"].as_str().map(str::to_string),
        body: body.clone(),
        headers: header_map(&parts.headers),
        authorized,
        status,
        error: answer["error"]["message"].as_str().map(str::to_string),
    });
    if let Some(d) = wait {
        if !delay(d, closed).await {
            let e = google_error(
                503,
                "UNAVAILABLE",
                "The service is shutting down.",
                Some("UNAVAILABLE"),
            );
            return json_response(503, &e);
        }
    }
    let mut resp = json_response(status, &answer);
    if status == 401 {
        resp.headers_mut().insert(
            "www-authenticate",
            "Bearer realm=\"https://accounts.google.com/\"".parse().unwrap(),
        );
    }
    resp
}

async fn fcm_handle(
    st: Arc<FcmShared>,
    closed: watch::Receiver<()>,
    req: Request<hyper::body::Incoming>,
) -> Result<Response<Body>, Infallible> {
    let (parts, body) = req.into_parts();
    let raw = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let path = parts.uri.path().to_string();
    let project = path
        .strip_prefix("/v1/projects/")
        .and_then(|p| p.strip_suffix("/messages:send"))
        .filter(|p| !p.is_empty() && !p.contains('/'))
        .map(str::to_string);
    let post = parts.method == hyper::Method::POST;
    Ok(match (path.as_str(), project) {
        ("/token", _) if post => fcm_token(&st, &parts, &raw),
        (_, Some(project)) if post => fcm_send(st, closed, project, parts, raw).await,
        ("/token", _) | (_, Some(_)) => {
            let m = format!("Method {} is not allowed.", parts.method);
            json_response(405, &google_error(405, "METHOD_NOT_ALLOWED", &m, None))
        }
        _ => {
            let m = format!("The requested URL {path} was not found on this server.");
            json_response(404, &google_error(404, "NOT_FOUND", &m, None))
        }
    })
}

// ---------------------------------------------------------------------------------------------
// Self-tests: a minimal client of each protocol, written here, against the stand-ins.

#[cfg(test)]
mod self_tests {
    use super::super::tls::{client_config, handshake, https_client, TestCa};
    use super::*;
    use ring::signature::{EcdsaKeyPair, RsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING, RSA_PKCS1_SHA256};
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::PrivatePkcs8KeyDer;

    const TEAM: &str = "TEAM123456";
    const KID: &str = "KEY1234567";
    const TOPIC: &str = "com.example.chat";

    fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    fn pkcs8(pem: &str) -> Vec<u8> {
        PrivatePkcs8KeyDer::from_pem_slice(pem.as_bytes())
            .expect("PKCS#8 PEM")
            .secret_pkcs8_der()
            .to_vec()
    }

    fn es256(p8_pem: &str, header: &Value, claims: &Value) -> String {
        let rng = ring::rand::SystemRandom::new();
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8(p8_pem), &rng).unwrap();
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let sig = key.sign(&rng, input.as_bytes()).unwrap();
        format!("{input}.{}", b64(sig.as_ref()))
    }

    fn apns_jwt(p8_pem: &str, kid: &str, team: &str, iat: i64) -> String {
        es256(
            p8_pem,
            &json!({"alg": "ES256", "kid": kid}),
            &json!({"iss": team, "iat": iat}),
        )
    }

    fn rs256(pem: &str, header: &Value, claims: &Value) -> String {
        let key = RsaKeyPair::from_pkcs8(&pkcs8(pem)).unwrap();
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let mut sig = vec![0; key.public().modulus_len()];
        key.sign(
            &RSA_PKCS1_SHA256,
            &ring::rand::SystemRandom::new(),
            input.as_bytes(),
            &mut sig,
        )
        .unwrap();
        format!("{input}.{}", b64(&sig))
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
                    json!({"aps": {"alert": {"title": "town-square", "body": "hi"}}, "ack_id": "a1"})
                        .to_string(),
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
        super::super::eventually("the ALPN-less connection is closed", || async {
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
        super::super::eventually("the delayed push arrived", || async {
            (a.peer.requests().len() == 1).then_some(())
        })
        .await;
        let addr = a.peer.addr;
        drop(a);
        let outcome = tokio::time::timeout(super::super::patience(), pending).await;
        let outcome = outcome.expect("the pending push ends").unwrap();
        assert!(outcome.is_err() || outcome.unwrap().status() != 200);
        super::super::eventually("the listener is closed", || async {
            tokio::net::TcpStream::connect(addr).await.is_err().then_some(())
        })
        .await;
    }

    // ----- FCM

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
            client: super::super::client(),
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
        super::super::eventually("the delayed send arrived", || async {
            (f.peer.messages().len() == 6).then_some(())
        })
        .await;
        let addr = f.peer.addr;
        drop(f);
        let outcome = tokio::time::timeout(super::super::patience(), pending)
            .await
            .expect("the pending send ends")
            .unwrap();
        assert!(outcome.is_err(), "{outcome:?}");
        super::super::eventually("the listener is closed", || async {
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
}
