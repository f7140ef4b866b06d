//! Check: `[mail]`'s smarthost answers as a delivery needs it to: greeting, EHLO, STARTTLS (unless
//! `smarthost_tls = "none"`) or implicit TLS, and AUTH with `smarthost_auth_file`'s credentials.

use std::sync::Arc;

use lettre::transport::smtp::extension::ClientId;

use super::checks::DEADLINE;
use super::Line;
use crate::dns::Dns;
use crate::mail::client::{Failure, Pool, Probe};
use crate::mail::smarthost::{Security, SmarthostSettings};

const CHECK: &str = "smarthost";

/// The whole dialogue's deadline: a few round trips, and some servers delay their greeting on
/// purpose (Postfix's postscreen).
pub const SMTP_DEADLINE: std::time::Duration = DEADLINE.saturating_mul(3);

fn text(f: &Failure) -> &str {
    match f {
        Failure::Temporary(s) | Failure::Permanent(s) => s,
    }
}

/// No line without a smarthost (`[mail]` delivers to MX hosts, or there is no `[mail]`).
pub async fn check(smarthost: Option<(SmarthostSettings, String)>, dns: Arc<Dns>) -> Vec<Line> {
    let Some((settings, hostname)) = smarthost else {
        return Vec::new();
    };
    let s = &settings.smarthost;
    let scheme = match s.security {
        Security::Implicit => "smtps",
        Security::StartTls => "smtp (STARTTLS)",
        Security::None => "smtp (plaintext)",
    };
    let shown = format!("{}:{} {scheme}", s.host, s.port);
    let auth = settings.credentials.is_some();
    let pool = match Pool::for_smarthost(&settings, ClientId::Domain(hostname), dns) {
        Ok(p) => p,
        Err(e) => {
            return vec![Line::fail(
                CHECK,
                format!("{shown}: {e}"),
                "fix [mail] smarthost_ca_file",
            )]
        }
    };
    let reach_fix = "check [mail] smarthost (host, port, smtp:// or smtps://) and that the smarthost \
                     accepts connections from this machine";
    vec![
        match tokio::time::timeout(SMTP_DEADLINE, pool.probe(DEADLINE)).await {
            Err(_) => Line::fail(
                CHECK,
                format!("{shown}: no complete answer within {} s", SMTP_DEADLINE.as_secs()),
                reach_fix,
            ),
            Ok(Err(Probe::Connect(f))) => Line::fail(CHECK, format!("{shown}: {}", text(&f)), reach_fix),
            Ok(Err(Probe::Auth(f))) => Line::fail(
                CHECK,
                format!("{shown}: AUTH refused: {}", text(&f)),
                "fix the user name and password in [mail] smarthost_auth_file",
            ),
            Ok(Ok(())) => Line::ok(
                CHECK,
                format!(
                    "{shown} answers EHLO{}",
                    if auth { " and accepts AUTH" } else { "" }
                ),
            ),
        },
    ]
}
