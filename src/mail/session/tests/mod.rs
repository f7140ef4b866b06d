//! Fixtures shared by the session's tests (in-memory, no sockets: bytes in, replies out), and the
//! tests of whole dialogues. Each part's own tests sit next to it (`commands/tests.rs`, ...).

mod dialogue;
mod robustness;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use super::{Action, Output, Peer, Session, SessionConfig};
use crate::mail::address::Hostname;
use crate::mail::envelope::Envelope;

/// Tue, 14 Nov 2023 22:13:20 +0000
pub(super) fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

pub(super) fn config() -> SessionConfig {
    let mut config = SessionConfig::new(Hostname::new("mx.example.test").unwrap());
    config.tls_available = true;
    config.auth_enabled = true;
    config
}

pub(super) fn loopback() -> Peer {
    Peer {
        ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        trusted: true,
    }
}

pub(super) fn stranger() -> Peer {
    Peer {
        ip: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)),
        trusted: false,
    }
}

pub(super) fn start_with(config: SessionConfig, peer: Peer, tls: bool) -> Session {
    let (session, out) = Session::new(Arc::new(config), peer, tls);
    assert_eq!(text(&out), "220 mx.example.test ESMTP vestibule\r\n");
    session
}

pub(super) fn start(peer: Peer, tls: bool) -> Session {
    start_with(config(), peer, tls)
}

pub(super) fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.replies).into_owned()
}

/// Feeds and returns the replies; asserts no action and no close.
pub(super) fn say(s: &mut Session, input: &str) -> String {
    let out = s.feed(input.as_bytes(), now());
    assert!(out.action.is_none(), "unexpected action {:?}", out.action);
    text(&out)
}

pub(super) fn ehlo(s: &mut Session) {
    let r = say(s, "EHLO client.example\r\n");
    assert!(r.starts_with("250-mx.example.test\r\n"), "{r}");
}

pub(super) fn b64(data: &[u8]) -> String {
    STANDARD.encode(data)
}

/// Runs a transaction up to 354 from a trusted peer.
pub(super) fn open_data(s: &mut Session) {
    ehlo(s);
    assert_eq!(say(s, "MAIL FROM:<a@example.test>\r\n"), "250 2.1.0 Ok\r\n");
    assert_eq!(say(s, "RCPT TO:<b@example.org>\r\n"), "250 2.1.5 Ok\r\n");
    assert_eq!(say(s, "DATA\r\n"), "354 End data with <CR><LF>.<CR><LF>\r\n");
}

pub(super) fn expect_deliver(out: Output) -> Envelope {
    assert!(out.replies.is_empty(), "{}", text(&out));
    match out.action {
        Some(Action::Deliver(env)) => env,
        other => panic!("expected Deliver, got {other:?}"),
    }
}

/// The body without our Received header.
pub(super) fn message(env: &Envelope) -> &[u8] {
    let pos = env.body.windows(7).position(|w| w == b" +0000\r").unwrap();
    &env.body[pos + 8..]
}
