//! Random input never panics or desynchronises the session; refusals are reported for policy only.

use super::*;
use crate::mail::address::DomainList;
use crate::mail::session::{DeliveryResult, Refusal, AUTH_LINE_MAX, MAX_ERRORS};

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn assert_well_formed(replies: &[u8]) {
    let text = String::from_utf8(replies.to_vec()).expect("replies are ASCII");
    assert!(text.is_empty() || text.ends_with("\r\n"), "{text:?}");
    for line in text.split_terminator("\r\n") {
        let b = line.as_bytes();
        assert!(b.len() >= 4, "{line:?}");
        assert!(b[..3].iter().all(u8::is_ascii_digit), "{line:?}");
        assert!(b[3] == b' ' || b[3] == b'-', "{line:?}");
        assert!(!line.contains('\r') && !line.contains('\n'), "{line:?}");
    }
}

#[test]
fn random_input_never_panics_and_replies_stay_well_formed() {
    const PIECES: &[&[u8]] = &[
        b"EHLO x\r\n",
        b"HELO y\r\n",
        b"MAIL FROM:<a@b.test>\r\n",
        b"MAIL FROM:<> SIZE=5 BODY=8BITMIME\r\n",
        b"RCPT TO:<c@d.test>\r\n",
        b"RCPT TO:<c%e@d.test>\r\n",
        b"DATA\r\n",
        b".\r\n",
        b"..\r\n",
        b"\r\n",
        b"\r",
        b"\n",
        b".",
        b"STARTTLS\r\n",
        b"AUTH PLAIN\r\n",
        b"AUTH LOGIN dXNlcg==\r\n",
        b"AUTH PLAIN AHUAcA==\r\n",
        b"*\r\n",
        b"RSET\r\n",
        b"QUIT\r\n",
        b"\xff\x00",
    ];
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    for round in 0..400 {
        let peer = if round % 2 == 0 { loopback() } else { stranger() };
        let mut c = config();
        c.max_message_size = 1 + rng.below(2000);
        c.max_recipients = 1 + rng.below(5);
        c.auth_on_plaintext_for_trusted = round % 3 == 0;
        let (mut s, _) = Session::new(Arc::new(c), peer, round % 5 == 0);
        let mut input = Vec::new();
        for _ in 0..rng.below(60) {
            if rng.below(3) == 0 {
                for _ in 0..rng.below(700) {
                    input.push(rng.next() as u8);
                }
            } else {
                input.extend_from_slice(PIECES[rng.below(PIECES.len())]);
            }
        }
        let mut pos = 0;
        while pos < input.len() {
            let end = (pos + 1 + rng.below(300)).min(input.len());
            let mut out = s.feed(&input[pos..end], now());
            pos = end;
            loop {
                assert_well_formed(&out.replies);
                assert!(!(out.close && out.action.is_some()));
                out = match out.action {
                    None => break,
                    Some(Action::StartTls { .. }) => {
                        s.tls_established().unwrap();
                        break;
                    }
                    Some(Action::CheckCredentials { .. }) => s.auth_result(rng.below(2) == 0, now()).unwrap(),
                    Some(Action::Deliver(env)) => {
                        assert!(!env.recipients.is_empty());
                        let result = match rng.below(3) {
                            0 => DeliveryResult::Queued("Q".into()),
                            1 => DeliveryResult::TemporaryFailure,
                            _ => DeliveryResult::InsufficientStorage,
                        };
                        s.delivered(result, now()).unwrap()
                    }
                };
            }
            assert!(s.inbuf.len() <= AUTH_LINE_MAX + 300 || s.awaiting_action());
        }
    }
}

#[test]
fn random_bytes_in_data_always_resync_on_the_real_terminator() {
    let mut rng = XorShift(42);
    for _ in 0..200 {
        let mut s = start(loopback(), false);
        open_data(&mut s);
        let mut junk: Vec<u8> = (0..rng.below(3000)).map(|_| b"a.\r\n"[rng.below(4)]).collect();
        // Make sure the junk itself cannot contain the real terminator.
        while let Some(p) = junk.windows(5).position(|w| w == b"\r\n.\r\n") {
            junk[p + 2] = b'x';
        }
        if junk.starts_with(b".\r\n") {
            junk[0] = b'x';
        }
        junk.extend_from_slice(b"\r\n.\r\nNOOP\r\n");
        let out = s.feed(&junk, now());
        match out.action {
            Some(Action::Deliver(_)) => {
                let out = s.delivered(DeliveryResult::Queued("Q".into()), now()).unwrap();
                assert!(text(&out).ends_with("250 2.0.0 Ok\r\n"));
            }
            _ => assert!(text(&out).ends_with("250 2.0.0 Ok\r\n"), "{}", text(&out)),
        }
    }
}

/// Feeds and returns the refusals reported with the replies.
fn refusals(s: &mut Session, input: &str) -> Vec<Refusal> {
    s.feed(input.as_bytes(), now()).refusals
}

#[test]
fn policy_refusals_are_reported_protocol_slips_are_not() {
    let mut s = start(stranger(), false);
    assert!(refusals(&mut s, "EHLO client.example\r\nNOOP\r\nXYZZY\r\n").is_empty());
    assert!(refusals(&mut s, "MAIL FROM:<a@example.test>\r\n").is_empty());
    assert_eq!(
        refusals(&mut s, "RCPT TO:<b@example.org>\r\nRCPT TO:<c@example.org>\r\n"),
        [Refusal::RelayDenied, Refusal::RelayDenied]
    );

    let mut c = config();
    c.sender_domains = Some(DomainList::new(["example.test"]).unwrap());
    c.recipient_domains = Some(DomainList::new(["example.org"]).unwrap());
    c.max_message_size = 100;
    let mut s = start_with(c, loopback(), false);
    ehlo(&mut s);
    assert_eq!(
        refusals(&mut s, "MAIL FROM:<a@other.test>\r\n"),
        [Refusal::SenderDomain]
    );
    assert_eq!(refusals(&mut s, "MAIL FROM:<>\r\n"), [Refusal::SenderDomain]);
    assert_eq!(
        refusals(&mut s, "MAIL FROM:<a@example.test> SIZE=101\r\n"),
        [Refusal::MessageSize]
    );
    assert!(refusals(&mut s, "MAIL FROM:<a@example.test>\r\n").is_empty());
    assert_eq!(
        refusals(&mut s, "RCPT TO:<b@corp.test>\r\n"),
        [Refusal::RecipientDomain]
    );
    let big = format!("RCPT TO:<b@example.org>\r\nDATA\r\n{}\r\n.\r\n", "x".repeat(200));
    assert_eq!(refusals(&mut s, &big), [Refusal::MessageSize]);
    let smuggle = "MAIL FROM:<a@example.test>\r\nRCPT TO:<b@example.org>\r\nDATA\r\nhi\nthere\r\n.\r\n";
    assert_eq!(refusals(&mut s, smuggle), [Refusal::BareLineEnding]);

    let mut s = start(loopback(), false);
    assert_eq!(refusals(&mut s, "GET / HTTP/1.1\r\n"), [Refusal::NotSmtp]);
    let mut s = start(loopback(), false);
    let junk = "XYZZY\r\n".repeat(MAX_ERRORS as usize);
    assert_eq!(refusals(&mut s, &junk), [Refusal::TooManyErrors]);
}
