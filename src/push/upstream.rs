//! Forwarding to another push proxy (Mattermost's hosted service for the store apps, its test
//! service, or any push-proxy): the body goes unchanged (unknown fields kept), the answer comes back.

use std::time::Duration;

use async_trait::async_trait;

use super::notification::Notification;
use super::send::{by_status, Destination, Outcome};

pub struct Upstream {
    pub client: reqwest::Client,
    /// `https://push.mattermost.com` (no trailing slash).
    pub base: String,
}

impl Upstream {
    pub fn new(client: reqwest::Client, base: &str) -> Upstream {
        Upstream {
            client,
            base: base.trim_end_matches('/').to_string(),
        }
    }

    async fn post(&self, path: &str, body: Vec<u8>, timeout: Duration) -> Outcome {
        let resp = self
            .client
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .timeout(timeout)
            .body(body)
            .send()
            .await;
        let resp = match resp {
            Ok(r) => r,
            Err(e) => return super::send::transport("upstream push proxy", &e, timeout),
        };
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        if status != 200 {
            return by_status(status, "upstream push proxy", text.trim());
        }
        let parsed: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&text).unwrap_or_default();
        match parsed.get("status").and_then(|v| v.as_str()) {
            Some("OK") => Outcome::Ok,
            Some("REMOVE") => Outcome::Remove("upstream".into()),
            Some("FAIL") => Outcome::Fail(
                parsed
                    .get("error")
                    .and_then(|v| v.as_str())
                    .unwrap_or("upstream push proxy failed")
                    .to_string(),
            ),
            _ => Outcome::Fail(format!(
                "unexpected answer from the upstream push proxy: {}",
                text.trim()
            )),
        }
    }

    /// Relay an ack (`/api/v1/ack`).
    pub async fn ack(&self, body: Vec<u8>, timeout: Duration) -> Outcome {
        self.post("/api/v1/ack", body, timeout).await
    }
}

#[async_trait]
impl Destination for Upstream {
    fn label(&self) -> &'static str {
        "upstream"
    }

    async fn send(&self, n: &Notification, timeout: Duration) -> Outcome {
        self.post("/api/v1/send_push", n.to_json(), timeout).await
    }
}
