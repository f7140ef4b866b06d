//! Stopping without waiting for nothing.
//!
//! On SIGTERM (and on the old process's side of a graceful upgrade) pingora stops accepting, closes
//! idle keep-alive connections, then sleeps the whole `grace_period` before tearing its runtimes
//! down, whether or not anything is still running. This module watches the work a stop must let
//! finish (proxied requests and websocket sessions, SMTP messages being received or queued, push
//! sends on the push listener) and ends the process as soon as none is left. The grace period stays
//! the upper bound: when it runs out, pingora's own shutdown takes over as before.
//!
//! Never ends the process before pingora has broadcast its shutdown (listeners closed), so work that
//! arrives during the stop is not cut off between our check and the listeners closing.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pingora_core::server::ExecutionPhase;
use tokio::sync::broadcast;

use crate::metrics::Metrics;

/// Work outside the proxy that a stop waits for. Proxied requests are counted by the
/// `vestibule_http_requests_active` gauge already.
static BUSY: AtomicUsize = AtomicUsize::new(0);

/// How often a stop looks at the in-flight counts: short enough that an idle stop feels immediate.
const POLL: Duration = Duration::from_millis(20);

/// Held while a piece of work a stop must let finish is running.
pub struct Busy(());

impl Busy {
    pub fn enter() -> Busy {
        BUSY.fetch_add(1, Ordering::Relaxed);
        Busy(())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        BUSY.fetch_sub(1, Ordering::Relaxed);
    }
}

fn in_flight(metrics: &Metrics) -> i64 {
    metrics.http_active.get() + BUSY.load(Ordering::Relaxed) as i64
}

/// Watch `phases` (from `Server::watch_execution_phase`) on a thread of its own: once pingora's
/// graceful stop has begun, exit as soon as nothing is in flight, after `before_exit` (flushes).
pub fn watch(
    mut phases: broadcast::Receiver<ExecutionPhase>,
    metrics: Arc<Metrics>,
    grace: Duration,
    before_exit: fn(),
) {
    let spawned = std::thread::Builder::new()
        .name("vestibule-drain".into())
        .spawn(move || {
            loop {
                match phases.blocking_recv() {
                    // Sent after the shutdown broadcast, for a stop and for an upgrade alike.
                    Ok(ExecutionPhase::ShutdownGracePeriod) => break,
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
            let start = Instant::now();
            while start.elapsed() < grace {
                let n = in_flight(&metrics);
                if n <= 0 {
                    tracing::info!(
                        after_ms = start.elapsed().as_millis() as u64,
                        "nothing in flight: stopping now"
                    );
                    before_exit();
                    std::process::exit(0);
                }
                std::thread::sleep(POLL);
            }
            tracing::warn!(
                in_flight = in_flight(&metrics),
                "grace period over with work still in flight: stopping anyway"
            );
        });
    if let Err(e) = spawned {
        // Not fatal: the stop then takes the whole grace period, as pingora alone does.
        tracing::warn!(error = %e, "cannot start the drain watcher; a stop will wait the whole grace period");
    }
}
