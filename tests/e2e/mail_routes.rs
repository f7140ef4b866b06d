//! Covered (SMTP relay, delivery routes and operations): AUTH over TLS only (swaks: PLAIN over
//! STARTTLS and over implicit TLS, wrong password 535, AUTH refused in plaintext, no AUTH -> 554),
//! a Go net/smtp-like session (EHLO, STARTTLS, AUTH PLAIN, no QUIT); vestibule relaying through
//! another vestibule as smarthost over STARTTLS and over smtps, authenticating from a 0600 file
//! and verifying the smarthost's certificate with a configured CA; direct MX delivery with a real
//! DNS server (dnsmasq): MX by preference, null MX and NXDOMAIN bounced, a 4xx MX deferred, one
//! message with mixed per-recipient results; RFC 3464 reports to the sender, never for `<>`; the
//! queue-lifetime bounce (4.4.7); `mail flush [ID]` and `mail drop ID` through the daemon.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use super::mail::{queued, submit_from, swaks, SmtpSink};
use crate::support::tls::*;
use crate::support::*;

const P256: &rcgen::SignatureAlgorithm = &rcgen::PKCS_ECDSA_P256_SHA256;

/// A real DNS server for the test zone: dnsmasq (`.ci/prereqs test` installs dnsmasq-base). Also
/// the ACME tests' DNS.
pub(crate) struct Dnsmasq {
    pub(crate) port: u16,
    _child: ChildGuard,
}

impl Dnsmasq {
    pub(crate) async fn start(records: &[&str]) -> Dnsmasq {
        let port = free_port();
        let child = Command::new("dnsmasq")
            .args([
                "-k",
                "--conf-file=/dev/null",
                "--no-resolv",
                "--no-hosts",
                "--pid-file=",
            ])
            .args(["--listen-address=127.0.0.1", "--bind-interfaces"])
            .arg(format!("--port={port}"))
            .args(records)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "dnsmasq is required ({e}): run `bash .ci/prereqs test` (apt-get install dnsmasq-base)"
                )
            });
        eventually("dnsmasq listens", || async {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .ok()
                .map(|_| ())
        })
        .await;
        Dnsmasq {
            port,
            _child: ChildGuard(child),
        }
    }
}

pub(crate) fn secret_file(dir: &std::path::Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    p
}

pub(crate) fn hash_password(password: &str) -> String {
    use std::io::Write;
    let mut child = Command::new(bin())
        .args(["mail", "hash-password"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn mail_cli(v: &Vestibule, args: &[&str]) -> (i32, String) {
    // The CLI finds the daemon's admin listener (configured as `:0`) where the daemon published it.
    let out = v.cfg.vestibule(&[&["mail"], args].concat());
    (out.code, out.text())
}

fn queue_id(resp: &str) -> String {
    resp.lines()
        .find_map(|l| l.split("250 2.0.0 queued as ").nth(1))
        .unwrap_or_else(|| panic!("not queued: {resp}"))
        .trim()
        .to_string()
}

fn envelope(v: &Vestibule, id: &str) -> Option<serde_json::Value> {
    // As JSON, so the assertions read the states as they are on disk.
    let record = vestibule::mail::spool::read_envelope(&v.cfg.path().join("state/mail/queue"), id).ok()?;
    serde_json::to_value(record).ok()
}

/// Read SMTP replies until a final line (`NNN `), returning all lines.
async fn reply<R: tokio::io::AsyncBufRead + Unpin>(r: &mut R) -> String {
    let mut all = String::new();
    loop {
        let mut line = String::new();
        assert!(
            r.read_line(&mut line).await.unwrap() > 0,
            "connection closed after {all:?}"
        );
        all.push_str(&line);
        if line.len() >= 4 && line.as_bytes()[3] == b' ' {
            return all;
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn auth_over_tls_and_relaying_through_an_authenticating_smarthost() {
    let sink = SmtpSink::start(free_port(), &[]).await;
    let secrets = tempfile::tempdir().unwrap();
    let ca = TestCa::new("smarthost CA");
    let (cert, key) = ca.leaf(&["localhost"], P256).write(secrets.path(), "smarthost");
    let users = secret_file(
        secrets.path(),
        "users",
        &format!("# relay users\nmm:{}\n", hash_password("s3cret pass")),
    );

    // B: the smarthost. Nobody is trusted: only users who authenticate over TLS may relay.
    let b = MainConfig::new()
        .https()
        .mail(|m| {
            m.set("listen_tls", [ANY_PORT])
                .set("hostname", "smarthost.test")
                .set("trusted_networks", raw("[]"))
                .set("users_file", &users)
                .set("smarthost", format!("smtp://127.0.0.1:{}", sink.port))
                .set("smarthost_tls", "none")
        })
        .vhost(certificate(&cert, &key));
    let b = Vestibule::start(b).await;
    let (b_port, b_tls_port) = (b.port("smtp"), b.port("smtps"));

    let auth = [
        "--auth",
        "PLAIN",
        "--auth-user",
        "mm",
        "--auth-password",
        "s3cret pass",
    ];
    let (code, out) = swaks(
        b_port,
        &[&["--tls"][..], &auth[..], &["--h-Subject", "swaks-starttls"][..]].concat(),
    );
    assert_eq!(code, 0, "{out}");
    let (code, out) = swaks(
        b_tls_port,
        &[
            &["--tls-on-connect"][..],
            &auth[..],
            &["--h-Subject", "swaks-smtps"][..],
        ]
        .concat(),
    );
    assert_eq!(code, 0, "{out}");
    let (code, out) = swaks(
        b_port,
        &[
            "--tls",
            "--auth",
            "PLAIN",
            "--auth-user",
            "mm",
            "--auth-password",
            "wrong",
        ],
    );
    assert_eq!(code, 28, "{out}");
    assert!(out.contains("535 5.7.8"), "{out}");
    let (code, out) = swaks(b_port, &auth);
    assert_eq!(code, 28, "AUTH is not offered without TLS: {out}");
    let (code, out) = swaks(b_port, &["--tls"]);
    assert_eq!(code, 24, "no AUTH, not trusted: {out}");
    assert!(out.contains("554 5.7.1"), "{out}");
    for subject in ["swaks-starttls", "swaks-smtps"] {
        let dump = sink.wait_for(subject).await;
        assert!(dump.contains("with ESMTPSA"), "authenticated over TLS: {dump}");
    }

    // What Go's net/smtp (Mattermost) does: EHLO, STARTTLS, EHLO, AUTH PLAIN, one mail, no QUIT.
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", b_port))
        .await
        .unwrap();
    let mut r = BufReader::new(tcp);
    assert!(reply(&mut r).await.starts_with("220 "));
    r.get_mut().write_all(b"EHLO chat.example.org\r\n").await.unwrap();
    let ehlo = reply(&mut r).await;
    assert!(ehlo.contains("STARTTLS\r\n") && !ehlo.contains("AUTH"), "{ehlo}");
    r.get_mut().write_all(b"STARTTLS\r\n").await.unwrap();
    assert!(reply(&mut r).await.starts_with("220 "));
    let connector = tokio_rustls::TlsConnector::from(client_config(&[&ca.der], &[]));
    let tls = connector
        .connect("localhost".try_into().unwrap(), r.into_inner())
        .await
        .expect("STARTTLS handshake with the CA's certificate");
    let mut r = BufReader::new(tls);
    r.get_mut().write_all(b"EHLO chat.example.org\r\n").await.unwrap();
    let ehlo = reply(&mut r).await;
    assert!(
        ehlo.contains("250 AUTH PLAIN LOGIN\r\n"),
        "the keyword line Go matches: {ehlo}"
    );
    use base64::Engine as _;
    let plain = base64::engine::general_purpose::STANDARD.encode(b"\0mm\0s3cret pass");
    r.get_mut()
        .write_all(format!("AUTH PLAIN {plain}\r\n").as_bytes())
        .await
        .unwrap();
    assert!(reply(&mut r).await.starts_with("235 "));
    for cmd in [
        "MAIL FROM:<mattermost@chat.example.org> BODY=8BITMIME\r\n",
        "RCPT TO:<alice@example.org>\r\n",
        "DATA\r\n",
    ] {
        r.get_mut().write_all(cmd.as_bytes()).await.unwrap();
        let line = reply(&mut r).await;
        assert!(line.starts_with('2') || line.starts_with("354"), "{cmd}: {line}");
    }
    r.get_mut()
        .write_all(b"Subject: go-net-smtp\r\n\r\nno QUIT follows\r\n.\r\n")
        .await
        .unwrap();
    assert!(reply(&mut r).await.starts_with("250 2.0.0 queued as"));
    drop(r); // EOF without QUIT: success
    assert!(sink.wait_for("go-net-smtp").await.contains("no QUIT follows"));

    // A relays through B: STARTTLS and then implicit TLS, the password read from a 0600 file, B's
    // certificate verified against the configured CA.
    let auth_file = secret_file(secrets.path(), "smarthost-auth", "mm:s3cret pass\n");
    let ca_file = secrets.path().join("ca.pem");
    std::fs::write(&ca_file, &ca.pem).unwrap();
    for (scheme, port, marker) in [
        ("smtp", b_port, "via-starttls"),
        ("smtps", b_tls_port, "via-smtps"),
    ] {
        let a = MainConfig::new().mail(|m| {
            m.set("hostname", "relay.test")
                .set("smarthost", format!("{scheme}://localhost:{port}"))
                .set("smarthost_auth_file", &auth_file)
                .set("smarthost_ca_file", &ca_file)
        });
        let a = Vestibule::start(a).await;
        let resp = submit_from(
            a.port("smtp"),
            "mattermost@relay.test",
            &["bob@example.org"],
            &format!("Subject: {marker}\r\n\r\nthrough B\r\n"),
        )
        .await;
        queue_id(&resp);
        let dump = sink.wait_for(marker).await;
        assert!(
            dump.contains("by smarthost.test (vestibule) with ESMTPSA"),
            "{scheme}: {dump}"
        );
        assert!(dump.contains("by relay.test (vestibule)"), "{scheme}: {dump}");
        eventually("A's queue drained", || async {
            queued(&a).is_empty().then_some(())
        })
        .await;
    }
    let m = b.metrics().await;
    assert_eq!(
        metric(&m, "vestibule_mail_rejected_total", &[("reason", "auth")]),
        Some(1.0),
        "{m}"
    );
}

/// The test zone: ok.test (MX 10 mx1 and MX 20 mx2, mx1 down), soft.test (a 4xx MX on 127.0.0.2),
/// null.test (null MX), nx.test (NXDOMAIN).
async fn zone(mx_port: u16) -> (Dnsmasq, SmtpSink, SmtpSink) {
    let good = SmtpSink::start(mx_port, &[]).await;
    let soft = SmtpSink::start_on("127.0.0.2", mx_port, &["-r", "RCPT"]).await;
    let dns = Dnsmasq::start(&[
        // mx1 is preferred but nothing listens on 127.0.0.3: the next MX gets the mail.
        "--mx-host=ok.test,mx1.ok.test,10",
        "--mx-host=ok.test,mx2.ok.test,20",
        "--host-record=mx1.ok.test,127.0.0.3",
        "--host-record=mx2.ok.test,127.0.0.1",
        "--mx-host=soft.test,mx.soft.test,10",
        "--host-record=mx.soft.test,127.0.0.2",
        "--mx-host=null.test,.,0",
        "--address=/nx.test/",
    ])
    .await;
    (dns, good, soft)
}

/// `relay.ok.test` delivering by MX on `mx_port`, resolving with `dns`, with what `with` sets in
/// `[mail]`.
fn mx_relay(dns: &Dnsmasq, mx_port: u16, with: impl FnOnce(Table) -> Table) -> MainConfig {
    MainConfig::new()
        .mail(|m| with(m.set("hostname", "relay.ok.test").set("mx_port", mx_port)))
        .table(Table::new("dns").set("servers", [format!("127.0.0.1:{}", dns.port)]))
}

/// The certificate the SMTP listeners present: one for `localhost`.
fn certificate(cert: &std::path::Path, key: &std::path::Path) -> Vhost {
    Vhost::new("localhost").upstream("127.0.0.1:9").cert(cert, key)
}

#[tokio::test(flavor = "multi_thread")]
async fn mx_delivery_with_mixed_results_bounces_flush_and_drop() {
    let mx_port = free_port();
    let (dns, good, soft) = zone(mx_port).await;
    let cfg = mx_relay(&dns, mx_port, |m| m.set("first_retry", "1h"));
    let v = Vestibule::start(cfg).await;
    let port = v.port("smtp");

    let resp = submit_from(
        port,
        "mattermost@ok.test",
        &[
            "alice@ok.test",
            "bob@null.test",
            "carol@nx.test",
            "dave@soft.test",
        ],
        "Subject: mixed results\r\n\r\nfour recipients\r\n",
    )
    .await;
    let id = queue_id(&resp);
    let delivered = good.wait_for("four recipients").await;
    assert!(delivered.contains("Subject: mixed results"), "{delivered}");
    // The report for the two permanent failures goes to the sender through ok.test's MX.
    let report = good.wait_for("Final-Recipient: rfc822; carol@nx.test").await;
    assert!(
        report.contains("From: Mail Delivery System <MAILER-DAEMON@relay.ok.test>"),
        "{report}"
    );
    assert!(report.contains("To: <mattermost@ok.test>"), "{report}");
    assert!(
        report.contains("Content-Type: multipart/report; report-type=delivery-status;"),
        "{report}"
    );
    assert!(
        report.contains("Final-Recipient: rfc822; bob@null.test\nAction: failed\nStatus: 5.1.10\n"),
        "{report}"
    );
    assert!(report.contains("Status: 5.1.2\n"), "{report}");
    assert!(
        report.contains("Subject: mixed results\n"),
        "the original's headers: {report}"
    );
    assert!(!report.contains("four recipients"), "not its body: {report}");
    assert!(
        !report.contains("dave@soft.test"),
        "a deferred recipient is not reported: {report}"
    );

    // dave stays queued with the 4xx; the others are final.
    let env = eventually("dave deferred", || async {
        let env = envelope(&v, &id)?;
        (env["recipients"][3]["attempts"] == 1).then_some(env)
    })
    .await;
    let states: Vec<&str> = env["recipients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["delivered", "failed", "failed", "pending"], "{env}");
    assert!(
        env["recipients"][3]["last_reply"].as_str().unwrap().contains("4"),
        "{env}"
    );
    // The queue gauges (refreshed by the runner's scan, once a second): one message, aged.
    eventually("queue gauges", || async {
        let m = v.metrics().await;
        (metric(&m, "vestibule_mail_queue_size", &[]) == Some(1.0)
            && metric(&m, "vestibule_mail_queue_oldest_age_seconds", &[])
                .is_some_and(|a| (0.0..600.0).contains(&a)))
        .then_some(())
    })
    .await;
    let (code, out) = mail_cli(&v, &["queue"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&id) && out.contains("dave@soft.test") && !out.contains("alice@ok.test"),
        "{out}"
    );

    // `mail flush ID` retries now (first_retry is 1 h): a second 4xx.
    let (code, out) = mail_cli(&v, &["flush", &id]);
    assert_eq!(code, 0, "{out}");
    eventually("second attempt", || async {
        (envelope(&v, &id)?["recipients"][3]["attempts"] == 2).then_some(())
    })
    .await;
    // The MX recovers; `mail flush` (everything) delivers.
    drop(soft);
    let soft_fixed = SmtpSink::start_on("127.0.0.2", mx_port, &[]).await;
    let (code, out) = mail_cli(&v, &["flush"]);
    assert_eq!(code, 0, "{out}");
    soft_fixed.wait_for("four recipients").await;
    eventually("queue drained", || async { queued(&v).is_empty().then_some(()) }).await;
    drop(soft_fixed);

    // `mail drop ID`: gone without delivery and without a report.
    let _soft = SmtpSink::start_on("127.0.0.2", mx_port, &["-r", "RCPT"]).await;
    let id = queue_id(
        &submit_from(
            port,
            "mattermost@ok.test",
            &["erin@soft.test"],
            "Subject: to drop\r\n\r\nx\r\n",
        )
        .await,
    );
    eventually("deferred", || async {
        (envelope(&v, &id)?["recipients"][0]["attempts"] == 1).then_some(())
    })
    .await;
    let (code, out) = mail_cli(&v, &["drop", &id]);
    assert_eq!(code, 0, "{out}");
    assert!(queued(&v).is_empty());
    let (code, out) = mail_cli(&v, &["drop", &id]);
    assert_eq!(code, 2, "already gone: {out}");
    let (code, out) = mail_cli(&v, &["drop", "../lock"]);
    assert_eq!(code, 2, "{out}");

    // A message from `<>` that fails is never reported (reports must not loop).
    let before = metric(&v.metrics().await, "vestibule_mail_bounced_total", &[]).unwrap_or(0.0);
    submit_from(
        port,
        "",
        &["frank@null.test"],
        "Subject: null sender\r\n\r\nx\r\n",
    )
    .await;
    eventually("failed", || async {
        (metric(&v.metrics().await, "vestibule_mail_bounced_total", &[])? > before).then_some(())
    })
    .await;
    eventually("queue empty", || async { queued(&v).is_empty().then_some(()) }).await;
    assert!(
        !good.messages().iter().any(|d| d.contains("Subject: null sender")),
        "no report for <>"
    );
    assert!(!good.messages().iter().any(|d| d.contains("Subject: to drop")));
    let m = v.metrics().await;
    assert_eq!(
        metric(&m, "vestibule_mail_delivered_total", &[]),
        Some(3.0),
        "alice, the report, dave: {m}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_message_that_outlives_the_queue_lifetime_is_reported() {
    let mx_port = free_port();
    let (dns, good, _soft) = zone(mx_port).await;
    let cfg = mx_relay(&dns, mx_port, |m| {
        m.set("first_retry", "1s").set("queue_lifetime", "2s")
    });
    let v = Vestibule::start(cfg).await;
    let port = v.port("smtp");
    let id = queue_id(
        &submit_from(
            port,
            "mattermost@ok.test",
            &["dave@soft.test"],
            "Subject: too late\r\n\r\nx\r\n",
        )
        .await,
    );
    let report = good.wait_for("Final-Recipient: rfc822; dave@soft.test").await;
    assert!(report.contains("Status: 4.4.7\n"), "{report}");
    assert!(report.contains("delivery time expired"), "{report}");
    assert!(
        report.contains(&format!("X-Vestibule-Queue-ID: {id}")),
        "{report}"
    );
    eventually("queue drained", || async { queued(&v).is_empty().then_some(()) }).await;
    let m = v.metrics().await;
    assert!(
        metric(&m, "vestibule_mail_deferred_total", &[]).unwrap_or(0.0) >= 1.0,
        "{m}"
    );
}

#[test]
fn check_refuses_readable_secrets_and_bad_hashes() {
    let secrets = tempfile::tempdir().unwrap();
    let users = secrets.path().join("users");
    std::fs::write(&users, format!("mm:{}\n", hash_password("pw"))).unwrap();
    std::fs::set_permissions(&users, std::fs::Permissions::from_mode(0o644)).unwrap();
    let cfg = MainConfig::new().mail(|m| m.set("users_file", &users)).build();
    let (code, _, err) = check(&cfg);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("users_file") && err.contains("chmod 600"), "{err}");

    std::fs::write(&users, "mm:plaintext-password\n").unwrap();
    std::fs::set_permissions(&users, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (code, _, err) = check(&cfg);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(":1:") && err.contains("vestibule mail hash-password"),
        "{err}"
    );

    let auth = secret_file(secrets.path(), "auth", "user:pw\n");
    let cfg = MainConfig::new()
        .mail(|m| {
            m.set("smarthost", "smtp://127.0.0.1:2526")
                .set("smarthost_tls", "none")
                .set("smarthost_auth_file", &auth)
        })
        .build();
    let (code, _, err) = check(&cfg);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("password in clear"), "{err}");
}

/// CVE-2011-0411: commands pipelined behind STARTTLS in the same packet must not run inside TLS.
#[tokio::test(flavor = "multi_thread")]
async fn commands_injected_after_starttls_are_discarded() {
    let secrets = tempfile::tempdir().unwrap();
    let ca = TestCa::new("relay CA");
    let (cert, key) = ca.leaf(&["localhost"], P256).write(secrets.path(), "relay");
    let cfg = MainConfig::new()
        .https()
        .mail(|m| m.set("hostname", "relay.test").set("hold", true))
        .vhost(certificate(&cert, &key));
    let v = Vestibule::start(cfg).await;
    let port = v.port("smtp");
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut r = BufReader::new(tcp);
    reply(&mut r).await;
    r.get_mut().write_all(b"EHLO client.test\r\n").await.unwrap();
    reply(&mut r).await;
    // One write: STARTTLS and, in plaintext behind it, a transaction an attacker injects.
    r.get_mut()
        .write_all(b"STARTTLS\r\nMAIL FROM:<evil@relay.test>\r\nRCPT TO:<victim@example.org>\r\n")
        .await
        .unwrap();
    assert!(reply(&mut r).await.starts_with("220 "));
    let connector = tokio_rustls::TlsConnector::from(client_config(&[&ca.der], &[]));
    let tls = connector
        .connect("localhost".try_into().unwrap(), r.into_inner())
        .await
        .unwrap();
    let mut r = BufReader::new(tls);
    r.get_mut().write_all(b"EHLO client.test\r\n").await.unwrap();
    let ehlo = reply(&mut r).await;
    assert!(
        ehlo.starts_with("250-relay.test"),
        "no replies to the injected commands: {ehlo}"
    );
    r.get_mut()
        .write_all(b"RCPT TO:<victim@example.org>\r\n")
        .await
        .unwrap();
    let rcpt = reply(&mut r).await;
    assert!(
        rcpt.starts_with("503 "),
        "the injected MAIL did not count: {rcpt}"
    );
    assert!(queued(&v).is_empty());
    assert!(
        v.log().contains("pipelined after STARTTLS were discarded"),
        "{}",
        v.log()
    );
}
