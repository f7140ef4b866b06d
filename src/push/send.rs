//! Sending one notification to one destination, with the reference proxy's retries: 3 attempts, 1 s
//! then 2 s apart, each bounded, the whole bounded below Mattermost's own 30 s timeout so that the
//! answer it gets is always true ("OK" only once the destination accepted it).

use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::notification::{Answer, Notification};

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// The device token is dead (reason for metrics and logs).
    Remove(String),
    /// Worth another attempt (5xx, 429, network, timeouts, expired credentials).
    Retry(String),
    /// Will not work however often we try.
    Fail(String),
}

#[async_trait]
pub trait Destination: Send + Sync {
    /// Bounded label for metrics: `upstream`, `apns`, `fcm`.
    fn label(&self) -> &'static str;
    async fn send(&self, n: &Notification, attempt_timeout: Duration) -> Outcome;
}

/// Delays between attempts (reference proxy: 1 s, then 2 s).
pub const BACKOFF: [Duration; 2] = [Duration::from_secs(1), Duration::from_secs(2)];

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub attempt: Duration,
    pub total: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        // 8 s per attempt like the reference; 25 s in all, under Mattermost's 30 s.
        Limits {
            attempt: Duration::from_secs(8),
            total: Duration::from_secs(25),
        }
    }
}

/// Deliver with retries; returns the answer for Mattermost and the removal reason if any.
pub async fn deliver(
    dest: &dyn Destination,
    n: &Notification,
    limits: Limits,
    observe: impl Fn(Duration),
) -> (Answer, Option<String>) {
    let deadline = Instant::now() + limits.total;
    let mut last = String::from("no attempt made");
    for attempt in 0..=BACKOFF.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let per = limits.attempt.min(left);
        let started = Instant::now();
        let outcome = tokio::time::timeout(per, dest.send(n, per))
            .await
            .unwrap_or_else(|_| Outcome::Retry(format!("{} did not answer within {per:?}", dest.label())));
        observe(started.elapsed());
        match outcome {
            Outcome::Ok => return (Answer::Ok, None),
            Outcome::Remove(reason) => return (Answer::Remove, Some(reason)),
            Outcome::Fail(e) => return (Answer::Fail(e), None),
            Outcome::Retry(e) => last = e,
        }
        if let Some(delay) = BACKOFF.get(attempt) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left <= *delay {
                break;
            }
            tokio::time::sleep(*delay).await;
        }
    }
    (Answer::Fail(format!("not delivered: {last}")), None)
}

/// Classify a transport error (connect, TLS, timeout): always worth another attempt.
pub fn transport(what: &str, e: &reqwest::Error, timeout: Duration) -> Outcome {
    if e.is_timeout() {
        Outcome::Retry(format!("{what} did not answer within {timeout:?}"))
    } else {
        Outcome::Retry(format!("{what} unreachable: {e}"))
    }
}

/// Classify an HTTP status that carries no more specific meaning.
pub fn by_status(status: u16, what: &str, detail: &str) -> Outcome {
    match status {
        200..=299 => Outcome::Ok,
        429 | 500..=599 => Outcome::Retry(format!("{what} answered {status} {detail}")),
        _ => Outcome::Fail(format!("{what} answered {status} {detail}")),
    }
}
