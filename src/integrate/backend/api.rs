//! Mattermost's REST API, for a configuration stored in the database (or a server vestibule cannot
//! reach the files of).
//!
//! `GET /api/v4/config` returns the whole configuration (secrets masked); `PUT /api/v4/config/patch`
//! merges the sections and keys it is given into it and returns the result. Both need a system
//! admin's session or personal access token (`Authorization: Bearer`).
//!
//! Mattermost decodes the patch into its configuration type, so a value of the wrong type is
//! refused with 400, while a key it does not know is dropped without a word, as is a key the token
//! may not write (`ExperimentalSettings.RestrictSystemAdmin`) or one an `MM_...` environment
//! variable pins. Hence vestibule only patches keys the GET showed, and compares the answer with
//! what it asked for.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::integrate::plan::{self, Change};

/// Why the API could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Token(#[from] crate::secret::SecretError),
    #[error("token file {} is not UTF-8 text: put the personal access token in it", .0.display())]
    TokenText(PathBuf),
    #[error("--url {0} is not an http:// or https:// URL (e.g. http://127.0.0.1:8065)")]
    Url(String),
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
    #[error("cannot reach Mattermost at {url}: {reason}: is it running, and is --url right?")]
    Connect { url: String, reason: String },
    #[error(
        "Mattermost refused the token ({status} on {url}): use a personal access token of a system \
         admin (System Console > Integrations > Integration Management > Enable Personal Access Tokens)"
    )]
    Unauthorized { url: String, status: u16 },
    #[error("Mattermost answered {status} on {url}: {message}")]
    Status {
        url: String,
        status: u16,
        message: String,
    },
    #[error("Mattermost's answer on {url} is not its configuration: {reason}")]
    Answer { url: String, reason: String },
    #[error(
        "Mattermost did not store {}: an MM_ environment variable pins it, or \
         ExperimentalSettings.RestrictSystemAdmin keeps it from the API; set it where it is pinned",
        keys.join(", ")
    )]
    NotStored { keys: Vec<String> },
}

/// A Mattermost server's configuration API.
pub struct Api {
    base: String,
    token: String,
    client: reqwest::Client,
    timeout: Duration,
}

impl Api {
    /// `url` is the server's address (`http://127.0.0.1:8065`); the token is read from a file that
    /// only its owner may read.
    pub fn new(url: &str, token_file: &Path) -> Result<Api, ApiError> {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(ApiError::Url(url.to_string()));
        }
        let token = crate::secret::load_secret(token_file)?;
        let token = String::from_utf8(token)
            .map_err(|_| ApiError::TokenText(token_file.to_path_buf()))?
            .trim()
            .to_string();
        let client = crate::push::client::build(None).map_err(|e| ApiError::Client(e.to_string()))?;
        Ok(Api {
            base: url.trim_end_matches('/').to_string(),
            token,
            client,
            timeout: super::API_TIMEOUT,
        })
    }

    /// Each request limited to `timeout` instead.
    pub fn with_timeout(mut self, timeout: Duration) -> Api {
        self.timeout = timeout;
        self
    }

    /// The whole configuration.
    pub async fn get(&self) -> Result<Value, ApiError> {
        let url = format!("{}/api/v4/config", self.base);
        let req = self.client.get(&url);
        self.send(req, &url).await
    }

    /// Patch `changes` in; fails if Mattermost did not store every one of them.
    /// `doc` is the configuration as read (see [`plan::patch_document`]).
    pub async fn patch(&self, doc: &Value, changes: &[Change]) -> Result<Value, ApiError> {
        let url = format!("{}/api/v4/config/patch", self.base);
        let req = self
            .client
            .put(&url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(plan::patch_document(doc, changes).to_string());
        let stored = self.send(req, &url).await?;
        let missed: Vec<String> = changes
            .iter()
            .filter(|c| plan::get(&stored, c.key) != Some(&c.new))
            .map(|c| c.key.to_string())
            .collect();
        if missed.is_empty() {
            Ok(stored)
        } else {
            Err(ApiError::NotStored { keys: missed })
        }
    }

    async fn send(&self, req: reqwest::RequestBuilder, url: &str) -> Result<Value, ApiError> {
        let resp = req
            .bearer_auth(&self.token)
            .timeout(self.timeout)
            .send()
            .await
            .map_err(|e| connect_error(url, &e))?;
        let status = resp.status().as_u16();
        let body = resp.bytes().await.map_err(|e| connect_error(url, &e))?;
        if status == 401 || status == 403 {
            return Err(ApiError::Unauthorized {
                url: url.to_string(),
                status,
            });
        }
        if status != 200 {
            // Mattermost's errors are `{"id": ..., "message": ..., "status_code": ...}`.
            let message = serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_string))
                .unwrap_or_else(|| String::from_utf8_lossy(&body).chars().take(200).collect());
            return Err(ApiError::Status {
                url: url.to_string(),
                status,
                message,
            });
        }
        let doc: Value = serde_json::from_slice(&body).map_err(|e| ApiError::Answer {
            url: url.to_string(),
            reason: e.to_string(),
        })?;
        if !doc.get("ServiceSettings").is_some_and(Value::is_object) {
            return Err(ApiError::Answer {
                url: url.to_string(),
                reason: "no ServiceSettings object".into(),
            });
        }
        Ok(doc)
    }
}

/// reqwest's own message ("error sending request") hides why; the innermost cause says it
/// ("Connection refused", a certificate error).
fn connect_error(url: &str, e: &reqwest::Error) -> ApiError {
    let mut cause: &dyn std::error::Error = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    ApiError::Connect {
        url: url.to_string(),
        reason: cause.to_string(),
    }
}
