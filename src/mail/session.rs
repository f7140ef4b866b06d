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
//!   performs the [`Action`] and feeds the result back. Timeouts ([`COMMAND_TIMEOUT`]), connection caps
//!   and the AUTH failure delay ([`AUTH_FAILURE_DELAY`]) are the I/O layer's job.
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
//!    - [`Action::CheckCredentials`]: check them (waiting [`AUTH_FAILURE_DELAY`] on failure), then
//!      `out = session.auth_result(ok, now)?`.
//!    - [`Action::Deliver`]: spool durably, then `out = session.delivered(result, now)?`.
//!
//!    While an action is outstanding the machine processes no input (it keeps up to
//!    [`MAX_BUFFERED_INPUT`] bytes for later); the I/O layer should simply stop reading.
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

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use super::refusal::Refusal;

/// Longest command line, CRLF included (RFC 5321 4.5.3.1.4).
pub const COMMAND_LINE_MAX: usize = 512;
/// Longest AUTH command or AUTH exchange line, CRLF included (RFC 4954 section 4): an initial response
/// carrying a long password does not fit in 512 octets.
pub const AUTH_LINE_MAX: usize = 12_288;
/// Longest line of message text, CRLF included, after dot-unstuffing (RFC 5321 4.5.3.1.6).
pub const TEXT_LINE_MAX: usize = 1000;
/// Longest local part of an address (RFC 5321 4.5.3.1.1).
pub const LOCAL_PART_MAX: usize = 64;
/// Longest domain (RFC 5321 4.5.3.1.2).
pub const DOMAIN_MAX: usize = 255;
/// Longest reverse- or forward-path, angle brackets included (RFC 5321 4.5.3.1.3).
pub const PATH_MAX: usize = 256;
/// Longest DNS label (RFC 1035 2.3.4).
const LABEL_MAX: usize = 63;
/// Default recipients per transaction: RFC 5321 4.5.3.1.8 says a server must accept at least 100.
pub const DEFAULT_MAX_RECIPIENTS: usize = 100;
/// Default message size limit; Mattermost notifications are a few tens of kilobytes.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 10 * 1024 * 1024;
/// Protocol or policy errors after which the session replies 421 and closes (spec: "~20 errors",
/// Postfix's `smtpd_hard_error_limit`). Resource replies (452, 552, 451) do not count.
pub const MAX_ERRORS: u32 = 20;
/// Bytes kept while an action is outstanding. A well-behaved client pipelines at most the next few
/// commands (for example QUIT after the end of data); more means the I/O layer kept reading when it
/// should have waited, or the client is flooding: the session then closes after answering the action.
pub const MAX_BUFFERED_INPUT: usize = 64 * 1024;
/// Default of how long the I/O layer waits for a command line or a line of DATA (`[mail]
/// idle_timeout`; spec: ~120 s; RFC 5321 4.5.3.2 suggests minutes, but our clients are local and
/// quick, and idle sessions hold resources).
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);
/// How long the I/O layer should wait before calling [`Session::auth_result`] with `false`, to slow
/// down password guessing (Postfix's `smtpd_error_sleep_time`).
pub const AUTH_FAILURE_DELAY: Duration = Duration::from_secs(1);

/// Challenge of AUTH LOGIN for the user name: base64 of `Username:`, byte-exact as Go clients expect.
const LOGIN_USERNAME_CHALLENGE: &str = "334 VXNlcm5hbWU6\r\n";
/// Challenge of AUTH LOGIN for the password: base64 of `Password:`.
const LOGIN_PASSWORD_CHALLENGE: &str = "334 UGFzc3dvcmQ6\r\n";

// ---------------------------------------------------------------------------------------------------
// Configuration types
// ---------------------------------------------------------------------------------------------------

/// A domain name that failed validation (configuration input, not SMTP input).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidDomain {
    /// The rejected value.
    pub value: String,
    /// Why it was rejected.
    pub reason: &'static str,
}

impl fmt::Display for InvalidDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid domain '{}': {}", self.value, self.reason)
    }
}

impl std::error::Error for InvalidDomain {}

/// Our own host name, validated once so it can go into the greeting and `Received:` unchecked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hostname(String);

impl Hostname {
    /// Validates `name` as a DNS name (letters, digits, hyphens; labels of 1 to 63 octets).
    pub fn new(name: &str) -> Result<Self, InvalidDomain> {
        check_domain(name).map_err(|reason| InvalidDomain {
            value: name.to_owned(),
            reason,
        })?;
        Ok(Hostname(name.to_owned()))
    }

    /// The name as configured.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Hostname {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An allow-list of domains, lower-cased once. `example.com` matches exactly that domain;
/// `.example.com` matches any subdomain of it (not the domain itself), as in Postfix tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainList(Vec<String>);

impl DomainList {
    /// Validates and lower-cases every entry.
    pub fn new<I, S>(entries: I) -> Result<Self, InvalidDomain>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut list = Vec::new();
        for entry in entries {
            let entry = entry.as_ref();
            let name = entry.strip_prefix('.').unwrap_or(entry);
            check_domain(name).map_err(|reason| InvalidDomain {
                value: entry.to_owned(),
                reason,
            })?;
            list.push(entry.to_ascii_lowercase());
        }
        Ok(DomainList(list))
    }

    /// Whether `domain` (already lower-case, as in [`Address::domain`]) is allowed.
    pub fn matches(&self, domain: &str) -> bool {
        self.0.iter().any(|entry| {
            if entry.starts_with('.') {
                domain.ends_with(entry.as_str())
            } else {
                domain == entry
            }
        })
    }
}

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

// ---------------------------------------------------------------------------------------------------
// Addresses
// ---------------------------------------------------------------------------------------------------

/// Why a mailbox address was refused. The `Display` text is sent to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AddressError {
    /// Longer than [`PATH_MAX`] with brackets.
    PathTooLong,
    /// Local part longer than [`LOCAL_PART_MAX`].
    LocalPartTooLong,
    /// Domain longer than [`DOMAIN_MAX`].
    DomainTooLong,
    /// A control character (or DEL).
    ControlCharacter,
    /// Non-ASCII octets: SMTPUTF8 is not offered.
    NonAscii,
    /// `@a,@b:user@c`: an open-relay trick, refused although RFC 5321 says to ignore it.
    SourceRoute,
    /// `user%host@relay`: the percent hack, an open-relay trick.
    PercentHack,
    /// `host!user`: a UUCP bang path, an open-relay trick.
    BangPath,
    /// More than one `@`.
    MultipleAt,
    /// No `@` at all.
    MissingAt,
    /// Nothing before the `@`.
    EmptyLocalPart,
    /// Nothing after the `@`.
    EmptyDomain,
    /// `"quoted"@local.parts`: legal but only used by tricks; refused.
    QuotedLocalPart,
    /// A character not allowed in a dot-atom local part, or misplaced dots.
    InvalidLocalPart,
    /// `user@[192.0.2.1]`: we relay by DNS name only.
    AddressLiteral,
    /// Not a valid DNS name.
    InvalidDomain,
}

impl fmt::Display for AddressError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AddressError::PathTooLong => "address longer than 256 octets",
            AddressError::LocalPartTooLong => "local part longer than 64 octets",
            AddressError::DomainTooLong => "domain longer than 255 octets",
            AddressError::ControlCharacter => "control character in address",
            AddressError::NonAscii => "non-ASCII address (SMTPUTF8 is not supported)",
            AddressError::SourceRoute => "source routes are not accepted",
            AddressError::PercentHack => "'%' is not accepted in addresses",
            AddressError::BangPath => "'!' is not accepted in addresses",
            AddressError::MultipleAt => "more than one '@'",
            AddressError::MissingAt => "missing '@domain'",
            AddressError::EmptyLocalPart => "empty local part",
            AddressError::EmptyDomain => "empty domain",
            AddressError::QuotedLocalPart => "quoted local parts are not accepted",
            AddressError::InvalidLocalPart => "invalid character or dot in local part",
            AddressError::AddressLiteral => "address literals are not accepted",
            AddressError::InvalidDomain => "invalid domain",
        })
    }
}

impl std::error::Error for AddressError {}

/// A validated mailbox `local@domain`. The local part is kept as sent (it is case-sensitive); the
/// domain is lower-cased (it is not), so comparisons and allow-lists need no further folding.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Address {
    local: String,
    domain: String,
}

impl Address {
    /// Parses the text between `<` and `>` of a path. Stricter than RFC 5321 on purpose: no source
    /// routes, quoted local parts, address literals, `%` or `!` (see [`AddressError`]).
    pub fn parse(s: &str) -> Result<Address, AddressError> {
        if s.len() + 2 > PATH_MAX {
            return Err(AddressError::PathTooLong);
        }
        if s.bytes().any(|b| b < 0x20 || b == 0x7f) {
            return Err(AddressError::ControlCharacter);
        }
        if !s.is_ascii() {
            return Err(AddressError::NonAscii);
        }
        if s.starts_with('@') {
            return Err(AddressError::SourceRoute);
        }
        if s.starts_with('"') {
            return Err(AddressError::QuotedLocalPart);
        }
        if s.contains('%') {
            return Err(AddressError::PercentHack);
        }
        if s.contains('!') {
            return Err(AddressError::BangPath);
        }
        let (local, domain) = match s.split_once('@') {
            None => return Err(AddressError::MissingAt),
            Some((_, domain)) if domain.contains('@') => return Err(AddressError::MultipleAt),
            Some(parts) => parts,
        };
        if local.is_empty() {
            return Err(AddressError::EmptyLocalPart);
        }
        if domain.is_empty() {
            return Err(AddressError::EmptyDomain);
        }
        if local.len() > LOCAL_PART_MAX {
            return Err(AddressError::LocalPartTooLong);
        }
        if domain.len() > DOMAIN_MAX {
            return Err(AddressError::DomainTooLong);
        }
        let atoms_ok = local
            .split('.')
            .all(|atom| !atom.is_empty() && atom.bytes().all(is_atext));
        if !atoms_ok {
            return Err(AddressError::InvalidLocalPart);
        }
        if domain.starts_with('[') {
            return Err(AddressError::AddressLiteral);
        }
        check_domain(domain).map_err(|_| AddressError::InvalidDomain)?;
        Ok(Address {
            local: local.to_owned(),
            domain: domain.to_ascii_lowercase(),
        })
    }

    /// The local part, as sent.
    pub fn local_part(&self) -> &str {
        &self.local
    }

    /// The domain, lower-case.
    pub fn domain(&self) -> &str {
        &self.domain
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.local, self.domain)
    }
}

/// RFC 5322 `atext`. `%` and `!` are in it but were refused before this is called.
fn is_atext(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&b)
}

/// RFC 5321 `Domain` (LDH labels), with lengths. Returns the reason on failure.
fn check_domain(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("empty");
    }
    if name.len() > DOMAIN_MAX {
        return Err("longer than 255 octets");
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err("empty label");
        }
        if label.len() > LABEL_MAX {
            return Err("label longer than 63 octets");
        }
        if !label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err("only letters, digits, '-' and '.' are allowed");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err("label starts or ends with '-'");
        }
    }
    Ok(())
}

/// Whether an EHLO/HELO argument is safe to copy into our `Received:` header. Deliberately looser
/// than a domain (Go's net/smtp sends the SiteURL host verbatim, which may be a bare IP or contain
/// `_`), but limited to characters that cannot break a header or a log line.
fn valid_helo(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= DOMAIN_MAX
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._:[]".contains(&b))
}

// ---------------------------------------------------------------------------------------------------
// Actions, results and output
// ---------------------------------------------------------------------------------------------------

/// A password on its way to the checker. `Debug` never prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(Vec<u8>);

impl Password {
    /// The password octets, for the checker only: never log them.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// The SASL mechanism the client used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMechanism {
    /// RFC 4616.
    Plain,
    /// The de facto LOGIN mechanism (Username:/Password: challenges).
    Login,
}

/// The `BODY=` the client declared at MAIL (RFC 6152). Informational: 8-bit data is accepted either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyType {
    /// `BODY=7BIT` or nothing declared.
    SevenBit,
    /// `BODY=8BITMIME`.
    EightBitMime,
}

/// RFC 3848 protocol name for the `with` clause of `Received:` and the spool's record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// HELO.
    Smtp,
    /// EHLO, plaintext, no AUTH.
    Esmtp,
    /// EHLO over TLS.
    Esmtps,
    /// EHLO with AUTH, plaintext (trusted-network AUTH).
    Esmtpa,
    /// EHLO over TLS with AUTH.
    Esmtpsa,
}

impl Protocol {
    /// The RFC 3848 keyword.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Smtp => "SMTP",
            Protocol::Esmtp => "ESMTP",
            Protocol::Esmtps => "ESMTPS",
            Protocol::Esmtpa => "ESMTPA",
            Protocol::Esmtpsa => "ESMTPSA",
        }
    }
}

/// A complete, accepted-by-the-protocol message for the spool.
pub struct Envelope {
    /// Reverse-path; `None` is the null sender `<>`.
    pub sender: Option<Address>,
    /// Forward-paths, deduplicated, in RCPT order; never empty.
    pub recipients: Vec<Address>,
    /// Our `Received:` header followed by the message exactly as received after dot-unstuffing:
    /// CRLF line endings, final CRLF kept (strip it before `lettre::send_raw`, see the spec).
    pub body: Vec<u8>,
    /// Declared body type.
    pub body_type: BodyType,
    /// Client address.
    pub client_ip: IpAddr,
    /// Validated EHLO/HELO argument.
    pub helo: String,
    /// Authenticated user, if any.
    pub auth_user: Option<String>,
    /// Protocol name, as in `Received:`.
    pub protocol: Protocol,
}

impl fmt::Debug for Envelope {
    // Manual: the body must never reach a log (CONVENTIONS: no message bodies in logs).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Envelope")
            .field("sender", &self.sender)
            .field("recipients", &self.recipients)
            .field("body_len", &self.body.len())
            .field("body_type", &self.body_type)
            .field("client_ip", &self.client_ip)
            .field("helo", &self.helo)
            .field("auth_user", &self.auth_user)
            .field("protocol", &self.protocol)
            .finish()
    }
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

// ---------------------------------------------------------------------------------------------------
// The session
// ---------------------------------------------------------------------------------------------------

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

#[derive(Clone, Copy)]
enum Verb {
    Ehlo,
    Helo,
    Mail,
    Rcpt,
    Data,
    Rset,
    Noop,
    Quit,
    Vrfy,
    StartTls,
    Auth,
    /// An HTTP method: a browser or a cross-protocol attack, not an SMTP client.
    Http,
}

const VERBS: &[(&str, Verb)] = &[
    ("EHLO", Verb::Ehlo),
    ("HELO", Verb::Helo),
    ("MAIL", Verb::Mail),
    ("RCPT", Verb::Rcpt),
    ("DATA", Verb::Data),
    ("RSET", Verb::Rset),
    ("NOOP", Verb::Noop),
    ("QUIT", Verb::Quit),
    ("VRFY", Verb::Vrfy),
    ("STARTTLS", Verb::StartTls),
    ("AUTH", Verb::Auth),
    ("GET", Verb::Http),
    ("POST", Verb::Http),
    ("HEAD", Verb::Http),
    ("PUT", Verb::Http),
    ("CONNECT", Verb::Http),
];

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

    /// Processes buffered input until it is exhausted, an action is pending, or the session closed.
    fn run(&mut self, now: SystemTime) {
        let mut buf = std::mem::take(&mut self.inbuf);
        let mut pos = 0;
        while pos < buf.len() && !self.close && !self.awaiting_action() {
            if let State::Data(rx) = &mut self.state {
                let (used, done) = rx.push(&buf[pos..]);
                pos += used;
                if done {
                    self.end_of_data();
                }
                continue;
            }
            let rest = &buf[pos..];
            let lf = rest.iter().position(|&b| b == b'\n');
            if self.discarding_line {
                match lf {
                    Some(i) => {
                        pos += i + 1;
                        self.discarding_line = false;
                        self.line_too_long();
                    }
                    None => pos = buf.len(),
                }
                continue;
            }
            let limit = self.line_limit(rest);
            match lf {
                Some(i) if i < limit => {
                    pos += i + 1;
                    self.line(&rest[..=i], now);
                    if let Some(Action::StartTls { discarded }) = &mut self.action {
                        // CVE-2011-0411: whatever followed STARTTLS was sent in plaintext and must
                        // not be executed inside the TLS session.
                        *discarded = buf.len() - pos;
                        pos = buf.len();
                    }
                }
                Some(i) => {
                    pos += i + 1;
                    self.line_too_long();
                }
                // `limit` octets and still no LF: the line cannot fit any more. Reply once it ends,
                // so the client gets exactly one reply for it and stays in step.
                None if rest.len() >= limit => {
                    self.discarding_line = true;
                    pos = buf.len();
                }
                None => break,
            }
        }
        if self.close {
            return;
        }
        buf.drain(..pos);
        self.inbuf = buf;
    }

    fn line_limit(&self, rest: &[u8]) -> usize {
        match self.state {
            State::Command if rest.len() >= 5 && rest[..5].eq_ignore_ascii_case(b"AUTH ") => AUTH_LINE_MAX,
            State::Command => COMMAND_LINE_MAX,
            _ => AUTH_LINE_MAX,
        }
    }

    fn line_too_long(&mut self) {
        // RFC 4954: an overlong line inside an AUTH exchange aborts it.
        let in_auth = !matches!(self.state, State::Command);
        self.state = State::Command;
        let text = if in_auth {
            "Authentication exchange line is too long"
        } else {
            "Line too long"
        };
        self.reject(500, "5.5.6", text);
    }

    /// One complete line (LF included) in a line-oriented state.
    fn line(&mut self, raw: &[u8], now: SystemTime) {
        let Some(content) = raw.strip_suffix(b"\r\n") else {
            self.state = State::Command;
            return self.reject(500, "5.5.2", "Bare LF received, lines must end with CRLF");
        };
        // Commands are ASCII without SMTPUTF8; a control character (a lone CR, NUL, ...) is never
        // legitimate and would otherwise reach logs and headers.
        let text = match std::str::from_utf8(content) {
            Ok(text) if content.iter().all(|&b| (0x20..0x7f).contains(&b)) => text,
            _ => {
                self.state = State::Command;
                return self.reject(500, "5.5.2", "Invalid character in command");
            }
        };
        match std::mem::replace(&mut self.state, State::Command) {
            State::Command => self.command(text, now),
            State::AuthPlainResponse => self.auth_plain_response(text),
            State::AuthLoginUsername => self.auth_login_username(text),
            State::AuthLoginPassword { username } => self.auth_login_password(username, text),
            // run() only hands lines to line-oriented states; put anything else back untouched.
            other => self.state = other,
        }
    }

    fn command(&mut self, line: &str, now: SystemTime) {
        let (verb, arg) = match line.split_once(' ') {
            Some((verb, arg)) => (verb, arg.trim_matches(' ')),
            None => (line, ""),
        };
        let Some(&(_, verb)) = VERBS.iter().find(|(name, _)| name.eq_ignore_ascii_case(verb)) else {
            return self.reject(502, "5.5.2", "Command not recognized");
        };
        match verb {
            Verb::Ehlo => self.hello(arg, true),
            Verb::Helo => self.hello(arg, false),
            Verb::Mail => self.mail(arg),
            Verb::Rcpt => self.rcpt(arg),
            Verb::Data => self.data(arg, now),
            Verb::Rset => {
                if !arg.is_empty() {
                    return self.reject(501, "5.5.4", "RSET takes no arguments");
                }
                self.txn = None;
                self.reply(250, "2.0.0", "Ok");
            }
            Verb::Noop => self.reply(250, "2.0.0", "Ok"),
            Verb::Quit => {
                if !arg.is_empty() {
                    return self.reject(501, "5.5.4", "QUIT takes no arguments");
                }
                self.reply(221, "2.0.0", "Bye");
                self.shut();
            }
            Verb::Vrfy => {
                if arg.is_empty() {
                    return self.reject(501, "5.5.4", "VRFY requires an address");
                }
                // RFC 5321 3.5.3: 252 when we will not tell; we never disclose mailboxes.
                self.reply(252, "2.5.2", "Cannot VRFY user, send RCPT to attempt delivery");
            }
            Verb::StartTls => self.starttls(arg),
            Verb::Auth => self.auth(arg),
            Verb::Http => {
                // Nothing an HTTP client sends can be a useful SMTP command; close before the
                // headers that follow are counted as twenty errors (Postfix does the same).
                let text = format!("{} HTTP is not SMTP, closing connection", self.config.hostname);
                self.refusals.push(Refusal::NotSmtp);
                self.reply(421, "4.7.0", &text);
                self.shut();
            }
        }
    }

    fn hello(&mut self, arg: &str, extended: bool) {
        if !valid_helo(arg) {
            return self.reject(
                501,
                "5.5.4",
                "EHLO/HELO requires a valid domain or address literal",
            );
        }
        // RFC 5321 4.1.4: EHLO/HELO resets a transaction in progress, like RSET.
        self.txn = None;
        self.helo = Some(Helo {
            name: arg.to_owned(),
            extended,
        });
        let host = self.config.hostname.as_str();
        if !extended {
            let line = format!("250 {host}\r\n");
            self.out.extend_from_slice(line.as_bytes());
            return;
        }
        // Keywords exactly as Go's net/smtp looks them up (case-sensitive map keys).
        let mut lines = vec![
            host.to_owned(),
            "PIPELINING".to_owned(),
            format!("SIZE {}", self.config.max_message_size),
            "8BITMIME".to_owned(),
            "ENHANCEDSTATUSCODES".to_owned(),
        ];
        if !self.tls && self.config.tls_available {
            lines.push("STARTTLS".to_owned());
        }
        if self.config.auth_enabled && self.auth_channel_ok() {
            lines.push("AUTH PLAIN LOGIN".to_owned());
        }
        let last = lines.len() - 1;
        for (i, line) in lines.iter().enumerate() {
            let sep = if i == last { ' ' } else { '-' };
            let line = format!("250{sep}{line}\r\n");
            self.out.extend_from_slice(line.as_bytes());
        }
    }

    /// AUTH may run here: over TLS, or in plaintext from a trusted peer if configured.
    fn auth_channel_ok(&self) -> bool {
        self.tls || (self.peer.trusted && self.config.auth_on_plaintext_for_trusted)
    }

    fn mail(&mut self, arg: &str) {
        let extended = match &self.helo {
            None => return self.reject(503, "5.5.1", "Send EHLO or HELO first"),
            Some(helo) => helo.extended,
        };
        if self.txn.is_some() {
            return self.reject(503, "5.5.1", "Nested MAIL command");
        }
        let Some((path, params)) = strip_prefix_ci(arg, "FROM:").and_then(split_path) else {
            return self.reject(501, "5.5.4", "Syntax: MAIL FROM:<address>");
        };
        let sender = if path.is_empty() {
            None
        } else {
            match Address::parse(path) {
                Ok(address) => Some(address),
                Err(e) => return self.reject(501, "5.1.7", &format!("Bad sender address syntax: {e}")),
            }
        };
        if !params.is_empty() && !extended {
            return self.reject(555, "5.5.4", "MAIL parameters require EHLO");
        }
        let mut body_type = None;
        let mut declared_size = None;
        for param in params.split(' ').filter(|p| !p.is_empty()) {
            let (key, value) = match param.split_once('=') {
                Some((key, value)) => (key, Some(value)),
                None => (param, None),
            };
            if key.eq_ignore_ascii_case("SIZE") {
                let Some(size) = value.filter(|v| is_size_value(v)) else {
                    return self.reject(501, "5.5.4", "Syntax: SIZE=<octets>");
                };
                if declared_size.is_some() {
                    return self.reject(501, "5.5.4", "Duplicate SIZE parameter");
                }
                // Twenty digits may overflow u64: such a size is over any limit anyway.
                declared_size = Some(size.parse::<u64>().unwrap_or(u64::MAX));
            } else if key.eq_ignore_ascii_case("BODY") {
                if body_type.is_some() {
                    return self.reject(501, "5.5.4", "Duplicate BODY parameter");
                }
                body_type = Some(match value {
                    Some(v) if v.eq_ignore_ascii_case("7BIT") => BodyType::SevenBit,
                    Some(v) if v.eq_ignore_ascii_case("8BITMIME") => BodyType::EightBitMime,
                    _ => return self.reject(501, "5.5.4", "Syntax: BODY=7BIT or BODY=8BITMIME"),
                });
            } else {
                // SMTPUTF8, AUTH=, RET=, ENVID= ...: not advertised, so not accepted (RFC 5321 4.1.1.11).
                return self.reject(555, "5.5.4", &format!("Unsupported MAIL parameter {key}"));
            }
        }
        if declared_size.is_some_and(|size| size > self.config.max_message_size as u64) {
            self.refusals.push(Refusal::MessageSize);
            return self.reply(552, "5.3.4", "Message size exceeds fixed maximum message size");
        }
        if self.storage_low {
            return self.reply(452, "4.3.1", "Insufficient system storage");
        }
        if let Some(allowed) = &self.config.sender_domains {
            match &sender {
                None => {
                    self.refusals.push(Refusal::SenderDomain);
                    return self.reject(
                        550,
                        "5.7.1",
                        "Null sender not accepted: sender domains are restricted",
                    );
                }
                Some(address) if !allowed.matches(address.domain()) => {
                    let text = format!(
                        "Sender domain {} is not allowed to use this relay",
                        address.domain()
                    );
                    self.refusals.push(Refusal::SenderDomain);
                    return self.reject(550, "5.7.1", &text);
                }
                Some(_) => {}
            }
        }
        self.txn = Some(Transaction {
            sender,
            recipients: Vec::new(),
            body_type: body_type.unwrap_or(BodyType::SevenBit),
            declared_size,
        });
        self.reply(250, "2.1.0", "Ok");
    }

    fn rcpt(&mut self, arg: &str) {
        if self.txn.is_none() {
            return self.reject(503, "5.5.1", "Need MAIL command");
        }
        let Some((path, params)) = strip_prefix_ci(arg, "TO:").and_then(split_path) else {
            return self.reject(501, "5.5.4", "Syntax: RCPT TO:<address>");
        };
        if path.is_empty() {
            return self.reject(501, "5.1.3", "Bad recipient address syntax: null recipient");
        }
        let address = match Address::parse(path) {
            Ok(address) => address,
            Err(e) => return self.reject(501, "5.1.3", &format!("Bad recipient address syntax: {e}")),
        };
        if !params.is_empty() {
            return self.reject(555, "5.5.4", "RCPT parameters are not supported");
        }
        // The one rule that keeps this from being an open relay.
        if !self.peer.trusted && self.auth_user.is_none() {
            self.refusals.push(Refusal::RelayDenied);
            return self.reject(554, "5.7.1", "Relay access denied");
        }
        if let Some(allowed) = &self.config.recipient_domains {
            if !allowed.matches(address.domain()) {
                let text = format!(
                    "Recipient domain {} is not allowed by this relay",
                    address.domain()
                );
                self.refusals.push(Refusal::RecipientDomain);
                return self.reject(550, "5.7.1", &text);
            }
        }
        let max = self.config.max_recipients;
        let Some(txn) = self.txn.as_mut() else { return };
        if txn.recipients.contains(&address) {
            // Accept but do not deliver twice.
            return self.reply(250, "2.1.5", "Ok");
        }
        if txn.recipients.len() >= max {
            // RFC 5321 4.5.3.1.10: 452, and the client sends the rest in another transaction.
            return self.reply(452, "4.5.3", "Too many recipients");
        }
        txn.recipients.push(address);
        self.reply(250, "2.1.5", "Ok");
    }

    fn data(&mut self, arg: &str, now: SystemTime) {
        if !arg.is_empty() {
            return self.reject(501, "5.5.4", "DATA takes no arguments");
        }
        let Some(txn) = &self.txn else {
            return self.reject(503, "5.5.1", "Need MAIL command");
        };
        if txn.recipients.is_empty() {
            // RFC 5321 3.3 allows 503 or 554; 554 tells a pipelining client why.
            return self.reject(554, "5.5.1", "No valid recipients");
        }
        let reserve = txn
            .declared_size
            .map_or(0, |size| usize::try_from(size).unwrap_or(usize::MAX))
            .min(self.config.max_message_size);
        let header = self.received_header(txn, now);
        self.state = State::Data(DataReceiver::new(header, reserve, self.config.max_message_size));
        // No enhanced code on 354: it is an intermediate reply (as Postfix does).
        self.out
            .extend_from_slice(b"354 End data with <CR><LF>.<CR><LF>\r\n");
    }

    fn protocol(&self) -> Protocol {
        match (self.esmtp(), self.tls, self.auth_user.is_some()) {
            (false, _, _) => Protocol::Smtp,
            (true, false, false) => Protocol::Esmtp,
            (true, true, false) => Protocol::Esmtps,
            (true, false, true) => Protocol::Esmtpa,
            (true, true, true) => Protocol::Esmtpsa,
        }
    }

    /// `Received:` from validated values only: HELO (checked by [`valid_helo`]), the peer IP, our
    /// configured host name, the protocol keyword, a single validated recipient, the caller's time.
    /// The queue id is not known yet, so there is no `id` clause.
    fn received_header(&self, txn: &Transaction, now: SystemTime) -> Vec<u8> {
        let helo = self.helo.as_ref().map_or("unknown", |h| h.name.as_str());
        let ip = match self.peer.ip.to_canonical() {
            IpAddr::V4(v4) => format!("[{v4}]"),
            IpAddr::V6(v6) => format!("[IPv6:{v6}]"),
        };
        let mut header = format!(
            "Received: from {helo} ({ip})\r\n\tby {} (vestibule) with {}",
            self.config.hostname,
            self.protocol().as_str()
        );
        // Name the recipient only when there is one: listing several would disclose Bcc recipients.
        if let [only] = txn.recipients.as_slice() {
            header.push_str(&format!("\r\n\tfor <{only}>"));
        }
        header.push_str(&format!(";\r\n\t{}\r\n", rfc5322_date(now)));
        header.into_bytes()
    }

    fn end_of_data(&mut self) {
        let State::Data(rx) = std::mem::replace(&mut self.state, State::Command) else {
            return;
        };
        // RFC 5321 4.1.1.4: the transaction ends with the message, accepted or not.
        let txn = self.txn.take();
        if let Some(rejection) = rx.rejection() {
            let (code, enhanced, text, counts) = rejection;
            if let Some(refusal) = rx.refusal() {
                self.refusals.push(refusal);
            }
            return if counts {
                self.reject(code, enhanced, text)
            } else {
                self.reply(code, enhanced, text)
            };
        }
        let (Some(txn), Some(helo)) = (txn, self.helo.as_ref()) else {
            // DATA is only entered with both set; never reply 250 to something we cannot describe.
            return self.reply(451, "4.3.0", "Internal error, try again later");
        };
        let envelope = Envelope {
            sender: txn.sender,
            recipients: txn.recipients,
            body: rx.body,
            body_type: txn.body_type,
            client_ip: self.peer.ip,
            helo: helo.name.clone(),
            auth_user: self.auth_user.clone(),
            protocol: self.protocol(),
        };
        self.state = State::AwaitingDelivery;
        self.action = Some(Action::Deliver(envelope));
    }

    // --- AUTH --------------------------------------------------------------------------------------

    fn starttls(&mut self, arg: &str) {
        if !arg.is_empty() {
            return self.reject(501, "5.5.4", "STARTTLS takes no arguments");
        }
        if self.tls {
            return self.reject(503, "5.5.1", "TLS already active");
        }
        if !self.config.tls_available {
            return self.reject(454, "4.7.0", "TLS not available");
        }
        if self.txn.is_some() {
            return self.reject(503, "5.5.1", "MAIL transaction in progress");
        }
        self.reply(220, "2.0.0", "Ready to start TLS");
        self.state = State::AwaitingTls;
        self.action = Some(Action::StartTls { discarded: 0 });
    }

    fn auth(&mut self, arg: &str) {
        if !self.config.auth_enabled {
            return self.reject(503, "5.5.1", "Authentication not enabled");
        }
        if !self.esmtp() {
            return self.reject(503, "5.5.1", "Send EHLO first");
        }
        if self.auth_user.is_some() {
            return self.reject(503, "5.5.1", "Already authenticated");
        }
        if self.txn.is_some() {
            return self.reject(503, "5.5.1", "AUTH not allowed during a mail transaction");
        }
        if !self.auth_channel_ok() {
            return self.reject(
                538,
                "5.7.11",
                "Encryption required for requested authentication mechanism",
            );
        }
        let mut words = arg.split(' ').filter(|w| !w.is_empty());
        let (mechanism, initial, extra) = (words.next().unwrap_or(""), words.next(), words.next());
        if mechanism.is_empty() || extra.is_some() {
            return self.reject(501, "5.5.4", "Syntax: AUTH mechanism [initial-response]");
        }
        if mechanism.eq_ignore_ascii_case("PLAIN") {
            match initial {
                Some(response) => self.auth_plain_response(response),
                None => {
                    self.state = State::AuthPlainResponse;
                    self.out.extend_from_slice(b"334 \r\n");
                }
            }
        } else if mechanism.eq_ignore_ascii_case("LOGIN") {
            match initial {
                Some(response) => self.auth_login_username(response),
                None => {
                    self.state = State::AuthLoginUsername;
                    self.out.extend_from_slice(LOGIN_USERNAME_CHALLENGE.as_bytes());
                }
            }
        } else {
            self.reject(504, "5.5.4", "Unrecognized authentication mechanism");
        }
    }

    /// Decodes one client response of an AUTH exchange; on `*` or bad base64 replies and returns
    /// `None` (the caller has already left the exchange: the state is `Command`).
    fn auth_decode(&mut self, response: &str) -> Option<Vec<u8>> {
        if response == "*" {
            self.reject(501, "5.7.0", "Authentication aborted");
            return None;
        }
        // RFC 4954: "=" is an empty initial response.
        let decoded = if response == "=" {
            Some(Vec::new())
        } else {
            base64_decode(response)
        };
        if decoded.is_none() {
            self.reject(501, "5.5.2", "Cannot decode base64 response");
        }
        decoded
    }

    fn auth_plain_response(&mut self, response: &str) {
        let Some(decoded) = self.auth_decode(response) else {
            return;
        };
        // RFC 4616: [authzid] NUL authcid NUL passwd.
        let mut parts = decoded.split(|&b| b == 0);
        let (authzid, authcid, password) = match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(z), Some(c), Some(p), None) => (z, c, p),
            _ => return self.reject(535, "5.7.8", "Authentication credentials invalid"),
        };
        let Some(username) = valid_username(authcid) else {
            return self.reject(535, "5.7.8", "Authentication credentials invalid");
        };
        // Acting as another user is not supported: only an empty or identical authzid.
        if (!authzid.is_empty() && authzid != authcid) || password.is_empty() {
            return self.reject(535, "5.7.8", "Authentication credentials invalid");
        }
        self.check_credentials(AuthMechanism::Plain, username, password.to_vec());
    }

    fn auth_login_username(&mut self, response: &str) {
        let Some(decoded) = self.auth_decode(response) else {
            return;
        };
        let Some(username) = valid_username(&decoded) else {
            return self.reject(535, "5.7.8", "Authentication credentials invalid");
        };
        self.state = State::AuthLoginPassword { username };
        self.out.extend_from_slice(LOGIN_PASSWORD_CHALLENGE.as_bytes());
    }

    fn auth_login_password(&mut self, username: String, response: &str) {
        let Some(password) = self.auth_decode(response) else {
            return;
        };
        if password.is_empty() {
            return self.reject(535, "5.7.8", "Authentication credentials invalid");
        }
        self.check_credentials(AuthMechanism::Login, username, password);
    }

    fn check_credentials(&mut self, mechanism: AuthMechanism, username: String, password: Vec<u8>) {
        self.state = State::AwaitingAuth {
            username: username.clone(),
        };
        self.action = Some(Action::CheckCredentials {
            mechanism,
            username,
            password: Password(password),
        });
    }
}

/// A user name must be non-empty UTF-8 without control characters: it goes to logs and the spool.
fn valid_username(bytes: &[u8]) -> Option<String> {
    let name = std::str::from_utf8(bytes).ok()?;
    (!name.is_empty() && !name.chars().any(char::is_control)).then(|| name.to_owned())
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then(|| &s[prefix.len()..])
}

/// Splits `<path> params` (a space after the colon is tolerated, as most servers do). The path is
/// returned without brackets; params are what follows, trimmed.
fn split_path(s: &str) -> Option<(&str, &str)> {
    let s = s.trim_start_matches(' ').strip_prefix('<')?;
    let (path, after) = s.split_once('>')?;
    if !after.is_empty() && !after.starts_with(' ') {
        return None;
    }
    Some((path, after.trim_matches(' ')))
}

fn is_size_value(v: &str) -> bool {
    (1..=20).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_digit())
}

// ---------------------------------------------------------------------------------------------------
// DATA
// ---------------------------------------------------------------------------------------------------

/// Where the DATA scanner is relative to the `<CRLF>.<CRLF>` terminator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scan {
    /// Just after CRLF (or right after the 354): a `.` here is special.
    LineStart,
    /// Inside a line.
    Mid,
    /// After a CR: only LF is legal next.
    Cr,
    /// A `.` at line start: the stuffing dot, or the start of the terminator.
    Dot,
    /// `.` CR at line start: LF completes the terminator.
    DotCr,
}

/// Receives message text. A bare CR or LF never ends a line or the message, it only marks the
/// message as rejected, so the scanner ends exactly where a conforming server would: the client and
/// we stay in step whatever it smuggles (CVE-2023-51764).
struct DataReceiver {
    /// Our `Received:` header, then the unstuffed text; freed once the message is rejected.
    body: Vec<u8>,
    scan: Scan,
    /// Client octets after unstuffing (CRLFs included), compared to `max_size`.
    size: usize,
    /// Octets in the current line, CRLF excluded.
    line_len: usize,
    max_size: usize,
    bare_newline: bool,
    line_too_long: bool,
    too_big: bool,
}

impl DataReceiver {
    fn new(header: Vec<u8>, reserve: usize, max_size: usize) -> Self {
        let mut body = header;
        body.reserve(reserve);
        DataReceiver {
            body,
            scan: Scan::LineStart,
            size: 0,
            line_len: 0,
            max_size,
            bare_newline: false,
            line_too_long: false,
            too_big: false,
        }
    }

    fn rejected(&self) -> bool {
        self.bare_newline || self.line_too_long || self.too_big
    }

    /// The reply for a rejected message: (code, enhanced code, text, counts as an error).
    /// Smuggling first (a security event), then the framing error, then the resource limit.
    fn rejection(&self) -> Option<(u16, &'static str, &'static str, bool)> {
        if self.bare_newline {
            Some((550, "5.6.11", "Bare CR or LF not allowed", true))
        } else if self.line_too_long {
            Some((
                500,
                "5.5.6",
                "Line too long in message text (limit 1000 octets)",
                true,
            ))
        } else if self.too_big {
            Some((
                552,
                "5.3.4",
                "Message size exceeds fixed maximum message size",
                false,
            ))
        } else {
            None
        }
    }

    /// The refusal to report for a rejected message: smuggling and size, not a framing slip.
    fn refusal(&self) -> Option<Refusal> {
        if self.bare_newline {
            Some(Refusal::BareLineEnding)
        } else if self.line_too_long {
            None
        } else if self.too_big {
            Some(Refusal::MessageSize)
        } else {
            None
        }
    }

    fn bare(&mut self) {
        self.bare_newline = true;
        self.store(b"");
    }

    fn text(&mut self, bytes: &[u8]) {
        self.size = self.size.saturating_add(bytes.len());
        self.line_len = self.line_len.saturating_add(bytes.len());
        if self.line_len > TEXT_LINE_MAX - 2 {
            self.line_too_long = true;
        }
        self.store(bytes);
    }

    fn crlf(&mut self) {
        self.line_len = 0;
        self.size = self.size.saturating_add(2);
        self.store(b"\r\n");
    }

    /// Appends to the body unless the message is already rejected; nothing of a rejected message is
    /// kept, so its memory is released at once.
    fn store(&mut self, bytes: &[u8]) {
        if self.size > self.max_size {
            self.too_big = true;
        }
        if self.rejected() {
            if self.body.capacity() > 0 {
                self.body = Vec::new();
            }
        } else {
            self.body.extend_from_slice(bytes);
        }
    }

    /// Consumes input up to and including the terminator. Returns (octets used, terminator seen).
    fn push(&mut self, input: &[u8]) -> (usize, bool) {
        let mut i = 0;
        while let Some(&b) = input.get(i) {
            match self.scan {
                Scan::LineStart if b == b'.' => {
                    self.scan = Scan::Dot;
                    i += 1;
                }
                // Not consumed: the byte is ordinary text, handled by `Mid` on the next turn.
                Scan::LineStart => self.scan = Scan::Mid,
                Scan::Mid => {
                    let run = input[i..].iter().position(|&c| c == b'\r' || c == b'\n');
                    let run = run.unwrap_or(input.len() - i);
                    if run > 0 {
                        self.text(&input[i..i + run]);
                        i += run;
                        continue;
                    }
                    if b == b'\r' {
                        self.scan = Scan::Cr;
                    } else {
                        // A bare LF: not a line end for us, so `\n.\r\n` cannot end the message.
                        self.bare();
                    }
                    i += 1;
                }
                Scan::Cr if b == b'\n' => {
                    self.crlf();
                    self.scan = Scan::LineStart;
                    i += 1;
                }
                Scan::Cr => {
                    // A bare CR; the byte after it is ordinary input, not consumed here.
                    self.bare();
                    self.scan = Scan::Mid;
                }
                Scan::Dot if b == b'\r' => {
                    self.scan = Scan::DotCr;
                    i += 1;
                }
                // The leading dot was stuffing (RFC 5321 4.5.2): drop it, the rest is text.
                Scan::Dot => self.scan = Scan::Mid,
                Scan::DotCr if b == b'\n' => return (i + 1, true),
                Scan::DotCr => {
                    self.bare();
                    self.scan = Scan::Mid;
                }
            }
        }
        (i, false)
    }
}

// ---------------------------------------------------------------------------------------------------
// Small codecs (std only, so the crate needs no base64 or date dependency for this)
// ---------------------------------------------------------------------------------------------------

/// Strict-alphabet base64 (RFC 4648 section 4); padding optional but, if present, correct.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let bytes = s.as_bytes();
    let data = bytes
        .strip_suffix(b"==")
        .or_else(|| bytes.strip_suffix(b"="))
        .unwrap_or(bytes);
    let padding = bytes.len() - data.len();
    if data.len() % 4 == 1
        || (padding > 0 && (!bytes.len().is_multiple_of(4) || (data.len() % 4) + padding != 4))
    {
        return None;
    }
    let mut out = Vec::with_capacity(data.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &c in data {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// RFC 5322 date-time in UTC, e.g. `Tue, 14 Nov 2023 22:13:20 +0000`. Times before 1970 (a broken
/// clock) print as the epoch rather than failing.
pub fn rfc5322_date(now: SystemTime) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{}, {} {} {} {:02}:{:02}:{:02} +0000",
        DAYS[(days % 7) as usize],
        d,
        MONTHS[(m - 1) as usize],
        y,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month 1-12, day 1-31): Howard Hinnant's `civil_from_days`,
/// restricted to non-negative days.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    /// Tue, 14 Nov 2023 22:13:20 +0000
    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    fn config() -> SessionConfig {
        let mut config = SessionConfig::new(Hostname::new("mx.example.test").unwrap());
        config.tls_available = true;
        config.auth_enabled = true;
        config
    }

    fn loopback() -> Peer {
        Peer {
            ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            trusted: true,
        }
    }

    fn stranger() -> Peer {
        Peer {
            ip: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)),
            trusted: false,
        }
    }

    fn start_with(config: SessionConfig, peer: Peer, tls: bool) -> Session {
        let (session, out) = Session::new(Arc::new(config), peer, tls);
        assert_eq!(text(&out), "220 mx.example.test ESMTP vestibule\r\n");
        session
    }

    fn start(peer: Peer, tls: bool) -> Session {
        start_with(config(), peer, tls)
    }

    fn text(out: &Output) -> String {
        String::from_utf8_lossy(&out.replies).into_owned()
    }

    /// Feeds and returns the replies; asserts no action and no close.
    fn say(s: &mut Session, input: &str) -> String {
        let out = s.feed(input.as_bytes(), now());
        assert!(out.action.is_none(), "unexpected action {:?}", out.action);
        text(&out)
    }

    fn ehlo(s: &mut Session) {
        let r = say(s, "EHLO client.example\r\n");
        assert!(r.starts_with("250-mx.example.test\r\n"), "{r}");
    }

    fn b64(data: &[u8]) -> String {
        const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for chunk in data.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |acc, (i, &b)| acc | u32::from(b) << (16 - 8 * i));
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    /// Runs a transaction up to 354 from a trusted peer.
    fn open_data(s: &mut Session) {
        ehlo(s);
        assert_eq!(say(s, "MAIL FROM:<a@example.test>\r\n"), "250 2.1.0 Ok\r\n");
        assert_eq!(say(s, "RCPT TO:<b@example.org>\r\n"), "250 2.1.5 Ok\r\n");
        assert_eq!(say(s, "DATA\r\n"), "354 End data with <CR><LF>.<CR><LF>\r\n");
    }

    fn expect_deliver(out: Output) -> Envelope {
        assert!(out.replies.is_empty(), "{}", text(&out));
        match out.action {
            Some(Action::Deliver(env)) => env,
            other => panic!("expected Deliver, got {other:?}"),
        }
    }

    /// The body without our Received header.
    fn message(env: &Envelope) -> &[u8] {
        let pos = env.body.windows(7).position(|w| w == b" +0000\r").unwrap();
        &env.body[pos + 8..]
    }

    // --- the Mattermost dialogue ---------------------------------------------------------------

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
    fn date_formatting() {
        assert_eq!(rfc5322_date(UNIX_EPOCH), "Thu, 1 Jan 1970 00:00:00 +0000");
        assert_eq!(rfc5322_date(now()), "Tue, 14 Nov 2023 22:13:20 +0000");
        // 2024-02-29 12:00:00 UTC, a leap day.
        let leap = UNIX_EPOCH + Duration::from_secs(1_709_208_000);
        assert_eq!(rfc5322_date(leap), "Thu, 29 Feb 2024 12:00:00 +0000");
        let before = UNIX_EPOCH - Duration::from_secs(10);
        assert_eq!(rfc5322_date(before), "Thu, 1 Jan 1970 00:00:00 +0000");
    }

    // --- EHLO / HELO ---------------------------------------------------------------------------

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

    // --- MAIL / RCPT ---------------------------------------------------------------------------

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
    fn domain_list_and_hostname_validation() {
        assert!(DomainList::new(["ok.test", ".sub.test"]).is_ok());
        assert_eq!(DomainList::new(["bad domain"]).unwrap_err().value, "bad domain");
        assert!(Hostname::new("mx.example.test").is_ok());
        assert!(Hostname::new("mx\r\nX-Evil: 1").is_err());
        assert!(Hostname::new("").is_err());
        assert!(Hostname::new("-a.test").is_err());
    }

    // --- address syntax ------------------------------------------------------------------------

    #[test]
    fn address_lengths() {
        let local64 = "l".repeat(64);
        assert!(Address::parse(&format!("{local64}@d.test")).is_ok());
        assert_eq!(
            Address::parse(&format!("{local64}l@d.test")),
            Err(AddressError::LocalPartTooLong)
        );
        // 4 labels of 63 + 3 dots = 255 octets: legal domain, but the path would exceed 256.
        let domain255 = ["a".repeat(63), "b".repeat(63), "c".repeat(63), "d".repeat(63)].join(".");
        assert_eq!(domain255.len(), 255);
        assert_eq!(
            Address::parse(&format!("x@{domain255}")),
            Err(AddressError::PathTooLong)
        );
        // Path exactly 256 with brackets: 254 inside.
        let domain = ["a".repeat(63), "b".repeat(63), "c".repeat(63), "d".repeat(60)].join(".");
        let addr = format!("x@{domain}");
        assert_eq!(addr.len(), 254);
        assert!(Address::parse(&addr).is_ok());
        assert_eq!(
            Address::parse(&format!("x{addr}")),
            Err(AddressError::PathTooLong)
        );
        let long_label = format!("x@{}.test", "a".repeat(64));
        assert_eq!(Address::parse(&long_label), Err(AddressError::InvalidDomain));
    }

    #[test]
    fn address_shapes() {
        assert_eq!(Address::parse("@d.test"), Err(AddressError::SourceRoute));
        assert_eq!(Address::parse("user"), Err(AddressError::MissingAt));
        assert_eq!(Address::parse("user@"), Err(AddressError::EmptyDomain));
        assert_eq!(Address::parse("a@b@c.test"), Err(AddressError::MultipleAt));
        assert_eq!(Address::parse("a\tb@c.test"), Err(AddressError::ControlCharacter));
        assert_eq!(
            Address::parse("a\u{7f}@c.test"),
            Err(AddressError::ControlCharacter)
        );
        assert_eq!(Address::parse("é@c.test"), Err(AddressError::NonAscii));
        assert_eq!(Address::parse(".a@c.test"), Err(AddressError::InvalidLocalPart));
        assert_eq!(Address::parse("a.@c.test"), Err(AddressError::InvalidLocalPart));
        assert_eq!(Address::parse("a..b@c.test"), Err(AddressError::InvalidLocalPart));
        assert_eq!(Address::parse("a b@c.test"), Err(AddressError::InvalidLocalPart));
        assert_eq!(Address::parse("a<b@c.test"), Err(AddressError::InvalidLocalPart));
        assert_eq!(Address::parse("a@c..test"), Err(AddressError::InvalidDomain));
        assert_eq!(Address::parse("a@-c.test"), Err(AddressError::InvalidDomain));
        assert_eq!(Address::parse("a@c.test."), Err(AddressError::InvalidDomain));
        assert_eq!(Address::parse("a@c_d.test"), Err(AddressError::InvalidDomain));
    }

    #[test]
    fn address_domain_is_lower_cased_local_part_kept() {
        let a = Address::parse("First.Last+tag@Example.ORG").unwrap();
        assert_eq!(a.local_part(), "First.Last+tag");
        assert_eq!(a.domain(), "example.org");
        assert_eq!(a.to_string(), "First.Last+tag@example.org");
        assert!(Address::parse("noreply@localhost").is_ok());
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

    // --- simple commands -----------------------------------------------------------------------

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

    // --- line handling, errors -----------------------------------------------------------------

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

    // --- pipelining ----------------------------------------------------------------------------

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

    // --- STARTTLS ------------------------------------------------------------------------------

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

    // --- AUTH ----------------------------------------------------------------------------------

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
        for len in 0..40 {
            let data: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            assert_eq!(base64_decode(&b64(&data)), Some(data));
        }
    }

    // --- DATA ----------------------------------------------------------------------------------

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

    // --- robustness ----------------------------------------------------------------------------

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
                        Some(Action::CheckCredentials { .. }) => {
                            s.auth_result(rng.below(2) == 0, now()).unwrap()
                        }
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
}
