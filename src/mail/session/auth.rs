//! STARTTLS and AUTH (PLAIN and LOGIN): when each is allowed, the SASL exchanges and their base64.
//!
//! It must never see a password database (credentials leave as [`Action::CheckCredentials`]), print
//! a password (see [`Password`]), offer or run AUTH in plaintext unless the peer is trusted and the
//! configuration allows it, or let an AUTH exchange survive STARTTLS.

use std::fmt;

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;

use super::{Action, Session, State};

/// Challenge of AUTH LOGIN for the user name: base64 of `Username:`, byte-exact as Go clients expect.
const LOGIN_USERNAME_CHALLENGE: &str = "334 VXNlcm5hbWU6\r\n";
/// Challenge of AUTH LOGIN for the password: base64 of `Password:`.
const LOGIN_PASSWORD_CHALLENGE: &str = "334 UGFzc3dvcmQ6\r\n";

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

impl Session {
    /// AUTH may run here: over TLS, or in plaintext from a trusted peer if configured.
    pub(super) fn auth_channel_ok(&self) -> bool {
        self.tls || (self.peer.trusted && self.config.auth_on_plaintext_for_trusted)
    }

    pub(super) fn starttls(&mut self, arg: &str) {
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

    pub(super) fn auth(&mut self, arg: &str) {
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

    pub(super) fn auth_plain_response(&mut self, response: &str) {
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

    pub(super) fn auth_login_username(&mut self, response: &str) {
        let Some(decoded) = self.auth_decode(response) else {
            return;
        };
        let Some(username) = valid_username(&decoded) else {
            return self.reject(535, "5.7.8", "Authentication credentials invalid");
        };
        self.state = State::AuthLoginPassword { username };
        self.out.extend_from_slice(LOGIN_PASSWORD_CHALLENGE.as_bytes());
    }

    pub(super) fn auth_login_password(&mut self, username: String, response: &str) {
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

/// The client's base64: the standard alphabet (RFC 4648 section 4); padding optional, since clients
/// differ, and bits left over in the last symbol ignored.
const AUTH_BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// Decodes one AUTH response; `None` if it is not base64.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    // Padding, when present, must be complete: the engine would also take a partial one (`YQ=`).
    if s.ends_with('=') && !s.len().is_multiple_of(4) {
        return None;
    }
    AUTH_BASE64.decode(s).ok()
}

#[cfg(test)]
mod tests;
