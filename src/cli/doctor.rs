//! `vestibule doctor`: every check of `crate::doctor`, as a table or (`--json`) for monitoring.
//! Exit code 0 all OK, 1 warnings, 2 failures.

use super::out::{out, outln};
use crate::app::provision_all;
use crate::config::{self, Location};
use crate::doctor::{checks, Line, Report, Sources};
use crate::module::Context;

pub fn doctor(location: Location, json: bool, sources: Sources) -> i32 {
    let report = Report {
        lines: run(&location, &sources),
    };
    if json {
        outln!("{}", report.json());
    } else {
        out!("{}", report.table());
    }
    report.status().exit_code()
}

/// How many of the configuration's errors the report lists (`vestibule check` lists them all).
const SHOWN_ERRORS: usize = 5;

/// Check 1, configuration: it loads (as `vestibule check`); the other checks need it, so a configuration
/// that does not load ends the report.
fn run(location: &Location, sources: &Sources) -> Vec<Line> {
    const CHECK: &str = "configuration";
    let loaded = config::load_partial(location);
    let ctx = match Context::for_config(loaded.0.as_ref()) {
        Ok(c) => c,
        Err(e) => return vec![Line::fail(CHECK, e.to_string(), "fix [dns] servers")],
    };
    match provision_all(loaded, &ctx, None) {
        Ok((cfg, modules)) => {
            let mut lines = vec![Line::ok(CHECK, format!("{} is valid", cfg.origin))];
            lines.extend(checks::all(&cfg, &modules, &ctx, sources));
            lines
        }
        Err(diags) => {
            let mut lines = vec![Line::fail(
                CHECK,
                format!(
                    "invalid ({}); the other checks need it",
                    super::out::count(diags.len(), "error")
                ),
                "vestibule check (lists each error with its file and line)",
            )];
            // The first few errors themselves (an unreadable key, a bad URL): often the whole story.
            lines.extend(diags.iter().take(SHOWN_ERRORS).map(|d| {
                Line::fail(
                    CHECK,
                    format!("{}: {}", d.place, d.message),
                    d.hint.clone().unwrap_or_default(),
                )
            }));
            lines
        }
    }
}
