//! Upgrades without downtime: a new process takes over every listening socket of the running one,
//! and the running one leaves only once the new one serves.
//!
//! ```text
//! new: vestibule run --upgrade                       old (running)
//!   load, provision, validate (fails -> exit; old untouched)
//!   connect state_dir/handover.sock  ------------->  serves it from start-up
//!   "vestibule-handover/1"           ------------->  peer must be our uid or root
//!                                    <-------------  "tcp 127.0.0.1:443" + fd   (every listening TCP socket)
//!                                    <-------------  "tcp 127.0.0.1:0 the push relay #0" + fd
//!                                                    (again, each listener configured with port 0)
//!                                    <-------------  "lock <spool dir>" + fd    (the mail spool's lock)
//!                                    <-------------  "end"
//!   every bind goes through [`bind`]: the handed-over socket for that address (for a `:0` one,
//!   the predecessor's for the same configured address and purpose), else a fresh one
//!   services started (a failure -> exit; the old sees EOF and keeps serving)
//!   "ready"                          ------------->  stops accepting, drains established
//!   takes over handover.sock                         connections for the grace period, exits
//!   mail delivery starts             <--- EOF -----  (the connection closes when it exits)
//! ```
//!
//! The sockets are the same kernel objects in both processes, so their accept queues are never
//! closed: a connection arriving during the upgrade is accepted by one process or the other.
//! pingora binds nothing here (every listener is vestibule's), so pingora's own SIGQUIT handover is
//! not used: SIGQUIT is logged and ignored, so an old script sending it cannot stop a process nobody
//! took over from. Linux only (SCM_RIGHTS over a SOCK_SEQPACKET socket, `/proc/self/fd`), like
//! pingora's own upgrade.

use std::collections::HashMap;
use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use nix::sys::socket::{self as sock, sockopt, SockType, UnixAddr};
use tokio::sync::{watch, Notify};

pub mod signals;
mod wire;

use wire::{recv, send, seqpacket};

/// The socket a running process offers its listeners on, in the state directory.
pub const SOCKET: &str = "handover.sock";
const HELLO: &[u8] = b"vestibule-handover/1";
const END: &[u8] = b"end";
const READY: &[u8] = b"ready";
/// Old to new, after `ready`: systemd has been told the new process is the main one (it may now
/// notify; under `NotifyAccess=main` anything it sent earlier would be dropped). A predecessor
/// without it only makes the successor skip its own READY=1 (the service is up throughout).
const MAIN: &[u8] = b"main";
/// How long the old process waits for a connected new one to say it is ready (or give up) before it
/// serves the next upgrade attempt: starting services takes seconds, not minutes.
const READY_TIMEOUT_SECS: i64 = 120;
/// How long a new process waits for the running one's sockets.
const HANDOVER_TIMEOUT_SECS: i64 = 30;

#[derive(Debug, thiserror::Error)]
pub enum HandoverError {
    #[error("no running vestibule answers on {path}: {source} (start without --upgrade when none runs)")]
    Connect { path: PathBuf, source: nix::Error },
    #[error("the handover from the running vestibule failed: {0}")]
    Protocol(String),
    #[error("cannot offer upgrades on {path}: {source}")]
    Serve { path: PathBuf, source: std::io::Error },
}

/// Why one upgrade attempt failed (logged; the running process keeps serving and the next
/// `run --upgrade` may try again).
#[derive(Debug, thiserror::Error)]
enum AttemptError {
    #[error(transparent)]
    Socket(#[from] nix::Error),
    #[error("refused pid {pid} of uid {uid} (not ours, not root)")]
    Stranger { pid: i32, uid: u32 },
    #[error("pid {0} sent an unknown request")]
    UnknownRequest(i32),
    #[error("sending {key}: {source}")]
    Send {
        key: String,
        #[source]
        source: nix::Error,
    },
    #[error("the new process (pid {0}) exited before it was ready")]
    ExitedEarly(i32),
    #[error("pid {0} sent an unknown message")]
    UnknownMessage(i32),
    #[error("no word from the new process (pid {pid}): {source}")]
    NoWord {
        pid: i32,
        #[source]
        source: nix::Error,
    },
}

fn proto(what: &str) -> impl Fn(nix::Error) -> HandoverError + '_ {
    move |e| HandoverError::Protocol(format!("{what}: {e}"))
}

/// Descriptors received from the predecessor, by key (`tcp <addr>`, `lock <key>`), until claimed.
fn inherited() -> &'static Mutex<HashMap<String, OwnedFd>> {
    static I: OnceLock<Mutex<HashMap<String, OwnedFd>>> = OnceLock::new();
    I.get_or_init(Mutex::default)
}

/// Files other than listening sockets that a successor must get (the spool lock). Weak: the lock
/// is released when its owner drops it, as without upgrades.
fn shared() -> &'static Mutex<HashMap<String, Weak<File>>> {
    static S: OnceLock<Mutex<HashMap<String, Weak<File>>>> = OnceLock::new();
    S.get_or_init(Mutex::default)
}

/// `true` once no predecessor is running any more (at once when there was none).
fn predecessor_gone() -> &'static watch::Sender<bool> {
    static G: OnceLock<watch::Sender<bool>> = OnceLock::new();
    G.get_or_init(|| watch::Sender::new(true))
}

/// One listener bound through [`bind`].
#[derive(Clone, Copy)]
struct Bound {
    what: &'static str,
    /// As configured: port 0 lets the kernel choose.
    requested: SocketAddr,
    /// What it got.
    local: SocketAddr,
}

/// Every listener bound so far, in bind order, for the `listening` file that tells scripts and
/// tests where we are, and for a successor configured with `:0` to find the same socket.
fn bound() -> &'static Mutex<Vec<Bound>> {
    static B: OnceLock<Mutex<Vec<Bound>>> = OnceLock::new();
    B.get_or_init(Mutex::default)
}

/// Set once a successor serves: what this process published is then the successor's to keep.
static REPLACED: AtomicBool = AtomicBool::new(false);

/// The listeners bound through [`bind`], in bind order: (`what`, bound address).
pub fn bound_listeners() -> Vec<(&'static str, SocketAddr)> {
    bound()
        .lock()
        .map(|b| b.iter().map(|l| (l.what, l.local)).collect())
        .unwrap_or_default()
}

/// The STATUS= line for systemd once serving: the bound addresses, e.g. `serving on 0.0.0.0:80, 0.0.0.0:443`.
pub fn serving_summary() -> String {
    let addrs: Vec<String> = bound_listeners().iter().map(|(_, a)| a.to_string()).collect();
    format!("serving on {}", addrs.join(", "))
}

/// `true` once a new process took over from this one.
pub fn replaced() -> bool {
    REPLACED.load(Ordering::SeqCst)
}

fn tcp_key(addr: SocketAddr) -> String {
    format!("tcp {addr}")
}

/// A listener that could not be bound (or made non-blocking).
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr} for {what}: {source}")]
pub struct BindError {
    pub what: &'static str,
    pub addr: SocketAddr,
    #[source]
    pub source: std::io::Error,
}

/// The second name a listener configured with port 0 is handed over under: its configured address,
/// what it is for and its rank among this process's listeners with both the same (the kernel's
/// port is no name a successor's configuration can give). Starts with `tcp ` so that a predecessor
/// version that does not know it closes it like any unclaimed listener.
fn any_port_key(requested: SocketAddr, what: &str, rank: usize) -> String {
    format!("tcp {requested} {what} #{rank}")
}

/// Whether `key` is an [`any_port_key`] (a second name for a socket also sent by its address).
fn is_any_port_key(key: &str) -> bool {
    key.contains('#')
}

/// The rank the next listener for (`requested`, `what`) gets among those already bound.
fn rank(bound: &[Bound], requested: SocketAddr, what: &str) -> usize {
    bound
        .iter()
        .filter(|b| b.requested == requested && b.what == what)
        .count()
}

/// A listening socket for `addr`: the one handed over by the predecessor, else a fresh bind.
/// Non-blocking, ready for tokio. Every vestibule-owned listener is bound here.
///
/// A `:0` address takes over the socket the predecessor bound for the same configured address and
/// purpose (the first such listener the first, and so on), so an upgrade keeps the kernel's port.
pub fn bind(addr: SocketAddr, what: &'static str) -> Result<TcpListener, BindError> {
    let err = |source| BindError { what, addr, source };
    let taken = inherited().lock().ok().and_then(|mut m| {
        if addr.port() != 0 {
            return m.remove(&tcp_key(addr));
        }
        let rank = bound().lock().map(|b| rank(&b, addr, what)).unwrap_or(0);
        m.remove(&any_port_key(addr, what, rank))
    });
    let listener = match taken {
        Some(fd) => {
            tracing::info!(%addr, "{what}: listening on the socket handed over by the previous process");
            TcpListener::from(fd)
        }
        None => TcpListener::bind(addr).map_err(err)?,
    };
    listener.set_nonblocking(true).map_err(err)?;
    let local = listener.local_addr().map_err(err)?;
    if addr.port() == 0 {
        // Taken under its second name: the copy under its address is claimed too.
        if let Ok(mut m) = inherited().lock() {
            m.remove(&tcp_key(local));
        }
    }
    if let Ok(mut b) = bound().lock() {
        b.push(Bound {
            what,
            requested: addr,
            local,
        });
    }
    Ok(listener)
}

/// Close the handed-over sockets no listener claimed (addresses no longer configured): the old
/// process closes its copies when it stops, so those ports are then closed.
pub fn release_unclaimed() {
    if let Ok(mut m) = inherited().lock() {
        for key in m.keys().filter(|k| k.starts_with("tcp ") && !is_any_port_key(k)) {
            tracing::info!("{key}: no longer configured, closed");
        }
        m.retain(|k, _| !k.starts_with("tcp "));
    }
}

/// Offer `file` to a successor under `key` (a lock it must hold too) for as long as it is open.
pub fn share(key: &str, file: &Arc<File>) {
    if let Ok(mut m) = shared().lock() {
        m.insert(key.to_string(), Arc::downgrade(file));
    }
}

/// The descriptor the predecessor shared under `key`, if any.
pub fn take_shared(key: &str) -> Option<OwnedFd> {
    inherited().lock().ok()?.remove(key)
}

/// Resolves once no predecessor runs (at once when this process was not started with `--upgrade`).
/// Work that must not run twice (mail delivery) waits for it.
pub async fn predecessor_exited() {
    let mut rx = predecessor_gone().subscribe();
    let _ = rx.wait_for(|gone| *gone).await;
}

// ---------------------------------------------------------------------------------------------
// The new process's side

/// The connection to the process being replaced; dropping it without [`Predecessor::ready`] tells
/// it the upgrade failed (it keeps serving).
pub struct Predecessor {
    conn: OwnedFd,
}

/// Take over the listeners of the vestibule running on `state_dir` (`run --upgrade`).
pub fn receive(state_dir: &Path) -> Result<Predecessor, HandoverError> {
    let path = state_dir.join(SOCKET);
    let conn = seqpacket().map_err(proto("socket"))?;
    let addr = UnixAddr::new(&path).map_err(proto("socket path"))?;
    sock::connect(conn.as_raw_fd(), &addr).map_err(|source| HandoverError::Connect {
        path: path.clone(),
        source,
    })?;
    // A running process answers at once (unless it is busy with another upgrade attempt).
    let patience = nix::sys::time::TimeVal::new(HANDOVER_TIMEOUT_SECS, 0);
    sock::setsockopt(&conn, sockopt::ReceiveTimeout, &patience).map_err(proto("socket"))?;
    send(&conn, HELLO, None).map_err(proto("request"))?;
    let mut got = Vec::new();
    loop {
        let (msg, fd) = recv(&conn).map_err(|e| match e {
            nix::Error::EAGAIN => HandoverError::Protocol(format!(
                "no answer within {HANDOVER_TIMEOUT_SECS} s (another upgrade in progress?)"
            )),
            e => proto("receive")(e),
        })?;
        if msg.is_empty() {
            return Err(HandoverError::Protocol(
                "the running process closed the connection".into(),
            ));
        }
        if msg == END {
            break;
        }
        let key = String::from_utf8_lossy(&msg).into_owned();
        match fd {
            Some(fd) => got.push((key, fd)),
            None => {
                return Err(HandoverError::Protocol(format!(
                    "`{key}` came without a descriptor"
                )))
            }
        }
    }
    // From here on the connection only waits for the old process's exit.
    let forever = nix::sys::time::TimeVal::new(0, 0);
    sock::setsockopt(&conn, sockopt::ReceiveTimeout, &forever).map_err(proto("socket"))?;
    tracing::info!(
        descriptors = got.len(),
        "received the listeners of the running process: {}",
        got.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>().join(", ")
    );
    if let Ok(mut m) = inherited().lock() {
        m.extend(got);
    }
    predecessor_gone().send_replace(false);
    Ok(Predecessor { conn })
}

impl Predecessor {
    /// Tell the old process that this one serves (it stops accepting and drains), then watch for
    /// its exit.
    fn ready(self) {
        if let Err(e) = send(&self.conn, READY, None) {
            // It gave up waiting and serves on: two processes must not both run the mail queue.
            tracing::error!(error = %e, "the previous process gave up waiting for this one; exiting");
            std::process::exit(1);
        }
        let conn = self.conn;
        std::thread::spawn(move || {
            // Anything but a message (EOF, error) means the old process is gone.
            while let Ok((m, _)) = recv(&conn) {
                match m.as_slice() {
                    [] => break,
                    MAIN => crate::notify::ready_as_main(&serving_summary()),
                    _ => {}
                }
            }
            tracing::info!("the previous process has exited");
            predecessor_gone().send_replace(true);
        });
    }
}

// ---------------------------------------------------------------------------------------------
// The running process's side

/// Serve upgrade requests on `state_dir/handover.sock` (in a thread); `successor` is notified once
/// a new process has taken over and is ready.
#[allow(unsafe_code)] // adopts the descriptor accept(2) returns (see SAFETY below)
fn serve(state_dir: &Path, successor: Arc<Notify>) -> Result<(), HandoverError> {
    let path = state_dir.join(SOCKET);
    // Bound under a temporary name and renamed: the path always leads to a process that can hand
    // over (a new process takes it only once it serves; the old one's socket then stays unreachable).
    let tmp = state_dir.join(format!("{SOCKET}.{}", std::process::id()));
    let err = |source| HandoverError::Serve {
        path: path.clone(),
        source,
    };
    let sys = |e: nix::Error| err(e.into());
    if !state_dir.exists() {
        crate::files::ensure_private_dir(state_dir).map_err(err)?;
    }
    let _ = std::fs::remove_file(&tmp);
    let listener = seqpacket().map_err(sys)?;
    sock::bind(listener.as_raw_fd(), &UnixAddr::new(&tmp).map_err(sys)?).map_err(sys)?;
    sock::listen(&listener, sock::Backlog::new(4).map_err(sys)?).map_err(sys)?;
    std::fs::rename(&tmp, &path).map_err(err)?;
    std::thread::Builder::new()
        .name("handover".into())
        .spawn(move || loop {
            let conn = match sock::accept(listener.as_raw_fd()) {
                // SAFETY: accept(2) just returned this descriptor; nothing else owns it.
                Ok(fd) => unsafe { OwnedFd::from_raw_fd(fd) },
                Err(e) => {
                    tracing::warn!(error = %e, "handover: accept failed");
                    std::thread::sleep(std::time::Duration::from_millis(100));
                    continue;
                }
            };
            match hand_over(&conn) {
                Ok(pid) => {
                    tell_systemd(pid);
                    REPLACED.store(true, Ordering::SeqCst);
                    if let Err(e) = send(&conn, MAIN, None) {
                        tracing::warn!(error = %e, pid, "cannot tell the new process it is the main one");
                    }
                    // Kept open until this process exits: its EOF tells the new one we are gone.
                    std::mem::forget(conn);
                    successor.notify_one();
                    return;
                }
                Err(e) => tracing::warn!("upgrade aborted, still serving: {e}"),
            }
        })
        .map_err(err)?;
    Ok(())
}

/// One upgrade attempt: send everything, wait for `ready`. Returns the new process's pid.
#[allow(unsafe_code)] // geteuid(2) (see SAFETY below)
fn hand_over(conn: &OwnedFd) -> Result<i32, AttemptError> {
    let cred = sock::getsockopt(conn, sockopt::PeerCredentials)?;
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    if cred.uid() != me && cred.uid() != 0 {
        return Err(AttemptError::Stranger {
            pid: cred.pid(),
            uid: cred.uid(),
        });
    }
    let timeout = nix::sys::time::TimeVal::new(READY_TIMEOUT_SECS, 0);
    sock::setsockopt(conn, sockopt::ReceiveTimeout, &timeout)?;
    let (hello, _) = recv(conn)?;
    if hello != HELLO {
        return Err(AttemptError::UnknownRequest(cred.pid()));
    }
    let sockets = listening_sockets();
    let mut items = any_port_names(&sockets);
    items.extend(sockets.into_iter().map(|(addr, fd)| (tcp_key(addr), fd)));
    if let Ok(m) = shared().lock() {
        for (k, file) in m.iter() {
            if let Some(dup) = file.upgrade().and_then(|f| f.as_fd().try_clone_to_owned().ok()) {
                items.push((k.clone(), dup));
            }
        }
    }
    for (key, fd) in &items {
        send(conn, key.as_bytes(), Some(fd.as_fd())).map_err(|source| AttemptError::Send {
            key: key.clone(),
            source,
        })?;
    }
    send(conn, END, None)?;
    tracing::info!(
        pid = cred.pid(),
        descriptors = items.len(),
        "handed the listeners to a new process; waiting for it to serve"
    );
    drop(items);
    match recv(conn) {
        Ok((m, _)) if m == READY => {
            tracing::info!(
                pid = cred.pid(),
                "the new process serves: no longer accepting, draining established connections"
            );
            Ok(cred.pid())
        }
        Ok((m, _)) if m.is_empty() => Err(AttemptError::ExitedEarly(cred.pid())),
        Ok(_) => Err(AttemptError::UnknownMessage(cred.pid())),
        Err(source) => Err(AttemptError::NoWord {
            pid: cred.pid(),
            source,
        }),
    }
}

/// The second names of the listeners bound with port 0 that still listen, each with its own copy of
/// the socket (see [`any_port_key`]).
fn any_port_names(sockets: &[(SocketAddr, OwnedFd)]) -> Vec<(String, OwnedFd)> {
    let Ok(bound) = bound().lock() else {
        return Vec::new();
    };
    let mut names = Vec::new();
    for (i, b) in bound.iter().enumerate().filter(|(_, b)| b.requested.port() == 0) {
        let Some((_, fd)) = sockets.iter().find(|(addr, _)| *addr == b.local) else {
            continue;
        };
        if let Ok(copy) = fd.try_clone() {
            let rank = rank(&bound[..i], b.requested, b.what);
            names.push((any_port_key(b.requested, b.what, rank), copy));
        }
    }
    names
}

/// Every listening TCP socket of this process, duplicated, by local address. Found by scanning the
/// descriptor table rather than kept in a list, so that every listener is included whoever bound it,
/// and one already closed (during shutdown) is not.
#[allow(unsafe_code)] // duplicates and adopts inherited listening sockets (see SAFETY below)
fn listening_sockets() -> Vec<(SocketAddr, OwnedFd)> {
    let mut found: HashMap<SocketAddr, OwnedFd> = HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return Vec::new();
    };
    for entry in dir.flatten() {
        let Some(fd) = entry.file_name().to_str().and_then(|n| n.parse::<RawFd>().ok()) else {
            continue;
        };
        // Duplicated first: the number may be closed and reused meanwhile; the checks below then
        // apply to what we hold.
        // SAFETY: F_DUPFD_CLOEXEC on any number is safe; a closed one fails with EBADF.
        let dup = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
        if dup < 0 {
            continue;
        }
        // SAFETY: fcntl just returned this new descriptor; nothing else owns it.
        let dup = unsafe { OwnedFd::from_raw_fd(dup) };
        if !sock::getsockopt(&dup, sockopt::AcceptConn).unwrap_or(false)
            || sock::getsockopt(&dup, sockopt::SockType).ok() != Some(SockType::Stream)
        {
            continue;
        }
        let Ok(local) = sock::getsockname::<sock::SockaddrStorage>(dup.as_raw_fd()) else {
            continue;
        };
        let addr = if let Some(v4) = local.as_sockaddr_in() {
            SocketAddr::from(std::net::SocketAddrV4::from(*v4))
        } else if let Some(v6) = local.as_sockaddr_in6() {
            SocketAddr::from(std::net::SocketAddrV6::from(*v6))
        } else {
            continue;
        };
        found.entry(addr).or_insert(dup);
    }
    found.into_iter().collect()
}

/// Under systemd (with `NotifyAccess=main`), make the new process the service's main process, so
/// that systemd follows it when this one exits.
fn tell_systemd(pid: i32) {
    crate::notify::main_pid_is(pid);
}

/// SIGUSR2: start the installed binary with `run --upgrade` and the same configuration, as a child
/// of this process (so under systemd it runs inside the service). It takes over like one started by
/// hand; if it fails, this process serves on and logs its exit status.
fn spawn_successor(config: Option<&Path>) {
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            tracing::error!(error = %e, "SIGUSR2: cannot find this binary's path; run `vestibule run --upgrade` instead");
            return;
        }
    };
    // After a package upgrade replaced the binary, the running one's path reads "<path> (deleted)".
    let exe = exe
        .to_str()
        .and_then(|s| s.strip_suffix(" (deleted)"))
        .map(PathBuf::from)
        .unwrap_or(exe);
    let mut cmd = std::process::Command::new(&exe);
    cmd.args(["run", "--upgrade"]).stdin(std::process::Stdio::null());
    // systemd's watchdog variables name this process; the successor pings once it is the main one.
    cmd.env_remove("WATCHDOG_PID");
    if let Some(c) = config {
        cmd.arg("--config").arg(c);
    }
    match cmd.spawn() {
        Ok(mut child) => {
            let pid = child.id();
            tracing::info!(pid, exe = %exe.display(), "SIGUSR2: started the new binary to take over");
            std::thread::spawn(move || match child.wait() {
                Ok(st) if !st.success() => {
                    tracing::error!(pid, status = %st, "the new binary exited; still serving")
                }
                _ => {}
            });
        }
        Err(e) => tracing::error!(error = %e, exe = %exe.display(), "SIGUSR2: cannot start the new binary"),
    }
}

#[cfg(test)]
mod tests;
