//! The durable mail queue (spec/mail-relay.md, "Durable spool"): a message is acknowledged with 250
//! only after its body and envelope are on disk, fsynced, renamed into `queue/`, and the directory
//! fsynced. A failure leaves no partial file in `queue/` and the client gets a 4xx.
//!
//! Layout under `<state_dir>/mail`: `tmp/` (purged at start), `queue/<id>.msg` (immutable body),
//! `queue/<id>.env` (JSON envelope and per-recipient state), `corrupt/`, and `lock` (one instance).
//! All blocking: call from a blocking task.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::json;

use super::session::Envelope;

pub struct Spool {
    dir: PathBuf,
    /// Held for the process lifetime: the flock is the single-instance guarantee.
    _lock: File,
    seq: AtomicU64,
}

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("cannot use the mail spool {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the mail spool {0} is in use by another vestibule (lock held)")]
    Locked(String),
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

fn write_synced(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(data)?;
    f.sync_all()
}

impl Spool {
    /// Open (creating) the spool: take the lock, purge `tmp/`, quarantine envelopes that do not parse
    /// or whose body is missing.
    pub fn open(dir: &Path) -> Result<Spool, SpoolError> {
        for sub in ["", "tmp", "queue", "corrupt"] {
            let d = dir.join(sub);
            crate::files::ensure_private_dir(&d).map_err(io(&d))?;
        }
        let lock = lock(dir)?;
        let tmp = dir.join("tmp");
        for e in std::fs::read_dir(&tmp).map_err(io(&tmp))?.flatten() {
            let _ = std::fs::remove_file(e.path());
        }
        let spool = Spool {
            dir: dir.to_path_buf(),
            _lock: lock,
            seq: AtomicU64::new(0),
        };
        spool.recover();
        Ok(spool)
    }

    fn recover(&self) {
        let queue = self.dir.join("queue");
        let Ok(entries) = std::fs::read_dir(&queue) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            match p.extension().and_then(|x| x.to_str()) {
                Some("env") => {
                    let ok = std::fs::read(&p)
                        .ok()
                        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                        .is_some_and(|v| v.get("recipients").is_some())
                        && p.with_extension("msg").exists();
                    if !ok {
                        tracing::error!(file = %p.display(), "unreadable queue entry moved to corrupt/");
                        let name = p.file_name().map(|n| n.to_owned()).unwrap_or_default();
                        let _ = std::fs::rename(&p, self.dir.join("corrupt").join(name));
                    }
                }
                // An envelope rewrite cut short by a crash: the previous envelope is still in place.
                Some("tmp") => {
                    let _ = std::fs::remove_file(&p);
                }
                Some("msg") if !p.with_extension("env").exists() => {
                    // A body whose envelope never made it: the client got no 250 for it.
                    let _ = std::fs::remove_file(&p);
                }
                _ => {}
            }
        }
    }

    /// A queue id: 14 hex digits of microseconds since the epoch, a 4-digit sequence, a random tail
    /// (fixed width, so ids sort by age and the age can be read back from the id).
    fn new_id(&self) -> String {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros());
        let n = self.seq.fetch_add(1, Ordering::Relaxed) & 0xffff;
        let mut r = [0u8; 4];
        let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut r);
        format!(
            "{t:014x}{n:04x}{}",
            r.iter().map(|b| format!("{b:02x}")).collect::<String>()
        )
    }

    /// Make the message durable and return its id.
    pub fn store(&self, env: &Envelope) -> Result<String, SpoolError> {
        let id = self.new_id();
        let (tmp, queue) = (self.dir.join("tmp"), self.dir.join("queue"));
        let msg_tmp = tmp.join(format!("{id}.msg"));
        let env_tmp = tmp.join(format!("{id}.env"));
        let envelope = json!({
            "id": id,
            "created": crate::files::unix_now(),
            "client": env.client_ip.to_string(),
            "helo": env.helo,
            "auth_user": env.auth_user,
            "sender": env.sender.as_ref().map_or(String::new(), |a| a.to_string()),
            "size": env.body.len(),
            "recipients": env.recipients.iter().map(|r| json!({ "address": r.to_string(), "state": "pending", "attempts": 0 })).collect::<Vec<_>>(),
        });
        let result = (|| -> std::io::Result<()> {
            write_synced(&msg_tmp, &env.body)?;
            write_synced(&env_tmp, envelope.to_string().as_bytes())?;
            // Body first: an envelope in queue/ always has its body.
            std::fs::rename(&msg_tmp, queue.join(format!("{id}.msg")))?;
            std::fs::rename(&env_tmp, queue.join(format!("{id}.env")))?;
            sync_dir(&queue)
        })();
        if let Err(e) = result {
            let _ = std::fs::remove_file(&msg_tmp);
            let _ = std::fs::remove_file(&env_tmp);
            let _ = std::fs::remove_file(queue.join(format!("{id}.msg")));
            let _ = std::fs::remove_file(queue.join(format!("{id}.env")));
            return Err(io(&queue)(e));
        }
        Ok(id)
    }

    /// Ids of the queued messages, oldest first.
    pub fn list(&self) -> Vec<String> {
        let mut ids: Vec<String> = entries(&self.dir.join("queue"))
            .map(|it| it.map(|(id, _)| id).collect())
            .unwrap_or_default();
        ids.sort();
        ids
    }
}

/// The messages in `queue/`: (id, envelope path), in no particular order. An entry is its
/// envelope: a body without one is an orphan that the next start removes.
pub fn entries(queue: &Path) -> std::io::Result<impl Iterator<Item = (String, PathBuf)>> {
    Ok(std::fs::read_dir(queue)?.flatten().filter_map(|e| {
        let p = e.path();
        let id = p.file_name()?.to_str()?.strip_suffix(".env")?.to_string();
        Some((id, p))
    }))
}

/// Take the spool's single-instance lock (held as long as the returned file is open).
pub fn lock(dir: &Path) -> Result<File, SpoolError> {
    let lock_path = dir.join("lock");
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&lock_path)
        .map_err(io(&lock_path))?;
    // SAFETY: flock on a descriptor we own.
    if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Err(SpoolError::Locked(dir.display().to_string()));
    }
    Ok(lock)
}

/// Whether an I/O error means the disk is full (452 rather than 451).
pub fn is_disk_full(e: &SpoolError) -> bool {
    matches!(e, SpoolError::Io { source, .. } if source.raw_os_error() == Some(libc::ENOSPC))
}
