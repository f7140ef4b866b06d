//! Backoff after failed ACME orders, per name, kept across restarts.
//!
//! rustls-acme retries a failed order after 1, 2, 4, 8... seconds (7 attempts in 72 s were seen),
//! while Let's Encrypt allows 5 failed validations per hostname per account per hour, after which
//! every order for the name is refused for an hour. So after a failure vestibule stops the order and
//! starts it again only after [`SCHEDULE`]: 1 min, 10 min, 1 h, then every 6 h. The state is one
//! small JSON file in the ACME state directory (written atomically, 0600), so a restart or a crash
//! loop cannot reset it; a success forgets the names.
//!
//! Names, not vhosts, are the unit because the CA counts per hostname: a name moved to another vhost
//! keeps its backoff.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The waits after the 1st, 2nd, 3rd and every later consecutive failure.
pub const SCHEDULE: [Duration; 4] = [
    Duration::from_secs(60),
    Duration::from_secs(600),
    Duration::from_secs(3600),
    Duration::from_secs(6 * 3600),
];

/// The file in the ACME state directory.
pub const FILE: &str = "backoff.json";

/// How long to wait after `failures` consecutive failures (at least 1).
pub fn delay(failures: u32) -> Duration {
    let i = (failures.max(1) - 1) as usize;
    SCHEDULE[i.min(SCHEDULE.len() - 1)]
}

/// One name's record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NameState {
    /// Consecutive failed orders.
    pub failures: u32,
    /// Unix time before which no order for the name is started.
    pub next_attempt: i64,
    /// The last failure, as shown by `cert status`.
    pub last_error: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct OnDisk {
    names: BTreeMap<String, NameState>,
}

/// The backoff state of every name, mirrored to `<acme dir>/backoff.json`.
pub struct Backoff {
    path: PathBuf,
    names: Mutex<BTreeMap<String, NameState>>,
}

impl Backoff {
    /// Load the state of `dir`. A missing file is an empty state; an unreadable one is logged and
    /// treated as empty (the next failure rewrites it).
    pub fn load(dir: &Path) -> Backoff {
        let path = dir.join(FILE);
        let names = match std::fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice::<OnDisk>(&bytes) {
                Ok(d) => d.names,
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "ACME backoff state is not valid JSON; starting without it");
                    BTreeMap::new()
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "cannot read the ACME backoff state; starting without it");
                BTreeMap::new()
            }
        };
        Backoff {
            path,
            names: Mutex::new(names),
        }
    }

    /// When an order for `domains` may start: the latest `next_attempt` of its names, if any.
    pub fn next_attempt(&self, domains: &[String]) -> Option<i64> {
        let names = self.names.lock().ok()?;
        domains
            .iter()
            .filter_map(|d| names.get(d))
            .map(|s| s.next_attempt)
            .max()
    }

    /// The record that decides `domains`' next attempt (the one with most failures).
    pub fn state(&self, domains: &[String]) -> Option<NameState> {
        let names = self.names.lock().ok()?;
        domains
            .iter()
            .filter_map(|d| names.get(d))
            .max_by_key(|s| (s.failures, s.next_attempt))
            .cloned()
    }

    /// Record a failed order for `domains` at `now`: (when the next attempt may start, the most
    /// consecutive failures among the names). Blocking (writes the file): call it off the async
    /// workers.
    pub fn failed(&self, domains: &[String], now: i64, error: &str) -> (i64, u32) {
        let Ok(mut names) = self.names.lock() else {
            return (now + delay(1).as_secs() as i64, 1);
        };
        let (mut next, mut most) = (now, 0);
        for d in domains {
            let s = names.entry(d.clone()).or_default();
            s.failures = s.failures.saturating_add(1);
            s.next_attempt = now + delay(s.failures).as_secs() as i64;
            s.last_error = error.to_string();
            next = next.max(s.next_attempt);
            most = most.max(s.failures);
        }
        self.save(&names);
        (next, most)
    }

    /// Forget `domains` after a successful order. Blocking, like [`failed`](Self::failed).
    pub fn succeeded(&self, domains: &[String]) {
        let Ok(mut names) = self.names.lock() else { return };
        let before = names.len();
        names.retain(|n, _| !domains.contains(n));
        if names.len() != before {
            self.save(&names);
        }
    }

    /// Written under the lock, so two orders failing at once cannot write an older state last.
    fn save(&self, names: &BTreeMap<String, NameState>) {
        let on_disk = OnDisk { names: names.clone() };
        let result = serde_json::to_vec_pretty(&on_disk)
            .map_err(std::io::Error::other)
            .and_then(|bytes| crate::files::write_private(&self.path, &bytes));
        if let Err(e) = result {
            tracing::error!(file = %self.path.display(), error = %e, "cannot save the ACME backoff state; it will not survive a restart");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: &[&str]) -> Vec<String> {
        n.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn schedule_is_one_minute_ten_minutes_one_hour_then_six_hours() {
        let mins: Vec<u64> = (1..=7).map(|f| delay(f).as_secs() / 60).collect();
        assert_eq!(mins, [1, 10, 60, 360, 360, 360, 360]);
        assert_eq!(delay(0), delay(1));
        assert_eq!(delay(u32::MAX), Duration::from_secs(6 * 3600));
    }

    #[test]
    fn failures_grow_persist_and_reset_on_success() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let b = Backoff::load(dir.path());
        let order = names(&["a.example.org", "b.example.org"]);
        assert_eq!(b.next_attempt(&order), None);

        assert_eq!(b.failed(&order, 1000, "urn:x: first"), (1060, 1));
        assert_eq!(b.failed(&order, 1060, "urn:x: second"), (1660, 2));
        assert_eq!(b.next_attempt(&order), Some(1660));
        // Another order sharing one name inherits its backoff.
        assert_eq!(
            b.next_attempt(&names(&["b.example.org", "c.example.org"])),
            Some(1660)
        );
        assert_eq!(b.next_attempt(&names(&["c.example.org"])), None);

        let path = dir.path().join(FILE);
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        // A restart reads the same state.
        let again = Backoff::load(dir.path());
        let s = again.state(&order).unwrap();
        assert_eq!((s.failures, s.next_attempt), (2, 1660));
        assert_eq!(s.last_error, "urn:x: second");
        assert_eq!(again.failed(&order, 2000, "third"), (2000 + 3600, 3));

        again.succeeded(&order);
        assert_eq!(again.next_attempt(&order), None);
        assert_eq!(Backoff::load(dir.path()).next_attempt(&order), None);
    }

    #[test]
    fn a_corrupt_file_is_an_empty_state() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE), "not json").unwrap();
        let b = Backoff::load(dir.path());
        assert_eq!(b.next_attempt(&names(&["a"])), None);
        assert_eq!(b.failed(&names(&["a"]), 0, "x"), (60, 1));
    }
}
