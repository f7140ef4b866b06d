//! The SMTP server side of the mail relay as a pure state machine: bytes in, reply bytes and
//! [`Action`]s out. No sockets, no TLS, no clock, no disk.
//!
//! # What it owns
//! Every protocol rule of the receiving side of the relay (spec `mail-relay.md`, sections "What
//! Mattermost does on the wire" and "Receiving"): the greeting, EHLO/HELO and the exact extension
//! keywords Mattermost's Go client matches (case-sensitively), the envelope (MAIL, RCPT) with address
//! validation and the relay rule, STARTTLS sequencing, the AUTH PLAIN/LOGIN exchanges, DATA framing
//! (dot-unstuffing, the CRLF.CRLF terminator, bare CR/LF rejection), every limit, the error counter,
//! and the `Received:` header we prepend.
//!
//! # What it must never do
//! - Perform I/O. The I/O layer reads the socket, calls [`Session::feed`], writes [`Output::replies`],
//!   performs the [`Action`] and feeds the result back. Timeouts (`COMMAND_TIMEOUT`), connection caps
//!   and the AUTH failure delay (`AUTH_FAILURE_DELAY`) are the I/O layer's job.
//! - See a password database: credentials leave as [`Action::CheckCredentials`], and the password is a
//!   [`Password`] whose `Debug` prints `<redacted>`.
//! - Say `250` to a message on its own: only the spool may, through [`Session::delivered`] after it has
//!   made the message durable.
//! - Act as an open relay: RCPT is refused with `554 5.7.1` unless the peer is on a trusted network or
//!   has authenticated (and AUTH is only offered over TLS, or to trusted peers if configured).
//! - Panic or grow without bound on any input: every buffer has a named limit below.
//!
//! # Standards
//! RFC 5321 (SMTP), 3207 (STARTTLS), 4954 (AUTH), 4616 (PLAIN), 2920 (PIPELINING), 2034 (enhanced
//! status codes), 1870 (SIZE), 6152 (8BITMIME), 3848 (the `with ESMTPSA` protocol names). Defences:
//! CVE-2011-0411 (plaintext pipelined after STARTTLS is discarded), CVE-2023-51764 (SMTP smuggling: the
//! only terminator is `<CRLF>.<CRLF>`, and a message with any bare CR or LF is rejected).
//!
//! # Driving it (the I/O layer)
//! 1. `let (mut session, out) = Session::new(config, peer, implicit_tls);` and write `out.replies`.
//! 2. For every chunk read: `let mut out = session.feed(&chunk, SystemTime::now());` then loop:
//!    write `out.replies` (they are batched in order; flush when no more input is buffered, RFC 2920);
//!    if `out.close`, flush and close; otherwise perform `out.action`, if any:
//!    - [`Action::StartTls`]: flush the `220`, throw away any bytes already read but not fed (the
//!      machine already threw away its own), run the handshake, then call
//!      [`Session::tls_established`]. A failed handshake simply ends the connection.
//!    - [`Action::CheckCredentials`]: check them (waiting `AUTH_FAILURE_DELAY` on failure), then
//!      `out = session.auth_result(ok, now)?`.
//!    - [`Action::Deliver`]: spool durably, then `out = session.delivered(result, now)?`.
//!
//!    While an action is outstanding the machine processes no input (it keeps up to
//!    `MAX_BUFFERED_INPUT` bytes for later); the I/O layer should simply stop reading.
//! 3. On EOF, drop the session. Mattermost closes the socket right after the final `250` without
//!    QUIT: that is success, nothing is lost, because a message is only acknowledged after the spool
//!    committed it. EOF in the middle of DATA drops the partial message (it was never acknowledged);
//!    EOF while a `Deliver` is outstanding should still let the spool finish (delivery is at least
//!    once; the client will retry and the message may arrive twice).
//!
//! # States
//! ```text
//!  new() --220--> Command <-------------------------------------------------------------+
//!                  |  EHLO/HELO, MAIL, RCPT, RSET, NOOP, VRFY (the envelope is a field)  |
//!                  |                                                                     |
//!                  +--STARTTLS 220--> AwaitingTls --tls_established()--> Command (fresh:  |
//!                  |                   (pipelined bytes discarded)       EHLO again)     |
//!                  +--AUTH--> AuthPlainResponse | AuthLoginUsername -> AuthLoginPassword  |
//!                  |            | ("*" or error: 501/535 back to Command)                 |
//!                  |            +--> AwaitingAuth --auth_result()--> 235 / 535 ----------+
//!                  +--DATA 354--> Data --CRLF.CRLF--> AwaitingDelivery --delivered()----+
//!                  |                 +-- bare CR/LF, long line, too big: 550/500/552 ----+
//!                  +--QUIT 221, 20th error 421, HTTP verb 421, timeout()/shutdown()--> Closed
//! ```
//!
//! # Layout
//! This file holds the limits, the types exchanged with the I/O layer and the calls it makes;
//! `commands` reads lines and dispatches commands, `transaction` handles MAIL and RCPT, `data`
//! receives the message text and builds the envelope, `auth` handles STARTTLS and AUTH. Addresses
//! live in [`super::address`], the envelope in [`super::envelope`].

mod auth;
mod commands;
mod data;
mod transaction;

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

pub use super::refusal::Refusal;
pub use auth::{AuthMechanism, Password};

use super::address::{Address, DomainList, Hostname};
use super::envelope::{BodyType, Envelope};
use data::DataReceiver;

/// Longest command line, CRLF included (RFC 5321 4.5.3.1.4).
pub(crate) const COMMAND_LINE_MAX: usize = 512;
/// Longest AUTH command or AUTH exchange line, CRLF included (RFC 4954 section 4): an initial response
/// carrying a long password does not fit in 512 octets.
pub(crate) const AUTH_LINE_MAX: usize = 12_288;
/// Longest line of message text, CRLF included, after dot-unstuffing (RFC 5321 4.5.3.1.6).
pub(crate) const TEXT_LINE_MAX: usize = 1000;
/// Default recipients per transaction: RFC 5321 4.5.3.1.8 says a server must accept at least 100.
pub(crate) const DEFAULT_MAX_RECIPIENTS: usize = 100;
/// Default message size limit; Mattermost notifications are a few tens of kilobytes.
pub(crate) const DEFAULT_MAX_MESSAGE_SIZE: usize = 10 * 1024 * 1024;
/// Protocol or policy errors after which the session replies 421 and closes (spec: "~20 errors",
/// Postfix's `smtpd_hard_error_limit`). Resource replies (452, 552, 451) do not count.
pub(crate) const MAX_ERRORS: u32 = 20;
/// Bytes kept while an action is outstanding. A well-behaved client pipelines at most the next few
/// commands (for example QUIT after the end of data); more means the I/O layer kept reading when it
/// should have waited, or the client is flooding: the session then closes after answering the action.
pub(crate) const MAX_BUFFERED_INPUT: usize = 64 * 1024;
/// Default of how long the I/O layer waits for a command line or a line of DATA (`[mail]
/// idle_timeout`; spec: ~120 s; RFC 5321 4.5.3.2 suggests minutes, but our clients are local and
/// quick, and idle sessions hold resources).
pub(crate) const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);
/// How long the I/O layer should wait before calling [`Session::auth_result`] with `false`, to slow
/// down password guessing (Postfix's `smtpd_error_sleep_time`).
pub(crate) const AUTH_FAILURE_DELAY: Duration = Duration::from_secs(1);

/// Static settings shared by all sessions of one listener.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Our name in the greeting, EHLO reply and `Received:` header.
    pub hostname: Hostname,
    /// Largest message accepted, in octets as received after dot-unstuffing (our own `Received:`
    /// header is not counted). Advertised as `SIZE <n>`.
    pub max_message_size: usize,
    /// Recipients per transaction; more get `452 4.5.3`.
    pub max_recipients: usize,
    /// Whether a certificate is loaded, so STARTTLS can be offered.
    pub tls_available: bool,
    /// Whether AUTH is offered at all.
    pub auth_enabled: bool,
    /// Offer AUTH without TLS to peers on trusted networks (default off: Go's net/smtp refuses
    /// plaintext AUTH anyway, and trusted peers may relay without it).
    pub auth_on_plaintext_for_trusted: bool,
    /// If set, only these envelope sender domains are accepted (`550 5.7.1` otherwise; the null
    /// sender `<>` is then refused too, since it has no domain to check).
    pub sender_domains: Option<DomainList>,
    /// If set, only these recipient domains are accepted (`550 5.7.1` otherwise).
    pub recipient_domains: Option<DomainList>,
}

impl SessionConfig {
    /// Defaults: 10 MiB, 100 recipients, no TLS, no AUTH, no allow-lists.
    pub fn new(hostname: Hostname) -> Self {
        SessionConfig {
            hostname,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            max_recipients: DEFAULT_MAX_RECIPIENTS,
            tls_available: false,
            auth_enabled: false,
            auth_on_plaintext_for_trusted: false,
            sender_domains: None,
            recipient_domains: None,
        }
    }
}

/// The connected client, as the I/O layer classified it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    /// Client address (goes into `Received:`).
    pub ip: IpAddr,
    /// Whether `ip` is on a configured trusted network (may relay without AUTH).
    pub trusted: bool,
}

/// Something only the I/O layer can do. While one is outstanding the session processes no input.
#[derive(Debug)]
pub enum Action {
    /// The `220` is in the replies: flush it, DISCARD every byte already read from the socket but not
    /// fed (CVE-2011-0411), run the TLS handshake, then call [`Session::tls_established`].
    StartTls {
        /// Bytes the client pipelined after STARTTLS that the machine itself threw away; non-zero is
        /// worth a log line (a client trying command injection, or a broken one).
        discarded: usize,
    },
    /// Check the credentials, then call [`Session::auth_result`].
    CheckCredentials {
        /// Mechanism used (for logs and metrics).
        mechanism: AuthMechanism,
        /// Authentication identity. A PLAIN authorization identity different from it was already
        /// refused by the machine, so there is none to check.
        username: String,
        /// The password.
        password: Password,
    },
    /// Make the message durable (spec: 250 only after fsync), then call [`Session::delivered`].
    Deliver(Envelope),
}

/// The spool's answer to [`Action::Deliver`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryResult {
    /// Durably queued under this id: `250 2.0.0 queued as <id>`.
    Queued(String),
    /// Temporary local failure: `451 4.3.0`.
    TemporaryFailure,
    /// Disk full: `452 4.3.1 Insufficient system storage`.
    InsufficientStorage,
}

/// What the I/O layer must do after a call, in this order: write `replies`, perform `action`, and
/// close the connection once `replies` are flushed if `close`. `action` and `close` are never both set.
#[must_use]
#[derive(Debug, Default)]
pub struct Output {
    /// Ready-to-write reply bytes, possibly several replies (pipelining), each ending in CRLF.
    pub replies: Vec<u8>,
    /// At most one action; no input is processed until its result is fed back.
    pub action: Option<Action>,
    /// Close after writing `replies` (QUIT, too many errors, timeout, shutdown).
    pub close: bool,
    /// Refusals among `replies` worth counting and logging (empty, so not allocated, in a normal
    /// dialogue). See [`Refusal`] for which replies are reported.
    pub refusals: Vec<Refusal>,
}

/// A result method was called while the session was not waiting for that result: a bug in the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiMisuse(&'static str);

impl fmt::Display for ApiMisuse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "smtp session api misuse: {} (please file a bug)", self.0)
    }
}

impl std::error::Error for ApiMisuse {}

enum State {
    /// Reading command lines.
    Command,
    /// `334 ` sent after `AUTH PLAIN`; the next line is the response.
    AuthPlainResponse,
    /// `334 VXNlcm5hbWU6` sent.
    AuthLoginUsername,
    /// `334 UGFzc3dvcmQ6` sent.
    AuthLoginPassword { username: String },
    /// STARTTLS accepted; waiting for the handshake. Input is discarded, not buffered.
    AwaitingTls,
    /// Credentials handed out; waiting for [`Session::auth_result`].
    AwaitingAuth { username: String },
    /// Receiving message text.
    Data(DataReceiver),
    /// Message handed out; waiting for [`Session::delivered`].
    AwaitingDelivery,
    /// Nothing more will be processed.
    Closed,
}

struct Helo {
    name: String,
    /// EHLO (true) or HELO (false): decides extensions and enhanced status codes.
    extended: bool,
}

struct Transaction {
    sender: Option<Address>,
    recipients: Vec<Address>,
    body_type: BodyType,
    declared_size: Option<u64>,
}

/// One SMTP server session. See the module documentation for how to drive it.
pub struct Session {
    config: Arc<SessionConfig>,
    peer: Peer,
    tls: bool,
    state: State,
    helo: Option<Helo>,
    auth_user: Option<String>,
    txn: Option<Transaction>,
    errors: u32,
    storage_low: bool,
    /// Unprocessed input: a partial line, or input that arrived while an action was outstanding.
    inbuf: Vec<u8>,
    /// Inside an overlong line: drop bytes up to the next LF, then reply 500 5.5.6 once.
    discarding_line: bool,
    /// More than [`MAX_BUFFERED_INPUT`] arrived while an action was outstanding.
    input_overflow: bool,
    out: Vec<u8>,
    action: Option<Action>,
    close: bool,
    refusals: Vec<Refusal>,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("peer", &self.peer)
            .field("tls", &self.tls)
            .field("auth_user", &self.auth_user)
            .field("errors", &self.errors)
            .field("closed", &self.close)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// Starts a session. `tls` is true on an implicit-TLS listener (the handshake is already done).
    /// The output carries the greeting `220 <hostname> ESMTP vestibule`.
    pub fn new(config: Arc<SessionConfig>, peer: Peer, tls: bool) -> (Session, Output) {
        let greeting = format!("220 {} ESMTP vestibule\r\n", config.hostname);
        let mut session = Session {
            config,
            peer,
            tls,
            state: State::Command,
            helo: None,
            auth_user: None,
            txn: None,
            errors: 0,
            storage_low: false,
            inbuf: Vec::new(),
            discarding_line: false,
            input_overflow: false,
            out: Vec::new(),
            action: None,
            close: false,
            refusals: Vec::new(),
        };
        session.out.extend_from_slice(greeting.as_bytes());
        let output = session.take_output();
        (session, output)
    }

    /// Feeds bytes read from the client. `now` dates the `Received:` header if a DATA command is
    /// processed. Replies to everything complete in `input` come back in order.
    pub fn feed(&mut self, input: &[u8], now: SystemTime) -> Output {
        match self.state {
            State::Closed => {}
            // Anything still arriving in plaintext after STARTTLS is exactly what CVE-2011-0411
            // exploits: it must never be executed after the handshake.
            State::AwaitingTls => {}
            State::AwaitingAuth { .. } | State::AwaitingDelivery => self.hold(input),
            _ => {
                self.inbuf.extend_from_slice(input);
                self.run(now);
            }
        }
        self.take_output()
    }

    /// The TLS handshake requested by [`Action::StartTls`] succeeded. The session forgets everything
    /// learned in plaintext (RFC 3207 4.2): the client must send EHLO again.
    pub fn tls_established(&mut self) -> Result<(), ApiMisuse> {
        if !matches!(self.state, State::AwaitingTls) {
            return Err(ApiMisuse("tls_established without a StartTls action"));
        }
        self.tls = true;
        self.helo = None;
        self.auth_user = None;
        self.txn = None;
        self.inbuf.clear();
        self.discarding_line = false;
        self.state = State::Command;
        Ok(())
    }

    /// The answer to [`Action::CheckCredentials`]. Then processes input held meanwhile.
    pub fn auth_result(&mut self, ok: bool, now: SystemTime) -> Result<Output, ApiMisuse> {
        if !matches!(self.state, State::AwaitingAuth { .. }) {
            return Err(ApiMisuse("auth_result without a CheckCredentials action"));
        }
        let State::AwaitingAuth { username } = std::mem::replace(&mut self.state, State::Command) else {
            return Err(ApiMisuse("unreachable: state changed under auth_result"));
        };
        if ok {
            self.auth_user = Some(username);
            self.reply(235, "2.7.0", "Authentication successful");
        } else {
            self.reject(535, "5.7.8", "Authentication credentials invalid");
        }
        Ok(self.resume(now))
    }

    /// The answer to [`Action::Deliver`]. Then processes input held meanwhile.
    pub fn delivered(&mut self, result: DeliveryResult, now: SystemTime) -> Result<Output, ApiMisuse> {
        if !matches!(self.state, State::AwaitingDelivery) {
            return Err(ApiMisuse("delivered without a Deliver action"));
        }
        self.state = State::Command;
        match result {
            DeliveryResult::Queued(id) => {
                // The id comes from our spool, but a reply line must never carry CR or LF.
                let id: String = id.chars().filter(|c| c.is_ascii_graphic()).collect();
                self.reply(250, "2.0.0", &format!("queued as {id}"));
            }
            DeliveryResult::TemporaryFailure => {
                self.reply(451, "4.3.0", "Temporary local problem, try again later")
            }
            DeliveryResult::InsufficientStorage => self.reply(452, "4.3.1", "Insufficient system storage"),
        }
        Ok(self.resume(now))
    }

    /// Tells the session whether the spool is short of space; while it is, MAIL gets
    /// `452 4.3.1` (spec: "check free space at MAIL"). The I/O layer owns the check.
    pub fn set_storage_low(&mut self, low: bool) {
        self.storage_low = low;
    }

    /// The I/O layer's timeout fired: `421 4.4.2` and close.
    pub fn timeout(&mut self) -> Output {
        if !self.close {
            let text = format!("{} Error: timeout exceeded", self.config.hostname);
            self.reply(421, "4.4.2", &text);
            self.shut();
        }
        self.take_output()
    }

    /// The daemon is stopping: `421 4.3.2` and close.
    pub fn shutdown(&mut self) -> Output {
        if !self.close {
            let text = format!("{} Service shutting down", self.config.hostname);
            self.reply(421, "4.3.2", &text);
            self.shut();
        }
        self.take_output()
    }

    /// Whether the session is over (the I/O layer should close after writing).
    pub fn is_closed(&self) -> bool {
        self.close
    }

    /// Whether an action is outstanding (the I/O layer should not read meanwhile).
    pub fn awaiting_action(&self) -> bool {
        matches!(
            self.state,
            State::AwaitingTls | State::AwaitingAuth { .. } | State::AwaitingDelivery
        )
    }

    /// Whether a message is being received or queued (a stop lets it finish).
    pub fn in_message(&self) -> bool {
        matches!(self.state, State::Data(_) | State::AwaitingDelivery)
    }

    /// Whether the session runs over TLS (implicit or after STARTTLS).
    pub fn tls_active(&self) -> bool {
        self.tls
    }

    /// The authenticated user, if any.
    pub fn authenticated_user(&self) -> Option<&str> {
        self.auth_user.as_deref()
    }

    // --- plumbing ----------------------------------------------------------------------------------

    fn take_output(&mut self) -> Output {
        Output {
            replies: std::mem::take(&mut self.out),
            action: self.action.take(),
            close: self.close,
            refusals: std::mem::take(&mut self.refusals),
        }
    }

    /// Keeps input that arrives while an action is outstanding, within [`MAX_BUFFERED_INPUT`].
    fn hold(&mut self, input: &[u8]) {
        if self.inbuf.len() + input.len() > MAX_BUFFERED_INPUT {
            self.input_overflow = true;
        } else {
            self.inbuf.extend_from_slice(input);
        }
    }

    fn resume(&mut self, now: SystemTime) -> Output {
        if self.input_overflow && !self.close {
            let text = format!(
                "{} Too much pipelined input, closing connection",
                self.config.hostname
            );
            self.refusals.push(Refusal::TooMuchInput);
            self.reply(421, "4.7.0", &text);
            self.shut();
        }
        if !self.close {
            self.run(now);
        }
        self.take_output()
    }

    fn shut(&mut self) {
        self.state = State::Closed;
        self.close = true;
        self.txn = None;
        self.inbuf = Vec::new();
    }

    /// Enhanced status codes are sent once the client said EHLO (RFC 2034), not after HELO.
    fn esmtp(&self) -> bool {
        self.helo.as_ref().is_some_and(|h| h.extended)
    }

    fn reply(&mut self, code: u16, enhanced: &str, text: &str) {
        let line = if self.esmtp() {
            format!("{code} {enhanced} {text}\r\n")
        } else {
            format!("{code} {text}\r\n")
        };
        self.out.extend_from_slice(line.as_bytes());
    }

    /// A reply to a protocol or policy violation: counts towards [`MAX_ERRORS`].
    fn reject(&mut self, code: u16, enhanced: &str, text: &str) {
        self.reply(code, enhanced, text);
        self.errors += 1;
        if self.errors >= MAX_ERRORS && !self.close {
            let text = format!("{} Too many errors, closing connection", self.config.hostname);
            self.refusals.push(Refusal::TooManyErrors);
            self.reply(421, "4.7.0", &text);
            self.shut();
        }
    }
}

#[cfg(test)]
mod tests;
