//! Covered (`vestibule run --upgrade`): the new process takes over every listener (plain HTTP,
//! HTTPS, admin, SMTP, SMTP with implicit TLS, push; each configured with port 0) under continuous load over HTTP (keep-alive and
//! a new connection per request) and HTTPS with 0 failed requests; a ws and a wss session and an
//! SMTP session open on the old process finish after the handover; once the old process has exited
//! the new one answers on every listener; a new process that cannot start (an invalid
//! configuration, a port it cannot bind) leaves the old one serving everywhere, and a later upgrade
//! still succeeds; SIGUSR2 makes the old process start the new binary itself, which takes over; an
//! address added by the new configuration is bound fresh and a removed one is closed.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tungstenite::client::IntoClientRequest;

use crate::support::tls::*;
use crate::support::*;
use crate::websocket::{connect, roundtrip};

/// One request per loop turn until told to stop; no worker sends more than this.
const MAX_PER_WORKER: usize = 20_000;

struct Setup {
    v: Vestibule,
    ca: TestCa,
    /// The vhost, to write the tree again with another push address.
    chat: Vhost,
    smtp: u16,
    smtps: u16,
    push: u16,
}

/// Every listener kind, each on a port the kernel picks (the push relay on `push`), `chat`, and a
/// 5 s grace period (time for the sessions left on the old process to finish).
fn tree(push: &str, chat: Vhost) -> MainConfig {
    MainConfig::new()
        .https()
        .grace_period("5s")
        .mail(|m| crate::mail::relay_test(m.set("listen_tls", [ANY_PORT])))
        .table(Table::new("push").set("listen", push))
        .push_route(&["apple_rn"], |r| r.set("upstream", "http://127.0.0.1:9"))
        .vhost(chat)
}

/// [`tree`] with a vhost whose certificate comes from a test CA. Every listener is configured with
/// port 0: the upgrades below take each socket over all the same.
async fn start(up: SocketAddr) -> Setup {
    let ca = TestCa::new("upgrade test CA");
    let cfg = MainConfig::new().build();
    let (cert, key) = ca
        .leaf(&["chat.test"], &rcgen::PKCS_ECDSA_P256_SHA256)
        .write(cfg.path(), "chat");
    let chat = Vhost::new("chat.test")
        .upstream(up)
        .no_redirect()
        .cert(&cert, &key)
        .route("^/api/v4/websocket$", |r| r.set("read_timeout", "600s"));
    cfg.update(|_| tree(ANY_PORT, chat.clone()));
    let v = Vestibule::start(cfg).await;
    Setup {
        smtp: v.port("smtp"),
        smtps: v.port("smtps"),
        push: v.port("push"),
        v,
        ca,
        chat,
    }
}

/// `vestibule run --upgrade` on the same tree; its log goes to `upgrade-<n>.log`.
fn upgrade(v: &Vestibule, n: usize) -> (ChildGuard, std::path::PathBuf) {
    let log = v.cfg.path().join(format!("upgrade-{n}.log"));
    let child = Command::new(bin())
        .args(["run", "--upgrade", "--config"])
        .arg(v.cfg.main_file())
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("spawn vestibule run --upgrade");
    (ChildGuard(child), log)
}

/// Write the tree again with the push relay on `port`.
fn push_on(s: &Setup, port: u16) {
    let push = format!("127.0.0.1:{port}");
    s.v.cfg.update(|_| tree(&push, s.chat.clone()));
}

/// Wait until the old process has exited (failing at once if the new one exits first).
async fn old_exits(v: &mut Vestibule, mut new: Option<(&mut ChildGuard, &std::path::Path)>) {
    eventually(
        "the old process exits after the handover and its grace period",
        || {
            if let Some((n, log)) = new.as_mut() {
                still_running(n, log);
            }
            let exited = v.exited();
            async move { exited.map(drop) }
        },
    )
    .await;
}

/// Fail with its log if the new process has exited.
fn still_running(new: &mut ChildGuard, log: &std::path::Path) {
    if let Ok(Some(st)) = new.0.try_wait() {
        panic!(
            "the new process exited ({st}):\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
    }
}

/// Read one SMTP reply (all its lines); returns the last line.
async fn reply<R: AsyncRead + Unpin>(r: &mut BufReader<R>) -> String {
    loop {
        let mut line = String::new();
        let n = tokio::time::timeout(patience(), r.read_line(&mut line))
            .await
            .expect("SMTP reply in time")
            .expect("SMTP read");
        assert!(n > 0, "SMTP connection closed");
        if line.as_bytes().get(3) != Some(&b'-') {
            return line;
        }
    }
}

async fn command<S: AsyncRead + AsyncWrite + Unpin>(s: &mut BufReader<S>, cmd: &str, code: &str) {
    s.get_mut().write_all(cmd.as_bytes()).await.unwrap();
    let r = reply(s).await;
    assert!(r.starts_with(code), "{cmd:?} answered {r:?}");
}

fn tls_config(ca: &TestCa) -> Arc<rustls::ClientConfig> {
    client_config(&[&ca.der], &[b"http/1.1"])
}

/// Every listener answers: HTTP and HTTPS reach the upstream, admin /healthz is 200, both SMTP
/// listeners greet (the second over TLS), the push relay answers HTTP.
async fn answers_everywhere(s: &Setup, https: &reqwest::Client) {
    let (status, body) = s.v.get("chat.test", "/").await;
    assert_eq!(status, 200, "{body}");
    let r = https.get("https://chat.test/").send().await.expect("HTTPS GET");
    assert_eq!(r.status(), 200);
    let r = client()
        .get(format!("http://127.0.0.1:{}/healthz", s.v.cfg.admin_port))
        .send()
        .await
        .expect("admin /healthz");
    assert_eq!(r.status(), 200);
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", s.smtp))
        .await
        .expect("SMTP connect");
    let greeting = reply(&mut BufReader::new(tcp)).await;
    assert!(greeting.starts_with("220 "), "{greeting}");
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", s.smtps))
        .await
        .expect("SMTPS connect");
    let name = rustls::pki_types::ServerName::try_from("chat.test").unwrap();
    let tls = tokio_rustls::TlsConnector::from(tls_config(&s.ca))
        .connect(name, tcp)
        .await
        .expect("SMTPS handshake");
    let greeting = reply(&mut BufReader::new(tls)).await;
    assert!(greeting.starts_with("220 "), "{greeting}");
    let r = client()
        .get(format!("http://127.0.0.1:{}/", s.push))
        .send()
        .await
        .expect("push relay answers");
    assert_eq!(r.status(), 200);
}

async fn wss(v: &Vestibule, ca: &TestCa) -> WsStream {
    let tcp = tokio::net::TcpStream::connect(v.https_addr()).await.unwrap();
    let req = "wss://chat.test/api/v4/websocket".into_client_request().unwrap();
    let connector = tokio_tungstenite::Connector::Rustls(tls_config(ca));
    let (ws, resp) = tokio_tungstenite::client_async_tls_with_config(req, tcp, None, Some(connector))
        .await
        .unwrap_or_else(|e| panic!("wss connect: {e}\n{}", v.log()));
    assert_eq!(resp.status(), 101);
    ws
}

#[derive(Default)]
struct Load {
    sent: AtomicUsize,
    failed: AtomicUsize,
    stop: AtomicBool,
}

/// GET / until told to stop, counting answers that are not the upstream's 200.
async fn worker(load: Arc<Load>, name: &'static str, client: reqwest::Client, url: String) {
    for _ in 0..MAX_PER_WORKER {
        if load.stop.load(Ordering::SeqCst) {
            return;
        }
        let ok = match client.get(&url).header("host", "chat.test").send().await {
            Ok(r) if r.status() == 200 => r.text().await.is_ok_and(|b| b.starts_with("upstream=a\n")),
            Ok(r) => {
                eprintln!("load ({name}): {url} answered {}", r.status());
                false
            }
            Err(e) => {
                eprintln!("load ({name}): {url} failed: {e:?}");
                false
            }
        };
        load.sent.fetch_add(1, Ordering::SeqCst);
        if !ok {
            load.failed.fetch_add(1, Ordering::SeqCst);
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn upgrade_under_load_hands_over_every_listener() {
    let up = Upstream::start("a").await;
    let mut s = start(up.addr).await;
    let https = https_client(&[&s.ca.der], &["chat.test"], s.v.https_addr());

    // Sessions opened on the old process, to be finished after the handover.
    let mut ws = connect(&s.v, "chat.test", "/api/v4/websocket").await;
    let mut wss_session = wss(&s.v, &s.ca).await;
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", s.smtp))
        .await
        .unwrap();
    let mut smtp = BufReader::new(tcp);
    assert!(reply(&mut smtp).await.starts_with("220 "));
    command(&mut smtp, "EHLO client.test\r\n", "250").await;
    command(&mut smtp, "MAIL FROM:<mattermost@relay.test>\r\n", "250").await;
    command(&mut smtp, "RCPT TO:<alice@example.org>\r\n", "250").await;
    command(&mut smtp, "DATA\r\n", "354").await;
    smtp.get_mut()
        .write_all(b"Subject: across an upgrade\r\n\r\nwritten to the old process,\r\n")
        .await
        .unwrap();

    // Continuous load: keep-alive HTTP, a new connection per request, HTTPS (h2).
    let load = Arc::new(Load::default());
    let plain = s.v.url("/");
    let one_shot = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let workers = [
        tokio::spawn(worker(load.clone(), "keep-alive", client(), plain.clone())),
        tokio::spawn(worker(load.clone(), "one-shot", one_shot, plain)),
        tokio::spawn(worker(
            load.clone(),
            "https",
            https.clone(),
            "https://chat.test/".into(),
        )),
    ];
    eventually("load is flowing", || async {
        (load.sent.load(Ordering::SeqCst) >= 30).then_some(())
    })
    .await;

    let (mut new, new_log) = upgrade(&s.v, 1);
    eventually("the old process hands over", || {
        still_running(&mut new, &new_log);
        let done = s.v.log().contains("the new process serves");
        async move { done.then_some(()) }
    })
    .await;
    let at_handover = load.sent.load(Ordering::SeqCst);

    // The old process still serves what it had: the sessions finish there.
    assert_eq!(roundtrip(&mut ws, "after").await, "a:after");
    assert_eq!(roundtrip(&mut wss_session, "after").await, "a:after");
    smtp.get_mut()
        .write_all(b"and finished after the upgrade.\r\n.\r\n")
        .await
        .unwrap();
    let queued = reply(&mut smtp).await;
    assert!(queued.starts_with("250 "), "{queued}\n{}", s.v.log());
    command(&mut smtp, "QUIT\r\n", "221").await;

    old_exits(&mut s.v, None).await;
    eventually("the new process carries the load alone", || async {
        (load.sent.load(Ordering::SeqCst) >= at_handover + 100).then_some(())
    })
    .await;
    load.stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.await.unwrap();
    }
    let (sent, failed) = (
        load.sent.load(Ordering::SeqCst),
        load.failed.load(Ordering::SeqCst),
    );
    eprintln!("load across the upgrade: {sent} requests, {failed} failed");
    assert_eq!(
        failed,
        0,
        "{sent} sent\n{}",
        std::fs::read_to_string(&new_log).unwrap()
    );

    answers_everywhere(&s, &https).await;
    assert!(new.0.try_wait().unwrap().is_none(), "the new process serves on");
    let msgs = std::fs::read_dir(s.v.cfg.path().join("state/mail/queue"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "msg"))
        .count();
    assert_eq!(msgs, 1, "the message accepted by the old process is queued");
    drop(new);
    s.v.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_upgrade_leaves_the_old_process_serving() {
    let up = Upstream::start("a").await;
    let mut s = start(up.addr).await;
    let https = https_client(&[&s.ca.der], &["chat.test"], s.v.https_addr());
    let good = std::fs::read_to_string(s.v.cfg.main_file()).unwrap();

    // An invalid configuration: refused before anything is touched.
    s.v.cfg.write("vestibule.toml", &format!("{good}\nbogus = 1\n"));
    let (mut new, log) = upgrade(&s.v, 1);
    let status = new.0.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(1),
        "{}",
        std::fs::read_to_string(&log).unwrap()
    );
    answers_everywhere(&s, &https).await;

    // A port the new process cannot bind: it fails after the sockets were handed over.
    let blocker = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = blocker.local_addr().unwrap().port();
    push_on(&s, taken);
    let (mut new, log) = upgrade(&s.v, 2);
    let status = new.0.wait().unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(status.code(), Some(2), "{text}");
    assert!(
        text.contains(&format!("cannot listen on 127.0.0.1:{taken} for the push relay")),
        "{text}"
    );
    eventually("the old process notices", || async {
        s.v.log().contains("upgrade aborted, still serving").then_some(())
    })
    .await;
    answers_everywhere(&s, &https).await;
    assert!(s.v.exited().is_none(), "the old process serves on");

    // The old process can still be upgraded.
    s.v.cfg.write("vestibule.toml", &good);
    let (mut new, log) = upgrade(&s.v, 3);
    old_exits(&mut s.v, Some((&mut new, &log))).await;
    answers_everywhere(&s, &https).await;
    drop(blocker);
}

/// Kills a process this test did not spawn itself (the successor started by the old process).
struct KillOnDrop(i32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        // SAFETY: kill(2) on a pid read from the old process's log, a vestibule started for this test.
        unsafe { libc::kill(self.0, libc::SIGKILL) };
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sigusr2_starts_the_new_binary_which_takes_over() {
    let up = Upstream::start("a").await;
    let mut s = start(up.addr).await;
    let https = https_client(&[&s.ca.der], &["chat.test"], s.v.https_addr());
    s.v.signal(libc::SIGUSR2);
    let pid = eventually("the old process hands over to its child", || {
        let log = s.v.log();
        let pid = log
            .lines()
            .find(|l| l.contains("the new process serves"))
            .and_then(|l| l.split("pid=").nth(1))
            .and_then(|p| p.trim().parse::<i32>().ok());
        async move { pid }
    })
    .await;
    let _new = KillOnDrop(pid);
    old_exits(&mut s.v, None).await;
    answers_everywhere(&s, &https).await;
    // SAFETY: signal 0 only checks that the process exists.
    assert_eq!(unsafe { libc::kill(pid, 0) }, 0, "the new process serves on");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upgrade_binds_new_addresses_and_closes_removed_ones() {
    let up = Upstream::start("a").await;
    let mut s = start(up.addr).await;
    // Another address: bound fresh by the new process, which reports it.
    push_on(&s, free_port());
    let (mut new, log) = upgrade(&s.v, 1);
    old_exits(&mut s.v, Some((&mut new, &log))).await;
    let old_push = s.push;
    let refused = tokio::net::TcpStream::connect(("127.0.0.1", old_push)).await;
    assert!(refused.is_err(), "the old push address is closed");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains(&format!("tcp 127.0.0.1:{old_push}: no longer configured, closed")),
        "{text}"
    );
    let report = listening(&s.v.cfg.state_dir()).expect("the new process reports its listeners");
    s.push = listener(&report, "push").port();
    assert_ne!(s.push, old_push);
    let https = https_client(&[&s.ca.der], &["chat.test"], s.v.https_addr());
    answers_everywhere(&s, &https).await;
}
