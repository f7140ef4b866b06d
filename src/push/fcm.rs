//! Firebase Cloud Messaging HTTP v1 (spec/push-relay.md): an OAuth2 access token obtained with the
//! service account's RS256 assertion and cached until shortly before it expires, and data-only
//! messages whose values are all strings, as the Mattermost Android app reads them.

use std::path::Path;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use async_trait::async_trait;
use ring::rand::SystemRandom;
use ring::signature::{RsaKeyPair, RSA_PKCS1_SHA256};
use serde_json::{json, Map, Value};

use super::apns::JsonOrDefault;
use super::client::{b64url, pkcs8_from_pem, DestinationError};
use super::notification::Notification;
use super::send::{by_status, Destination, Outcome};
use crate::files::unix_now;

pub const ENDPOINT: &str = "https://fcm.googleapis.com";
pub const SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";
/// Error codes that mean the device token is dead.
const REMOVE_CODES: [&str; 2] = ["UNREGISTERED", "SENDER_ID_MISMATCH"];

pub struct Fcm {
    client: reqwest::Client,
    endpoint: String,
    project_id: String,
    client_email: String,
    token_uri: String,
    key: RsaKeyPair,
    rng: SystemRandom,
    token: ArcSwapOption<(String, Instant)>,
}

impl Fcm {
    /// From a Google service-account JSON file (`project_id`, `client_email`, `private_key`, `token_uri`).
    pub fn new(
        client: reqwest::Client,
        endpoint: &str,
        service_account: &Path,
    ) -> Result<Fcm, DestinationError> {
        let what = service_account.display().to_string();
        let text = std::fs::read(service_account).map_err(|source| DestinationError::Read {
            path: service_account.to_path_buf(),
            source,
        })?;
        let sa: Map<String, Value> =
            serde_json::from_slice(&text).map_err(|source| DestinationError::NotServiceAccount {
                what: what.clone(),
                source,
            })?;
        let field = |key: &'static str| {
            sa.get(key)
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| DestinationError::MissingField {
                    what: what.clone(),
                    key,
                })
        };
        let der = pkcs8_from_pem(
            field("private_key")?.as_bytes(),
            &format!("`private_key` in {what}"),
        )?;
        let key = RsaKeyPair::from_pkcs8(&der).map_err(|reason| DestinationError::NotRsa {
            what: what.clone(),
            reason,
        })?;
        Ok(Fcm {
            client,
            endpoint: endpoint.trim_end_matches('/').to_string(),
            project_id: field("project_id")?,
            client_email: field("client_email")?,
            token_uri: field("token_uri").unwrap_or_else(|_| "https://oauth2.googleapis.com/token".into()),
            key,
            rng: SystemRandom::new(),
            token: ArcSwapOption::empty(),
        })
    }

    async fn access_token(&self, timeout: Duration) -> Result<String, Outcome> {
        if let Some(t) = self.token.load().as_ref() {
            if Instant::now() < t.1 {
                return Ok(t.0.clone());
            }
        }
        let iat = unix_now();
        let header = b64url(json!({ "alg": "RS256", "typ": "JWT" }).to_string().as_bytes());
        let claims = b64url(
            json!({ "iss": self.client_email, "scope": SCOPE, "aud": self.token_uri, "iat": iat, "exp": iat + 3600 })
                .to_string()
                .as_bytes(),
        );
        let input = format!("{header}.{claims}");
        let mut sig = vec![0u8; self.key.public().modulus_len()];
        self.key
            .sign(&RSA_PKCS1_SHA256, &self.rng, input.as_bytes(), &mut sig)
            .map_err(|_| Outcome::Fail("signing the OAuth2 assertion failed".into()))?;
        let assertion = format!("{input}.{}", b64url(&sig));
        let form =
            format!("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion={assertion}");
        let resp = self
            .client
            .post(&self.token_uri)
            .header("content-type", "application/x-www-form-urlencoded")
            .timeout(timeout)
            .body(form)
            .send()
            .await
            .map_err(|e| super::send::transport("the OAuth2 token endpoint", &e, timeout))?;
        let status = resp.status().as_u16();
        let body = resp.json_or_default().await;
        let token = body.get("access_token").and_then(Value::as_str);
        match (status, token) {
            (200, Some(t)) => {
                let ttl = body.get("expires_in").and_then(Value::as_u64).unwrap_or(3600);
                // Renew a minute early so a token never expires in flight.
                let until = Instant::now() + Duration::from_secs(ttl.saturating_sub(60));
                self.token
                    .store(Some(std::sync::Arc::new((t.to_string(), until))));
                Ok(t.to_string())
            }
            (s, _) => Err(
                match by_status(s, "the OAuth2 token endpoint", &Value::Object(body).to_string()) {
                    Outcome::Ok => {
                        Outcome::Fail("the OAuth2 token endpoint answered without an access_token".into())
                    }
                    other => other,
                },
            ),
        }
    }

    /// FCM `data`: every field as a string (the app reads strings only).
    pub fn data(n: &Notification) -> Map<String, Value> {
        let mut data = Map::new();
        for (k, v) in &n.fields {
            if matches!(k.as_str(), "device_id" | "platform" | "is_id_loaded") {
                continue;
            }
            let s = match v {
                Value::String(s) => s.clone(),
                Value::Bool(b) => b.to_string(),
                Value::Number(num) => num.to_string(),
                Value::Null => continue,
                other => other.to_string(),
            };
            data.insert(k.clone(), Value::String(s));
        }
        if n.get_bool("is_id_loaded") {
            data.insert("id_loaded".into(), json!("true"));
            data.insert("sender_name".into(), json!("Someone"));
        }
        data
    }
}

#[async_trait]
impl Destination for Fcm {
    fn label(&self) -> &'static str {
        "fcm"
    }

    async fn send(&self, n: &Notification, timeout: Duration) -> Outcome {
        let token = match self.access_token(timeout).await {
            Ok(t) => t,
            Err(o) => return o,
        };
        let body = json!({
            "message": { "token": n.get("device_id"), "data": Self::data(n), "android": { "priority": "high" } }
        });
        let resp = self
            .client
            .post(format!(
                "{}/v1/projects/{}/messages:send",
                self.endpoint, self.project_id
            ))
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .timeout(timeout)
            .body(body.to_string())
            .send()
            .await;
        let resp = match resp {
            Ok(r) => r,
            Err(e) => return super::send::transport("FCM", &e, timeout),
        };
        let status = resp.status().as_u16();
        if status == 200 {
            return Outcome::Ok;
        }
        let err = resp.json_or_default().await;
        let code = err
            .get("error")
            .and_then(|e| e.get("details"))
            .and_then(Value::as_array)
            .and_then(|d| d.iter().find_map(|x| x.get("errorCode").and_then(Value::as_str)))
            .unwrap_or("")
            .to_string();
        if REMOVE_CODES.contains(&code.as_str()) {
            return Outcome::Remove(code);
        }
        if status == 401 {
            self.token.store(None);
            return Outcome::Retry("FCM refused the access token".into());
        }
        by_status(status, "FCM", &code)
    }
}
