//! systemd's readiness protocol (sd_notify(3)): one datagram per state change to `$NOTIFY_SOCKET`,
//! which is a path or, with a leading `@`, a name in the abstract namespace. Without the variable
//! (not under `Type=notify`) every call does nothing.
//!
//! ```text
//! start:   every listener bound, certificates installed  -> READY=1, STATUS=serving ...
//! SIGHUP:  RELOADING=1 + MONOTONIC_USEC  ...  READY=1, STATUS=...
//! SIGTERM: STOPPING=1
//! upgrade: the new process, once systemd follows it      -> MAINPID=<own pid>, READY=1
//! WATCHDOG_USEC set: WATCHDOG=1 every half period from the async runtime (so a wedged runtime
//!          stops the pings and systemd restarts the service)
//! ```
//!
//! Written here rather than taken from a crate: it is one `sendto(2)` per message.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;

/// Send `msg` (`KEY=value` lines) to systemd. Failures are logged, never fatal: the service manager
/// may be gone during shutdown, and running without it is legitimate.
pub fn send(msg: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let sent = UnixDatagram::unbound().and_then(|s| match path.as_bytes().strip_prefix(b"@") {
        Some(name) => SocketAddr::from_abstract_name(name).and_then(|a| s.send_to_addr(msg.as_bytes(), &a)),
        None => s.send_to(msg.as_bytes(), &path),
    });
    if let Err(e) = sent {
        tracing::warn!(socket = ?path, error = %e, "cannot notify the service manager (NOTIFY_SOCKET)");
    }
}

/// Set once this process has named a successor the main process: from then on systemd only
/// listens to the successor. Locked around each watchdog ping, so no ping follows MAINPID=.
static HANDED_OVER: Mutex<bool> = Mutex::new(false);

/// Upgrade, old side: make `pid` the service's main process (under `NotifyAccess=main` only the
/// main process may say so), and stop pinging the watchdog.
pub fn main_pid_is(pid: i32) {
    let mut handed = HANDED_OVER.lock().unwrap_or_else(|p| p.into_inner());
    send(&format!("MAINPID={pid}\n"));
    *handed = true;
}

/// Every listener is bound and every certificate installed: serving. `summary` goes into STATUS=.
pub fn ready(summary: &str) {
    send(&format!("READY=1\nSTATUS={summary}\n"));
}

/// After an upgrade, once the predecessor has made this process the service's main process:
/// confirm it and say this one serves.
pub fn ready_as_main(summary: &str) {
    send(&format!(
        "MAINPID={}\nREADY=1\nSTATUS={summary}\n",
        std::process::id()
    ));
}

/// A reload (SIGHUP) begins; [`reloaded`] ends it.
pub fn reloading() {
    send(&format!(
        "RELOADING=1\nMONOTONIC_USEC={}\nSTATUS=reloading the configuration\n",
        monotonic_usec()
    ));
}

/// A reload ended (applied or refused: either way the service serves on).
pub fn reloaded(status: &str) {
    send(&format!("READY=1\nSTATUS={status}\n"));
}

/// A stop (SIGTERM, SIGINT) begins.
pub fn stopping() {
    send("STOPPING=1\nSTATUS=stopping: finishing what is in flight\n");
}

/// CLOCK_MONOTONIC in microseconds, as systemd compares it with the time it sent the reload signal.
#[allow(unsafe_code)] // clock_gettime(2) (see SAFETY below)
fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64) * 1_000_000 + (ts.tv_nsec as u64) / 1_000
}

/// The ping interval when systemd watches this process: half of `WATCHDOG_USEC`, and only if
/// `WATCHDOG_PID` (when set) names this process.
pub fn watchdog_interval() -> Option<Duration> {
    watchdog_interval_from(
        std::env::var("WATCHDOG_USEC").ok().as_deref(),
        std::env::var("WATCHDOG_PID").ok().as_deref(),
        std::process::id(),
    )
}

fn watchdog_interval_from(usec: Option<&str>, pid: Option<&str>, me: u32) -> Option<Duration> {
    let usec: u64 = usec?.trim().parse().ok().filter(|&u| u > 0)?;
    if let Some(pid) = pid {
        if pid.trim().parse::<u32>().ok() != Some(me) {
            return None;
        }
    }
    Some(Duration::from_micros(usec / 2))
}

/// Pings the watchdog until shutdown, or until a successor is the main process (it pings then).
pub struct Watchdog {
    pub every: Duration,
}

#[async_trait]
impl BackgroundService for Watchdog {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut tick = tokio::time::interval(self.every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    let handed = HANDED_OVER.lock().unwrap_or_else(|p| p.into_inner());
                    if *handed {
                        return;
                    }
                    send("WATCHDOG=1\n");
                }
                _ = shutdown.changed() => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watchdog_runs_at_half_the_period_for_this_process_only() {
        let half = Some(Duration::from_millis(1500));
        assert_eq!(watchdog_interval_from(Some("3000000"), None, 7), half);
        assert_eq!(watchdog_interval_from(Some("3000000"), Some("7"), 7), half);
        assert_eq!(watchdog_interval_from(Some("3000000"), Some("8"), 7), None);
        assert_eq!(watchdog_interval_from(Some("0"), None, 7), None);
        assert_eq!(watchdog_interval_from(Some("x"), None, 7), None);
        assert_eq!(watchdog_interval_from(None, None, 7), None);
    }
}
