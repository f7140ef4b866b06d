//! `vestibule sendmail` (also run as `sendmail` through the /usr/sbin/sendmail link): the host's
//! own mail (cron, root, unattended-upgrades, scripts) submitted to the local relay over SMTP, as
//! Postfix's null client does.
//!
//! It talks to the relay's first plain SMTP listener: where the daemon published it in
//! `<state_dir>/listening` (readable by root), else the first `[mail] listen` address (a wildcard
//! one through loopback), where the relay trusts loopback (`trusted_networks`), so no password is needed and nothing else is opened
//! up: whoever can run this can reach 127.0.0.1:25 anyway.
//!
//! When the relay does not answer, nothing is queued behind its back: the exit status is 75
//! (EX_TEMPFAIL, "try again later") with a message on stderr, which cron logs and callers such as
//! PHP or unattended-upgrades report. The spool belongs to the daemon (it holds its lock and its
//! delivery state), so writing into it from here would race it.

mod args;
mod message;

use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use lettre::transport::smtp::extension::ClientId;

use super::out::errln;
use crate::config::{self, Location};
use crate::mail::client::Failure;

/// sysexits.h
const EX_USAGE: i32 = 64;
const EX_DATAERR: i32 = 65;
const EX_UNAVAILABLE: i32 = 69;
const EX_SOFTWARE: i32 = 70;
const EX_CONFIG: i32 = 78;
const EX_TEMPFAIL: i32 = 75;

/// Longer than any local relay needs; short enough that a cron job does not hang for minutes.
const TIMEOUT: Duration = Duration::from_secs(60);

/// `argv` without the program name.
pub fn sendmail(argv: Vec<String>) -> i32 {
    let args = match args::parse(argv) {
        Ok(a) => a,
        Err(e) => {
            errln!("sendmail: {e}");
            return EX_USAGE;
        }
    };
    let location = Location::from_arg(args.config.clone());
    let cfg = match config::load(&location) {
        Ok(c) => c,
        Err(diags) => {
            errln!("{diags}");
            errln!("sendmail: cannot read vestibule's configuration (-C FILE names another one); the message was not sent");
            return EX_CONFIG;
        }
    };
    let Some(mail) = cfg.mail.as_ref() else {
        errln!(
            "sendmail: the mail relay is off ([mail] is not in {}); the message was not sent",
            cfg.origin
        );
        return EX_UNAVAILABLE;
    };
    let published = super::status::published(&cfg.state_dir, "smtp");
    let Some(relay) = published.or(mail.listen.first().copied()).map(local_address) else {
        errln!("sendmail: [mail] listen is empty, there is no relay to submit to; the message was not sent");
        return EX_UNAVAILABLE;
    };
    let mut input = Vec::new();
    if let Err(e) = std::io::stdin().read_to_end(&mut input) {
        errln!("sendmail: reading the message from standard input: {e}");
        return EX_SOFTWARE;
    }
    let user = user_name();
    let hostname = mail.hostname.value.as_str();
    let local = message::Local {
        user: &user,
        hostname,
    };
    let submission = match message::prepare(&input, &args, &local, std::time::SystemTime::now()) {
        Ok(s) => s,
        Err(e) => {
            errln!("sendmail: {e}");
            return EX_USAGE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            errln!("sendmail: {e}");
            return EX_SOFTWARE;
        }
    };
    let sent = runtime.block_on(async {
        tokio::time::timeout(TIMEOUT, submit(relay, hostname, &submission))
            .await
            .unwrap_or_else(|_| {
                Err(Failure::Temporary(format!(
                    "no answer within {} s",
                    TIMEOUT.as_secs()
                )))
            })
    });
    match sent {
        Ok(()) => 0,
        Err(Failure::Temporary(e)) => {
            errln!("sendmail: the relay at {relay} did not take the message: {e}");
            errln!("sendmail: the message was NOT sent; try again later. Is vestibule running? (systemctl status vestibule)");
            EX_TEMPFAIL
        }
        Err(Failure::Permanent(e)) => {
            errln!("sendmail: the relay at {relay} refused the message: {e}");
            EX_DATAERR
        }
    }
}

/// The relay's SMTP address as seen from this host: a wildcard address through loopback.
fn local_address(listen: SocketAddr) -> SocketAddr {
    let ip = match listen.ip() {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, listen.port())
}

async fn submit(relay: SocketAddr, hostname: &str, s: &message::Submission) -> Result<(), Failure> {
    let parse = |a: &str| {
        a.parse::<lettre::Address>()
            .map_err(|e| Failure::Permanent(format!("`{a}` is not a mail address: {e}")))
    };
    let sender = s.sender.as_deref().map(parse).transpose()?;
    let recipients = s
        .recipients
        .iter()
        .map(|r| parse(r))
        .collect::<Result<Vec<_>, _>>()?;
    let envelope =
        lettre::address::Envelope::new(sender, recipients).map_err(|e| Failure::Permanent(e.to_string()))?;
    let hello = ClientId::Domain(hostname.to_string());
    let mut conn = crate::mail::client::connect(relay, &hello, crate::mail::client::Secure::None).await?;
    let sent = crate::mail::client::send(&mut conn, &envelope, &s.data).await;
    let _ = conn.quit().await;
    sent
}

/// The invoking user's login name (the default sender's local part), as Postfix's sendmail takes
/// it: from the password database by uid, else `$LOGNAME`/`$USER`, else the uid.
#[allow(unsafe_code)] // getpwuid(3) (see SAFETY below)
fn user_name() -> String {
    // SAFETY: getuid has no preconditions; getpwuid returns NULL or a pointer to a static entry
    // whose pw_name is a NUL-terminated string, copied out at once (this process is
    // single-threaded here, so nothing else calls getpwuid meanwhile).
    let from_db = unsafe {
        let uid = libc::getuid();
        let pw = libc::getpwuid(uid);
        if pw.is_null() || (*pw).pw_name.is_null() {
            None
        } else {
            Some(
                std::ffi::CStr::from_ptr((*pw).pw_name)
                    .to_string_lossy()
                    .into_owned(),
            )
        }
    };
    from_db
        .or_else(|| std::env::var("LOGNAME").ok())
        .or_else(|| std::env::var("USER").ok())
        .filter(|n| {
            !n.is_empty()
                && n.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        })
        .unwrap_or_else(|| {
            // SAFETY: getuid has no preconditions.
            format!("uid{}", unsafe { libc::getuid() })
        })
}
