//! The certificate table `vestibule cert status` prints (from the daemon's live store when it runs).

use super::acme::Registry;
use super::load::{format_time, unix_now, Source};
use super::store::CertSnapshot;

pub fn render(snap: &CertSnapshot, acme: Option<&Registry>) -> String {
    let mut rows = vec![[
        "NAME".to_string(),
        "VHOST".into(),
        "SOURCE".into(),
        "ISSUER".into(),
        "NOT AFTER".into(),
        "DAYS LEFT".into(),
        "NEXT RENEWAL".into(),
    ]];
    let mut notes = Vec::new();
    for (i, c) in snap.certs.iter().enumerate() {
        let days = (c.not_after - unix_now()).div_euclid(86400);
        let acme_status = match (acme, &c.source) {
            (Some(reg), Source::Acme | Source::AcmePending) => Some(reg.status(&c.vhost)),
            _ => None,
        };
        let backoff = acme_status
            .as_ref()
            .and_then(|s| s.next_attempt)
            .filter(|(t, _)| *t > unix_now());
        let renewal = match (&c.source, backoff) {
            // After a failed order, nothing happens before the backoff has passed.
            (Source::Acme | Source::AcmePending, Some((t, _))) => format!("{} (backoff)", format_time(t)),
            // rustls-acme renews at two thirds of the lifetime.
            (Source::Acme, None) => format_time(c.not_after - (c.not_after - c.not_before) / 3),
            (Source::AcmePending, None) => "now (ordering)".into(),
            _ => "-".into(),
        };
        for name in snap.router.names_of(i) {
            rows.push([
                name.to_string(),
                c.vhost.to_string(),
                c.source.label().to_string(),
                c.issuer.clone(),
                format_time(c.not_after),
                days.to_string(),
                renewal.clone(),
            ]);
        }
        if let Some(st) = acme_status {
            if let Some(e) = st.last_error {
                notes.push(format!("vhost {}: last error: {e}", c.vhost));
            }
            if let Some((t, failures)) = st.next_attempt {
                let when = if t <= unix_now() {
                    "now".to_string()
                } else {
                    format_time(t)
                };
                notes.push(format!(
                    "vhost {}: next attempt: {when} (after {failures} failed order{})",
                    c.vhost,
                    if failures == 1 { "" } else { "s" }
                ));
            }
            if let Some(t) = st.last_success {
                notes.push(format!("vhost {}: last issued: {}", c.vhost, format_time(t)));
            }
        }
    }
    let widths: Vec<usize> = (0..7)
        .map(|col| rows.iter().map(|r| r[col].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in &rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    if snap.certs.is_empty() {
        out.push_str("(no vhost has `tls`)\n");
    }
    for n in notes {
        out.push_str(&n);
        out.push('\n');
    }
    out
}
