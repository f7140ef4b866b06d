//! Delivery of queued mail to the smarthost or the recipients' MX with lettre (spec/mail-relay.md,
//! "Delivering"). Recipients that fail for good are reported to the sender ([`bounce`]).
//!
//! One transaction per recipient (lettre aborts a transaction at the first refused RCPT, and
//! per-recipient results are what the queue records). The stored body is sent byte for byte: its
//! final CRLF is stripped because lettre appends `CRLF.CRLF` itself. 4xx answers, timeouts and
//! network or TLS errors defer with backoff (300 s doubling to 4000 s, ±10 %); 5xx answers fail the
//! recipient for good. Every state change of an envelope is written atomically before the next step.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use async_trait::async_trait;
use lettre::transport::smtp::extension::ClientId;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;

use super::client::{Failure, Pool};
use super::control::Control;
use super::record::RecipientState;
use super::smarthost::SmarthostSettings;
use super::spool::{self, Spool};
use super::{address, bounce, envelope, mx};
use crate::dns::Dns;
use crate::metrics::Metrics;

/// Messages delivered in parallel (the smarthost pool keeps up to 10 idle connections).
const DELIVERY_CONCURRENCY: usize = 10;

/// Backoff after `attempts` failed attempts: `first` (300 s, as Postfix) doubling up to 4000 s, with
/// ±10 % jitter.
pub fn backoff(first: Duration, attempts: u32, jitter: f64) -> Duration {
    let base = (first.as_secs_f64() * f64::from(1u32 << attempts.saturating_sub(1).min(6))).min(4000.0);
    Duration::from_secs_f64(base * (1.0 + 0.1 * jitter.clamp(-1.0, 1.0)))
}

fn now() -> u64 {
    crate::files::unix_now() as u64
}

/// Where messages go: one smarthost for everything, or each recipient domain's MX.
pub enum Route {
    Smarthost(Box<Pool>),
    Mx { dns: Arc<Dns>, port: u16 },
}

pub struct Deliverer {
    pub control: Arc<Control>,
    pub route: Route,
    pub hello: ClientId,
    pub hostname: String,
    pub spool: Arc<Spool>,
    pub metrics: Arc<Metrics>,
    pub lifetime: Duration,
    pub first_retry: Duration,
}

impl Deliverer {
    /// One pass: with `scan`, every envelope whose next attempt is due (or was flushed), read from
    /// the queue directory; without, only the messages queued since the last pass. Scanning reads
    /// every envelope, so it runs once a second at most, never once per accepted message.
    pub async fn run_once(&self, scan: bool) {
        let ids = if scan {
            let queue = self.control.queue().to_path_buf();
            let flush = self.control.take_flush();
            self.control.take_fresh(); // the scan finds them too
            let found = tokio::task::spawn_blocking(move || scan_queue(&queue, &flush))
                .await
                .unwrap_or_default();
            self.metrics.mail_queue_size.set(found.queued as i64);
            self.metrics
                .mail_oldest_age
                .set(found.oldest.map_or(0, |created| now().saturating_sub(created)) as i64);
            found.due
        } else {
            self.control.take_fresh()
        };
        // Several messages at once: each transaction waits on the network (and on delayed ACKs), not
        // on the CPU. Bounded by lettre's connection pool.
        use futures_util::StreamExt;
        futures_util::stream::iter(ids)
            .for_each_concurrent(DELIVERY_CONCURRENCY, |id| async move {
                if self.control.claim(&id) {
                    self.deliver(&id).await;
                    self.control.release(&id);
                }
            })
            .await;
    }

    /// One delivery attempt to one recipient.
    async fn send_one(
        &self,
        envelope: &lettre::address::Envelope,
        body: &[u8],
        domain: &str,
    ) -> Result<(), Failure> {
        match &self.route {
            Route::Smarthost(pool) => pool.send(envelope, body).await,
            Route::Mx { dns, port } => mx::send(dns, *port, &self.hello, domain, envelope, body).await,
        }
    }

    async fn deliver(&self, id: &str) {
        let queue = self.control.queue();
        let (q, i) = (queue.to_path_buf(), id.to_string());
        let Ok(Ok((mut env, stored))) =
            tokio::task::spawn_blocking(move || spool::read_message(&q, &i)).await
        else {
            return;
        };
        let sender = env.sender.clone();
        let from = if sender.is_empty() {
            None
        } else {
            sender.parse().ok()
        };
        // lettre appends CRLF.CRLF: without this the message would gain a blank line.
        let body = stored.strip_suffix(b"\r\n").unwrap_or(&stored);
        let created = env.created;
        let expired = now().saturating_sub(created) > self.lifetime.as_secs();
        let mut changed = false;
        let mut failed_now: Vec<(String, String, bool)> = Vec::new();
        for r in env.recipients.iter_mut() {
            if !r.is_pending() {
                continue;
            }
            let address = r.address.clone();
            let domain = address.rsplit_once('@').map_or("", |(_, d)| d).to_string();
            let started = std::time::Instant::now();
            let result = match address.parse() {
                Ok(to) => match lettre::address::Envelope::new(from.clone(), vec![to]) {
                    Ok(envelope) => self.send_one(&envelope, body, &domain).await,
                    Err(e) => Err(Failure::Permanent(format!("invalid envelope: {e}"))),
                },
                Err(_) => Err(Failure::Permanent("invalid recipient address".into())),
            };
            self.metrics
                .mail_delivery_duration
                .observe(started.elapsed().as_secs_f64());
            let attempts = r.attempts + 1;
            r.attempts = attempts;
            changed = true;
            match result {
                Ok(()) => {
                    r.state = RecipientState::Delivered;
                    self.metrics.mail_delivered.inc();
                    tracing::info!(target: "vestibule::mail", queue_id = id, recipient = %address, attempts, "delivered");
                }
                Err(Failure::Permanent(reply)) => {
                    r.state = RecipientState::Failed;
                    r.last_reply = Some(reply.clone());
                    self.metrics.mail_bounced.inc();
                    tracing::warn!(target: "vestibule::mail", queue_id = id, recipient = %address, reply = %reply, "permanently refused");
                    failed_now.push((address, reply, false));
                }
                Err(Failure::Temporary(reply)) => {
                    r.last_reply = Some(reply.clone());
                    if expired {
                        r.state = RecipientState::Failed;
                        self.metrics.mail_bounced.inc();
                        tracing::warn!(target: "vestibule::mail", queue_id = id, recipient = %address, reply = %reply, "expired in the queue");
                        failed_now.push((address, reply, true));
                    } else {
                        let jitter = (now() % 21) as f64 / 10.0 - 1.0;
                        let wait = backoff(self.first_retry, attempts as u32, jitter);
                        r.next_attempt = Some(now() + wait.as_secs().max(1));
                        self.metrics.mail_deferred.inc();
                        tracing::warn!(target: "vestibule::mail", queue_id = id, recipient = %address, reply = %reply, retry_in = wait.as_secs(), "deferred");
                    }
                }
            }
        }
        if !changed {
            return;
        }
        // The bounce is queued (durably) before the failure is recorded: a crash in between sends
        // the report twice rather than never. Never for `<>`: reports must not bounce.
        if !failed_now.is_empty() && !sender.is_empty() {
            self.queue_bounce(id, &sender, created, &failed_now, &stored)
                .await;
        }
        let done = !env.has_pending();
        let queue = queue.to_path_buf();
        let id = id.to_string();
        let _ = tokio::task::spawn_blocking(move || {
            if done {
                spool::remove(&queue, &id);
            } else {
                let _ = spool::write_envelope(&queue, &id, &env);
            }
        })
        .await;
    }

    async fn queue_bounce(
        &self,
        id: &str,
        sender: &str,
        created: u64,
        failed: &[(String, String, bool)],
        original: &[u8],
    ) {
        let Ok(to) = address::Address::parse(sender) else {
            tracing::warn!(target: "vestibule::mail", queue_id = id, sender, "no bounce: the sender address is not valid");
            return;
        };
        let arrival = UNIX_EPOCH + Duration::from_secs(created);
        let list: Vec<bounce::Failed<'_>> = failed
            .iter()
            .map(|(r, reply, expired)| bounce::Failed {
                recipient: r,
                reply,
                expired: *expired,
            })
            .collect();
        let body = bounce::report(&self.hostname, id, sender, arrival, &list, original);
        let envelope = envelope::Envelope {
            sender: None,
            recipients: vec![to],
            body,
            body_type: envelope::BodyType::SevenBit,
            client_ip: std::net::Ipv4Addr::LOCALHOST.into(),
            helo: self.hostname.clone(),
            auth_user: None,
            protocol: envelope::Protocol::Esmtp,
        };
        let spool = self.spool.clone();
        match tokio::task::spawn_blocking(move || spool.store(&envelope)).await {
            Ok(Ok(bounce_id)) => {
                tracing::info!(target: "vestibule::mail", queue_id = id, bounce_id = %bounce_id, sender, "bounce queued");
                self.control.queued(bounce_id);
            }
            Ok(Err(e)) => tracing::error!(queue_id = id, error = %e, "cannot queue a bounce"),
            Err(_) => {}
        }
    }
}

/// What one read of the queue directory found.
#[derive(Default)]
struct Scan {
    /// Ids with a pending recipient whose next attempt is due, or that were flushed; oldest first.
    due: Vec<String>,
    /// Messages queued.
    queued: usize,
    /// Creation time of the oldest (ids start with their creation time, see `Spool::new_id`).
    oldest: Option<u64>,
}

fn scan_queue(queue: &Path, flush: &(bool, std::collections::HashSet<String>)) -> Scan {
    let t = now();
    let mut out = Scan::default();
    let mut oldest: Option<String> = None;
    for id in spool::entries(queue).into_iter().flatten() {
        out.queued += 1;
        if oldest.as_deref().is_none_or(|o| id.as_str() < o) {
            oldest = Some(id.clone());
        }
        let Ok(v) = spool::read_envelope(queue, &id) else {
            continue;
        };
        let forced = flush.0 || flush.1.contains(&id);
        let ready = v
            .recipients
            .iter()
            .any(|r| r.is_pending() && (forced || r.is_due(t)));
        if ready {
            out.due.push(id);
        }
    }
    out.due.sort();
    // The id's 14 leading hex digits are microseconds since the epoch.
    out.oldest = oldest
        .and_then(|id| u128::from_str_radix(id.get(..14)?, 16).ok())
        .map(|us| (us / 1_000_000) as u64);
    out
}

/// The queue runner: a pass every second, and at once when a message was queued or flushed.
pub struct Runner {
    pub control: Arc<Control>,
    pub smarthost: Option<SmarthostSettings>,
    pub dns: Arc<Dns>,
    pub mx_port: u16,
    pub hostname: String,
    pub spool: Arc<Spool>,
    pub lifetime: Duration,
    pub first_retry: Duration,
    pub metrics: Arc<Metrics>,
}

#[async_trait]
impl BackgroundService for Runner {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let hello = ClientId::Domain(self.hostname.clone());
        // Built here: lettre's connection pool needs the runtime it will run on.
        let route = match &self.smarthost {
            Some(s) => match Pool::for_smarthost(s, hello.clone(), self.dns.clone()) {
                Ok(p) => Route::Smarthost(Box::new(p)),
                Err(e) => {
                    tracing::error!(error = %e, "mail delivery cannot start; messages stay queued");
                    return;
                }
            },
            None => Route::Mx {
                dns: self.dns.clone(),
                port: self.mx_port,
            },
        };
        let deliverer = Deliverer {
            control: self.control.clone(),
            route,
            hello,
            hostname: self.hostname.clone(),
            spool: self.spool.clone(),
            metrics: self.metrics.clone(),
            lifetime: self.lifetime,
            first_retry: self.first_retry,
        };
        // After `run --upgrade`, the previous process may still be delivering until it exits: one
        // runner at a time, so no message goes out twice.
        tokio::select! {
            _ = crate::handover::predecessor_exited() => {}
            _ = shutdown.changed() => return,
        }
        let mut last_scan = std::time::Instant::now();
        deliverer.run_once(true).await;
        loop {
            tokio::select! {
                _ = self.control.wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.changed() => return,
            }
            // A steady stream of new mail must not starve deferred messages of their scan.
            let scan = self.control.flush_requested() || last_scan.elapsed() >= Duration::from_secs(1);
            if scan {
                last_scan = std::time::Instant::now();
            }
            deliverer.run_once(scan).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
