use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::mail::envelope::Protocol;
use crate::mail::session::tests::*;
use crate::mail::session::{Action, DeliveryResult, Peer, Session};

#[test]
fn received_header_is_exact_and_deterministic() {
    let mut s = start(loopback(), false);
    open_data(&mut s);
    let env = expect_deliver(s.feed(b"Subject: x\r\n\r\nbody\r\n.\r\n", now()));
    let expected = "Received: from client.example ([127.0.0.1])\r\n\tby mx.example.test (vestibule) \
                    with ESMTP\r\n\tfor <b@example.org>;\r\n\tTue, 14 Nov 2023 22:13:20 +0000\r\n\
                    Subject: x\r\n\r\nbody\r\n";
    assert_eq!(String::from_utf8_lossy(&env.body), expected);
}

#[test]
fn received_header_omits_for_with_several_recipients_and_formats_ipv6() {
    let peer = Peer {
        ip: IpAddr::V6(Ipv6Addr::LOCALHOST),
        trusted: true,
    };
    let mut s = start(peer, false);
    ehlo(&mut s);
    say(
        &mut s,
        "MAIL FROM:<a@example.test>\r\nRCPT TO:<b@x.test>\r\nRCPT TO:<c@x.test>\r\nDATA\r\n",
    );
    let env = expect_deliver(s.feed(b".\r\n", now()));
    let body = String::from_utf8_lossy(&env.body);
    assert!(
        body.starts_with("Received: from client.example ([IPv6:::1])\r\n"),
        "{body}"
    );
    assert!(!body.contains("for <"), "{body}");
}

#[test]
fn ipv4_mapped_peer_is_shown_as_ipv4() {
    let peer = Peer {
        ip: IpAddr::V6(Ipv4Addr::new(10, 1, 2, 3).to_ipv6_mapped()),
        trusted: true,
    };
    let mut s = start(peer, false);
    open_data(&mut s);
    let env = expect_deliver(s.feed(b".\r\n", now()));
    assert!(env
        .body
        .starts_with(b"Received: from client.example ([10.1.2.3])"));
}

#[test]
fn protocol_names_follow_rfc3848() {
    let mut s = start(loopback(), false);
    let _ = s.feed(
        b"HELO old.example\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nDATA\r\n",
        now(),
    );
    let env = expect_deliver(s.feed(b".\r\n", now()));
    assert_eq!(env.protocol, Protocol::Smtp);
    assert!(String::from_utf8_lossy(&env.body).contains("with SMTP\r\n"));

    let mut s = start(loopback(), true);
    open_data(&mut s);
    assert_eq!(expect_deliver(s.feed(b".\r\n", now())).protocol, Protocol::Esmtps);

    let mut c = config();
    c.auth_on_plaintext_for_trusted = true;
    let mut s = start_with(c, loopback(), false);
    ehlo(&mut s);
    let out = s.feed(format!("AUTH PLAIN {}\r\n", b64(b"\0u\0p")).as_bytes(), now());
    assert!(out.action.is_some());
    let _ = s.auth_result(true, now()).unwrap();
    say(&mut s, "MAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nDATA\r\n");
    assert_eq!(expect_deliver(s.feed(b".\r\n", now())).protocol, Protocol::Esmtpa);
}

#[test]
fn dot_unstuffing() {
    let mut s = start(loopback(), false);
    open_data(&mut s);
    let env = expect_deliver(s.feed(b"..hidden\r\n...\r\n..\r\n. x\r\na.b\r\n.\r\n", now()));
    assert_eq!(message(&env), b".hidden\r\n..\r\n.\r\n x\r\na.b\r\n");
}

#[test]
fn empty_message() {
    let mut s = start(loopback(), false);
    open_data(&mut s);
    let env = expect_deliver(s.feed(b".\r\n", now()));
    assert!(env.body.starts_with(b"Received: ") && env.body.ends_with(b"+0000\r\n"));
}

#[test]
fn terminator_split_byte_by_byte() {
    let mut s = start(loopback(), false);
    open_data(&mut s);
    let input = b"line one\r\n..two\r\n.\r\nNOOP\r\n";
    let mut action = None;
    for (i, b) in input.iter().enumerate() {
        let out = s.feed(&[*b], now());
        assert!(out.replies.is_empty());
        if out.action.is_some() {
            assert_eq!(i, 19, "the action comes with the terminator's LF");
            action = out.action;
        }
    }
    let Some(Action::Deliver(env)) = action else {
        panic!("no delivery")
    };
    assert_eq!(message(&env), b"line one\r\n.two\r\n");
    let out = s.delivered(DeliveryResult::Queued("Q".into()), now()).unwrap();
    assert_eq!(text(&out), "250 2.0.0 queued as Q\r\n250 2.0.0 Ok\r\n");
}

#[test]
fn bare_lf_is_rejected_and_session_stays_in_sync() {
    let mut s = start(loopback(), false);
    open_data(&mut s);
    let out = s.feed(b"a\nb\r\n.\r\nNOOP\r\n", now());
    assert_eq!(
        text(&out),
        "550 5.6.11 Bare CR or LF not allowed\r\n250 2.0.0 Ok\r\n"
    );
    assert!(out.action.is_none());
    // The transaction is over.
    assert_eq!(
        say(&mut s, "RCPT TO:<x@y.test>\r\n"),
        "503 5.5.1 Need MAIL command\r\n"
    );
}

#[test]
fn bare_cr_is_rejected() {
    let mut s = start(loopback(), false);
    open_data(&mut s);
    assert_eq!(
        say(&mut s, "a\rb\r\n.\r\n"),
        "550 5.6.11 Bare CR or LF not allowed\r\n"
    );
    open_again(&mut s);
    assert_eq!(
        say(&mut s, "a\r\r\n.\r\n"),
        "550 5.6.11 Bare CR or LF not allowed\r\n"
    );
}

fn open_again(s: &mut Session) {
    let r = say(
        s,
        "MAIL FROM:<a@example.test>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n",
    );
    assert!(r.ends_with("354 End data with <CR><LF>.<CR><LF>\r\n"), "{r}");
}

#[test]
fn smuggling_variants_do_not_end_the_message() {
    // Each smuggled "end of data" is followed by a complete second transaction. A vulnerable
    // server would see two messages; we must see one, rejected, and execute no smuggled command.
    for fake_end in ["\n.\n", "\n.\r\n", "\r\n.\n", "\r.\r\n", "\r\n.\r", "\r\n\r.\r\n"] {
        let mut s = start(loopback(), false);
        open_data(&mut s);
        let input = format!(
            "Subject: hi\r\n\r\nbody{fake_end}MAIL FROM:<ceo@example.test>\r\nRCPT TO:<x@y.test>\r\n\
             DATA\r\nSubject: smuggled\r\n\r\nevil\r\n.\r\nNOOP\r\n"
        );
        let out = s.feed(input.as_bytes(), now());
        assert!(out.action.is_none(), "{fake_end:?}");
        assert_eq!(
            text(&out),
            "550 5.6.11 Bare CR or LF not allowed\r\n250 2.0.0 Ok\r\n",
            "{fake_end:?}"
        );
    }
}

#[test]
fn dot_lf_is_not_a_terminator() {
    let mut s = start(loopback(), false);
    open_data(&mut s);
    assert_eq!(say(&mut s, ".\nstill data\r\n"), "");
    assert_eq!(say(&mut s, ".\r\n"), "550 5.6.11 Bare CR or LF not allowed\r\n");
}

#[test]
fn message_size_limit_is_enforced_while_receiving() {
    let mut c = config();
    c.max_message_size = 100;
    let mut s = start_with(c, loopback(), false);
    open_data(&mut s);
    // 98 octets + CRLF = 100: accepted.
    let ok = format!("{}\r\n.\r\n", "a".repeat(98));
    let env = expect_deliver(s.feed(ok.as_bytes(), now()));
    assert_eq!(message(&env).len(), 100);
    let _ = s.delivered(DeliveryResult::Queued("Q".into()), now()).unwrap();
    open_again(&mut s);
    for _ in 0..10 {
        assert_eq!(say(&mut s, &format!("{}\r\n", "b".repeat(50))), "");
    }
    assert_eq!(
        say(&mut s, ".\r\n"),
        "552 5.3.4 Message size exceeds fixed maximum message size\r\n"
    );
    assert_eq!(say(&mut s, "NOOP\r\n"), "250 2.0.0 Ok\r\n");
}

#[test]
fn text_line_limit_is_1000_including_crlf() {
    let mut s = start(loopback(), false);
    open_data(&mut s);
    let ok = format!("{}\r\n.\r\n", "a".repeat(998));
    let _ = expect_deliver(s.feed(ok.as_bytes(), now()));
    let _ = s.delivered(DeliveryResult::Queued("Q".into()), now()).unwrap();
    open_again(&mut s);
    // A stuffed dot does not count towards the limit.
    let stuffed = format!(".{}\r\n.\r\n", ".".repeat(998));
    let env = expect_deliver(s.feed(stuffed.as_bytes(), now()));
    assert_eq!(message(&env).len(), 1000);
    let _ = s.delivered(DeliveryResult::Queued("Q".into()), now()).unwrap();
    open_again(&mut s);
    let long = format!("{}\r\n.\r\n", "a".repeat(999));
    assert_eq!(
        say(&mut s, &long),
        "500 5.5.6 Line too long in message text (limit 1000 octets)\r\n"
    );
}

#[test]
fn bare_newline_wins_over_other_rejections() {
    let mut c = config();
    c.max_message_size = 10;
    let mut s = start_with(c, loopback(), false);
    open_data(&mut s);
    let input = format!("{}\n\r\n.\r\n", "x".repeat(2000));
    assert_eq!(say(&mut s, &input), "550 5.6.11 Bare CR or LF not allowed\r\n");
}

#[test]
fn eight_bit_and_nul_data_are_kept_verbatim() {
    let mut s = start(loopback(), false);
    open_data(&mut s);
    let env = expect_deliver(s.feed(b"\xff\x00\xc3\xa9\r\n.\r\n", now()));
    assert_eq!(message(&env), b"\xff\x00\xc3\xa9\r\n");
}

#[test]
fn delivery_failures_map_to_4xx() {
    let mut s = start(loopback(), false);
    open_data(&mut s);
    let _ = expect_deliver(s.feed(b".\r\n", now()));
    let out = s.delivered(DeliveryResult::TemporaryFailure, now()).unwrap();
    assert_eq!(
        text(&out),
        "451 4.3.0 Temporary local problem, try again later\r\n"
    );
    open_again(&mut s);
    let _ = expect_deliver(s.feed(b".\r\n", now()));
    let out = s.delivered(DeliveryResult::InsufficientStorage, now()).unwrap();
    assert_eq!(text(&out), "452 4.3.1 Insufficient system storage\r\n");
    open_again(&mut s);
    let _ = expect_deliver(s.feed(b".\r\n", now()));
    let out = s
        .delivered(DeliveryResult::Queued("A\r\nB".into()), now())
        .unwrap();
    assert_eq!(text(&out), "250 2.0.0 queued as AB\r\n");
}

#[test]
fn envelope_debug_hides_the_body() {
    let mut s = start(loopback(), false);
    open_data(&mut s);
    let env = expect_deliver(s.feed(b"secret body\r\n.\r\n", now()));
    let debug = format!("{env:?}");
    assert!(!debug.contains("secret") && debug.contains("body_len"), "{debug}");
}
