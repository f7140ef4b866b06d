//! The signals a serving process answers: pingora's shutdown signals, SIGUSR2 (start a successor)
//! and the successor's "ready" (leave like SIGTERM).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use pingora_core::server::{ShutdownSignal, ShutdownSignalWatch};
use tokio::sync::Notify;

use super::{serve, spawn_successor, Predecessor};

/// pingora's shutdown signals, plus "a successor took over" (which ends this process like SIGTERM:
/// stop accepting, drain for the grace period), plus SIGUSR2 (start the successor). SIGQUIT
/// (pingora's upgrade signal) is ignored.
pub struct Signals {
    state_dir: PathBuf,
    /// The `--config` this process was started with, for the successor.
    config: Option<PathBuf>,
    predecessor: Mutex<Option<Predecessor>>,
    /// Called once every service has been started (publishes the bound addresses).
    serving: fn(),
}

impl Signals {
    pub fn new(
        state_dir: PathBuf,
        config: Option<PathBuf>,
        predecessor: Option<Predecessor>,
        serving: fn(),
    ) -> Signals {
        Signals {
            state_dir,
            config,
            predecessor: Mutex::new(predecessor),
            serving,
        }
    }
}

#[async_trait]
impl ShutdownSignalWatch for Signals {
    async fn recv(&self) -> ShutdownSignal {
        use tokio::signal::unix::{signal, SignalKind};
        // pingora asks once every service has been started: the moment this process serves. The
        // bound addresses are published before the predecessor is told to leave, so whoever waits
        // for it to exit finds this process's addresses, never the predecessor's.
        (self.serving)();
        match self.predecessor.lock().ok().and_then(|mut p| p.take()) {
            // READY=1 comes once the predecessor has made this process the main one (`MAIN`).
            Some(p) => p.ready(),
            None => crate::notify::ready(&crate::handover::serving_summary()),
        }
        let successor = Arc::new(Notify::new());
        if let Err(e) = serve(&self.state_dir, successor.clone()) {
            tracing::error!("{e}: `vestibule run --upgrade` cannot take over from this process");
        }
        let mut quit = signal(SignalKind::quit()).ok();
        let mut term = signal(SignalKind::terminate()).ok();
        let mut int = signal(SignalKind::interrupt()).ok();
        let mut usr2 = signal(SignalKind::user_defined2()).ok();
        async fn next(s: &mut Option<tokio::signal::unix::Signal>) {
            match s {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending().await,
            }
        }
        loop {
            tokio::select! {
                _ = successor.notified() => return ShutdownSignal::GracefulTerminate,
                _ = next(&mut term) => {
                    tracing::info!("SIGTERM: stopping gracefully");
                    crate::notify::stopping();
                    return ShutdownSignal::GracefulTerminate;
                }
                _ = next(&mut int) => {
                    crate::notify::stopping();
                    return ShutdownSignal::FastShutdown;
                }
                _ = next(&mut usr2) => spawn_successor(self.config.as_deref()),
                _ = next(&mut quit) => tracing::warn!(
                    "SIGQUIT ignored: to upgrade, start the new binary with `vestibule run --upgrade`; this process leaves once the new one serves"
                ),
            }
        }
    }
}
