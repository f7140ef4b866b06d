//! The FCM stand-in: Google's OAuth2 token endpoint and FCM HTTP v1, plain HTTP/1.1.

mod oauth;
mod send;

use super::*;
use oauth::fcm_token;
use send::{fcm_send, google_error};

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
        let out = crate::support::tls::openssl(args, stdin);
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
