//! The access log's writer: one thread that owns the destination (stderr or a file), fed through a
//! bounded queue, so that no request ever waits on a disk or a full journal.
//!
//! Lines arrive formatted (see `proxy::access`) and are written as they are: with `format = "text"`
//! that is nginx's "combined" format byte for byte, which fail2ban's stock nginx filters and log
//! tools expect. When the queue is full the line is dropped and counted
//! (`vestibule_access_log_dropped_total`) rather than slowing requests down. A file destination is
//! reopened on SIGUSR1 (logrotate's `postrotate`, as for nginx) and switched on reload.
//! Never blocks the caller; never writes anything but whole lines.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// Where access lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    Off,
    /// stderr, i.e. the journal under systemd.
    Stderr,
    /// Appended to this file; reopened on SIGUSR1.
    File(PathBuf),
}

/// Lines waiting for the writer. A few seconds of a busy server; past it lines are dropped.
const QUEUE: usize = 16 * 1024;

#[derive(Debug, thiserror::Error)]
#[error("cannot open the access log {}: {source} (check that its directory exists and that vestibule's user may write there, or set `[log] access_log = true` to log to the journal)", path.display())]
pub struct OpenError {
    path: PathBuf,
    #[source]
    source: std::io::Error,
}

enum Msg {
    Line(String),
    /// Look at `CONTROL` (a reopen or a new destination is pending).
    Wake,
    Flush(SyncSender<()>),
}

struct Writer {
    tx: SyncSender<Msg>,
    dropped: prometheus::IntCounter,
}

static WRITER: OnceLock<Writer> = OnceLock::new();
/// Set with `PENDING` or alone (reopen); the writer checks it between lines.
static CONTROL: AtomicBool = AtomicBool::new(false);
/// A destination to switch to (reload), taken by the writer.
static PENDING: Mutex<Option<Destination>> = Mutex::new(None);

fn open(path: &Path) -> Result<File, OpenError> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|source| OpenError {
            path: path.to_path_buf(),
            source,
        })
}

enum Sink {
    Off,
    Stderr(BufWriter<std::io::Stderr>),
    File(BufWriter<File>, PathBuf),
}

impl Sink {
    fn new(dest: &Destination) -> Result<Sink, OpenError> {
        Ok(match dest {
            Destination::Off => Sink::Off,
            Destination::Stderr => Sink::Stderr(BufWriter::new(std::io::stderr())),
            Destination::File(p) => Sink::File(BufWriter::new(open(p)?), p.clone()),
        })
    }

    fn write(&mut self, line: &[u8]) -> std::io::Result<()> {
        match self {
            Sink::Off => Ok(()),
            Sink::Stderr(w) => w.write_all(line),
            Sink::File(w, _) => w.write_all(line),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Sink::Off => Ok(()),
            Sink::Stderr(w) => w.flush(),
            Sink::File(w, _) => w.flush(),
        }
    }
}

/// Start the writer (once per process) with its first destination. A file that cannot be opened
/// is an error: `run` refuses to start rather than lose the log.
pub fn start(dest: &Destination, dropped: prometheus::IntCounter) -> Result<(), OpenError> {
    let sink = Sink::new(dest)?;
    let (tx, rx) = sync_channel(QUEUE);
    if WRITER.set(Writer { tx, dropped }).is_err() {
        // Already running (a second `run` in one process, tests): switch it instead.
        switch(dest.clone());
        return Ok(());
    }
    let spawned = std::thread::Builder::new()
        .name("vestibule-access-log".into())
        .spawn(move || writer(rx, sink));
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the access log writer; access lines are dropped");
    }
    Ok(())
}

/// Queue one line (ending in `\n`). Never blocks: a full queue drops the line and counts it.
pub fn write(line: String) {
    if let Some(w) = WRITER.get() {
        if let Err(TrySendError::Full(_)) = w.tx.try_send(Msg::Line(line)) {
            w.dropped.inc();
        }
    }
}

/// Reopen the file (after logrotate moved it away).
pub fn reopen() {
    CONTROL.store(true, Ordering::Release);
    wake();
}

/// Write to `dest` from now on (reload).
pub fn switch(dest: Destination) {
    if let Ok(mut p) = PENDING.lock() {
        *p = Some(dest);
    }
    CONTROL.store(true, Ordering::Release);
    wake();
}

fn wake() {
    // A full queue means the writer is busy and will see CONTROL after its current line anyway.
    if let Some(w) = WRITER.get() {
        let _ = w.tx.try_send(Msg::Wake);
    }
}

/// Write out what is queued (before the process exits); waits at most `timeout`.
pub fn flush(timeout: Duration) {
    if let Some(w) = WRITER.get() {
        let (ack, done) = sync_channel(1);
        if w.tx.try_send(Msg::Flush(ack)).is_ok() {
            let _ = done.recv_timeout(timeout);
        }
    }
}

fn writer(rx: Receiver<Msg>, mut sink: Sink) {
    // One warning per run of failures (a full disk must not flood the journal).
    let mut failing = false;
    while let Ok(first) = rx.recv() {
        let mut acks = Vec::new();
        let mut next = Some(first);
        // Write everything queued, then flush once: one write(2) for a burst of lines.
        while let Some(msg) = next.take().or_else(|| rx.try_recv().ok()) {
            if CONTROL.swap(false, Ordering::AcqRel) {
                let _ = sink.flush();
                sink = control(sink);
            }
            match msg {
                Msg::Line(line) => {
                    if let Err(e) = sink.write(line.as_bytes()) {
                        if !failing {
                            tracing::warn!(error = %e, "cannot write the access log; lines are lost until it works again");
                        }
                        failing = true;
                    }
                }
                Msg::Wake => {}
                Msg::Flush(ack) => acks.push(ack),
            }
        }
        match sink.flush() {
            Ok(()) => failing = false,
            Err(e) if !failing => {
                failing = true;
                tracing::warn!(error = %e, "cannot write the access log; lines are lost until it works again");
            }
            Err(_) => {}
        }
        for ack in acks {
            let _ = ack.send(());
        }
    }
}

/// Apply a pending switch, or reopen the current file. On failure the old destination stays.
fn control(sink: Sink) -> Sink {
    let pending = PENDING.lock().ok().and_then(|mut p| p.take());
    let dest = match (pending, &sink) {
        (Some(d), _) => d,
        (None, Sink::File(_, path)) => Destination::File(path.clone()),
        (None, _) => return sink,
    };
    match Sink::new(&dest) {
        Ok(new) => new,
        Err(e) => {
            tracing::error!("{e}; still writing to the previous destination");
            sink
        }
    }
}

/// Reopens the file on SIGUSR1 (what logrotate's `postrotate` sends, as to nginx).
pub struct Reopener;

#[async_trait::async_trait]
impl pingora_core::services::background::BackgroundService for Reopener {
    async fn start(&self, mut shutdown: pingora_core::server::ShutdownWatch) {
        use tokio::signal::unix::{signal, SignalKind};
        let mut usr1 = match signal(SignalKind::user_defined1()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGUSR1; the access log is not reopened on rotation");
                return;
            }
        };
        loop {
            tokio::select! {
                _ = usr1.recv() => reopen(),
                _ = shutdown.changed() => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sink_appends_and_reopens_after_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let mut sink = Sink::new(&Destination::File(path.clone())).unwrap();
        sink.write(b"one\n").unwrap();
        sink.flush().unwrap();
        std::fs::rename(&path, dir.path().join("access.log.1")).unwrap();
        // What SIGUSR1 does: the current file's path again.
        sink = control(sink);
        sink.write(b"two\n").unwrap();
        sink.flush().unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "two\n");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("access.log.1")).unwrap(),
            "one\n"
        );
    }

    #[test]
    fn unopenable_file_is_a_clear_error() {
        let e = Sink::new(&Destination::File("/nonexistent-dir/access.log".into()))
            .err()
            .expect("no such directory");
        let text = e.to_string();
        assert!(text.contains("/nonexistent-dir/access.log"), "{text}");
        assert!(text.contains("access_log = true"), "{text}");
    }
}
