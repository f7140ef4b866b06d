//! Covered (systemd's notify protocol, read from a datagram socket as systemd does, with the
//! sender's pid from SCM_CREDENTIALS): READY=1 arrives only once every listener accepts and the
//! certificate is served; SIGHUP gives RELOADING=1 with a MONOTONIC_USEC of the signal's time, then
//! READY=1; WATCHDOG=1 every half WATCHDOG_USEC; SIGTERM gives STOPPING=1; an abstract (`@`) and a
//! path socket both work; after `run --upgrade` the old process names the new one MAINPID, the new
//! one then says MAINPID=<itself> + READY=1 and pings the watchdog, and the old one never says
//! STOPPING=1 (systemd would stop the service).

use std::os::fd::AsRawFd;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::sys::socket::{self as sock, sockopt, ControlMessageOwned, MsgFlags};
use tokio::sync::mpsc;

use crate::support::tls::*;
use crate::support::*;

/// One notification: the sender's pid and its `KEY=value` lines.
#[derive(Debug, Clone)]
struct Note {
    pid: i32,
    text: String,
}

impl Note {
    fn has(&self, line: &str) -> bool {
        self.text.lines().any(|l| l == line)
    }

    fn value(&self, key: &str) -> Option<&str> {
        self.text
            .lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
    }
}

/// The service manager's end: a datagram socket with SO_PASSCRED, read on a thread of its own.
struct Manager {
    /// What to put into NOTIFY_SOCKET.
    env: String,
    rx: mpsc::UnboundedReceiver<Note>,
    _dir: tempfile::TempDir,
}

impl Manager {
    fn bind(abstract_name: bool) -> Manager {
        let dir = tempfile::tempdir().unwrap();
        let (sock, env) = if abstract_name {
            let name = format!("vestibule-test-notify-{}-{}", std::process::id(), free_port());
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
            (UnixDatagram::bind_addr(&addr).unwrap(), format!("@{name}"))
        } else {
            let path = dir.path().join("notify");
            (UnixDatagram::bind(&path).unwrap(), path.display().to_string())
        };
        sock::setsockopt(&sock, sockopt::PassCred, &true).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        let (tx, rx) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while !tx.is_closed() {
                let mut cmsg = nix::cmsg_space!(libc::ucred);
                let mut iov = [std::io::IoSliceMut::new(&mut buf)];
                let Ok(msg) =
                    sock::recvmsg::<()>(sock.as_raw_fd(), &mut iov, Some(&mut cmsg), MsgFlags::empty())
                else {
                    continue;
                };
                let pid = msg
                    .cmsgs()
                    .unwrap()
                    .find_map(|c| match c {
                        ControlMessageOwned::ScmCredentials(cred) => Some(cred.pid()),
                        _ => None,
                    })
                    .unwrap_or(-1);
                let n = msg.bytes;
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                if tx.send(Note { pid, text }).is_err() {
                    return;
                }
            }
        });
        Manager { env, rx, _dir: dir }
    }

    /// The next notification other than a watchdog ping (counted into `pings`).
    async fn next(&mut self, pings: &mut Vec<Note>) -> Note {
        loop {
            let note = tokio::time::timeout(patience(), self.rx.recv())
                .await
                .unwrap_or_else(|_| panic!("no notification within {:?}", patience()))
                .expect("the reader thread ended");
            if note.text == "WATCHDOG=1\n" {
                pings.push(note);
            } else {
                return note;
            }
        }
    }
}

fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    assert_eq!(unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) }, 0);
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1_000
}

/// A vhost with a certificate from a test CA on the HTTPS listener, and the mail relay: every kind
/// of listener the READY=1 promise covers.
fn tree(ca: &TestCa) -> ConfigDir {
    let cfg = MainConfig::new().build();
    let (cert, key) = ca
        .leaf(&["chat.test"], &rcgen::PKCS_ECDSA_P256_SHA256)
        .write(cfg.path(), "chat");
    cfg.update(|_| {
        MainConfig::new()
            .https()
            .mail(crate::mail::relay_test)
            .vhost(Vhost::new("chat.test").upstream("127.0.0.1:9").cert(&cert, &key))
    });
    cfg
}

/// At READY=1: every listener in the `listening` report accepts, and the HTTPS one completes a
/// handshake for the vhost's name with its certificate.
async fn serving_everything(state_dir: &std::path::Path, ca: &TestCa) -> Result<(), String> {
    let report = listening(state_dir).ok_or("no `listening` report yet")?;
    for (kind, addr) in &report {
        tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("{kind} {addr} refuses: {e}"))?;
    }
    let https = listener(&report, "https");
    handshake(https, "chat.test", client_config(&[&ca.der], &[]))
        .await
        .map_err(|e| format!("no TLS handshake on {https}: {e}"))?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn ready_reloading_watchdog_and_stopping_are_sent_in_order() {
    let ca = TestCa::new("notify test CA");
    let cfg = tree(&ca);
    let state_dir = cfg.state_dir();
    let mut sd = Manager::bind(true);
    let env = sd.env.clone();
    // Read concurrently with the start, so READY=1 is checked against what serves when it arrives.
    let mut v = Vestibule::start_with_env(
        cfg,
        &[("NOTIFY_SOCKET", env.as_str()), ("WATCHDOG_USEC", "400000")],
    )
    .await;
    let mut pings = Vec::new();
    let ready = sd.next(&mut pings).await;
    // Vestibule::start has waited for the report; what READY=1 promises is checked right after it.
    assert!(
        ready.has("READY=1"),
        "the first notification is not READY=1: {ready:?}"
    );
    assert_eq!(ready.pid, v.pid(), "{ready:?}");
    let status = ready.value("STATUS").unwrap_or_default().to_string();
    assert!(
        status.contains(&v.addr("https").to_string()) && status.contains(&v.addr("smtp").to_string()),
        "STATUS does not list the listeners: {status:?}"
    );
    if let Err(e) = serving_everything(&state_dir, &ca).await {
        panic!("READY=1 sent before serving: {e}\n{}", v.log());
    }

    let before = monotonic_usec();
    v.signal(libc::SIGHUP);
    let reloading = sd.next(&mut pings).await;
    let after = monotonic_usec();
    assert!(reloading.has("RELOADING=1"), "{reloading:?}");
    let stamp: u64 = reloading
        .value("MONOTONIC_USEC")
        .unwrap_or_else(|| panic!("RELOADING=1 without MONOTONIC_USEC: {reloading:?}"))
        .parse()
        .expect("MONOTONIC_USEC is a number");
    assert!(
        (before..=after).contains(&stamp),
        "MONOTONIC_USEC {stamp} is not between the signal ({before}) and the notification ({after})"
    );
    let reloaded = sd.next(&mut pings).await;
    assert!(reloaded.has("READY=1"), "after RELOADING=1: {reloaded:?}");
    assert!(
        reloaded
            .value("STATUS")
            .is_some_and(|s| s.starts_with("serving on ")),
        "{reloaded:?}"
    );

    // 400 ms watchdog: a ping every 200 ms.
    while pings.len() < 3 {
        let note = tokio::time::timeout(patience(), sd.rx.recv())
            .await
            .expect("watchdog pings")
            .unwrap();
        assert_eq!(note.text, "WATCHDOG=1\n", "unexpected notification");
        pings.push(note);
    }
    assert!(pings.iter().all(|p| p.pid == v.pid()), "{pings:?}");

    v.signal(libc::SIGTERM);
    let stopping = sd.next(&mut pings).await;
    assert!(stopping.has("STOPPING=1"), "{stopping:?}");
    assert!(
        v.exit_within(patience()).await.is_some_and(|s| s.success()),
        "{}",
        v.log()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_socket_path_works_and_without_watchdog_nothing_pings() {
    let mut sd = Manager::bind(false);
    let env = sd.env.clone();
    let mut v =
        Vestibule::start_with_env(ConfigDir::new("", "", &[]), &[("NOTIFY_SOCKET", env.as_str())]).await;
    let mut pings = Vec::new();
    assert!(sd.next(&mut pings).await.has("READY=1"));
    v.signal(libc::SIGTERM);
    assert!(sd.next(&mut pings).await.has("STOPPING=1"));
    assert!(v.exit_within(patience()).await.is_some());
    assert!(pings.is_empty(), "pings without WATCHDOG_USEC: {pings:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn after_an_upgrade_the_new_process_is_main_and_ready() {
    let ca = TestCa::new("notify upgrade CA");
    let mut sd = Manager::bind(true);
    let env = sd.env.clone();
    let mut old = Vestibule::start_with_env(
        tree(&ca),
        &[("NOTIFY_SOCKET", env.as_str()), ("WATCHDOG_USEC", "400000")],
    )
    .await;
    let mut pings = Vec::new();
    assert!(sd.next(&mut pings).await.has("READY=1"));
    // As systemd starts it on SIGUSR2's behalf: the same environment, WATCHDOG_PID aside.
    let log = old.cfg.path().join("upgrade.log");
    let new = Command::new(bin())
        .args(["run", "--upgrade", "--config"])
        .arg(old.cfg.main_file())
        .env("RUST_LOG", "info")
        .env("NOTIFY_SOCKET", &env)
        .env("WATCHDOG_USEC", "400000")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("spawn vestibule run --upgrade");
    let new = ChildGuard(new);
    let new_pid = new.0.id() as i32;
    let handed = sd.next(&mut pings).await;
    let log_of = || std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(
        (handed.pid, handed.text.as_str()),
        (old.pid(), format!("MAINPID={new_pid}\n").as_str()),
        "the old process first names the new one main:\n{}",
        log_of()
    );
    let ready = sd.next(&mut pings).await;
    assert_eq!(ready.pid, new_pid, "{ready:?}");
    assert!(
        ready.has(&format!("MAINPID={new_pid}")) && ready.has("READY=1"),
        "{ready:?}"
    );
    // The old one drains and exits without STOPPING=1; the new one pings from now on.
    assert!(old.exit_within(patience()).await.is_some(), "{}", old.log());
    let seen = pings.len();
    while pings.iter().skip(seen).filter(|p| p.pid == new_pid).count() < 2 {
        let note = sd.next(&mut pings);
        if let Ok(n) = tokio::time::timeout(Duration::from_millis(500), note).await {
            panic!(
                "unexpected notification {n:?}\nold:\n{}\nnew:\n{}",
                old.log(),
                log_of()
            );
        }
    }
    assert!(
        pings.iter().skip(seen).all(|p| p.pid == new_pid),
        "the old process pinged after the handover: {pings:?}"
    );
}
