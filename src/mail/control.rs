//! `flush` and `drop` of queued mail, shared by the delivery runner, the admin listener
//! (`POST /mail/flush[/ID]`, `POST /mail/drop/ID`) and `vestibule mail` when no daemon runs.
//!
//! The one rule: a message being delivered is never deleted under the runner's feet. The runner
//! claims an id in `busy` before reading it and releases it after its envelope is written; `drop`
//! takes the same lock, so it either removes a message nobody is delivering or answers "busy".

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

pub struct Control {
    queue: PathBuf,
    busy: Mutex<HashSet<String>>,
    flush_all: AtomicBool,
    flush_ids: Mutex<HashSet<String>>,
    /// Ids queued since the runner last looked: due now, no directory scan needed.
    fresh: Mutex<Vec<String>>,
    pub wake: Arc<tokio::sync::Notify>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum DropOutcome {
    Dropped,
    NotFound,
    Busy,
}

/// Whether `id` looks like a queue id (so it can never name a path outside the queue).
pub fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

impl Control {
    pub fn new(queue: PathBuf, wake: Arc<tokio::sync::Notify>) -> Control {
        Control {
            queue,
            busy: Mutex::default(),
            flush_all: AtomicBool::new(false),
            flush_ids: Mutex::default(),
            fresh: Mutex::default(),
            wake,
        }
    }

    pub fn queue(&self) -> &Path {
        &self.queue
    }

    /// Claim `id` for delivery; `false` if it is already claimed.
    pub fn claim(&self, id: &str) -> bool {
        self.busy
            .lock()
            .map(|mut b| b.insert(id.to_string()))
            .unwrap_or(false)
    }

    pub fn release(&self, id: &str) {
        if let Ok(mut b) = self.busy.lock() {
            b.remove(id);
        }
    }

    /// Ask for an immediate attempt of every deferred recipient (`None`) or of one message.
    /// Returns `false` if that message is not queued.
    pub fn flush(&self, id: Option<&str>) -> bool {
        match id {
            None => self.flush_all.store(true, Ordering::Release),
            Some(id) => {
                if !valid_id(id) || !self.queue.join(format!("{id}.msg")).exists() {
                    return false;
                }
                if let Ok(mut f) = self.flush_ids.lock() {
                    f.insert(id.to_string());
                }
            }
        }
        self.wake.notify_one();
        true
    }

    /// A message was just made durable: deliver it without waiting for the next scan.
    pub fn queued(&self, id: String) {
        if let Ok(mut f) = self.fresh.lock() {
            f.push(id);
        }
        self.wake.notify_one();
    }

    /// The ids queued since the last call.
    pub fn take_fresh(&self) -> Vec<String> {
        self.fresh
            .lock()
            .map(|mut f| std::mem::take(&mut *f))
            .unwrap_or_default()
    }

    /// Whether a flush waits (the runner then scans the whole queue).
    pub fn flush_requested(&self) -> bool {
        self.flush_all.load(Ordering::Acquire) || self.flush_ids.lock().is_ok_and(|f| !f.is_empty())
    }

    /// The flush requests since the last call: (all, ids). The runner treats them as due now.
    pub fn take_flush(&self) -> (bool, HashSet<String>) {
        let all = self.flush_all.swap(false, Ordering::AcqRel);
        let ids = self
            .flush_ids
            .lock()
            .map(|mut f| std::mem::take(&mut *f))
            .unwrap_or_default();
        (all, ids)
    }

    /// Delete a queued message without delivering or bouncing it (blocking: a few unlinks).
    pub fn drop_message(&self, id: &str) -> DropOutcome {
        if !valid_id(id) {
            return DropOutcome::NotFound;
        }
        let Ok(busy) = self.busy.lock() else {
            return DropOutcome::Busy;
        };
        if busy.contains(id) {
            return DropOutcome::Busy;
        }
        let outcome = remove(&self.queue, id);
        drop(busy);
        outcome
    }
}

/// An administrator's drop: unlike a delivered message's removal, made durable, so a crash cannot
/// bring the message back.
pub fn remove(queue: &Path, id: &str) -> DropOutcome {
    if !super::spool::remove(queue, id) {
        return DropOutcome::NotFound;
    }
    let _ = std::fs::File::open(queue).and_then(|d| d.sync_all());
    DropOutcome::Dropped
}

/// With no daemon running: make every pending recipient of `id` (or of all messages) due now by
/// rewriting its envelope. Returns how many messages were touched.
pub fn flush_offline(queue: &Path, id: Option<&str>) -> std::io::Result<usize> {
    let mut touched = 0;
    for this in super::spool::entries(queue)? {
        if id.is_some_and(|id| id != this) {
            continue;
        }
        let Ok(mut env) = super::spool::read_envelope(queue, &this) else {
            continue;
        };
        for r in env.recipients.iter_mut().filter(|r| r.is_pending()) {
            r.next_attempt = Some(0);
        }
        super::spool::write_envelope(queue, &this, &env)?;
        touched += 1;
    }
    Ok(touched)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_cannot_escape_the_queue() {
        assert!(valid_id("18f3a2b4c5d60001a1b2c3d4"));
        assert!(!valid_id("../lock"));
        assert!(!valid_id(""));
        assert!(!valid_id("abc.env"));
    }

    #[test]
    fn a_busy_message_is_not_dropped() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("abc1.msg"), b"{}\n").unwrap();
        let c = Control::new(dir.path().to_path_buf(), Arc::default());
        assert!(c.claim("abc1"));
        assert!(!c.claim("abc1"));
        assert_eq!(c.drop_message("abc1"), DropOutcome::Busy);
        c.release("abc1");
        assert_eq!(c.drop_message("abc1"), DropOutcome::Dropped);
        assert!(!dir.path().join("abc1.msg").exists());
        assert_eq!(c.drop_message("abc1"), DropOutcome::NotFound);
    }

    #[test]
    fn flush_requests_are_taken_once() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ab.msg"), b"{}\n").unwrap();
        let c = Control::new(dir.path().to_path_buf(), Arc::default());
        assert!(c.flush(Some("ab")));
        assert!(!c.flush(Some("cd")));
        let (all, ids) = c.take_flush();
        assert!(!all && ids.contains("ab"));
        assert!(c.take_flush().1.is_empty());
        c.flush(None);
        assert!(c.take_flush().0);
    }
}
