//! `vestibule doctor`: every check of `crate::doctor`, as a table or (`--json`) for monitoring.
//! Exit code 0 all OK, 1 warnings, 2 failures.

use super::out::{out, outln};
use crate::app::provision_all;
use crate::config::{self, Location};
use crate::doctor::{checks, Line, Report};
use crate::integrate::backend::Target;
use crate::module::Context;

pub fn doctor(location: Location, json: bool, mattermost: Target) -> i32 {
    let report = Report {
        lines: run(&location, &mattermost),
    };
    if json {
        outln!("{}", report.json());
    } else {
        out!("{}", report.table());
    }
    report.status().exit_code()
}

/// Check 1, configuration: it loads (as `vestibule check`); the other checks need it, so a configuration
/// that does not load ends the report.
fn run(location: &Location, mattermost: &Target) -> Vec<Line> {
    const CHECK: &str = "configuration";
    let loaded = config::load_partial(location);
    let ctx = match Context::for_config(loaded.0.as_ref()) {
        Ok(c) => c,
        Err(e) => return vec![Line::fail(CHECK, e.to_string(), "fix [dns] servers")],
    };
    match provision_all(loaded, &ctx, None) {
        Ok((cfg, modules)) => {
            let mut lines = vec![Line::ok(CHECK, format!("{} is valid", cfg.origin))];
            lines.extend(checks::all(&cfg, &modules, mattermost));
            lines
        }
        Err(diags) => vec![Line::fail(
            CHECK,
            format!(
                "invalid ({}); the other checks need it",
                super::out::count(diags.len(), "error")
            ),
            "vestibule check (lists each error with its file and line)",
        )],
    }
}
