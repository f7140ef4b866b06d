//! DATA: receiving the message text (dot-unstuffing, the `<CRLF>.<CRLF>` terminator, the line and
//! size limits), our `Received:` header, and the envelope handed to the spool.
//!
//! It must never end a message anywhere but on `<CRLF>.<CRLF>`, nor accept a message with a bare CR
//! or LF (SMTP smuggling, CVE-2023-51764), nor keep the text of a message already rejected. It never
//! replies 250 itself: that waits for the spool ([`Session::delivered`]).

use std::net::IpAddr;
use std::time::SystemTime;

use super::{Action, Refusal, Session, State, Transaction, TEXT_LINE_MAX};
use crate::mail::date::rfc5322_date;
use crate::mail::envelope::{Envelope, Protocol};

impl Session {
    pub(super) fn data(&mut self, arg: &str, now: SystemTime) {
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

    /// `Received:` from validated values only: HELO (checked by `commands::valid_helo`), the peer IP, our
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

    pub(super) fn end_of_data(&mut self) {
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
}

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
pub(super) struct DataReceiver {
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
    pub(super) fn push(&mut self, input: &[u8]) -> (usize, bool) {
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

#[cfg(test)]
mod tests;
