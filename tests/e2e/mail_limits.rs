//! Covered (SMTP relay under hostile load, raw TCP and swaks as clients): untrusted clients filling
//! their share of the connection slots leave the reserve to the trusted network, which can still
//! submit; every refusal (connection caps, relay denied) is one `mail reject: client=IP reason=...`
//! log line and counts in `vestibule_mail_rejected_total{reason}`; stress mode shortens the idle
//! timeout of sessions already open; a command trickled a byte at a time times out as a whole; a
//! STARTTLS handshake that never starts, and an implicit-TLS ClientHello trickled a byte at a time,
//! are closed at the handshake deadline.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::mail::{relay, swaks};
use crate::support::*;

/// Reads until the text read so far contains `what` (or the server closes: then returns what came).
async fn read_until(s: &mut TcpStream, what: &str) -> String {
    let mut seen = String::new();
    let mut buf = [0u8; 4096];
    let read = async {
        while !seen.contains(what) {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.push_str(&String::from_utf8_lossy(&buf[..n])),
            }
        }
    };
    tokio::time::timeout(patience(), read)
        .await
        .unwrap_or_else(|_| panic!("no {what:?} within {:?}", patience()));
    seen
}

/// Waits for the log line `mail reject: client=<ip> reason=<reason>`.
async fn reject_logged(v: &Vestibule, ip: &str, reason: &str) {
    let line = format!("mail reject: client={ip} reason={reason}");
    eventually(&line, || async {
        v.log()
            .lines()
            .any(|l| l.contains(&line) && l.ends_with(reason))
            .then_some(())
    })
    .await;
}

async fn rejected(v: &Vestibule, reason: &str) -> f64 {
    let page = v.metrics().await;
    metric(&page, "vestibule_mail_rejected_total", &[("reason", reason)]).unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread")]
async fn trusted_network_gets_in_while_untrusted_clients_hold_their_share() {
    // 4 slots, 2 kept for trusted networks, 2 per untrusted address.
    let cfg = relay(|m| {
        m.set("max_connections", 4u16)
            .set("max_connections_per_ip", 2u16)
            .set("reserved_for_trusted", 2u16)
    });
    let v = Vestibule::start(cfg).await;
    let port = v.port("smtp");

    // A refusal inside the dialogue is logged and counted too: the open-relay attempt.
    let (code, out) = swaks(port, &["--local-interface", "127.0.0.2"]);
    assert_eq!(code, 24, "refused at RCPT: {out}");
    reject_logged(&v, "127.0.0.2", "relay_denied").await;

    // Two idle sessions from an untrusted address take the whole untrusted share.
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = connect_from("127.0.0.2", port).await;
        assert!(read_until(&mut s, "\r\n").await.starts_with("220 relay.test"));
        held.push(s);
    }
    let mut s = connect_from("127.0.0.2", port).await;
    assert!(until_closed(&mut s)
        .await
        .starts_with("421 4.7.0 Too many connections"));
    reject_logged(&v, "127.0.0.2", "too_many_connections_per_ip").await;
    let mut s = connect_from("127.0.0.3", port).await;
    assert!(until_closed(&mut s)
        .await
        .starts_with("421 4.7.0 Too many connections"));
    reject_logged(&v, "127.0.0.3", "too_many_untrusted_connections").await;

    // Mattermost (trusted) still submits, and may take every reserved slot.
    let (code, out) = swaks(port, &[]);
    assert_eq!(code, 0, "the trusted network is not locked out: {out}");
    assert!(out.contains("250 2.0.0 queued as"), "{out}");
    for _ in 0..2 {
        let mut s = connect_from("127.0.0.1", port).await;
        assert!(read_until(&mut s, "\r\n").await.starts_with("220 relay.test"));
        held.push(s);
    }
    let mut s = connect_from("127.0.0.1", port).await;
    assert!(until_closed(&mut s)
        .await
        .starts_with("421 4.7.0 Too many connections"));
    reject_logged(&v, "127.0.0.1", "too_many_connections").await;

    for reason in [
        "relay_denied",
        "too_many_connections_per_ip",
        "too_many_untrusted_connections",
        "too_many_connections",
    ] {
        assert_eq!(rejected(&v, reason).await, 1.0, "{reason}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn stress_mode_shortens_the_idle_timeout_of_open_sessions() {
    // Stress from 2 busy slots of 4; the normal idle timeout (120 s) is far beyond the default patience.
    let cfg = relay(|m| {
        m.set("max_connections", 4u16)
            .set("stress_threshold", "50%")
            .set("stress_idle_timeout", "1s")
    });
    let v = Vestibule::start(cfg).await;
    let port = v.port("smtp");
    let mut first = connect_from("127.0.0.1", port).await;
    let greeting = read_until(&mut first, "\r\n").await;
    assert_eq!(greeting, "220 relay.test ESMTP vestibule\r\n");
    // The session works normally before the load arrives.
    first.write_all(b"NOOP\r\n").await.unwrap();
    assert_eq!(read_until(&mut first, "\r\n").await, "250 Ok\r\n");

    let mut second = connect_from("127.0.0.1", port).await;
    let greeting = read_until(&mut second, "\r\n").await;
    assert_eq!(
        greeting, "220 relay.test ESMTP vestibule\r\n",
        "the greeting says nothing different"
    );
    // The session that was already idle when the load arrived is reaped, also when the second one
    // (idle only since it was opened) is reaped first, ending the stress before this session's task
    // gets to run: its stress deadline came earlier.
    let reaped = until_closed(&mut first).await;
    assert!(
        reaped.ends_with("421 relay.test Error: timeout exceeded\r\n"),
        "{reaped}"
    );
    reject_logged(&v, "127.0.0.1", "timeout").await;
    assert!(rejected(&v, "timeout").await >= 1.0);
    drop(second);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_command_trickled_byte_by_byte_times_out_as_a_whole() {
    let cfg = relay(|m| m.set("idle_timeout", "2s"));
    let v = Vestibule::start(cfg).await;
    let port = v.port("smtp");
    let mut s = connect_from("127.0.0.2", port).await;
    assert!(read_until(&mut s, "\r\n").await.starts_with("220 "));
    // One byte every 300 ms, never a line end: each read comes well within the idle timeout.
    let (mut rd, mut wr) = s.into_split();
    let trickle = tokio::spawn(async move {
        for b in b"EHLO ".iter().chain([b'x'; 10_000].iter()) {
            if wr.write_all(&[*b]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    });
    let mut seen = Vec::new();
    let closed = tokio::time::timeout(patience(), rd.read_to_end(&mut seen)).await;
    trickle.abort();
    assert!(
        closed.is_ok(),
        "a trickling client held the session for {:?}",
        patience()
    );
    assert!(
        String::from_utf8_lossy(&seen).ends_with("421 relay.test Error: timeout exceeded\r\n"),
        "{}",
        String::from_utf8_lossy(&seen)
    );
    reject_logged(&v, "127.0.0.2", "timeout").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_handshakes_have_a_deadline_for_starttls_and_implicit_tls() {
    let cfg =
        relay(|m| m.set("listen_tls", [ANY_PORT])).table(Table::new("tls").set("handshake_timeout", "1s"));
    let v = Vestibule::start(cfg).await;
    let port = v.port("smtp");
    let tls_port = v.port("smtps");

    // STARTTLS accepted, then no ClientHello at all.
    let mut s = connect_from("127.0.0.2", port).await;
    assert!(read_until(&mut s, "\r\n").await.starts_with("220 "));
    s.write_all(b"EHLO client.test\r\n").await.unwrap();
    let ehlo = read_until(&mut s, "\r\n250 ").await;
    assert!(ehlo.contains("250 STARTTLS\r\n"), "{ehlo}");
    s.write_all(b"STARTTLS\r\n").await.unwrap();
    assert!(read_until(&mut s, "\r\n")
        .await
        .starts_with("220 2.0.0 Ready to start TLS"));
    until_closed(&mut s).await;
    reject_logged(&v, "127.0.0.2", "tls_handshake_timeout").await;

    // Implicit TLS: a ClientHello record header, then its body one byte every 300 ms.
    let s = connect_from("127.0.0.3", tls_port).await;
    let (mut rd, mut wr) = s.into_split();
    let trickle = tokio::spawn(async move {
        if wr.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00]).await.is_err() {
            return;
        }
        for b in [0x01u8, 0x00, 0x01, 0xfc, 0x03, 0x03]
            .iter()
            .chain([0u8; 500].iter())
        {
            tokio::time::sleep(Duration::from_millis(300)).await;
            if wr.write_all(&[*b]).await.is_err() {
                return;
            }
        }
    });
    let mut seen = Vec::new();
    let closed = tokio::time::timeout(patience(), rd.read_to_end(&mut seen)).await;
    trickle.abort();
    assert!(
        closed.is_ok(),
        "a trickled ClientHello held the connection for {:?}",
        patience()
    );
    reject_logged(&v, "127.0.0.3", "tls_handshake_timeout").await;
    assert_eq!(rejected(&v, "tls_handshake_timeout").await, 2.0);

    // A real client still completes both kinds of handshake.
    let out = tls::openssl(
        &["s_client", "-connect", &format!("127.0.0.1:{tls_port}"), "-quiet"],
        "QUIT\r\n",
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("220 relay.test ESMTP vestibule"), "{text}");
    let (code, out) = swaks(port, &["--tls"]);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn check_validates_the_new_limits() {
    let cfg = relay(|m| {
        m.set("reserved_for_trusted", 101u16)
            .set("stress_threshold", "0%")
            .set("stress_idle_timeout", "0s")
            .set("idle_timeout", "soon")
    })
    .build();
    let (code, _, err) = check(&cfg);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("`reserved_for_trusted` in [mail] (101) is more than max_connections (100)"),
        "{err}"
    );
    assert!(
        err.contains("`stress_threshold` in [mail]: `0%` is not a percentage from 1% to 100%"),
        "{err}"
    );
    assert!(
        err.contains("`stress_idle_timeout` in [mail] must be longer than 0"),
        "{err}"
    );
    assert!(
        err.contains("`idle_timeout` in [mail] is not a valid duration"),
        "{err}"
    );
    let cfg = relay(|m| {
        m.set("max_connections", 10u16)
            .set("reserved_for_trusted", 10u16)
            .set("stress_threshold", "100%")
            .set("idle_timeout", "5m")
    })
    .build();
    let (code, out, err) = check(&cfg);
    assert_eq!(code, 0, "{out}{err}");
}
