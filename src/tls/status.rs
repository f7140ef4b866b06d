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
        let renewal = match c.source {
            // rustls-acme renews at two thirds of the lifetime.
            Source::Acme => format_time(c.not_after - (c.not_after - c.not_before) / 3),
            Source::AcmePending => "now (ordering)".into(),
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
        if let (Some(reg), Source::Acme | Source::AcmePending) = (acme, &c.source) {
            let st = reg.status(&c.vhost);
            if let Some(e) = st.last_error {
                notes.push(format!("vhost {}: last error: {e}", c.vhost));
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
