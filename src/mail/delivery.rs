//! Delivery of queued mail to the smarthost with lettre (spec/mail-relay.md, "Delivering").
//!
//! One transaction per recipient (lettre aborts a transaction at the first refused RCPT, and
//! per-recipient results are what the queue records). The stored body is sent byte for byte: its
//! final CRLF is stripped because lettre appends `CRLF.CRLF` itself. 4xx answers, timeouts and
//! network or TLS errors defer with backoff (300 s doubling to 4000 s, ±10 %); 5xx answers fail the
//! recipient for good. Every state change of an envelope is written atomically before the next step.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use serde_json::Value;

use crate::metrics::Metrics;

/// Messages delivered in parallel (lettre's pool keeps up to 10 connections to the smarthost).
const DELIVERY_CONCURRENCY: usize = 10;

/// How the relay reaches its smarthost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Smarthost {
    pub host: String,
    pub port: u16,
    pub security: Security,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// `smtps://`: TLS from the first byte.
    Implicit,
    /// `smtp://`: STARTTLS required.
    StartTls,
    /// `smtp://` with `smarthost_tls = "none"`: plaintext (a smarthost on loopback only).
    None,
}

/// `smtp://host[:587]`, `smtps://host[:465]`.
pub fn parse_url(url: &str, plaintext: bool) -> Result<Smarthost, String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("`{url}` is not an smtp:// or smtps:// URL"))?;
    let (security, default_port) = match (scheme, plaintext) {
        ("smtps", _) => (Security::Implicit, 465),
        ("smtp", false) => (Security::StartTls, 587),
        ("smtp", true) => (Security::None, 25),
        _ => return Err(format!("`{scheme}` is not smtp or smtps")),
    };
    let rest = rest.trim_end_matches('/');
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) => (h, p.parse().map_err(|_| format!("`{p}` is not a port"))?),
        None => (rest, default_port),
    };
    if host.is_empty() {
        return Err(format!("`{url}` has no host"));
    }
    Ok(Smarthost {
        host: host.trim_matches(['[', ']']).to_string(),
        port,
        security,
    })
}

/// Backoff after `attempts` failed attempts: `first` (300 s, as Postfix) doubling up to 4000 s, with
/// ±10 % jitter.
pub fn backoff(first: Duration, attempts: u32, jitter: f64) -> Duration {
    let base = (first.as_secs_f64() * f64::from(1u32 << attempts.saturating_sub(1).min(6))).min(4000.0);
    Duration::from_secs_f64(base * (1.0 + 0.1 * jitter.clamp(-1.0, 1.0)))
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

pub struct Deliverer {
    pub queue: PathBuf,
    pub transport: AsyncSmtpTransport<Tokio1Executor>,
    pub metrics: Arc<Metrics>,
    pub lifetime: Duration,
    pub first_retry: Duration,
}

impl Deliverer {
    pub fn new(
        queue: PathBuf,
        smarthost: &Smarthost,
        hostname: &str,
        first_retry: Duration,
        metrics: Arc<Metrics>,
    ) -> Result<Deliverer, String> {
        let tls = |h: &str| TlsParameters::new_rustls(h.to_string()).map_err(|e| e.to_string());
        let security = match smarthost.security {
            Security::Implicit => Tls::Wrapper(tls(&smarthost.host)?),
            Security::StartTls => Tls::Required(tls(&smarthost.host)?),
            Security::None => Tls::None,
        };
        let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(smarthost.host.clone())
            .port(smarthost.port)
            .tls(security)
            .hello_name(lettre::transport::smtp::extension::ClientId::Domain(
                hostname.to_string(),
            ))
            // Long enough after "." that a slow smarthost does not make us send twice.
            .timeout(Some(Duration::from_secs(300)))
            .build();
        Ok(Deliverer {
            queue,
            transport,
            metrics,
            lifetime: Duration::from_secs(5 * 86400),
            first_retry,
        })
    }

    /// One pass over the queue: every envelope whose next attempt is due.
    pub async fn run_once(&self) {
        let queue = self.queue.clone();
        let ids = tokio::task::spawn_blocking(move || due(&queue))
            .await
            .unwrap_or_default();
        self.metrics.mail_queue_size.set(count(&self.queue) as i64);
        // Several messages at once: each transaction waits on the network (and on delayed ACKs), not
        // on the CPU. Bounded by lettre's connection pool.
        use futures_util::StreamExt;
        futures_util::stream::iter(ids)
            .for_each_concurrent(DELIVERY_CONCURRENCY, |id| async move { self.deliver(&id).await })
            .await;
    }

    async fn deliver(&self, id: &str) {
        let env_path = self.queue.join(format!("{id}.env"));
        let msg_path = self.queue.join(format!("{id}.msg"));
        let (Ok(env_bytes), Ok(body)) = (tokio::fs::read(&env_path).await, tokio::fs::read(&msg_path).await)
        else {
            return;
        };
        let Ok(mut env) = serde_json::from_slice::<Value>(&env_bytes) else {
            return;
        };
        let sender = env["sender"].as_str().unwrap_or("").to_string();
        let from = if sender.is_empty() {
            None
        } else {
            sender.parse().ok()
        };
        // lettre appends CRLF.CRLF: without this the message would gain a blank line.
        let body = body.strip_suffix(b"\r\n").unwrap_or(&body).to_vec();
        let created = env["created"].as_u64().unwrap_or(0);
        let expired = now().saturating_sub(created) > self.lifetime.as_secs();
        let mut changed = false;
        if let Some(rcpts) = env["recipients"].as_array_mut() {
            for r in rcpts.iter_mut() {
                if r["state"] != "pending" {
                    continue;
                }
                let address = r["address"].as_str().unwrap_or("").to_string();
                let started = std::time::Instant::now();
                let result = match (address.parse(), &from) {
                    (Ok(to), from) => match lettre::address::Envelope::new(from.clone(), vec![to]) {
                        Ok(envelope) => self.transport.send_raw(&envelope, &body).await.map(|_| ()),
                        Err(e) => {
                            r["state"] = "failed".into();
                            r["last_reply"] = format!("invalid envelope: {e}").into();
                            changed = true;
                            continue;
                        }
                    },
                    (Err(_), _) => {
                        r["state"] = "failed".into();
                        r["last_reply"] = "invalid recipient address".into();
                        changed = true;
                        continue;
                    }
                };
                self.metrics
                    .mail_delivery_duration
                    .observe(started.elapsed().as_secs_f64());
                let attempts = r["attempts"].as_u64().unwrap_or(0) + 1;
                r["attempts"] = attempts.into();
                changed = true;
                match result {
                    Ok(()) => {
                        r["state"] = "delivered".into();
                        self.metrics.mail_delivered.inc();
                        tracing::info!(target: "vestibule::mail", queue_id = id, recipient = %address, "delivered");
                    }
                    Err(e) if e.is_permanent() => {
                        r["state"] = "failed".into();
                        r["last_reply"] = e.to_string().into();
                        self.metrics.mail_bounced.inc();
                        tracing::warn!(target: "vestibule::mail", queue_id = id, recipient = %address, reply = %e, "permanently refused");
                    }
                    Err(e) => {
                        r["last_reply"] = e.to_string().into();
                        if expired {
                            r["state"] = "failed".into();
                            self.metrics.mail_bounced.inc();
                        } else {
                            let jitter = (now() % 21) as f64 / 10.0 - 1.0;
                            let wait = backoff(self.first_retry, attempts as u32, jitter);
                            r["next_attempt"] = (now() + wait.as_secs().max(1)).into();
                            self.metrics.mail_deferred.inc();
                        }
                        tracing::warn!(target: "vestibule::mail", queue_id = id, recipient = %address, reply = %e, "deferred");
                    }
                }
            }
        }
        if !changed {
            return;
        }
        let done = env["recipients"]
            .as_array()
            .is_some_and(|rs| rs.iter().all(|r| r["state"] != "pending"));
        let queue = self.queue.clone();
        let id = id.to_string();
        let _ = tokio::task::spawn_blocking(move || {
            if done {
                // Envelope first: a body without envelope is an orphan the next start removes.
                let _ = std::fs::remove_file(queue.join(format!("{id}.env")));
                let _ = std::fs::remove_file(queue.join(format!("{id}.msg")));
            } else {
                let _ =
                    crate::files::write_private(&queue.join(format!("{id}.env")), env.to_string().as_bytes());
            }
        })
        .await;
    }
}

/// Ids whose next pending recipient attempt is due.
fn due(queue: &Path) -> Vec<String> {
    let t = now();
    let mut ids: Vec<String> = std::fs::read_dir(queue)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| {
                    let p = e.path();
                    let id = p.file_name()?.to_str()?.strip_suffix(".env")?.to_string();
                    let v: Value = serde_json::from_slice(&std::fs::read(&p).ok()?).ok()?;
                    let ready = v["recipients"]
                        .as_array()?
                        .iter()
                        .any(|r| r["state"] == "pending" && r["next_attempt"].as_u64().unwrap_or(0) <= t);
                    ready.then_some(id)
                })
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    ids
}

fn count(queue: &Path) -> usize {
    std::fs::read_dir(queue)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.path().extension().is_some_and(|x| x == "env"))
                .count()
        })
        .unwrap_or(0)
}

/// The queue runner: a pass every second, and at once when a message was queued.
pub struct Runner {
    pub queue: PathBuf,
    pub smarthost: Smarthost,
    pub hostname: String,
    pub first_retry: Duration,
    pub metrics: Arc<Metrics>,
    pub wake: Arc<tokio::sync::Notify>,
}

#[async_trait]
impl BackgroundService for Runner {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        // Built here: lettre's connection pool needs the runtime it will run on.
        let deliverer = match Deliverer::new(
            self.queue.clone(),
            &self.smarthost,
            &self.hostname,
            self.first_retry,
            self.metrics.clone(),
        ) {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(error = %e, "mail delivery cannot start; messages stay queued");
                return;
            }
        };
        loop {
            deliverer.run_once().await;
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(parse_url("smtp://relay.example.org", false).unwrap().port, 587);
        assert_eq!(
            parse_url("smtps://relay.example.org", false).unwrap().security,
            Security::Implicit
        );
        assert_eq!(
            parse_url("smtp://127.0.0.1:2526", true).unwrap(),
            Smarthost {
                host: "127.0.0.1".into(),
                port: 2526,
                security: Security::None
            }
        );
        assert!(parse_url("http://x", false).is_err());
    }

    #[test]
    fn backoff_doubles_to_a_ceiling() {
        let first = Duration::from_secs(300);
        assert_eq!(backoff(first, 1, 0.0), Duration::from_secs(300));
        assert_eq!(backoff(first, 2, 0.0), Duration::from_secs(600));
        assert_eq!(backoff(first, 5, 0.0), Duration::from_secs(4000));
        assert_eq!(backoff(first, 30, 0.0), Duration::from_secs(4000));
        assert!(
            backoff(first, 1, 1.0) == Duration::from_secs(330)
                && backoff(first, 1, -1.0) == Duration::from_secs(270)
        );
    }
}
