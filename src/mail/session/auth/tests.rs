use super::base64_decode;
use crate::mail::session::tests::*;
use crate::mail::session::{Action, AuthMechanism, DeliveryResult, Output, Session, AUTH_LINE_MAX};

#[test]
fn starttls_discards_pipelined_plaintext() {
    let mut s = start(stranger(), false);
    ehlo(&mut s);
    let junk = "MAIL FROM:<evil@x.test>\r\nRCPT TO:<v@y.test>\r\n";
    let out = s.feed(format!("STARTTLS\r\n{junk}").as_bytes(), now());
    assert_eq!(text(&out), "220 2.0.0 Ready to start TLS\r\n");
    match out.action {
        Some(Action::StartTls { discarded }) => assert_eq!(discarded, junk.len()),
        other => panic!("{other:?}"),
    }
    // More plaintext before the handshake completes is dropped too.
    assert!(s.feed(b"NOOP\r\n", now()).replies.is_empty());
    s.tls_established().unwrap();
    assert!(s.tls_active());
    // Fresh session: the injected MAIL never happened, and EHLO is required again.
    assert_eq!(
        say(&mut s, "MAIL FROM:<a@b.test>\r\n"),
        "503 Send EHLO or HELO first\r\n"
    );
    ehlo(&mut s);
    assert_eq!(
        say(&mut s, "RCPT TO:<v@y.test>\r\n"),
        "503 5.5.1 Need MAIL command\r\n"
    );
}

#[test]
fn starttls_refusals() {
    let mut s = start(loopback(), true);
    ehlo(&mut s);
    assert_eq!(say(&mut s, "STARTTLS\r\n"), "503 5.5.1 TLS already active\r\n");
    let mut c = config();
    c.tls_available = false;
    let mut s = start_with(c, loopback(), false);
    ehlo(&mut s);
    assert_eq!(say(&mut s, "STARTTLS\r\n"), "454 4.7.0 TLS not available\r\n");
    let mut s = start(loopback(), false);
    ehlo(&mut s);
    assert_eq!(
        say(&mut s, "STARTTLS now\r\n"),
        "501 5.5.4 STARTTLS takes no arguments\r\n"
    );
    say(&mut s, "MAIL FROM:<a@b.test>\r\n");
    assert_eq!(
        say(&mut s, "STARTTLS\r\n"),
        "503 5.5.1 MAIL transaction in progress\r\n"
    );
}

#[test]
fn starttls_resets_plaintext_auth() {
    let mut c = config();
    c.auth_on_plaintext_for_trusted = true;
    let mut s = start_with(c, loopback(), false);
    ehlo(&mut s);
    let out = s.feed(format!("AUTH PLAIN {}\r\n", b64(b"\0u\0p")).as_bytes(), now());
    assert!(out.action.is_some());
    let _ = s.auth_result(true, now()).unwrap();
    let out = s.feed(b"STARTTLS\r\n", now());
    assert!(out.action.is_some());
    s.tls_established().unwrap();
    assert_eq!(s.authenticated_user(), None);
}

fn tls_session() -> Session {
    let mut s = start(stranger(), true);
    ehlo(&mut s);
    s
}

fn expect_credentials(out: Output) -> (AuthMechanism, String, Vec<u8>) {
    assert!(out.replies.is_empty(), "{}", text(&out));
    match out.action {
        Some(Action::CheckCredentials {
            mechanism,
            username,
            password,
        }) => (mechanism, username, password.expose().to_vec()),
        other => panic!("{other:?}"),
    }
}

#[test]
fn login_challenges_are_byte_exact() {
    assert_eq!(b64(b"Username:"), "VXNlcm5hbWU6");
    assert_eq!(b64(b"Password:"), "UGFzc3dvcmQ6");
    let mut s = tls_session();
    let out = s.feed(b"AUTH LOGIN\r\n", now());
    assert_eq!(out.replies, b"334 VXNlcm5hbWU6\r\n");
    let out = s.feed(format!("{}\r\n", b64(b"alice")).as_bytes(), now());
    assert_eq!(out.replies, b"334 UGFzc3dvcmQ6\r\n");
    let out = s.feed(format!("{}\r\n", b64(b"pw")).as_bytes(), now());
    assert_eq!(
        expect_credentials(out),
        (AuthMechanism::Login, "alice".into(), b"pw".to_vec())
    );
    let out = s.auth_result(true, now()).unwrap();
    assert_eq!(out.replies, b"235 2.7.0 Authentication successful\r\n");
}

#[test]
fn login_with_initial_response_skips_the_username_challenge() {
    let mut s = tls_session();
    let out = s.feed(format!("AUTH LOGIN {}\r\n", b64(b"bob")).as_bytes(), now());
    assert_eq!(out.replies, b"334 UGFzc3dvcmQ6\r\n");
    let out = s.feed(format!("{}\r\n", b64(b"pw")).as_bytes(), now());
    assert_eq!(expect_credentials(out).1, "bob");
}

#[test]
fn plain_without_initial_response() {
    let mut s = tls_session();
    let out = s.feed(b"auth plain\r\n", now());
    assert_eq!(out.replies, b"334 \r\n");
    let out = s.feed(format!("{}\r\n", b64(b"carol\0carol\0pw")).as_bytes(), now());
    assert_eq!(
        expect_credentials(out),
        (AuthMechanism::Plain, "carol".into(), b"pw".to_vec())
    );
}

#[test]
fn auth_cancel_with_star() {
    let mut s = tls_session();
    let _ = s.feed(b"AUTH LOGIN\r\n", now());
    assert_eq!(say(&mut s, "*\r\n"), "501 5.7.0 Authentication aborted\r\n");
    let _ = s.feed(b"AUTH PLAIN\r\n", now());
    assert_eq!(say(&mut s, "*\r\n"), "501 5.7.0 Authentication aborted\r\n");
    assert_eq!(say(&mut s, "NOOP\r\n"), "250 2.0.0 Ok\r\n");
}

#[test]
fn auth_without_tls_is_538() {
    let mut s = start(stranger(), false);
    ehlo(&mut s);
    let r = say(&mut s, &format!("AUTH PLAIN {}\r\n", b64(b"\0u\0p")));
    assert_eq!(
        r,
        "538 5.7.11 Encryption required for requested authentication mechanism\r\n"
    );
    // Trusted peers too, unless configured otherwise.
    let mut s = start(loopback(), false);
    ehlo(&mut s);
    assert!(say(&mut s, "AUTH LOGIN\r\n").starts_with("538 5.7.11 "));
}

#[test]
fn auth_failure_is_535_and_counts() {
    let mut s = tls_session();
    let out = s.feed(format!("AUTH PLAIN {}\r\n", b64(b"\0u\0wrong")).as_bytes(), now());
    let _ = expect_credentials(out);
    let out = s.auth_result(false, now()).unwrap();
    assert_eq!(text(&out), "535 5.7.8 Authentication credentials invalid\r\n");
    assert_eq!(s.authenticated_user(), None);
    assert_eq!(s.errors, 1);
    // Another try is allowed.
    let out = s.feed(format!("AUTH PLAIN {}\r\n", b64(b"\0u\0right")).as_bytes(), now());
    let _ = expect_credentials(out);
}

#[test]
fn second_auth_after_success_is_503() {
    let mut s = tls_session();
    let _ = s.feed(format!("AUTH PLAIN {}\r\n", b64(b"\0u\0p")).as_bytes(), now());
    let _ = s.auth_result(true, now()).unwrap();
    assert_eq!(
        say(&mut s, "AUTH LOGIN\r\n"),
        "503 5.5.1 Already authenticated\r\n"
    );
}

#[test]
fn auth_sequence_and_syntax_errors() {
    let mut s = start(stranger(), true);
    assert_eq!(say(&mut s, "AUTH PLAIN\r\n"), "503 Send EHLO first\r\n");
    say(&mut s, "HELO x\r\n");
    assert_eq!(say(&mut s, "AUTH PLAIN\r\n"), "503 Send EHLO first\r\n");
    ehlo(&mut s);
    assert_eq!(
        say(&mut s, "AUTH CRAM-MD5\r\n"),
        "504 5.5.4 Unrecognized authentication mechanism\r\n"
    );
    assert_eq!(
        say(&mut s, "AUTH\r\n"),
        "501 5.5.4 Syntax: AUTH mechanism [initial-response]\r\n"
    );
    assert_eq!(
        say(&mut s, "AUTH PLAIN a b\r\n"),
        "501 5.5.4 Syntax: AUTH mechanism [initial-response]\r\n"
    );
    assert_eq!(
        say(&mut s, "AUTH PLAIN !!!!\r\n"),
        "501 5.5.2 Cannot decode base64 response\r\n"
    );
    assert_eq!(
        say(&mut s, "AUTH PLAIN =\r\n"),
        "535 5.7.8 Authentication credentials invalid\r\n"
    );
    let wrong_authzid = b64(b"admin\0u\0p");
    assert_eq!(
        say(&mut s, &format!("AUTH PLAIN {wrong_authzid}\r\n")),
        "535 5.7.8 Authentication credentials invalid\r\n"
    );
    say(&mut s, "MAIL FROM:<a@b.test>\r\n");
    assert_eq!(
        say(&mut s, "AUTH LOGIN\r\n"),
        "503 5.5.1 AUTH not allowed during a mail transaction\r\n"
    );
}

#[test]
fn auth_disabled_is_503() {
    let mut c = config();
    c.auth_enabled = false;
    let mut s = start_with(c, stranger(), true);
    assert!(!say(&mut s, "EHLO x\r\n").contains("AUTH"));
    assert_eq!(
        say(&mut s, "AUTH PLAIN\r\n"),
        "503 5.5.1 Authentication not enabled\r\n"
    );
}

#[test]
fn auth_line_may_exceed_512_but_not_12288() {
    let mut s = tls_session();
    let password = vec![b'p'; 3000];
    let mut raw = b"\0user\0".to_vec();
    raw.extend_from_slice(&password);
    let out = s.feed(format!("AUTH PLAIN {}\r\n", b64(&raw)).as_bytes(), now());
    assert_eq!(expect_credentials(out).2, password);
    let _ = s.auth_result(false, now()).unwrap();
    let huge = format!("AUTH PLAIN {}\r\n", "A".repeat(AUTH_LINE_MAX));
    assert_eq!(say(&mut s, &huge), "500 5.5.6 Line too long\r\n");
    let _ = s.feed(b"AUTH LOGIN\r\n", now());
    let huge = format!("{}\r\n", "A".repeat(AUTH_LINE_MAX));
    assert_eq!(
        say(&mut s, &huge),
        "500 5.5.6 Authentication exchange line is too long\r\n"
    );
    assert_eq!(say(&mut s, "NOOP\r\n"), "250 2.0.0 Ok\r\n");
}

#[test]
fn password_debug_is_redacted() {
    let mut s = tls_session();
    let out = s.feed(
        format!("AUTH PLAIN {}\r\n", b64(b"\0u\0hunter2")).as_bytes(),
        now(),
    );
    let debug = format!("{:?}", out.action);
    assert!(
        debug.contains("<redacted>") && !debug.contains("hunter2"),
        "{debug}"
    );
}

#[test]
fn result_methods_reject_misuse() {
    let mut s = start(loopback(), false);
    assert!(s.auth_result(true, now()).is_err());
    assert!(s.delivered(DeliveryResult::TemporaryFailure, now()).is_err());
    assert!(s.tls_established().is_err());
    assert_eq!(say(&mut s, "EHLO x\r\n").lines().count(), 6);
}

#[test]
fn base64_decoder() {
    assert_eq!(base64_decode(""), Some(vec![]));
    assert_eq!(base64_decode("YQ=="), Some(b"a".to_vec()));
    assert_eq!(base64_decode("YQ"), Some(b"a".to_vec()));
    assert_eq!(base64_decode("YWI="), Some(b"ab".to_vec()));
    assert_eq!(base64_decode("YWJj"), Some(b"abc".to_vec()));
    assert_eq!(base64_decode("Y"), None);
    assert_eq!(base64_decode("YQ="), None);
    assert_eq!(base64_decode("Y==="), None);
    assert_eq!(base64_decode("YWJj="), None);
    assert_eq!(base64_decode("Y-Jj"), None);
    // Bits left over in the last symbol are ignored, as clients that pad sloppily expect.
    assert_eq!(base64_decode("YR=="), Some(b"a".to_vec()));
    assert_eq!(base64_decode("YWJ="), Some(b"ab".to_vec()));
    for len in 0..40 {
        let data: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
        assert_eq!(base64_decode(&b64(&data)), Some(data));
    }
}
