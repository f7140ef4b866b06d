//! Why the SMTP relay refused a client: one bounded reason per refusal, counted in
//! `vestibule_mail_rejected_total{reason}` and logged as one line in a stable format that fail2ban
//! (or any log watcher) can match without knowing our log layout:
//!
//! ```text
//! mail reject: client=203.0.113.9 reason=too_many_connections_per_ip
//! ```
//!
//! The session machine ([`super::session`]) reports the protocol refusals it makes in
//! [`super::session::Output::refusals`]; the listener ([`super::server`]) adds its own (connection
//! caps, timeouts, failed AUTH) and records them all here. Local trouble (a full spool) is counted
//! separately and never logged as a reject line: banning the client for it would be wrong.

use std::net::IpAddr;

use crate::metrics::Metrics;

/// A refusal the client caused. The label set is closed, so the metric's cardinality is bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Every connection slot is taken (`421` at connect).
    TooManyConnections,
    /// This untrusted address holds `max_connections_per_ip` sessions already (`421` at connect).
    TooManyConnectionsPerIp,
    /// Untrusted clients hold every slot not reserved for trusted networks (`421` at connect).
    TooManyUntrustedConnections,
    /// RCPT from a client neither on a trusted network nor authenticated (`554 5.7.1`).
    RelayDenied,
    /// Envelope sender outside `sender_domains` (`550 5.7.1`).
    SenderDomain,
    /// Recipient outside `recipient_domains` (`550 5.7.1`).
    RecipientDomain,
    /// Declared or actual message size over `max_message_size` (`552 5.3.4`).
    MessageSize,
    /// Bare CR or LF in the message text: an SMTP smuggling attempt or a broken client (`550 5.6.11`).
    BareLineEnding,
    /// Twenty protocol errors in one session (`421 4.7.0`).
    TooManyErrors,
    /// An HTTP request on the SMTP port (`421 4.7.0`).
    NotSmtp,
    /// Input flooded in while the session waited on the spool or a password check (`421 4.7.0`).
    TooMuchInput,
    /// AUTH with wrong credentials (`535 5.7.8`).
    Auth,
    /// No complete command line (or text line) within the idle timeout (`421 4.4.2`).
    Timeout,
    /// The TLS handshake (implicit TLS or after STARTTLS) did not finish within its deadline.
    TlsHandshakeTimeout,
}

impl Refusal {
    /// The `reason` label and the log line's `reason=` value.
    pub const fn label(self) -> &'static str {
        match self {
            Refusal::TooManyConnections => "too_many_connections",
            Refusal::TooManyConnectionsPerIp => "too_many_connections_per_ip",
            Refusal::TooManyUntrustedConnections => "too_many_untrusted_connections",
            Refusal::RelayDenied => "relay_denied",
            Refusal::SenderDomain => "sender_domain",
            Refusal::RecipientDomain => "recipient_domain",
            Refusal::MessageSize => "message_size",
            Refusal::BareLineEnding => "bare_line_ending",
            Refusal::TooManyErrors => "too_many_errors",
            Refusal::NotSmtp => "not_smtp",
            Refusal::TooMuchInput => "too_much_input",
            Refusal::Auth => "auth",
            Refusal::Timeout => "timeout",
            Refusal::TlsHandshakeTimeout => "tls_handshake_timeout",
        }
    }
}

/// Counts the refusal and writes the reject line. The line carries only the address and the
/// reason (never a user name or an address the client sent), so it is safe to keep and to parse.
pub fn record(metrics: &Metrics, client: IpAddr, refusal: Refusal) {
    metrics.mail_rejected.with_label_values(&[refusal.label()]).inc();
    // An IPv4 client on a dual-stack socket shows as itself, as fail2ban's <HOST> expects.
    tracing::warn!(
        target: "vestibule::mail",
        "mail reject: client={} reason={}",
        client.to_canonical(),
        refusal.label()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_distinct_snake_case() {
        let all = [
            Refusal::TooManyConnections,
            Refusal::TooManyConnectionsPerIp,
            Refusal::TooManyUntrustedConnections,
            Refusal::RelayDenied,
            Refusal::SenderDomain,
            Refusal::RecipientDomain,
            Refusal::MessageSize,
            Refusal::BareLineEnding,
            Refusal::TooManyErrors,
            Refusal::NotSmtp,
            Refusal::TooMuchInput,
            Refusal::Auth,
            Refusal::Timeout,
            Refusal::TlsHandshakeTimeout,
        ];
        let mut labels: Vec<_> = all.iter().map(|r| r.label()).collect();
        assert!(labels
            .iter()
            .all(|l| l.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')));
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), all.len());
    }
}
