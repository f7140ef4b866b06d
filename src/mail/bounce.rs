//! Delivery status notifications (RFC 3464): the report a sender gets when recipients failed for
//! good (a 5xx, or the queue lifetime ran out). Sent from `<>` so that it can never bounce back.

use std::fmt::Write as _;
use std::time::SystemTime;

use super::date::rfc5322_date;

/// One failed recipient of a message.
pub struct Failed<'a> {
    pub recipient: &'a str,
    /// The last reply, or why it expired.
    pub reply: &'a str,
    /// The queue lifetime ran out (only temporary failures until then).
    pub expired: bool,
}

/// The enhanced status code for a report: the one in the reply when there is one, else 5.0.0
/// (or 4.4.7, "delivery time expired", for an expired message).
fn status_of(f: &Failed<'_>) -> String {
    if f.expired {
        return "4.4.7".into();
    }
    f.reply
        .split(|c: char| c.is_whitespace() || c == ':' || c == ',')
        .find(|w| {
            let parts: Vec<&str> = w.split('.').collect();
            parts.len() == 3
                && matches!(parts[0], "2" | "4" | "5")
                && parts[1..]
                    .iter()
                    .all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()))
        })
        .map_or_else(|| "5.0.0".into(), str::to_string)
}

/// Keep report fields on one line of printable ASCII.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_graphic() || c == ' ' { c } else { ' ' })
        .take(900)
        .collect()
}

/// The whole report message, CRLF line endings, final CRLF included (as the spool stores bodies).
pub fn report(
    hostname: &str,
    queue_id: &str,
    sender: &str,
    arrival: SystemTime,
    failed: &[Failed<'_>],
    original: &[u8],
) -> Vec<u8> {
    let now = rfc5322_date(SystemTime::now());
    let boundary = format!("{queue_id}/{hostname}");
    let mut m = String::with_capacity(2048);
    let _ = write!(
        m,
        "From: Mail Delivery System <MAILER-DAEMON@{hostname}>\r\n\
         To: <{sender}>\r\n\
         Subject: Undelivered Mail Returned to Sender\r\n\
         Date: {now}\r\n\
         Message-ID: <{queue_id}.bounce@{hostname}>\r\n\
         Auto-Submitted: auto-replied\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"{boundary}\"\r\n\
         \r\n\
         This is a MIME-encapsulated message.\r\n\
         \r\n\
         --{boundary}\r\n\
         Content-Type: text/plain; charset=us-ascii\r\n\
         \r\n\
         This is the mail relay at {hostname}.\r\n\
         \r\n\
         Your message could not be delivered to one or more recipients.\r\n\
         It is attached below.\r\n\
         \r\n",
    );
    for f in failed {
        let why = if f.expired {
            format!("delivery time expired; last reply: {}", one_line(f.reply))
        } else {
            one_line(f.reply)
        };
        let _ = write!(m, "<{}>: {why}\r\n", one_line(f.recipient));
    }
    let _ = write!(
        m,
        "\r\n--{boundary}\r\n\
         Content-Type: message/delivery-status\r\n\
         \r\n\
         Reporting-MTA: dns; {hostname}\r\n\
         X-Vestibule-Queue-ID: {queue_id}\r\n\
         Arrival-Date: {arrival}\r\n",
        arrival = rfc5322_date(arrival),
    );
    for f in failed {
        let _ = write!(
            m,
            "\r\nFinal-Recipient: rfc822; {rcpt}\r\n\
             Action: failed\r\n\
             Status: {status}\r\n\
             Diagnostic-Code: smtp; {reply}\r\n\
             Last-Attempt-Date: {now}\r\n",
            rcpt = one_line(f.recipient),
            status = status_of(f),
            reply = one_line(f.reply),
        );
    }
    let _ = write!(
        m,
        "\r\n--{boundary}\r\n\
         Content-Type: text/rfc822-headers\r\n\
         \r\n"
    );
    let mut out = m.into_bytes();
    // The original's header section only (its body may be large, and it is the sender's anyway).
    let headers_end = original
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(original.len(), |p| p + 2);
    out.extend_from_slice(&original[..headers_end]);
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_names_each_failed_recipient_with_its_status() {
        let original = b"Received: from x\r\nSubject: Hello\r\n\r\nsecret body\r\n";
        let r = report(
            "relay.example.org",
            "18f0abc",
            "alice@example.org",
            SystemTime::now(),
            &[
                Failed {
                    recipient: "bob@example.net",
                    reply: "permanent error (550): 5.1.1 User unknown",
                    expired: false,
                },
                Failed {
                    recipient: "carol@example.net",
                    reply: "connection refused",
                    expired: true,
                },
            ],
            original,
        );
        let text = String::from_utf8(r).unwrap();
        assert!(text.contains("report-type=delivery-status"));
        assert!(
            text.contains("Final-Recipient: rfc822; bob@example.net\r\nAction: failed\r\nStatus: 5.1.1\r\n")
        );
        assert!(text
            .contains("Final-Recipient: rfc822; carol@example.net\r\nAction: failed\r\nStatus: 4.4.7\r\n"));
        assert!(text.contains("Subject: Hello\r\n"));
        assert!(
            !text.contains("secret body"),
            "only the original's headers are returned"
        );
        assert!(text.ends_with("--18f0abc/relay.example.org--\r\n"));
        assert!(!text.replace("\r\n", "").contains('\n'), "CRLF only");
    }

    #[test]
    fn status_defaults_to_5_0_0() {
        let f = Failed {
            recipient: "a@b",
            reply: "550 no such user",
            expired: false,
        };
        assert_eq!(status_of(&f), "5.0.0");
    }
}
