use crate::mail::session::tests::*;

#[test]
fn ehlo_untrusted_plaintext_offers_starttls_not_auth() {
    let mut s = start(stranger(), false);
    let r = say(&mut s, "EHLO x\r\n");
    assert!(r.ends_with("250-ENHANCEDSTATUSCODES\r\n250 STARTTLS\r\n"), "{r}");
    assert!(!r.contains("AUTH"));
}

#[test]
fn ehlo_without_tls_configured_offers_neither() {
    let mut c = config();
    c.tls_available = false;
    let mut s = start_with(c, stranger(), false);
    let r = say(&mut s, "EHLO x\r\n");
    assert!(r.ends_with("250 ENHANCEDSTATUSCODES\r\n"), "{r}");
}

#[test]
fn ehlo_trusted_plaintext_offers_auth_only_if_configured() {
    let mut s = start(loopback(), false);
    assert!(!say(&mut s, "EHLO x\r\n").contains("AUTH"));
    let mut c = config();
    c.auth_on_plaintext_for_trusted = true;
    let mut s = start_with(c, loopback(), false);
    assert!(say(&mut s, "EHLO x\r\n").ends_with("250-STARTTLS\r\n250 AUTH PLAIN LOGIN\r\n"));
}

#[test]
fn ehlo_implicit_tls_offers_auth_not_starttls() {
    let mut s = start(stranger(), true);
    let r = say(&mut s, "ehlo x\r\n");
    assert!(
        r.ends_with("250-ENHANCEDSTATUSCODES\r\n250 AUTH PLAIN LOGIN\r\n"),
        "{r}"
    );
    assert!(!r.contains("STARTTLS"));
}

#[test]
fn helo_has_no_extensions_and_no_enhanced_codes() {
    let mut s = start(loopback(), false);
    assert_eq!(say(&mut s, "HELO x\r\n"), "250 mx.example.test\r\n");
    assert_eq!(say(&mut s, "NOOP\r\n"), "250 Ok\r\n");
    assert_eq!(
        say(&mut s, "MAIL FROM:<a@b.test> BODY=8BITMIME\r\n"),
        "555 MAIL parameters require EHLO\r\n"
    );
}

#[test]
fn ehlo_argument_is_validated() {
    let mut s = start(loopback(), false);
    assert_eq!(
        say(&mut s, "EHLO\r\n"),
        "501 EHLO/HELO requires a valid domain or address literal\r\n"
    );
    assert!(say(&mut s, "EHLO a<b>\r\n").starts_with("501 "));
    assert!(say(&mut s, "EHLO [192.0.2.1]\r\n").starts_with("250-"));
    assert!(say(&mut s, "EHLO 192.168.1.5\r\n").starts_with("250-"));
    assert!(say(&mut s, "EHLO my_host\r\n").starts_with("250-"));
}

#[test]
fn ehlo_resets_transaction() {
    let mut s = start(loopback(), false);
    ehlo(&mut s);
    say(&mut s, "MAIL FROM:<a@b.test>\r\n");
    ehlo(&mut s);
    assert_eq!(
        say(&mut s, "RCPT TO:<c@d.test>\r\n"),
        "503 5.5.1 Need MAIL command\r\n"
    );
}

#[test]
fn rset_clears_the_transaction() {
    let mut s = start(loopback(), false);
    ehlo(&mut s);
    say(&mut s, "MAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\n");
    assert_eq!(say(&mut s, "RSET\r\n"), "250 2.0.0 Ok\r\n");
    assert_eq!(say(&mut s, "DATA\r\n"), "503 5.5.1 Need MAIL command\r\n");
    assert_eq!(say(&mut s, "RSET x\r\n"), "501 5.5.4 RSET takes no arguments\r\n");
}

#[test]
fn vrfy_noop_quit_unknown() {
    let mut s = start(loopback(), false);
    ehlo(&mut s);
    assert_eq!(
        say(&mut s, "VRFY postmaster\r\n"),
        "252 2.5.2 Cannot VRFY user, send RCPT to attempt delivery\r\n"
    );
    assert_eq!(say(&mut s, "VRFY\r\n"), "501 5.5.4 VRFY requires an address\r\n");
    assert_eq!(say(&mut s, "NOOP anything\r\n"), "250 2.0.0 Ok\r\n");
    assert_eq!(
        say(&mut s, "EXPN staff\r\n"),
        "502 5.5.2 Command not recognized\r\n"
    );
    assert_eq!(say(&mut s, "XYZZY\r\n"), "502 5.5.2 Command not recognized\r\n");
    assert_eq!(say(&mut s, "\r\n"), "502 5.5.2 Command not recognized\r\n");
    let out = s.feed(b"QUIT\r\nNOOP\r\n", now());
    assert_eq!(text(&out), "221 2.0.0 Bye\r\n");
    assert!(out.close && s.is_closed());
    let out = s.feed(b"NOOP\r\n", now());
    assert!(out.replies.is_empty() && out.close);
}

#[test]
fn data_sequence_errors() {
    let mut s = start(loopback(), false);
    ehlo(&mut s);
    assert_eq!(say(&mut s, "DATA\r\n"), "503 5.5.1 Need MAIL command\r\n");
    say(&mut s, "MAIL FROM:<a@b.test>\r\n");
    assert_eq!(say(&mut s, "DATA\r\n"), "554 5.5.1 No valid recipients\r\n");
    say(&mut s, "RCPT TO:<c@d.test>\r\n");
    assert_eq!(
        say(&mut s, "DATA now\r\n"),
        "501 5.5.4 DATA takes no arguments\r\n"
    );
}

#[test]
fn http_request_closes_immediately() {
    let mut s = start(stranger(), false);
    let out = s.feed(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", now());
    assert_eq!(
        text(&out),
        "421 mx.example.test HTTP is not SMTP, closing connection\r\n"
    );
    assert!(out.close);
}

#[test]
fn timeout_and_shutdown_reply_421_and_close() {
    let mut s = start(loopback(), false);
    ehlo(&mut s);
    let out = s.timeout();
    assert_eq!(
        text(&out),
        "421 4.4.2 mx.example.test Error: timeout exceeded\r\n"
    );
    assert!(out.close);
    assert!(s.shutdown().replies.is_empty());
    let mut s = start(loopback(), false);
    let out = s.shutdown();
    assert_eq!(text(&out), "421 mx.example.test Service shutting down\r\n");
    assert!(out.close);
}

#[test]
fn overlong_command_line_is_consumed_and_answered_once() {
    let mut s = start(loopback(), false);
    ehlo(&mut s);
    let long = format!("NOOP {}\r\n", "x".repeat(600));
    assert_eq!(
        say(&mut s, &format!("{long}NOOP\r\n")),
        "500 5.5.6 Line too long\r\n250 2.0.0 Ok\r\n"
    );
    // Split over several feeds, including a feed that ends inside the overlong line.
    assert_eq!(say(&mut s, &"y".repeat(400)), "");
    assert_eq!(say(&mut s, &"y".repeat(400)), "");
    assert_eq!(say(&mut s, &"y".repeat(4000)), "");
    assert_eq!(
        say(&mut s, "yy\r\nNOOP\r\n"),
        "500 5.5.6 Line too long\r\n250 2.0.0 Ok\r\n"
    );
}

#[test]
fn command_line_limit_is_512_including_crlf() {
    let mut s = start(loopback(), false);
    ehlo(&mut s);
    let exact = format!("NOOP {}\r\n", "x".repeat(512 - 7));
    assert_eq!(exact.len(), 512);
    assert_eq!(say(&mut s, &exact), "250 2.0.0 Ok\r\n");
    let over = format!("NOOP {}\r\n", "x".repeat(512 - 6));
    assert_eq!(say(&mut s, &over), "500 5.5.6 Line too long\r\n");
}

#[test]
fn bare_lf_and_control_characters_in_commands() {
    let mut s = start(loopback(), false);
    ehlo(&mut s);
    assert_eq!(
        say(&mut s, "NOOP\n"),
        "500 5.5.2 Bare LF received, lines must end with CRLF\r\n"
    );
    assert_eq!(
        say(&mut s, "NO\rOP\r\n"),
        "500 5.5.2 Invalid character in command\r\n"
    );
    assert_eq!(
        say(&mut s, "NOOP \0\r\n"),
        "500 5.5.2 Invalid character in command\r\n"
    );
    assert_eq!(
        say(&mut s, "MAIL FROM:<\u{e9}@b.test>\r\n"),
        "500 5.5.2 Invalid character in command\r\n"
    );
    assert_eq!(say(&mut s, "NOOP\r\n"), "250 2.0.0 Ok\r\n");
}

#[test]
fn too_many_errors_closes_with_421() {
    let mut s = start(stranger(), false);
    ehlo(&mut s);
    let mut all = String::new();
    for _ in 0..19 {
        let out = s.feed(b"BOGUS\r\n", now());
        assert!(!out.close);
        all.push_str(&text(&out));
    }
    let out = s.feed(b"BOGUS\r\nNOOP\r\n", now());
    assert_eq!(
        text(&out),
        "502 5.5.2 Command not recognized\r\n421 4.7.0 mx.example.test Too many errors, closing connection\r\n"
    );
    assert!(out.close);
    assert!(s.feed(b"NOOP\r\n", now()).replies.is_empty());
}

#[test]
fn resource_replies_do_not_count_as_errors() {
    let mut c = config();
    c.max_recipients = 1;
    let mut s = start_with(c, loopback(), false);
    ehlo(&mut s);
    say(&mut s, "MAIL FROM:<a@b.test>\r\nRCPT TO:<1@d.test>\r\n");
    let r = say(&mut s, &"RCPT TO:<2@d.test>\r\n".repeat(50));
    assert_eq!(r, "452 4.5.3 Too many recipients\r\n".repeat(50));
    assert!(!s.is_closed());
}
