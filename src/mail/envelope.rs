//! The envelope of one accepted message, as the SMTP session hands it to the spool: sender,
//! recipients, body type, who sent it and how ([`Protocol`]), and the message itself.
//!
//! It owns the description of a message, not its handling: the session fills it in, the spool
//! stores it, delivery reads it. It must never let the body reach a log: its `Debug` prints only
//! the body's length.

use std::fmt;
use std::net::IpAddr;

use super::address::Address;

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
