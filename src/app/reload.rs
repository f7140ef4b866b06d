//! Reload on SIGHUP: load, provision and validate the new tree; on success prime new upstream pools
//! and swap the snapshots the running services read; on failure keep serving the old configuration
//! and log every error. No connection is dropped either way.

use std::sync::Arc;

use async_trait::async_trait;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;

use super::{provision_all, Modules};
use crate::config::Diagnostics;
use crate::config::{self, Location};
use crate::module::Context;

pub struct Reloader {
    pub location: Location,
    pub modules: Arc<Modules>,
    pub ctx: Arc<Context>,
}

impl Reloader {
    async fn reload(&self) {
        tracing::info!("SIGHUP: reloading configuration");
        crate::notify::reloading();
        let (location, ctx, modules) = (self.location.clone(), self.ctx.clone(), self.modules.clone());
        // Reading files, parsing certificates and generating self-signed ones is blocking work:
        // keep it off the async workers that serve requests.
        let provisioned = tokio::task::spawn_blocking(move || {
            provision_all(config::load_partial(&location), &ctx, Some(&modules))
        })
        .await
        .unwrap_or_else(|e| {
            let d = config::Diagnostic::in_file("reload", format!("loading the configuration failed: {e}"));
            Err(Diagnostics(vec![d]))
        });
        match provisioned {
            Ok((cfg, next)) => {
                next.prime(&self.ctx).await;
                crate::logging::apply(&cfg.log);
                crate::access_log::switch(cfg.log.access_log.clone());
                for note in self.modules.apply(next) {
                    tracing::warn!("{note}");
                }
                self.ctx.metrics.reloads.with_label_values(&["success"]).inc();
                self.ctx.metrics.reload_success_time.set(crate::files::unix_now());
                tracing::info!("configuration reloaded");
                crate::notify::reloaded(&crate::handover::serving_summary());
            }
            Err(diags) => {
                self.ctx.metrics.reloads.with_label_values(&["failure"]).inc();
                // As many as `check` shows; the count below says how many there are in all.
                for d in diags.iter().take(config::diag::MAX_SHOWN) {
                    tracing::error!("{d}");
                }
                tracing::error!(
                    errors = diags.len(),
                    "reload failed; still serving the previous configuration"
                );
                crate::notify::reloaded(&format!(
                    "reload failed ({} errors, see the log); still serving the previous configuration",
                    diags.len()
                ));
            }
        }
    }
}

#[async_trait]
impl BackgroundService for Reloader {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGHUP; reload is unavailable");
                return;
            }
        };
        loop {
            tokio::select! {
                _ = hup.recv() => self.reload().await,
                _ = shutdown.changed() => return,
            }
        }
    }
}
