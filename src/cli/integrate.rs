//! `vestibule integrate mattermost`: print the plan, then apply it (see `crate::integrate`).
//!
//! Exit codes: 0 done (or nothing to do, or a dry run), 1 vestibule's configuration is invalid or
//! names no Mattermost, 2 Mattermost's configuration could not be read or written, 3 refused:
//! values an admin set would be overwritten (nothing written; `--force` overwrites them).

use serde_json::Value;

use super::out::{count, errln, fail, outln};
use crate::config::{self, Location};
use crate::integrate::{self, IntegrateError, Outcome, Request};

pub fn mattermost(location: Location, req: Request) -> i32 {
    let cfg = match config::load(&location) {
        Ok(c) => c,
        Err(diags) => {
            super::out::invalid(&diags);
            return 1;
        }
    };
    let prepared = match integrate::mattermost(&cfg, &req) {
        Ok(p) => p,
        Err(e @ IntegrateError::Mattermost(_)) => {
            fail!("{e}");
            return 1;
        }
        Err(e @ IntegrateError::Backend(_)) => {
            fail!("{e}");
            return 2;
        }
    };
    let report = &prepared.report;
    outln!("Mattermost at {} (vhost `{}`):", report.location, report.vhost);
    for c in &report.plan.changes {
        outln!("  {}: {} -> {}", c.key, show(c.old.as_ref()), show(Some(&c.new)));
    }
    for (key, why) in &report.plan.absent {
        outln!("  note: {key} not set: {why}");
    }
    for n in &report.notes {
        outln!("  note: {n}");
    }
    let conflicts = &report.plan.conflicts;
    if !conflicts.is_empty() {
        let verb = if req.force {
            "overwritten (--force)"
        } else {
            "kept"
        };
        for c in conflicts {
            errln!(
                "  {}: set to {} by an admin; vestibule would set {}: {verb}",
                c.key,
                show(c.old.as_ref()),
                show(Some(&c.new))
            );
        }
    }
    let outcome = match prepared.apply(&req) {
        Ok(o) => o,
        Err(e) => {
            fail!("{e}");
            return 2;
        }
    };
    match outcome {
        Outcome::Refused => {
            fail!(
                "nothing written: {} set by an admin would change; rerun with --force to overwrite {}",
                count(conflicts.len(), "value"),
                if conflicts.len() == 1 { "it" } else { "them" }
            );
            3
        }
        Outcome::DryRun => {
            outln!(
                "dry run: {} would change; nothing written",
                count(report.plan.changes.len(), "setting")
            );
            0
        }
        Outcome::UpToDate => {
            outln!("Mattermost already matches vestibule: nothing to change");
            0
        }
        Outcome::Written { backup } => {
            let n = count(report.plan.changes.len(), "setting");
            match backup {
                Some(b) => outln!(
                    "changed {n}; the previous file is {}; restart Mattermost to apply them",
                    b.display()
                ),
                None => outln!(
                    "changed {n}; Mattermost applies them at once, except ListenAddress (after a restart)"
                ),
            }
            0
        }
    }
}

/// A value as JSON, so `""`, `"10025"` and `10025` read differently; `(absent)` for a missing key.
fn show(v: Option<&Value>) -> String {
    v.map_or_else(|| "(absent)".to_string(), Value::to_string)
}
