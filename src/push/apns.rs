//! Apple Push Notification service over HTTP/2 with token authentication (spec/push-relay.md):
//! an ES256 provider token from the team's .p8 key, cached and renewed well before Apple's 60-minute
//! limit, and the payload the Mattermost mobile app expects.

use std::path::Path;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use async_trait::async_trait;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::{json, Map, Value};

use super::client::{b64url, pkcs8_from_pem, DestinationError};
use super::notification::Notification;
use super::send::{by_status, Destination, Outcome};
use crate::files::unix_now;

pub const PRODUCTION: &str = "https://api.push.apple.com";
pub const SANDBOX: &str = "https://api.sandbox.push.apple.com";
/// Apple refuses tokens older than an hour; renew at 50 minutes.
const TOKEN_LIFETIME: Duration = Duration::from_secs(50 * 60);
/// Reasons that mean the device token is dead: Mattermost should forget it.
const REMOVE_REASONS: [&str; 4] = [
    "BadDeviceToken",
    "Unregistered",
    "MissingDeviceToken",
    "DeviceTokenNotForTopic",
];

/// The provider token could not be signed (ring refused: the key is loaded at start, so this is
/// not expected to happen; the notification fails and the next one tries again).
#[derive(Debug, thiserror::Error)]
#[error("signing the APNs token failed")]
pub struct SigningFailed;

pub struct Apns {
    client: reqwest::Client,
    endpoint: String,
    topic: String,
    key_id: String,
    team_id: String,
    key: EcdsaKeyPair,
    rng: SystemRandom,
    token: ArcSwapOption<(String, Instant)>,
}

impl Apns {
    pub fn new(
        client: reqwest::Client,
        endpoint: &str,
        key_file: &Path,
        key_id: &str,
        team_id: &str,
        topic: &str,
    ) -> Result<Apns, DestinationError> {
        let pem = std::fs::read(key_file).map_err(|source| DestinationError::Read {
            path: key_file.to_path_buf(),
            source,
        })?;
        let der = pkcs8_from_pem(&pem, &key_file.display().to_string())?;
        let rng = SystemRandom::new();
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der, &rng)
            .map_err(|_| DestinationError::NotEs256(key_file.to_path_buf()))?;
        Ok(Apns {
            client,
            endpoint: endpoint.trim_end_matches('/').to_string(),
            topic: topic.to_string(),
            key_id: key_id.to_string(),
            team_id: team_id.to_string(),
            key,
            rng,
            token: ArcSwapOption::empty(),
        })
    }

    /// The cached provider token, renewed when old.
    fn provider_token(&self) -> Result<String, SigningFailed> {
        if let Some(t) = self.token.load().as_ref() {
            if t.1.elapsed() < TOKEN_LIFETIME {
                return Ok(t.0.clone());
            }
        }
        let header = b64url(
            json!({ "alg": "ES256", "kid": self.key_id })
                .to_string()
                .as_bytes(),
        );
        let claims = b64url(
            json!({ "iss": self.team_id, "iat": unix_now() })
                .to_string()
                .as_bytes(),
        );
        let input = format!("{header}.{claims}");
        let sig = self
            .key
            .sign(&self.rng, input.as_bytes())
            .map_err(|_| SigningFailed)?;
        let token = format!("{input}.{}", b64url(sig.as_ref()));
        self.token
            .store(Some(std::sync::Arc::new((token.clone(), Instant::now()))));
        Ok(token)
    }

    /// The JSON Apple delivers to the app (spec/push-relay.md, "APNs").
    pub fn payload(n: &Notification) -> Value {
        let mut aps = Map::new();
        let kind = n.get("type");
        let message = n.get("message");
        if !message.is_empty() {
            let title = n.get("channel_name");
            aps.insert(
                "alert".into(),
                if title.is_empty() {
                    json!(message)
                } else {
                    json!({ "title": title, "body": message })
                },
            );
        }
        if let Some(badge) = n.get_int("badge").filter(|b| *b >= 0) {
            aps.insert("badge".into(), json!(badge));
        }
        if !n.get("category").is_empty() {
            aps.insert("category".into(), json!(n.get("category")));
        }
        if !message.is_empty() {
            aps.insert("sound".into(), json!("default"));
            aps.insert("mutable-content".into(), json!(1));
        }
        if matches!(kind, "message" | "clear" | "test") {
            aps.insert("content-available".into(), json!(1));
        }
        let thread = if n.get_bool("is_crt_enabled") && !n.get("root_id").is_empty() {
            n.get("root_id")
        } else {
            n.get("channel_id")
        };
        if !thread.is_empty() {
            aps.insert("thread-id".into(), json!(thread));
        }
        let mut out = Map::new();
        out.insert("aps".into(), Value::Object(aps));
        for k in [
            "ack_id",
            "type",
            "sub_type",
            "server_id",
            "team_id",
            "channel_id",
            "post_id",
            "root_id",
            "channel_name",
            "sender_id",
            "sender_name",
            "override_username",
            "override_icon_url",
            "from_webhook",
            "version",
        ] {
            let v = n.get(k);
            if !v.is_empty() {
                out.insert(k.into(), json!(v));
            }
        }
        out.insert("is_crt_enabled".into(), json!(n.get_bool("is_crt_enabled")));
        let sig = n.get("signature");
        out.insert(
            "signature".into(),
            json!(if sig.is_empty() { "NO_SIGNATURE" } else { sig }),
        );
        out.insert("id_loaded".into(), json!(n.get_bool("is_id_loaded")));
        Value::Object(out)
    }
}

#[async_trait]
impl Destination for Apns {
    fn label(&self) -> &'static str {
        "apns"
    }

    async fn send(&self, n: &Notification, timeout: Duration) -> Outcome {
        let token = match self.provider_token() {
            Ok(t) => t,
            Err(e) => return Outcome::Fail(e.to_string()),
        };
        let voip = n.get("transport") == "voip";
        let topic = if voip {
            format!("{}.voip", self.topic)
        } else {
            self.topic.clone()
        };
        let resp = self
            .client
            .post(format!("{}/3/device/{}", self.endpoint, n.get("device_id")))
            .header("authorization", format!("bearer {token}"))
            .header("apns-topic", topic)
            .header("apns-push-type", if voip { "voip" } else { "alert" })
            .header("apns-priority", "10")
            .header("content-type", "application/json")
            .timeout(timeout)
            .body(Self::payload(n).to_string())
            .send()
            .await;
        let resp = match resp {
            Ok(r) => r,
            Err(e) => return super::send::transport("APNs", &e, timeout),
        };
        let status = resp.status().as_u16();
        if status == 200 {
            return Outcome::Ok;
        }
        let body: Map<String, Value> = resp.json_or_default().await;
        let reason = body
            .get("reason")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if REMOVE_REASONS.contains(&reason.as_str()) {
            return Outcome::Remove(reason);
        }
        if reason == "ExpiredProviderToken" || reason == "InvalidProviderToken" {
            // Make a fresh token for the next attempt; a bad key keeps failing, visibly.
            self.token.store(None);
            return Outcome::Retry(format!("APNs refused the provider token ({reason})"));
        }
        by_status(status, "APNs", &reason)
    }
}

/// Small helper: a JSON body as a map, or empty.
#[async_trait]
pub trait JsonOrDefault {
    async fn json_or_default(self) -> Map<String, Value>;
}

#[async_trait]
impl JsonOrDefault for reqwest::Response {
    async fn json_or_default(self) -> Map<String, Value> {
        let bytes = self.bytes().await.unwrap_or_default();
        serde_json::from_slice(&bytes).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_mapping() {
        let n = Notification::parse(
            br#"{"ack_id":"a","platform":"apple","server_id":"s","device_id":"d","post_id":"p","type":"message",
            "message":"hi","channel_name":"Town","badge":2,"category":"CAN_REPLY","channel_id":"c","root_id":"r",
            "is_crt_enabled":true,"sender_name":"alice","signature":""}"#,
        )
        .unwrap();
        let p = Apns::payload(&n);
        assert_eq!(p["aps"]["alert"], json!({"title":"Town","body":"hi"}));
        assert_eq!(p["aps"]["badge"], 2);
        assert_eq!(p["aps"]["thread-id"], "r");
        assert_eq!(p["aps"]["content-available"], 1);
        assert_eq!(p["aps"]["mutable-content"], 1);
        assert_eq!(p["signature"], "NO_SIGNATURE");
        assert_eq!(p["sender_name"], "alice");
        let clear = Notification::parse(br#"{"platform":"apple","server_id":"s","device_id":"d","type":"clear","badge":-1,"channel_id":"c"}"#).unwrap();
        let p = Apns::payload(&clear);
        assert!(p["aps"].get("alert").is_none() && p["aps"].get("badge").is_none());
        assert_eq!(p["aps"]["thread-id"], "c");
    }
}
