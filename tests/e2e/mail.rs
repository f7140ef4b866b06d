//! Covered (SMTP relay, receiving side, with swaks as the client): a submission from loopback is
//! queued durably (body and envelope files 0600 in queue/, our Received: header, `250 2.0.0 queued
//! as <id>`), over STARTTLS too; the open-relay attempt from 127.0.0.2 is refused at RCPT with
//! 554 5.7.1 and nothing is queued; a bare-LF smuggling attempt is rejected with 550 5.6.11 while the
//! session stays in sync; vestibule killed with -9 in the middle of DATA leaves nothing queued; a
//! second instance on the same spool refuses to start.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

/// A relay whose smarthost is down (port 9): what it accepts stays queued.
/// `[mail]` as `relay.test`: trusts 127.0.0.1 only, delivers to a smarthost that never answers.
pub fn relay_test(mail: Table) -> Table {
    mail.set("hostname", "relay.test")
        .set("trusted_networks", ["127.0.0.1/32"])
        .set("smarthost", "smtp://127.0.0.1:9")
        .set("smarthost_tls", "none")
}

/// [`relay_test`] and what `with` sets in `[mail]`; a certificate is loaded, so STARTTLS is offered
/// and `listen_tls` may be used.
pub fn relay(with: impl FnOnce(Table) -> Table) -> MainConfig {
    MainConfig::new()
        .https()
        .mail(|m| with(relay_test(m)))
        .vhost(Vhost::new("relay.test").upstream("127.0.0.1:9").self_signed())
}

pub fn swaks(port: u16, extra: &[&str]) -> (i32, String) {
    let out = Command::new("swaks")
        .args([
            "--server",
            &format!("127.0.0.1:{port}"),
            "--from",
            "mattermost@relay.test",
            "--to",
            "alice@example.org",
        ])
        .args(["--h-Subject", "test", "--body", "hello from the test"])
        .args(extra)
        .output()
        .unwrap_or_else(|e| {
            panic!("swaks is required ({e}): run `bash .ci/prereqs test` (apt-get install swaks)")
        });
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// The queued messages' files (one per message; state sidecars and temporary files not counted).
pub fn queued(v: &Vestibule) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(v.cfg.path().join("state/mail/queue"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "msg"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

#[tokio::test(flavor = "multi_thread")]
async fn accepts_and_queues_durably() {
    let v = Vestibule::start(relay(|m| m)).await;
    let port = v.port("smtp");
    let (code, out) = swaks(port, &[]);
    assert_eq!(code, 0, "{out}");
    let id = out
        .lines()
        .find_map(|l| l.split("250 2.0.0 queued as ").nth(1))
        .unwrap_or_else(|| panic!("{out}"))
        .trim()
        .to_string();
    let files = queued(&v);
    assert_eq!(files.len(), 1, "{files:?}");
    // One file: the envelope as a JSON line, then the message as it will be sent.
    let stored = std::fs::read_to_string(v.cfg.path().join(format!("state/mail/queue/{id}.msg"))).unwrap();
    let (head, msg) = stored.split_once('\n').unwrap();
    assert!(msg.starts_with("Received: from "), "{msg}");
    assert!(
        msg.contains("by relay.test (vestibule)") && msg.contains("hello from the test"),
        "{msg}"
    );
    let env: serde_json::Value = serde_json::from_str(head).unwrap();
    assert_eq!(env["id"], id.as_str());
    assert_eq!(env["size"], msg.len());
    assert_eq!(env["sender"], "mattermost@relay.test");
    assert_eq!(env["recipients"][0]["address"], "alice@example.org");
    assert_eq!(env["recipients"][0]["state"], "pending");
    for f in &files {
        assert_eq!(std::fs::metadata(f).unwrap().permissions().mode() & 0o777, 0o600);
    }

    // STARTTLS (the certificate store's self-signed certificate).
    let (code, out) = swaks(port, &["--tls"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("TLS started") || out.contains("STARTTLS"), "{out}");
    assert_eq!(queued(&v).len(), 2);
    let m = v.metrics().await;
    assert_eq!(metric(&m, "vestibule_mail_received_total", &[]), Some(2.0), "{m}");
}

#[tokio::test(flavor = "multi_thread")]
async fn never_an_open_relay_and_no_smuggling() {
    let v = Vestibule::start(relay(|m| m)).await;
    let port = v.port("smtp");
    let (code, out) = swaks(port, &["--local-interface", "127.0.0.2"]);
    assert_eq!(code, 24, "refused at RCPT: {out}");
    assert!(out.contains("554 5.7.1"), "{out}");
    for to in [
        "alice%example.org@relay.test",
        "example.org!alice",
        "@relay.test:alice@example.org",
    ] {
        let (code, out) = swaks(port, &["--to", to]);
        assert_ne!(code, 0, "{to}: {out}");
    }
    assert!(queued(&v).is_empty());

    // SMTP smuggling: a bare LF before ".", then a smuggled transaction; all one message, refused.
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let script = "EHLO client.test\r\nMAIL FROM:<a@relay.test>\r\nRCPT TO:<b@example.org>\r\nDATA\r\nhello\n.\nMAIL FROM:<evil@relay.test>\r\n.\r\nQUIT\r\n";
    s.write_all(script.as_bytes()).await.unwrap();
    let mut resp = String::new();
    let _ = s.read_to_string(&mut resp).await;
    assert!(resp.contains("550 5.6.11"), "{resp}");
    assert!(
        resp.trim_end().ends_with("221 2.0.0 Bye") || resp.contains("221"),
        "still in sync: {resp}"
    );
    assert!(queued(&v).is_empty(), "nothing smuggled into the queue");
}

#[tokio::test(flavor = "multi_thread")]
async fn crash_mid_data_and_single_instance() {
    let v = Vestibule::start(relay(|m| m)).await;
    let port = v.port("smtp");
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(b"EHLO client.test\r\nMAIL FROM:<a@relay.test>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let mut seen = String::new();
    while !seen.contains("354") {
        let n = s.read(&mut buf).await.unwrap();
        assert!(n > 0, "{seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    s.write_all(b"Subject: half\r\n\r\nthis message never ends")
        .await
        .unwrap();
    v.signal(libc::SIGKILL);
    let cfg = v.stop();
    assert!(
        std::fs::read_dir(cfg.path().join("state/mail/queue"))
            .unwrap()
            .next()
            .is_none(),
        "no 250, nothing queued"
    );

    let v = Vestibule::start(cfg).await;
    assert!(queued(&v).is_empty());
    assert!(
        std::fs::read_dir(v.cfg.path().join("state/mail/tmp"))
            .unwrap()
            .next()
            .is_none(),
        "tmp purged"
    );
    // A second instance (other ports: every listener is on port 0; same state directory) refuses
    // to start on the same spool.
    let out = v.cfg.vestibule(&["run"]);
    let err = out.stderr;
    assert_ne!(out.code, 0);
    assert!(
        err.contains("is in use by another vestibule (lock held)"),
        "{err}"
    );
}

/// postfix's smtp-sink (extracted by `.ci/prereqs test` into .test-peers/postfix), dumping every
/// message it accepts into `dir`. Killed on drop.
pub struct SmtpSink {
    pub port: u16,
    dir: tempfile::TempDir,
    _child: ChildGuard,
}

impl SmtpSink {
    pub async fn start(port: u16, extra: &[&str]) -> SmtpSink {
        SmtpSink::start_on("127.0.0.1", port, extra).await
    }

    /// On another loopback address (127.0.0.2 is a second MX host).
    pub async fn start_on(ip: &str, port: u16, extra: &[&str]) -> SmtpSink {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".test-peers/postfix");
        let bin = root.join("usr/sbin/smtp-sink");
        assert!(
            bin.exists(),
            "smtp-sink is missing: run `bash .ci/prereqs test` (extracts postfix into .test-peers/)"
        );
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let child = Command::new(bin)
            .env("LD_LIBRARY_PATH", root.join("usr/lib/postfix"))
            .args(["-u", "nobody", "-d", &format!("{}/%M.", dir.path().display())])
            .args(extra)
            .arg(format!("{ip}:{port}"))
            .arg("64")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start smtp-sink");
        eventually("smtp-sink listens", || async {
            tokio::net::TcpStream::connect((ip, port)).await.ok().map(|_| ())
        })
        .await;
        SmtpSink {
            port,
            dir,
            _child: ChildGuard(child),
        }
    }

    /// Dumps written so far; one may still be in progress, so callers wait for the content they expect.
    pub fn messages(&self) -> Vec<String> {
        std::fs::read_dir(self.dir.path())
            .map(|rd| {
                rd.flatten()
                    .filter_map(|e| std::fs::read_to_string(e.path()).ok())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The first complete dump containing `marker` (the dump ends with an empty line once whole).
    pub async fn wait_for(&self, marker: &str) -> String {
        eventually("the smarthost received it", || async {
            self.messages()
                .into_iter()
                .find(|d| d.contains(marker) && d.ends_with("\n\n"))
        })
        .await
    }
}

/// `relay.test` delivering to the sink on `sink_port`, retrying after 1 s, with what `with` sets
/// in `[mail]`.
pub fn relay_to(sink_port: u16, with: impl FnOnce(Table) -> Table) -> MainConfig {
    MainConfig::new().mail(|m| {
        with(
            m.set("hostname", "relay.test")
                .set("smarthost", format!("smtp://127.0.0.1:{sink_port}"))
                .set("smarthost_tls", "none")
                .set("first_retry", "1s"),
        )
    })
}

/// Submit one message with exactly `data` as its content; returns the server's last reply.
pub async fn submit(port: u16, rcpts: &[&str], data: &str) -> String {
    submit_from(port, "mattermost@relay.test", rcpts, data).await
}

/// The same from `from` (empty: the null sender `<>`).
pub async fn submit_from(port: u16, from: &str, rcpts: &[&str], data: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut script = format!("EHLO client.test\r\nMAIL FROM:<{from}>\r\n");
    for r in rcpts {
        script.push_str(&format!("RCPT TO:<{r}>\r\n"));
    }
    script.push_str(&format!("DATA\r\n{data}.\r\nQUIT\r\n"));
    s.write_all(script.as_bytes()).await.unwrap();
    let mut resp = String::new();
    let _ = s.read_to_string(&mut resp).await;
    resp
}

#[tokio::test(flavor = "multi_thread")]
async fn delivers_byte_identical_to_the_smarthost() {
    let sink = SmtpSink::start(free_port(), &[]).await;
    let cfg = relay_to(sink.port, |m| m);
    let v = Vestibule::start(cfg).await;
    let port = v.port("smtp");
    let data = "From: Mattermost <mattermost@relay.test>\r\nTo: alice@example.org\r\nSubject: [Mattermost] Notification\r\n\r\nYou have a new message.\r\n..a line starting with a dot\r\nlast line\r\n";
    let resp = submit(port, &["alice@example.org"], data).await;
    assert!(resp.contains("250 2.0.0 queued as"), "{resp}");
    let relayed = sink.wait_for("last line").await;
    assert!(
        relayed.contains("by relay.test (vestibule) with ESMTP"),
        "our Received: header: {relayed:?}"
    );
    // Control: the same DATA sent straight to the sink. smtp-sink dumps with its own framing (LF
    // line ends, its own Received:), so compare the message part of both dumps: identical means no
    // byte was changed, added (no extra blank line) or lost on the way through vestibule.
    let direct_sink = SmtpSink::start(free_port(), &[]).await;
    assert!(submit(direct_sink.port, &["alice@example.org"], data)
        .await
        .contains("250"));
    let direct = direct_sink.wait_for("last line").await;
    let message = |dump: &str| {
        dump[dump
            .find("From: Mattermost")
            .unwrap_or_else(|| panic!("{dump:?}"))..]
            .to_string()
    };
    assert_eq!(message(&relayed), message(&direct));
    assert!(
        message(&relayed).contains("\n.a line starting with a dot\n"),
        "dot-stuffing undone once"
    );
    eventually("the queue is empty", || async {
        queued(&v).is_empty().then_some(())
    })
    .await;
    let m = v.metrics().await;
    assert_eq!(
        metric(&m, "vestibule_mail_delivered_total", &[]),
        Some(1.0),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn temporary_failure_then_recovery_and_permanent_failure() {
    let sink_port = free_port();
    let soft = SmtpSink::start(sink_port, &["-r", "RCPT"]).await;
    let cfg = relay_to(sink_port, |m| m);
    let v = Vestibule::start(cfg).await;
    let port = v.port("smtp");
    assert!(
        submit(port, &["alice@example.org"], "Subject: retry\r\n\r\nbody\r\n")
            .await
            .contains("250 2.0.0")
    );
    eventually("deferred", || async {
        metric(&v.metrics().await, "vestibule_mail_deferred_total", &[]).map(|_| ())
    })
    .await;
    assert_eq!(queued(&v).len(), 1, "still queued after a 4xx");
    // The envelope is rewritten right after the attempt: wait for the CLI to show the 4xx reply.
    let text = eventually("mail queue shows the deferred recipient", || async {
        let text = v.cfg.vestibule(&["mail", "queue"]).stdout;
        let line = text
            .lines()
            .find(|l| l.contains("alice@example.org"))?
            .to_string();
        (line.contains("mattermost@relay.test") && line.contains(" 4")).then_some(text)
    })
    .await;
    assert!(text.contains("1 message(s) queued"), "{text}");
    drop(soft);
    let good = SmtpSink::start(sink_port, &[]).await;
    good.wait_for("Subject: retry").await;
    eventually("queue drained", || async { queued(&v).is_empty().then_some(()) }).await;
    drop(good);

    let _hard = SmtpSink::start(sink_port, &["-f", "RCPT"]).await;
    assert!(
        submit(port, &["gone@example.org"], "Subject: bounce\r\n\r\nbody\r\n")
            .await
            .contains("250 2.0.0")
    );
    eventually("permanently failed", || async {
        metric(&v.metrics().await, "vestibule_mail_bounced_total", &[]).map(|_| ())
    })
    .await;
    eventually("no retry of a 5xx", || async {
        queued(&v).is_empty().then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn acknowledged_mail_survives_kill_9_and_is_delivered_after_restart() {
    let sink_port = free_port();
    // No smarthost listening yet: the message stays queued.
    let cfg = relay_to(sink_port, |m| m);
    let v = Vestibule::start(cfg).await;
    let port = v.port("smtp");
    let resp = submit(
        port,
        &["alice@example.org", "bob@example.org"],
        "Subject: durable\r\n\r\nkept\r\n",
    )
    .await;
    assert!(resp.contains("250 2.0.0 queued as"), "{resp}");
    v.signal(libc::SIGKILL);
    let cfg = v.stop();
    let sink = SmtpSink::start(sink_port, &[]).await;
    let v = Vestibule::start(cfg).await;
    eventually("both copies delivered after the restart", || async {
        let whole = sink
            .messages()
            .iter()
            .filter(|d| d.contains("\nkept\n") && d.ends_with("\n\n"))
            .count();
        (whole == 2).then_some(())
    })
    .await;
    eventually("queue drained", || async { queued(&v).is_empty().then_some(()) }).await;
}

/// postfix's smtp-source: 10,000 messages of 4 KiB over 8 sessions, each delivered exactly once.
#[tokio::test(flavor = "multi_thread")]
async fn ten_thousand_messages_from_smtp_source_arrive_exactly_once() {
    const N: usize = 10_000;
    let sink = SmtpSink::start(free_port(), &[]).await;
    let cfg = relay_to(sink.port, |m| m.set("max_connections_per_ip", 64u16));
    let v = Vestibule::start(cfg).await;
    let port = v.port("smtp");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".test-peers/postfix");
    let out = tokio::process::Command::new(root.join("usr/sbin/smtp-source"))
        .env("LD_LIBRARY_PATH", root.join("usr/lib/postfix"))
        .args(["-s", "8", "-m", &N.to_string(), "-l", "4096", "-M", "relay.test"])
        .args(["-f", "load@relay.test", "-t", "sink@example.org"])
        .arg(format!("127.0.0.1:{port}"))
        .output()
        .await
        .expect("smtp-source (bash .ci/prereqs test extracts postfix)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    eventually_within(std::time::Duration::from_secs(600), "queue drained", || async {
        queued(&v).is_empty().then_some(())
    })
    .await;
    let m = v.metrics().await;
    assert_eq!(
        metric(&m, "vestibule_mail_received_total", &[]),
        Some(N as f64),
        "{m}"
    );
    assert_eq!(
        metric(&m, "vestibule_mail_delivered_total", &[]),
        Some(N as f64),
        "{m}"
    );
    let dumps = std::fs::read_dir(sink.dir.path()).unwrap().count();
    assert_eq!(dumps, N, "every message once, none twice");
}
