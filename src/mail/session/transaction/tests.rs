use crate::mail::address::{Address, AddressError, DomainList};
use crate::mail::session::tests::*;

#[test]
fn mail_before_ehlo_is_bad_sequence() {
    let mut s = start(loopback(), false);
    assert_eq!(
        say(&mut s, "MAIL FROM:<a@b.test>\r\n"),
        "503 Send EHLO or HELO first\r\n"
    );
}

#[test]
fn nested_mail_is_bad_sequence() {
    let mut s = start(loopback(), false);
    ehlo(&mut s);
    say(&mut s, "MAIL FROM:<a@b.test>\r\n");
    assert_eq!(
        say(&mut s, "MAIL FROM:<a@b.test>\r\n"),
        "503 5.5.1 Nested MAIL command\r\n"
    );
}

#[test]
fn mail_syntax_errors() {
    let mut s = start(loopback(), false);
    ehlo(&mut s);
    assert_eq!(
        say(&mut s, "MAIL a@b.test\r\n"),
        "501 5.5.4 Syntax: MAIL FROM:<address>\r\n"
    );
    assert_eq!(
        say(&mut s, "MAIL FROM:a@b.test\r\n"),
        "501 5.5.4 Syntax: MAIL FROM:<address>\r\n"
    );
    assert_eq!(
        say(&mut s, "MAIL FROM:<a@b.test>x\r\n"),
        "501 5.5.4 Syntax: MAIL FROM:<address>\r\n"
    );
    assert_eq!(
        say(&mut s, "MAIL FROM:<a@b.test> SIZE=abc\r\n"),
        "501 5.5.4 Syntax: SIZE=<octets>\r\n"
    );
    assert_eq!(
        say(&mut s, "MAIL FROM:<a@b.test> BODY=BINARYMIME\r\n"),
        "501 5.5.4 Syntax: BODY=7BIT or BODY=8BITMIME\r\n"
    );
    assert_eq!(
        say(&mut s, "MAIL FROM:<a@b.test> SMTPUTF8\r\n"),
        "555 5.5.4 Unsupported MAIL parameter SMTPUTF8\r\n"
    );
    assert_eq!(
        say(&mut s, "MAIL FROM:<a@@b.test>\r\n"),
        "501 5.1.7 Bad sender address syntax: more than one '@'\r\n"
    );
    // Tolerated: lower case, a space after the colon, 7BIT, SIZE under the limit.
    assert_eq!(
        say(&mut s, "mail from: <a@b.test> body=7bit size=1000\r\n"),
        "250 2.1.0 Ok\r\n"
    );
}

#[test]
fn mail_size_over_limit_is_552() {
    let mut s = start(loopback(), false);
    ehlo(&mut s);
    assert_eq!(
        say(&mut s, "MAIL FROM:<a@b.test> SIZE=10485761\r\n"),
        "552 5.3.4 Message size exceeds fixed maximum message size\r\n"
    );
    assert_eq!(
        say(&mut s, "MAIL FROM:<a@b.test> SIZE=99999999999999999999\r\n"),
        "552 5.3.4 Message size exceeds fixed maximum message size\r\n"
    );
    assert_eq!(
        say(&mut s, "MAIL FROM:<a@b.test> SIZE=10485760\r\n"),
        "250 2.1.0 Ok\r\n"
    );
}

#[test]
fn null_sender_is_accepted() {
    let mut s = start(loopback(), false);
    ehlo(&mut s);
    assert_eq!(say(&mut s, "MAIL FROM:<>\r\n"), "250 2.1.0 Ok\r\n");
    say(&mut s, "RCPT TO:<x@y.test>\r\nDATA\r\n");
    assert!(expect_deliver(s.feed(b".\r\n", now())).sender.is_none());
}

#[test]
fn null_recipient_is_refused() {
    let mut s = start(loopback(), false);
    ehlo(&mut s);
    say(&mut s, "MAIL FROM:<>\r\n");
    assert_eq!(
        say(&mut s, "RCPT TO:<>\r\n"),
        "501 5.1.3 Bad recipient address syntax: null recipient\r\n"
    );
}

#[test]
fn storage_low_refuses_mail_with_452() {
    let mut s = start(loopback(), false);
    ehlo(&mut s);
    s.set_storage_low(true);
    assert_eq!(
        say(&mut s, "MAIL FROM:<a@b.test>\r\n"),
        "452 4.3.1 Insufficient system storage\r\n"
    );
    s.set_storage_low(false);
    assert_eq!(say(&mut s, "MAIL FROM:<a@b.test>\r\n"), "250 2.1.0 Ok\r\n");
}

#[test]
fn rcpt_without_mail_is_bad_sequence() {
    let mut s = start(loopback(), false);
    ehlo(&mut s);
    assert_eq!(
        say(&mut s, "RCPT TO:<a@b.test>\r\n"),
        "503 5.5.1 Need MAIL command\r\n"
    );
}

#[test]
fn rcpt_parameters_are_refused() {
    let mut s = start(loopback(), false);
    ehlo(&mut s);
    say(&mut s, "MAIL FROM:<a@b.test>\r\n");
    assert_eq!(
        say(&mut s, "RCPT TO:<c@d.test> NOTIFY=NEVER\r\n"),
        "555 5.5.4 RCPT parameters are not supported\r\n"
    );
}

#[test]
fn untrusted_unauthenticated_peer_cannot_relay() {
    let mut s = start(stranger(), false);
    ehlo(&mut s);
    assert_eq!(say(&mut s, "MAIL FROM:<a@example.test>\r\n"), "250 2.1.0 Ok\r\n");
    assert_eq!(
        say(&mut s, "RCPT TO:<victim@example.org>\r\n"),
        "554 5.7.1 Relay access denied\r\n"
    );
    assert_eq!(say(&mut s, "DATA\r\n"), "554 5.5.1 No valid recipients\r\n");
}

#[test]
fn untrusted_peer_over_tls_without_auth_cannot_relay() {
    let mut s = start(stranger(), true);
    ehlo(&mut s);
    say(&mut s, "MAIL FROM:<a@example.test>\r\n");
    assert_eq!(
        say(&mut s, "RCPT TO:<victim@example.org>\r\n"),
        "554 5.7.1 Relay access denied\r\n"
    );
}

#[test]
fn untrusted_peer_relays_after_auth() {
    let mut s = start(stranger(), true);
    ehlo(&mut s);
    let out = s.feed(format!("AUTH PLAIN {}\r\n", b64(b"\0u\0p")).as_bytes(), now());
    assert!(out.action.is_some());
    let _ = s.auth_result(true, now()).unwrap();
    say(&mut s, "MAIL FROM:<a@example.test>\r\n");
    assert_eq!(say(&mut s, "RCPT TO:<b@example.org>\r\n"), "250 2.1.5 Ok\r\n");
}

#[test]
fn relay_tricks_are_refused_even_for_trusted_peers() {
    for (addr, why) in [
        (
            "user%victim.example@mx.example.test",
            "'%' is not accepted in addresses",
        ),
        (
            "victim.example!user@mx.example.test",
            "'!' is not accepted in addresses",
        ),
        (
            "@mx.example.test,@b.test:user@victim.example",
            "source routes are not accepted",
        ),
        ("user@victim.example@mx.example.test", "more than one '@'"),
        (
            "\"user@victim\"@mx.example.test",
            "quoted local parts are not accepted",
        ),
        ("user@[192.0.2.1]", "address literals are not accepted"),
    ] {
        let mut s = start(loopback(), false);
        ehlo(&mut s);
        say(&mut s, "MAIL FROM:<a@b.test>\r\n");
        let r = say(&mut s, &format!("RCPT TO:<{addr}>\r\n"));
        assert_eq!(
            r,
            format!("501 5.1.3 Bad recipient address syntax: {why}\r\n"),
            "{addr}"
        );
    }
}

#[test]
fn recipient_limit_gives_452() {
    let mut c = config();
    c.max_recipients = 2;
    let mut s = start_with(c, loopback(), false);
    ehlo(&mut s);
    say(&mut s, "MAIL FROM:<a@b.test>\r\n");
    assert_eq!(say(&mut s, "RCPT TO:<1@d.test>\r\n"), "250 2.1.5 Ok\r\n");
    assert_eq!(say(&mut s, "RCPT TO:<2@d.test>\r\n"), "250 2.1.5 Ok\r\n");
    assert_eq!(
        say(&mut s, "RCPT TO:<3@d.test>\r\n"),
        "452 4.5.3 Too many recipients\r\n"
    );
    // A duplicate is accepted without counting or delivering twice.
    assert_eq!(say(&mut s, "RCPT TO:<2@D.TEST>\r\n"), "250 2.1.5 Ok\r\n");
    say(&mut s, "DATA\r\n");
    assert_eq!(expect_deliver(s.feed(b".\r\n", now())).recipients.len(), 2);
}

#[test]
fn default_recipient_limit_is_100() {
    let mut s = start(loopback(), false);
    ehlo(&mut s);
    say(&mut s, "MAIL FROM:<a@b.test>\r\n");
    let batch: String = (0..100).map(|i| format!("RCPT TO:<u{i}@d.test>\r\n")).collect();
    assert_eq!(say(&mut s, &batch), "250 2.1.5 Ok\r\n".repeat(100));
    assert_eq!(
        say(&mut s, "RCPT TO:<last@d.test>\r\n"),
        "452 4.5.3 Too many recipients\r\n"
    );
}

#[test]
fn sender_and_recipient_allow_lists() {
    let mut c = config();
    c.sender_domains = Some(DomainList::new(["Example.TEST"]).unwrap());
    c.recipient_domains = Some(DomainList::new(["example.org", ".corp.test"]).unwrap());
    let mut s = start_with(c, loopback(), false);
    ehlo(&mut s);
    assert_eq!(
        say(&mut s, "MAIL FROM:<a@other.test>\r\n"),
        "550 5.7.1 Sender domain other.test is not allowed to use this relay\r\n"
    );
    assert_eq!(
        say(&mut s, "MAIL FROM:<>\r\n"),
        "550 5.7.1 Null sender not accepted: sender domains are restricted\r\n"
    );
    assert_eq!(say(&mut s, "MAIL FROM:<a@EXAMPLE.test>\r\n"), "250 2.1.0 Ok\r\n");
    assert_eq!(say(&mut s, "RCPT TO:<x@example.org>\r\n"), "250 2.1.5 Ok\r\n");
    assert_eq!(say(&mut s, "RCPT TO:<x@eu.corp.test>\r\n"), "250 2.1.5 Ok\r\n");
    assert_eq!(
        say(&mut s, "RCPT TO:<x@corp.test>\r\n"),
        "550 5.7.1 Recipient domain corp.test is not allowed by this relay\r\n"
    );
    assert_eq!(
        say(&mut s, "RCPT TO:<x@evilexample.org>\r\n"),
        "550 5.7.1 Recipient domain evilexample.org is not allowed by this relay\r\n"
    );
}

#[test]
fn empty_local_part_is_refused_in_rcpt() {
    let mut s = start(loopback(), false);
    ehlo(&mut s);
    say(&mut s, "MAIL FROM:<a@b.test>\r\n");
    assert_eq!(
        say(&mut s, "RCPT TO:<@d.test>\r\n"),
        "501 5.1.3 Bad recipient address syntax: source routes are not accepted\r\n"
    );
    assert_eq!(Address::parse("@"), Err(AddressError::SourceRoute));
    assert_eq!(
        say(&mut s, "RCPT TO:<user>\r\n"),
        "501 5.1.3 Bad recipient address syntax: missing '@domain'\r\n"
    );
}
