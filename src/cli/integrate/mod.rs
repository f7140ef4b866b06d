//! `vestibule integrate`: print each product's plan, then apply it (see `crate::integrate`).
//! `mattermost` here; `onlyoffice`, `kopano` and `all` in their own files.
//!
//! Exit codes: 0 done (or nothing to do, or a dry run), 1 vestibule's configuration is invalid or
//! names no Mattermost, 2 a product's configuration could not be read or written, 3 refused:
//! values an admin set would be overwritten (nothing written; `--force` overwrites them).

mod all;
mod kopano;
mod onlyoffice;

pub use all::{all, AllArgs};
pub use kopano::{kopano, KopanoArgs};
pub use onlyoffice::{onlyoffice, OnlyofficeArgs};

use serde_json::Value;

use super::out::{count, errln, fail, outln};
use crate::config::{self, Config, Location};
use crate::integrate::backend::Target;
use crate::integrate::{self, IntegrateError, IntegrateModule, Outcome, Request};

/// vestibule's configuration, provisioned and checked as `vestibule check` does it, with the
/// `[integrate]` module; or the exit code (1) once the errors are printed.
fn load(location: &Location) -> Result<(Config, IntegrateModule), i32> {
    super::out::provisioned(config::load_partial(location)).map(|(cfg, modules)| (cfg, modules.integrate))
}

/// `integrate mattermost`'s options; `access`: the flags naming Mattermost's configuration, if any
/// (else `[integrate]`'s).
pub struct MattermostArgs {
    pub access: Option<Target>,
    pub vhost: Option<String>,
    pub packager_defaults: bool,
    pub dry_run: bool,
    pub force: bool,
}

pub fn mattermost(location: Location, args: MattermostArgs) -> i32 {
    match load(&location) {
        Ok((cfg, module)) => mattermost_with(&cfg, &module, args),
        Err(code) => code,
    }
}

fn mattermost_with(cfg: &Config, module: &IntegrateModule, args: MattermostArgs) -> i32 {
    let req = Request {
        target: args.access.unwrap_or_else(|| module.mattermost.clone()),
        api_timeout: crate::integrate::backend::API_TIMEOUT,
        options: integrate::mattermost::Options {
            vhost: args.vhost,
            packager_defaults: args.packager_defaults || module.packager_defaults,
        },
        dry_run: args.dry_run,
        force: args.force,
    };
    let prepared = match integrate::mattermost(cfg, &req) {
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
