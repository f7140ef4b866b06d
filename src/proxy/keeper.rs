//! The background task that keeps every pool of the live snapshot resolved and health-checked, so
//! no request ever waits on DNS or a health check.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use async_trait::async_trait;

use super::snapshot::Snapshot;
use crate::metrics::Metrics;

/// Keeps every pool of the live snapshot resolved and health-checked.
pub struct UpstreamKeeper {
    pub state: Arc<ArcSwap<Snapshot>>,
    pub metrics: Arc<Metrics>,
}

/// How often the keeper looks for due work; health intervals are rounded up to it.
const KEEPER_TICK: Duration = Duration::from_millis(100);

#[async_trait]
impl pingora_core::services::background::BackgroundService for UpstreamKeeper {
    async fn start(&self, mut shutdown: pingora_core::server::ShutdownWatch) {
        let mut tick = tokio::time::interval(KEEPER_TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    let snap = self.state.load();
                    for pool in snap.pools() {
                        pool.maintain(&self.metrics);
                    }
                }
                _ = shutdown.changed() => break,
            }
        }
    }
}
