//! The Mattermost REST calls `users sync` makes, paced and retried.
//!
//! Every request waits for its slot (`[users] rate_limit` requests a second), so a run of
//! thousands of users stays under Mattermost's own rate limiter (`RateLimitSettings`: 10/s, burst
//! 100, when enabled). A 429 is retried after its `Retry-After`; a 5xx or a failed connection
//! after a doubling delay (0.5 s, 1 s, 2 s, ... at most 8 s), up to `[users] retries` times. Any
//! other answer is final.

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};

use super::plan::{MmUser, NewUser};

/// Users per page when listing (the API's maximum is 200).
const PER_PAGE: usize = 200;
/// Names per `POST /users/usernames`, and user ids per `members/batch`.
const BATCH: usize = 100;

/// Why a Mattermost call failed. Never contains the token or a password.
#[derive(Debug, thiserror::Error)]
pub enum MmError {
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
    #[error(
        "cannot reach Mattermost at {url}: {reason}: is it running, and is [users.mattermost] url right?"
    )]
    Connect { url: String, reason: String },
    #[error(
        "Mattermost refused the token ({status} on {method} {path}): use a personal access token of a \
         system admin in [users.mattermost] token_file"
    )]
    Unauthorized {
        method: Method,
        path: String,
        status: u16,
    },
    #[error("Mattermost answered {status} to {method} {path}: {message} ({id})")]
    Api {
        method: Method,
        path: String,
        status: u16,
        id: String,
        message: String,
    },
    #[error("Mattermost's answer to {method} {path} is not what its API returns: {reason}")]
    Answer {
        method: Method,
        path: String,
        reason: String,
    },
}

/// A team as the API returns it.
#[derive(Debug, Clone)]
pub struct Team {
    pub id: String,
    pub name: String,
}

/// A Mattermost server, reached with one token.
/// The most of one answer kept: a page of 200 users is some 200 KiB, the whole configuration less
/// than 1 MiB. A peer that sends more (not Mattermost) cannot fill the memory.
const MAX_ANSWER: usize = 16 << 20;

/// The answer's body, cut at [`MAX_ANSWER`] (the JSON then fails to parse, with a clear error).
async fn read_capped(mut resp: reqwest::Response) -> Vec<u8> {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = resp.chunk().await {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_ANSWER {
            body.truncate(MAX_ANSWER);
            break;
        }
    }
    body
}

/// Said when a page holds only what earlier pages held: a proxy or cache ignoring `?page=` would
/// otherwise be asked forever.
const REPEATED_PAGE: &str =
    "the page repeats an earlier one (is a proxy or cache in front of Mattermost ignoring ?page=?)";

/// What the server's configuration allows.
#[derive(Debug, Clone, Copy, Default)]
pub struct Limits {
    /// `TeamSettings.MaxUsersPerTeam`.
    pub max_users_per_team: Option<u64>,
    /// `PasswordSettings.MinimumLength`.
    pub password_minimum_length: Option<u64>,
}

pub struct Client {
    base: String,
    token: String,
    http: reqwest::Client,
    interval: Duration,
    next: tokio::sync::Mutex<Instant>,
    retries: u32,
    timeout: Duration,
    /// Requests sent (retries included), for the summary.
    pub sent: AtomicUsize,
}

impl Client {
    pub fn new(
        url: &str,
        token: String,
        ca_file: Option<&Path>,
        rate_limit: u32,
        retries: u32,
        timeout: Duration,
    ) -> Result<Client, MmError> {
        let http = crate::push::client::build(ca_file).map_err(|e| MmError::Client(e.to_string()))?;
        Ok(Client {
            base: url.trim_end_matches('/').to_string(),
            token,
            http,
            interval: Duration::from_secs(1) / rate_limit.max(1),
            next: tokio::sync::Mutex::new(Instant::now()),
            retries,
            timeout,
            sent: AtomicUsize::new(0),
        })
    }

    /// Wait for this request's slot.
    async fn pace(&self) {
        let mut next = self.next.lock().await;
        let now = Instant::now();
        if *next > now {
            tokio::time::sleep(*next - now).await;
        }
        *next = (*next).max(now) + self.interval;
    }

    /// One call, retried on 429, 5xx and connection failures; `Ok` only for a 2xx answer.
    async fn call(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Value, MmError> {
        let url = format!("{}{path}", self.base);
        let mut attempt = 0u32;
        loop {
            self.pace().await;
            self.sent.fetch_add(1, Ordering::Relaxed);
            let mut req = self
                .http
                .request(method.clone(), &url)
                .bearer_auth(&self.token)
                .timeout(self.timeout);
            if let Some(b) = body {
                req = req
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(b.to_string());
            }
            let wait = match req.send().await {
                Err(e) => {
                    if attempt >= self.retries {
                        return Err(MmError::Connect {
                            url,
                            reason: innermost(&e),
                        });
                    }
                    backoff(attempt)
                }
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let retry_after = resp
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(|s| Duration::from_secs(s.min(60)));
                    let bytes = read_capped(resp).await;
                    let retryable = status == 429 || status >= 500;
                    if !retryable || attempt >= self.retries {
                        return self.answer(method, path, status, &bytes);
                    }
                    tracing::debug!(status, path, attempt, "Mattermost asked to retry");
                    if status == 429 {
                        retry_after.unwrap_or_else(|| backoff(attempt))
                    } else {
                        backoff(attempt)
                    }
                }
            };
            attempt += 1;
            tokio::time::sleep(wait).await;
        }
    }

    fn answer(&self, method: Method, path: &str, status: u16, body: &[u8]) -> Result<Value, MmError> {
        if status == 401 || status == 403 {
            return Err(MmError::Unauthorized {
                method,
                path: path.to_string(),
                status,
            });
        }
        let doc: Option<Value> = serde_json::from_slice(body).ok();
        if !(200..300).contains(&status) {
            // Mattermost's errors are `{"id": ..., "message": ..., "status_code": ...}`.
            let field = |k: &str| {
                doc.as_ref()
                    .and_then(|d| d.get(k))
                    .and_then(Value::as_str)
                    .map(str::to_string)
            };
            return Err(MmError::Api {
                method,
                path: path.to_string(),
                status,
                id: field("id").unwrap_or_default(),
                message: field("message")
                    .unwrap_or_else(|| String::from_utf8_lossy(body).chars().take(200).collect()),
            });
        }
        doc.ok_or_else(|| MmError::Answer {
            method,
            path: path.to_string(),
            reason: "not JSON".into(),
        })
    }

    fn bad_answer(method: Method, path: &str, reason: &str) -> MmError {
        MmError::Answer {
            method,
            path: path.to_string(),
            reason: reason.to_string(),
        }
    }

    /// The token's own account.
    pub async fn me(&self) -> Result<MmUser, MmError> {
        let v = self.call(Method::GET, "/api/v4/users/me", None).await?;
        parse_user(&v).ok_or_else(|| Self::bad_answer(Method::GET, "/api/v4/users/me", "no user"))
    }

    /// `GET /api/v4/teams/name/{name}`; `None` on 404.
    pub async fn team_by_name(&self, name: &str) -> Result<Option<Team>, MmError> {
        let path = format!("/api/v4/teams/name/{name}");
        match self.call(Method::GET, &path, None).await {
            Ok(v) => parse_team(&v)
                .map(Some)
                .ok_or_else(|| Self::bad_answer(Method::GET, &path, "no team")),
            Err(MmError::Api { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The limits a run must respect, from `GET /api/v4/config` (which the system admin's token
    /// may read); `None` for what the answer does not carry.
    pub async fn limits(&self) -> Result<Limits, MmError> {
        let doc = self.call(Method::GET, "/api/v4/config", None).await?;
        Ok(Limits {
            max_users_per_team: doc
                .pointer("/TeamSettings/MaxUsersPerTeam")
                .and_then(Value::as_u64),
            password_minimum_length: doc
                .pointer("/PasswordSettings/MinimumLength")
                .and_then(Value::as_u64),
        })
    }

    /// `POST /api/v4/teams`: an open team (anyone on the server may join).
    pub async fn create_team(&self, name: &str, display_name: &str) -> Result<Team, MmError> {
        let body = json!({"name": name, "display_name": display_name, "type": "O"});
        let v = self.call(Method::POST, "/api/v4/teams", Some(&body)).await?;
        parse_team(&v).ok_or_else(|| Self::bad_answer(Method::POST, "/api/v4/teams", "no team"))
    }

    /// Ids of the team's current members (`GET /api/v4/teams/{id}/members`, paged).
    pub async fn team_member_ids(&self, team_id: &str) -> Result<HashSet<String>, MmError> {
        let mut ids = HashSet::new();
        let mut seen = HashSet::new();
        for page in 0.. {
            let path = format!("/api/v4/teams/{team_id}/members?page={page}&per_page={PER_PAGE}");
            let v = self.call(Method::GET, &path, None).await?;
            let list = v
                .as_array()
                .ok_or_else(|| Self::bad_answer(Method::GET, &path, "not a list"))?;
            let before = seen.len();
            seen.extend(
                list.iter()
                    .filter_map(|m| m.get("user_id").and_then(Value::as_str).map(str::to_string)),
            );
            if !list.is_empty() && seen.len() == before {
                return Err(Self::bad_answer(Method::GET, &path, REPEATED_PAGE));
            }
            ids.extend(
                list.iter()
                    .filter(|m| m.get("delete_at").and_then(Value::as_i64).unwrap_or(0) == 0)
                    .filter_map(|m| m.get("user_id").and_then(Value::as_str).map(str::to_string)),
            );
            if list.len() < PER_PAGE {
                break;
            }
        }
        Ok(ids)
    }

    /// The accounts with these usernames (`POST /api/v4/users/usernames`, a JSON list; names
    /// without an account are left out of the answer).
    pub async fn users_by_usernames(&self, names: &[String]) -> Result<Vec<MmUser>, MmError> {
        let mut out = Vec::new();
        for chunk in names.chunks(BATCH) {
            let v = self
                .call(Method::POST, "/api/v4/users/usernames", Some(&json!(chunk)))
                .await?;
            out.extend(parse_users(&v).ok_or_else(|| {
                Self::bad_answer(Method::POST, "/api/v4/users/usernames", "not a list of users")
            })?);
        }
        Ok(out)
    }

    /// Every account, or with `role` only those (`GET /api/v4/users?role=...`, paged).
    pub async fn users(&self, role: Option<&str>) -> Result<Vec<MmUser>, MmError> {
        let mut out = Vec::new();
        let role = role.map(|r| format!("&role={r}")).unwrap_or_default();
        let mut seen = HashSet::new();
        for page in 0.. {
            let path = format!("/api/v4/users?page={page}&per_page={PER_PAGE}{role}");
            let v = self.call(Method::GET, &path, None).await?;
            let users =
                parse_users(&v).ok_or_else(|| Self::bad_answer(Method::GET, &path, "not a list of users"))?;
            let n = users.len();
            let before = seen.len();
            seen.extend(users.iter().map(|u| u.id.clone()));
            if n > 0 && seen.len() == before {
                return Err(Self::bad_answer(Method::GET, &path, REPEATED_PAGE));
            }
            out.extend(users);
            if n < PER_PAGE {
                break;
            }
        }
        Ok(out)
    }

    /// `POST /api/v4/users`: a password account. Mattermost sends no welcome mail to users an
    /// admin creates unless asked; `disable_welcome_email` makes that explicit.
    pub async fn create_user(&self, u: &NewUser, password: &str) -> Result<MmUser, MmError> {
        let body = json!({
            "username": u.username,
            "email": u.email,
            "first_name": u.first_name,
            "last_name": u.last_name,
            "password": password,
            "disable_welcome_email": true,
        });
        let v = self.call(Method::POST, "/api/v4/users", Some(&body)).await?;
        parse_user(&v).ok_or_else(|| Self::bad_answer(Method::POST, "/api/v4/users", "no user"))
    }

    /// `POST /api/v4/teams/{id}/members/batch`, in batches.
    pub async fn add_members(&self, team_id: &str, user_ids: &[String]) -> Result<(), MmError> {
        let path = format!("/api/v4/teams/{team_id}/members/batch");
        for chunk in user_ids.chunks(BATCH) {
            let body: Vec<Value> = chunk
                .iter()
                .map(|id| json!({"team_id": team_id, "user_id": id}))
                .collect();
            self.call(Method::POST, &path, Some(&Value::Array(body))).await?;
        }
        Ok(())
    }

    /// `PUT /api/v4/users/{id}/roles`: the whole list of roles.
    pub async fn set_roles(&self, user_id: &str, roles: &str) -> Result<(), MmError> {
        let path = format!("/api/v4/users/{user_id}/roles");
        self.call(Method::PUT, &path, Some(&json!({"roles": roles})))
            .await
            .map(drop)
    }

    /// `PUT /api/v4/users/{id}/active` with `false`: the account can no longer log in, and
    /// everything it wrote stays (unlike a permanent delete, which vestibule never does).
    pub async fn deactivate(&self, user_id: &str) -> Result<(), MmError> {
        let path = format!("/api/v4/users/{user_id}/active");
        self.call(Method::PUT, &path, Some(&json!({"active": false})))
            .await
            .map(drop)
    }
}

fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(500u64.saturating_mul(1 << attempt.min(4)))
}

/// reqwest's own message ("error sending request") hides why; the innermost cause says it.
fn innermost(e: &reqwest::Error) -> String {
    let mut cause: &dyn std::error::Error = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

fn parse_team(v: &Value) -> Option<Team> {
    Some(Team {
        id: v.get("id")?.as_str()?.to_string(),
        name: v.get("name")?.as_str()?.to_string(),
    })
}

fn parse_users(v: &Value) -> Option<Vec<MmUser>> {
    v.as_array()?.iter().map(parse_user).collect()
}

fn parse_user(v: &Value) -> Option<MmUser> {
    let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
    Some(MmUser {
        id: v.get("id")?.as_str()?.to_string(),
        username: v.get("username")?.as_str()?.to_string(),
        email: s("email"),
        roles: s("roles"),
        active: v.get("delete_at").and_then(Value::as_i64).unwrap_or(0) == 0,
        is_bot: v.get("is_bot").and_then(Value::as_bool).unwrap_or(false),
        auth_service: s("auth_service"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn requests_wait_for_their_slot() {
        // 50 requests a second: the sixth slot is 100 ms after the first, whatever the machine's
        // speed (a sleep never ends early), so this bound cannot flake.
        let c = Client::new(
            "http://127.0.0.1:1",
            "t".into(),
            None,
            50,
            0,
            Duration::from_secs(1),
        )
        .unwrap();
        let start = Instant::now();
        for _ in 0..6 {
            c.pace().await;
        }
        assert!(
            start.elapsed() >= Duration::from_millis(100),
            "{:?}",
            start.elapsed()
        );
    }

    #[test]
    fn backoff_doubles_up_to_eight_seconds() {
        let d: Vec<u64> = (0..7).map(|a| backoff(a).as_millis() as u64).collect();
        assert_eq!(d, [500, 1000, 2000, 4000, 8000, 8000, 8000]);
    }
}
