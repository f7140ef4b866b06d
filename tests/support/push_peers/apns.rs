//! The APNs stand-in: Apple's provider API over HTTP/2 and TLS, token authentication.

use super::*;

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
