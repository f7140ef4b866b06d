//! `vestibule mail queue`: what waits in the spool (read-only; safe while the daemon runs).

use super::out::{fail, out, outln};
use crate::config::{self, Location};

pub fn queue(location: Location) -> i32 {
    let cfg = match config::load(&location) {
        Ok(c) => c,
        Err(diags) => {
            super::out::invalid(&diags);
            return 1;
        }
    };
    let dir = cfg.state_dir.join("mail/queue");
    let Ok(entries) = crate::mail::spool::entries(&dir) else {
        outln!("(no mail queue at {})", dir.display());
        return 0;
    };
    let mut rows: Vec<crate::mail::record::QueuedMessage> = entries
        .filter_map(|id| crate::mail::spool::read_envelope(&dir, &id).ok())
        .collect();
    rows.sort_by_key(|v| v.created);
    let now = crate::files::unix_now() as u64;
    outln!(
        "{:<28} {:>8}  {:<32} {:<32} {:>8}  LAST REPLY",
        "ID",
        "AGE",
        "SENDER",
        "RECIPIENT",
        "ATTEMPTS"
    );
    for v in &rows {
        let age = now.saturating_sub(v.created);
        let age = if age >= 3600 {
            format!("{}h", age / 3600)
        } else {
            format!("{}m", age / 60)
        };
        let sender = if v.sender.is_empty() { "<>" } else { &v.sender };
        for r in v.recipients.iter().filter(|r| r.is_pending()) {
            outln!(
                "{:<28} {:>8}  {:<32} {:<32} {:>8}  {}",
                v.id,
                age,
                sender,
                r.address,
                r.attempts,
                r.last_reply.as_deref().unwrap_or("-")
            );
        }
    }
    outln!("{} message(s) queued", rows.len());
    0
}

pub enum Op {
    Flush(Option<String>),
    Drop(String),
}

/// `mail flush [ID]` and `mail drop ID`: through the running daemon's admin listener, or on the
/// spool files directly when no daemon holds the spool.
pub fn control(location: Location, op: Op) -> i32 {
    let cfg = match config::load(&location) {
        Ok(c) => c,
        Err(diags) => {
            super::out::invalid(&diags);
            return 1;
        }
    };
    if let Op::Drop(id) | Op::Flush(Some(id)) = &op {
        if !crate::mail::control::valid_id(id) {
            fail!("`{id}` is not a queue id\n    hint: `vestibule mail queue` lists them");
            return 2;
        }
    }
    let path = match &op {
        Op::Flush(None) => "/mail/flush".to_string(),
        Op::Flush(Some(id)) => format!("/mail/flush/{id}"),
        Op::Drop(id) => format!("/mail/drop/{id}"),
    };
    let admin = super::status::admin_addr(&cfg);
    match super::status::request(admin, "POST", &path) {
        Ok((200, body)) => {
            out!("{body}");
            return 0;
        }
        Ok((status, body)) => {
            fail!("{status} {}", body.trim_end());
            return 2;
        }
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {}
        Err(e) => {
            fail!("cannot reach the daemon's admin listener at {admin}: {e}");
            return 2;
        }
    }
    // No daemon answers: work on the files, holding the spool lock so that none starts meanwhile.
    let dir = cfg.state_dir.join("mail");
    let _lock = match crate::mail::spool::lock(&dir) {
        Ok(l) => l,
        Err(e) => {
            fail!("{e}\n    hint: is [admin] listen the daemon's? `vestibule status` tells");
            return 2;
        }
    };
    let queue = dir.join("queue");
    match op {
        Op::Drop(id) => match crate::mail::control::remove(&queue, &id) {
            crate::mail::control::DropOutcome::Dropped => {
                outln!("dropped");
                0
            }
            _ => {
                fail!("no message {id} in {}", queue.display());
                2
            }
        },
        Op::Flush(id) => match crate::mail::control::flush_offline(&queue, id.as_deref()) {
            Ok(0) if id.is_some() => {
                fail!("no message {} in {}", id.unwrap_or_default(), queue.display());
                2
            }
            Ok(n) => {
                outln!("{n} message(s) due now; they go out when vestibule starts");
                0
            }
            Err(e) => {
                fail!("cannot update {}: {e}", queue.display());
                2
            }
        },
    }
}

/// `mail hash-password`: one line from stdin (no echo handling: pipe it in) to an argon2id hash.
pub fn hash_password() -> i32 {
    let mut line = String::new();
    if std::io::stdin().read_line(&mut line).is_err() {
        fail!("cannot read a password from stdin");
        return 2;
    }
    let password = line.trim_end_matches(['\r', '\n']);
    if password.is_empty() {
        fail!(
            "the password is empty\n    hint: printf '%s\\n' 'the password' | vestibule mail hash-password"
        );
        return 2;
    }
    match crate::mail::users::hash_password(password.as_bytes()) {
        Ok(h) => {
            outln!("{h}");
            0
        }
        Err(e) => {
            fail!("{e}");
            2
        }
    }
}
