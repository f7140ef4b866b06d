//! `vestibule cert status`: what each served name gets, from the configuration's certificate sources.

use crate::config::{self, Location};
use crate::module::{provision_all, Context};
use crate::tls::load::{format_time, unix_now};

pub fn status(location: Location) -> i32 {
    let loaded = config::load_partial(&location);
    let ctx = Context::for_config(loaded.0.as_ref());
    let modules = match provision_all(loaded, &ctx, None) {
        Ok((_, m)) => m,
        Err(diags) => {
            eprintln!("{diags}");
            eprintln!("vestibule: configuration is invalid ({} errors)", diags.len());
            return 1;
        }
    };
    let snap = modules.tls.snapshot();
    let mut rows = vec![[
        "NAME".to_string(),
        "VHOST".into(),
        "SOURCE".into(),
        "ISSUER".into(),
        "NOT AFTER".into(),
        "DAYS LEFT".into(),
    ]];
    for (i, c) in snap.certs.iter().enumerate() {
        let days = (c.not_after - unix_now()).div_euclid(86400);
        for name in snap.router.names_of(i) {
            rows.push([
                name.to_string(),
                c.vhost.to_string(),
                c.source.label().to_string(),
                c.issuer.clone(),
                format_time(c.not_after),
                days.to_string(),
            ]);
        }
    }
    let widths: Vec<usize> = (0..6)
        .map(|col| rows.iter().map(|r| r[col].len()).max().unwrap_or(0))
        .collect();
    for r in &rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        println!("{}", line.join("  ").trim_end());
    }
    if snap.certs.is_empty() {
        println!("(no vhost has `tls`)");
    }
    0
}
