//! Reading command lines and dispatching them: line framing and limits (CRLF only, 512 octets, 12,288
//! inside AUTH), the verb table, EHLO/HELO and their extension list, and the simple commands (RSET,
//! NOOP, QUIT, VRFY, the HTTP guard).
//!
//! It must never execute a line that is not complete, CRLF-terminated, printable ASCII and within
//! its limit, nor anything pipelined after STARTTLS (CVE-2011-0411): those bytes are counted and
//! dropped here.

use std::time::SystemTime;

use super::{Action, Helo, Refusal, Session, State, AUTH_LINE_MAX, COMMAND_LINE_MAX};
use crate::mail::address::DOMAIN_MAX;

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
    /// Processes buffered input until it is exhausted, an action is pending, or the session closed.
    pub(super) fn run(&mut self, now: SystemTime) {
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

#[cfg(test)]
mod tests;
