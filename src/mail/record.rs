//! The queue record: the JSON envelope stored as the first line of `<id>.msg` and, once a delivery
//! attempt changed it, in the `<id>.env` sidecar.
//!
//! Field order is the on-disk key order (serde writes fields as declared): a record read from disk
//! and written back is byte for byte what earlier versions wrote, so a queue survives an upgrade or
//! a downgrade. Optional fields are absent until a delivery attempt sets them.

use serde::{Deserialize, Serialize};

/// A queue id: 14 hex digits of microseconds since the epoch, a 4-digit sequence, a random tail
/// (see `Spool::new_id`). Also the file stem of the entry in `queue/`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct QueueId(String);

impl QueueId {
    pub fn new(id: String) -> QueueId {
        QueueId(id)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for QueueId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The envelope of a queued message, as received, plus each recipient's delivery state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedMessage {
    pub id: QueueId,
    /// Seconds since the epoch at which the message was accepted.
    pub created: u64,
    /// The client's IP address.
    pub client: String,
    pub helo: String,
    /// The authenticated user, if the client logged in.
    pub auth_user: Option<String>,
    /// The reverse path; empty for `<>` (bounces).
    pub sender: String,
    /// Length of the message bytes after the envelope line (checked, so a cut file is never sent).
    pub size: u64,
    pub recipients: Vec<Recipient>,
}

/// One recipient of a queued message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recipient {
    pub address: String,
    pub state: RecipientState,
    /// Delivery attempts made so far.
    pub attempts: u64,
    /// The last reply of the receiving server, when an attempt failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_reply: Option<String>,
    /// Seconds since the epoch before which no new attempt is made (absent: due now).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt: Option<u64>,
}

/// Where one recipient's delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecipientState {
    /// Not delivered yet: attempted when due.
    Pending,
    /// Accepted by the receiving server.
    Delivered,
    /// Refused for good, or expired in the queue (a bounce was queued).
    Failed,
}

impl QueuedMessage {
    /// Whether some recipient still waits for an attempt.
    pub fn has_pending(&self) -> bool {
        self.recipients.iter().any(Recipient::is_pending)
    }
}

impl Recipient {
    pub fn is_pending(&self) -> bool {
        self.state == RecipientState::Pending
    }

    /// Whether a pending recipient's next attempt is due at `now` (seconds since the epoch).
    pub fn is_due(&self, now: u64) -> bool {
        self.is_pending() && self.next_attempt.unwrap_or(0) <= now
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Envelope lines and sidecars exactly as the `serde_json::Value` code of 0.x wrote them.
    const WRITTEN_BY_EARLIER_VERSIONS: [&str; 4] = [
        // A fresh entry's first line.
        r#"{"id":"0633a1f2b4c5d60001a1b2c3d4","created":1764590000,"client":"127.0.0.1","helo":"client.test","auth_user":null,"sender":"a@example.org","size":42,"recipients":[{"address":"b@example.org","state":"pending","attempts":0},{"address":"c@example.org","state":"pending","attempts":0}]}"#,
        // A bounce (`<>`) from an authenticated session.
        r#"{"id":"0633a1f2b4c5d60002a1b2c3d4","created":1764590001,"client":"::1","helo":"mx.example.org","auth_user":"alice","sender":"","size":0,"recipients":[{"address":"a@example.org","state":"pending","attempts":0}]}"#,
        // A sidecar after an attempt: delivered, refused, deferred.
        r#"{"id":"0633a1f2b4c5d60001a1b2c3d4","created":1764590000,"client":"127.0.0.1","helo":"client.test","auth_user":null,"sender":"a@example.org","size":42,"recipients":[{"address":"b@example.org","state":"delivered","attempts":1},{"address":"c@example.org","state":"failed","attempts":1,"last_reply":"550 5.1.1 no such user"},{"address":"d@example.org","state":"pending","attempts":2,"last_reply":"451 4.3.0 try later","next_attempt":1764590600}]}"#,
        // A sidecar written by an offline `mail flush`.
        r#"{"id":"0633a1f2b4c5d60001a1b2c3d4","created":1764590000,"client":"127.0.0.1","helo":"client.test","auth_user":null,"sender":"a@example.org","size":42,"recipients":[{"address":"d@example.org","state":"pending","attempts":2,"last_reply":"451 4.3.0 try later","next_attempt":0}]}"#,
    ];

    #[test]
    fn records_written_by_earlier_versions_are_written_back_byte_for_byte() {
        for line in WRITTEN_BY_EARLIER_VERSIONS {
            let record: QueuedMessage = serde_json::from_str(line).unwrap();
            assert_eq!(serde_json::to_string(&record).unwrap(), line);
        }
    }

    #[test]
    fn states_and_due_times_are_typed() {
        let record: QueuedMessage = serde_json::from_str(WRITTEN_BY_EARLIER_VERSIONS[2]).unwrap();
        let states: Vec<_> = record.recipients.iter().map(|r| r.state).collect();
        use RecipientState::*;
        assert_eq!(states, [Delivered, Failed, Pending]);
        assert!(record.has_pending());
        assert!(!record.recipients[2].is_due(1764590599));
        assert!(record.recipients[2].is_due(1764590600));
        assert!(serde_json::from_str::<RecipientState>(r#""queued""#).is_err());
    }
}
