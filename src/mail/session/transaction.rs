//! The envelope commands, MAIL and RCPT: path syntax, the SIZE and BODY parameters, the sender and
//! recipient allow-lists, the recipient limit, and the relay rule.
//!
//! It must never accept a recipient from a peer that is neither on a trusted network nor
//! authenticated (`554 5.7.1`, the rule that keeps this from being an open relay), nor accept a
//! parameter it does not advertise.

use super::{Refusal, Session, Transaction};
use crate::mail::address::Address;
use crate::mail::envelope::BodyType;

impl Session {
    pub(super) fn mail(&mut self, arg: &str) {
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

    pub(super) fn rcpt(&mut self, arg: &str) {
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

#[cfg(test)]
mod tests;
