//! Turn what a local program pipes into sendmail into an SMTP transaction: the end of input (a
//! lone `.` line unless `-i`), CRLF line ends (the relay refuses bare LF), recipients from the
//! headers with `-t` (Bcc: removed), bare local names qualified with the relay's hostname as a
//! null client does (`root` -> `root@<hostname>`), and From:, Date: and Message-ID: added when the
//! program wrote none (cron and scripts often do not).

use std::time::SystemTime;

use super::args::Args;

/// What to submit.
#[derive(Debug, PartialEq, Eq)]
pub struct Submission {
    /// `None`: the null sender (`-f '<>'`).
    pub sender: Option<String>,
    pub recipients: Vec<String>,
    /// Headers and body, CRLF line ends, not dot-stuffed.
    pub data: Vec<u8>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MessageError {
    #[error("no recipients: give them as arguments, or use -t with To:, Cc: or Bcc: headers")]
    NoRecipients,
}

/// Who runs sendmail: the local part of the default sender and of the added From:.
pub struct Local<'a> {
    pub user: &'a str,
    pub hostname: &'a str,
}

pub fn prepare(
    input: &[u8],
    args: &Args,
    local: &Local<'_>,
    now: SystemTime,
) -> Result<Submission, MessageError> {
    let text = String::from_utf8_lossy(input);
    let mut lines: Vec<&str> = Vec::new();
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if !args.ignore_dots && line == "." {
            break;
        }
        lines.push(line);
    }
    // A final newline leaves one empty piece: not a line of its own.
    if lines.last() == Some(&"") {
        lines.pop();
    }
    // Headers up to the first empty line; input that does not start with one is all body.
    let (head, body): (&[&str], &[&str]) = match lines.first() {
        Some(first) if is_header_start(first) => {
            let split = lines.iter().position(|l| l.is_empty()).unwrap_or(lines.len());
            (&lines[..split], lines.get(split + 1..).unwrap_or(&[]))
        }
        Some(&"") => (&[], &lines[1..]),
        _ => (&[], &lines[..]),
    };
    let fields = unfold(head);

    let mut recipients: Vec<String> = args.recipients.iter().flat_map(|r| addresses(r)).collect();
    if args.from_headers {
        for (name, value) in &fields {
            if ["to", "cc", "bcc"].contains(&name.to_ascii_lowercase().as_str()) {
                recipients.extend(addresses(value));
            }
        }
    }
    let mut recipients: Vec<String> = recipients
        .into_iter()
        .map(|r| qualify(&r, local.hostname))
        .collect();
    recipients.dedup();
    if recipients.is_empty() {
        return Err(MessageError::NoRecipients);
    }
    let sender = match args.sender.as_deref() {
        Some("<>") | Some("") => None,
        Some(s) => Some(qualify(s.trim_matches(|c| c == '<' || c == '>'), local.hostname)),
        None => Some(format!("{}@{}", local.user, local.hostname)),
    };

    let has = |n: &str| fields.iter().any(|(k, _)| k.eq_ignore_ascii_case(n));
    let mut out = Vec::with_capacity(input.len() + 256);
    let mut push = |l: &str| {
        out.extend_from_slice(l.as_bytes());
        out.extend_from_slice(b"\r\n");
    };
    if !has("from") {
        let addr = format!("{}@{}", local.user, local.hostname);
        match args.full_name.as_deref() {
            Some(n) => push(&format!("From: \"{}\" <{addr}>", n.replace(['"', '\\'], ""))),
            None => push(&format!("From: {addr}")),
        }
    }
    if !has("date") {
        push(&format!("Date: {}", crate::mail::date::rfc5322_date(now)));
    }
    if !has("message-id") {
        let nanos = now
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        push(&format!(
            "Message-ID: <{nanos}.{}@{}>",
            std::process::id(),
            local.hostname
        ));
    }
    // Header lines as written, Bcc: (and its continuation lines) left out.
    let mut in_bcc = false;
    for l in head {
        if is_header_start(l) {
            in_bcc = l
                .split(':')
                .next()
                .is_some_and(|n| n.trim().eq_ignore_ascii_case("bcc"));
        }
        if !in_bcc {
            push(l);
        }
    }
    push("");
    for l in body {
        push(l);
    }
    Ok(Submission {
        sender,
        recipients,
        data: out,
    })
}

fn is_header_start(line: &str) -> bool {
    match line.split_once(':') {
        Some((name, _)) => !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic() && b != b':'),
        None => false,
    }
}

/// (name, value) per header field, continuation lines joined.
fn unfold(head: &[&str]) -> Vec<(String, String)> {
    let mut fields: Vec<(String, String)> = Vec::new();
    for l in head {
        if l.starts_with([' ', '\t']) {
            if let Some((_, v)) = fields.last_mut() {
                v.push(' ');
                v.push_str(l.trim());
            }
        } else if let Some((n, v)) = l.split_once(':') {
            fields.push((n.trim().to_string(), v.trim().to_string()));
        }
    }
    fields
}

/// The mailboxes of an address list (`a@x, "B, C" <b@y> (comment), c`): the part in angle
/// brackets where there is one, comments and display names dropped; groups' names too.
fn addresses(list: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut item = String::new();
    let (mut quoted, mut depth) = (false, 0u32);
    for c in list.chars().chain(std::iter::once(',')) {
        match c {
            '"' if depth == 0 => {
                quoted = !quoted;
                item.push(c);
            }
            '(' if !quoted => depth += 1,
            ')' if !quoted && depth > 0 => depth -= 1,
            _ if depth > 0 => {}
            ',' | ';' if !quoted => {
                if let Some(a) = mailbox(&item) {
                    out.push(a);
                }
                item.clear();
            }
            _ => item.push(c),
        }
    }
    out
}

fn mailbox(item: &str) -> Option<String> {
    // A group (`undisclosed-recipients:`) names no mailbox of its own.
    let item = match item.rsplit_once(':') {
        Some((_, rest)) if !item.contains('<') || item.find(':') < item.find('<') => rest,
        _ => item,
    };
    let addr = match (item.find('<'), item.rfind('>')) {
        (Some(a), Some(b)) if a < b => &item[a + 1..b],
        _ => item,
    };
    let addr = addr.trim();
    (!addr.is_empty() && !addr.contains('"') && !addr.contains(' ')).then(|| addr.to_string())
}

fn qualify(addr: &str, hostname: &str) -> String {
    if addr.contains('@') {
        addr.to_string()
    } else {
        format!("{addr}@{hostname}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCAL: Local<'static> = Local {
        user: "root",
        hostname: "host.example.org",
    };

    fn args(from_headers: bool, ignore_dots: bool, recipients: &[&str]) -> Args {
        Args {
            from_headers,
            ignore_dots,
            recipients: recipients.iter().map(|s| s.to_string()).collect(),
            ..Args::default()
        }
    }

    fn run(input: &str, a: &Args) -> Submission {
        prepare(input.as_bytes(), a, &LOCAL, std::time::UNIX_EPOCH).unwrap()
    }

    #[test]
    fn recipients_from_headers_with_bcc_removed() {
        let s = run(
            "To: Alice <alice@example.org>, bob@example.org (Bob)\nCc: \"Doe, Jane\" <jane@example.org>\nBcc: hidden@example.org,\n  also@example.org\nSubject: x\n\nbody\n",
            &args(true, true, &["extra@example.org"]),
        );
        assert_eq!(
            s.recipients,
            [
                "extra@example.org",
                "alice@example.org",
                "bob@example.org",
                "jane@example.org",
                "hidden@example.org",
                "also@example.org"
            ]
        );
        let text = String::from_utf8(s.data).unwrap();
        assert!(
            !text.to_ascii_lowercase().contains("bcc") && !text.contains("hidden") && !text.contains("also@"),
            "{text}"
        );
        assert!(text.contains("\r\nSubject: x\r\n\r\nbody\r\n"), "{text:?}");
        assert!(!text.replace("\r\n", "").contains('\n'), "bare LF left: {text:?}");
    }

    #[test]
    fn cron_style_mail_gets_sender_from_date_and_qualified_recipient() {
        let a = Args {
            full_name: Some("CronDaemon".into()),
            ..args(false, true, &["root"])
        };
        let s = run("Subject: Cron <root@host> true\n\nout\n.\nmore\n", &a);
        assert_eq!(s.sender.as_deref(), Some("root@host.example.org"));
        assert_eq!(s.recipients, ["root@host.example.org"]);
        let text = String::from_utf8(s.data).unwrap();
        assert!(text.starts_with("From: \"CronDaemon\" <root@host.example.org>\r\nDate: Thu, 1 Jan 1970 00:00:00 +0000\r\nMessage-ID: <"), "{text}");
        // -i: the lone dot is content.
        assert!(text.ends_with("\r\n\r\nout\r\n.\r\nmore\r\n"), "{text:?}");
    }

    #[test]
    fn without_i_a_lone_dot_ends_the_message_and_existing_headers_stay() {
        let s = run(
            "From: app@example.org\r\nDate: x\r\nMessage-ID: <m@x>\r\nTo: a@example.org\r\n\r\nbody\r\n.\r\nnot sent\r\n",
            &args(true, false, &[]),
        );
        let text = String::from_utf8(s.data).unwrap();
        assert!(text.starts_with("From: app@example.org\r\nDate: x\r\n"), "{text}");
        assert!(
            text.ends_with("\r\n\r\nbody\r\n") && !text.contains("not sent"),
            "{text:?}"
        );
    }

    #[test]
    fn null_sender_and_no_recipients() {
        let a = Args {
            sender: Some("<>".into()),
            ..args(false, true, &["a@example.org"])
        };
        assert_eq!(run("\nbody", &a).sender, None);
        assert_eq!(
            prepare(
                b"Subject: x\n\nbody",
                &args(true, true, &[]),
                &LOCAL,
                SystemTime::now()
            ),
            Err(MessageError::NoRecipients)
        );
    }
}
