//! Whole conversations: Mattermost's own, and pipelined ones.

use super::*;
use crate::mail::envelope::{BodyType, Protocol};
use crate::mail::session::{AuthMechanism, DeliveryResult, MAX_BUFFERED_INPUT};

#[test]
fn mattermost_starttls_auth_plain_dialogue() {
    let mut s = start(loopback(), false);
    let r = say(&mut s, "EHLO chat.example.test\r\n");
    assert_eq!(
        r,
        "250-mx.example.test\r\n250-PIPELINING\r\n250-SIZE 10485760\r\n250-8BITMIME\r\n\
         250-ENHANCEDSTATUSCODES\r\n250 STARTTLS\r\n"
    );
    let out = s.feed(b"STARTTLS\r\n", now());
    assert_eq!(text(&out), "220 2.0.0 Ready to start TLS\r\n");
    assert!(matches!(out.action, Some(Action::StartTls { discarded: 0 })));
    s.tls_established().unwrap();
    let r = say(&mut s, "EHLO chat.example.test\r\n");
    assert_eq!(
        r,
        "250-mx.example.test\r\n250-PIPELINING\r\n250-SIZE 10485760\r\n250-8BITMIME\r\n\
         250-ENHANCEDSTATUSCODES\r\n250 AUTH PLAIN LOGIN\r\n"
    );
    let out = s.feed(
        format!("AUTH PLAIN {}\r\n", b64(b"\0mattermost\0s3cret")).as_bytes(),
        now(),
    );
    assert!(out.replies.is_empty());
    match out.action {
        Some(Action::CheckCredentials {
            mechanism,
            username,
            password,
        }) => {
            assert_eq!(mechanism, AuthMechanism::Plain);
            assert_eq!(username, "mattermost");
            assert_eq!(password.expose(), b"s3cret");
        }
        other => panic!("{other:?}"),
    }
    let out = s.auth_result(true, now()).unwrap();
    assert_eq!(text(&out), "235 2.7.0 Authentication successful\r\n");
    assert_eq!(s.authenticated_user(), Some("mattermost"));
    assert_eq!(
        say(&mut s, "MAIL FROM:<noreply@example.test> BODY=8BITMIME\r\n"),
        "250 2.1.0 Ok\r\n"
    );
    assert_eq!(say(&mut s, "RCPT TO:<user@example.org>\r\n"), "250 2.1.5 Ok\r\n");
    assert_eq!(say(&mut s, "DATA\r\n"), "354 End data with <CR><LF>.<CR><LF>\r\n");
    let body = "From: noreply@example.test\r\nSubject: =?UTF-8?q?hi?=\r\n\r\nh\u{e9}llo\r\n";
    let env = expect_deliver(s.feed(format!("{body}.\r\n").as_bytes(), now()));
    assert_eq!(message(&env), body.as_bytes());
    assert_eq!(
        env.sender.as_ref().map(|a| a.to_string()).as_deref(),
        Some("noreply@example.test")
    );
    assert_eq!(env.recipients.len(), 1);
    assert_eq!(env.body_type, BodyType::EightBitMime);
    assert_eq!(env.protocol, Protocol::Esmtpsa);
    assert_eq!(env.auth_user.as_deref(), Some("mattermost"));
    assert_eq!(env.helo, "chat.example.test");
    let out = s
        .delivered(DeliveryResult::Queued("0123ABCD".into()), now())
        .unwrap();
    assert_eq!(text(&out), "250 2.0.0 queued as 0123ABCD\r\n");
    assert!(out.action.is_none() && !out.close);
    // Mattermost now closes the socket without QUIT: the I/O layer drops the session, and the
    // message is already queued. Nothing is pending in the machine.
    assert!(!s.awaiting_action());
}

#[test]
fn pipelined_envelope_gets_replies_in_order() {
    let mut s = start(loopback(), false);
    ehlo(&mut s);
    let r = say(
        &mut s,
        "MAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nRCPT TO:<e@f.test>\r\nDATA\r\n",
    );
    assert_eq!(
        r,
        "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n"
    );
    let env = expect_deliver(s.feed(b"hi\r\n.\r\n", now()));
    assert_eq!(env.recipients.len(), 2);
}

#[test]
fn pipelined_with_a_rejected_recipient_in_the_middle() {
    let mut s = start(loopback(), false);
    ehlo(&mut s);
    let r = say(
        &mut s,
        "MAIL FROM:<a@b.test>\r\nRCPT TO:<c%x@d.test>\r\nRCPT TO:<e@f.test>\r\nDATA\r\n",
    );
    assert!(r.starts_with("250 2.1.0 Ok\r\n501 5.1.3 "), "{r}");
    assert!(
        r.ends_with("250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n"),
        "{r}"
    );
}

#[test]
fn whole_transaction_and_quit_in_one_buffer() {
    let mut s = start(loopback(), false);
    let out = s.feed(
        b"EHLO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nDATA\r\nhello\r\n.\r\nQUIT\r\n",
        now(),
    );
    let r = text(&out);
    assert!(r.ends_with("250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n"));
    assert!(matches!(out.action, Some(Action::Deliver(_))));
    assert!(s.awaiting_action());
    // Input arriving while the action is outstanding is held, not processed.
    assert!(s.feed(b"NOOP\r\n", now()).replies.is_empty());
    let out = s.delivered(DeliveryResult::Queued("Q1".into()), now()).unwrap();
    assert_eq!(text(&out), "250 2.0.0 queued as Q1\r\n221 2.0.0 Bye\r\n");
    assert!(out.close);
}

#[test]
fn command_split_across_feeds() {
    let mut s = start(loopback(), false);
    let mut replies = String::new();
    for b in b"EHLO c\r\nNOOP\r\n" {
        replies.push_str(&text(&s.feed(&[*b], now())));
    }
    assert!(replies.ends_with("250 STARTTLS\r\n250 2.0.0 Ok\r\n"), "{replies}");
}

#[test]
fn too_much_input_while_waiting_closes_after_the_result() {
    let mut s = start(loopback(), false);
    open_data(&mut s);
    let _ = expect_deliver(s.feed(b".\r\n", now()));
    assert!(s
        .feed(&vec![b'x'; MAX_BUFFERED_INPUT + 1], now())
        .replies
        .is_empty());
    let out = s.delivered(DeliveryResult::Queued("Q".into()), now()).unwrap();
    assert_eq!(
        text(&out),
        "250 2.0.0 queued as Q\r\n421 4.7.0 mx.example.test Too much pipelined input, closing connection\r\n"
    );
    assert!(out.close);
}
