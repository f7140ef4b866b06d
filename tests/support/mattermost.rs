//! A stand-in for Mattermost's configuration API (Mattermost itself cannot run here).
//!
//! It serves the configuration document Mattermost writes on first start
//! (`tests/fixtures/mattermost-config.json`, every section present) and behaves as Mattermost's
//! handlers do:
//! - both routes need `Authorization: Bearer <token>`; anything else is 401;
//! - `GET /api/v4/config` answers the whole document;
//! - `PUT /api/v4/config/patch` decodes the body into the configuration's types: a value of the
//!   wrong type is 400 (`api.context.invalid_body_param.app_error`) and nothing is stored; a key the
//!   configuration does not have is dropped without a word (Go's JSON decoder ignores unknown
//!   fields); emptying a set `SiteURL` is 400; the rest is merged and the whole result answered.
//! - keys in `pinned` are kept as they are, as Mattermost does for settings an `MM_...`
//!   environment variable sets.
//!
//! Without a token, as Mattermost serves them to anyone:
//! - `GET /api/v4/system/ping`: 200 `{"status":"OK"}`, or, once `healthy` is cleared, 500
//!   `{"status":"UNHEALTHY"}` (what Mattermost answers when its database does not);
//! - `GET /`: the web app's page with Mattermost's own framing headers
//!   (`X-Frame-Options: SAMEORIGIN`, `Content-Security-Policy: frame-ancestors 'self'; ...`).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use serde_json::{json, Map, Value};
use tokio::net::TcpListener;

/// The configuration document of a fresh Mattermost.
pub const DEFAULT_CONFIG: &str = include_str!("../fixtures/mattermost-config.json");

/// Objects whose keys are free (Go maps or raw JSON), not struct fields.
const FREE_KEYS: &[&str] = &["Plugins", "PluginStates", "AdvancedLoggingJSON"];

/// A running stand-in; stops when dropped.
pub struct Mattermost {
    pub addr: SocketAddr,
    pub config: Arc<Mutex<Value>>,
    /// Dotted keys a patch does not change.
    pub pinned: Arc<Mutex<Vec<String>>>,
    /// Successful patches.
    pub patches: Arc<AtomicUsize>,
    /// What the ping answers: OK while set.
    pub healthy: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Mattermost {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct State {
    token: String,
    config: Arc<Mutex<Value>>,
    pinned: Arc<Mutex<Vec<String>>>,
    patches: Arc<AtomicUsize>,
    healthy: Arc<AtomicBool>,
}

impl Mattermost {
    pub async fn start(token: &str) -> Mattermost {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind Mattermost stand-in");
        let addr = listener.local_addr().unwrap();
        let config = Arc::new(Mutex::new(serde_json::from_str(DEFAULT_CONFIG).expect("fixture")));
        let pinned = Arc::new(Mutex::new(Vec::new()));
        let patches = Arc::new(AtomicUsize::new(0));
        let healthy = Arc::new(AtomicBool::new(true));
        let state = Arc::new(State {
            token: token.to_string(),
            config: config.clone(),
            pinned: pinned.clone(),
            patches: patches.clone(),
            healthy: healthy.clone(),
        });
        let task = super::serve_stand_in(listener, state, handle);
        Mattermost {
            addr,
            config,
            pinned,
            patches,
            healthy,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The stored value at a dotted key.
    pub fn get(&self, key: &str) -> Option<Value> {
        let doc = self.config.lock().unwrap();
        key.split('.').try_fold(&*doc, |v, k| v.get(k)).cloned()
    }
}

pub fn reply(status: u16, body: &Value) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    Ok(Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap())
}

/// Mattermost's error document.
pub fn app_error(status: u16, id: &str, message: &str) -> Value {
    json!({"id": id, "message": message, "detailed_error": "", "request_id": "standin", "status_code": status})
}

async fn handle(
    state: Arc<State>,
    req: Request<hyper::body::Incoming>,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let authorized = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        == Some(state.token.as_str());
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    match (method.as_str(), path.as_str()) {
        ("GET" | "HEAD", "/api/v4/system/ping") => {
            return if state.healthy.load(Ordering::SeqCst) {
                reply(200, &json!({"ActiveSearchBackend": "database", "status": "OK"}))
            } else {
                reply(500, &json!({"status": "UNHEALTHY"}))
            };
        }
        ("GET", "/") => {
            return Ok(Response::builder()
                .header("content-type", "text/html")
                .header("x-frame-options", "SAMEORIGIN")
                .header(
                    "content-security-policy",
                    "frame-ancestors 'self'; script-src 'self' cdn.rudderlabs.com",
                )
                .body(Full::new(Bytes::from_static(
                    b"<!doctype html><title>Mattermost</title>",
                )))
                .unwrap());
        }
        _ => {}
    }
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    if !authorized {
        return reply(
            401,
            &app_error(
                401,
                "api.context.session_expired.app_error",
                "Invalid or expired session, please login again.",
            ),
        );
    }
    match (method.as_str(), path.as_str()) {
        ("GET", "/api/v4/config") => reply(200, &state.config.lock().unwrap()),
        ("PUT", "/api/v4/config/patch") => {
            let invalid = || {
                reply(
                    400,
                    &app_error(
                        400,
                        "api.context.invalid_body_param.app_error",
                        "Invalid or missing config in request body.",
                    ),
                )
            };
            let Ok(Value::Object(patch)) = serde_json::from_slice::<Value>(&body) else {
                return invalid();
            };
            let mut doc = state.config.lock().unwrap();
            if !types_match(&doc, &patch) {
                return invalid();
            }
            let clears_site_url = patch
                .get("ServiceSettings")
                .and_then(|s| s.get("SiteURL"))
                .is_some_and(|v| v == "");
            if clears_site_url && doc["ServiceSettings"]["SiteURL"] != "" {
                return reply(
                    400,
                    &app_error(
                        400,
                        "api.config.update_config.clear_siteurl.app_error",
                        "Site URL cannot be cleared.",
                    ),
                );
            }
            let pinned = state.pinned.lock().unwrap().clone();
            merge(&mut doc, &patch, "", &pinned);
            state.patches.fetch_add(1, Ordering::SeqCst);
            reply(200, &doc)
        }
        _ => reply(
            404,
            &app_error(
                404,
                "api.context.404.app_error",
                "Sorry, we could not find the page.",
            ),
        ),
    }
}

/// Whether every known key of `patch` has the type of the same key in `doc` (unknown keys are
/// ignored, as Go's decoder ignores them).
fn types_match(doc: &Value, patch: &Map<String, Value>) -> bool {
    patch.iter().all(|(k, p)| match doc.get(k) {
        None => true,
        Some(d) => same_type(k, d, p),
    })
}

fn same_type(key: &str, d: &Value, p: &Value) -> bool {
    match (d, p) {
        // A pointer field decoded from null stays nil: accepted.
        (_, Value::Null) => true,
        (Value::Object(_), Value::Object(_)) if FREE_KEYS.contains(&key) => true,
        (Value::Object(d), Value::Object(p)) => types_match(&Value::Object(d.clone()), p),
        (Value::String(_), Value::String(_)) | (Value::Bool(_), Value::Bool(_)) => true,
        // Mattermost's numbers are integers.
        (Value::Number(_), Value::Number(n)) => n.is_i64() || n.is_u64(),
        // Lists of strings, or of objects for ReplicaLagSettings.
        (Value::Array(d), Value::Array(p)) => match d.first() {
            Some(Value::Object(_)) => p.iter().all(Value::is_object),
            _ => p.iter().all(Value::is_string),
        },
        _ => false,
    }
}

fn merge(doc: &mut Value, patch: &Map<String, Value>, prefix: &str, pinned: &[String]) {
    for (k, p) in patch {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        let Some(d) = doc.get_mut(k) else { continue };
        match (d, p) {
            (d @ Value::Object(_), Value::Object(_)) if FREE_KEYS.contains(&k.as_str()) => *d = p.clone(),
            (d @ Value::Object(_), Value::Object(p)) => merge(d, p, &key, pinned),
            (_, Value::Null) => {}
            (d, p) => {
                if !pinned.contains(&key) {
                    *d = p.clone();
                }
            }
        }
    }
}
