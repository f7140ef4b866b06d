//! Check 5, mattermost: Mattermost's settings, read through `integrate`'s back ends, are what
//! `vestibule integrate mattermost` would set. The dry run's plan is the comparison, so doctor and
//! integrate can never disagree on what "matches" means.

use serde_json::Value;

use super::Line;
use crate::config::Config;
use crate::integrate::backend::Target;
use crate::integrate::mattermost::{MattermostError, Options};
use crate::integrate::{self, IntegrateError, Request};

const CHECK: &str = "mattermost";
const FIX: &str = "vestibule integrate mattermost";

/// No line when no vhost serves Mattermost: there is nothing to compare. `packager_defaults`: the
/// Kopano packages' defaults are wanted too (`[integrate] packager_defaults`).
pub fn settings(cfg: &Config, target: &Target, packager_defaults: bool) -> Vec<Line> {
    let req = Request {
        target: target.clone(),
        api_timeout: super::checks::DEADLINE,
        options: Options {
            packager_defaults,
            ..Options::default()
        },
        dry_run: true,
        force: false,
    };
    let prepared = match integrate::mattermost(cfg, &req) {
        Ok(p) => p,
        Err(IntegrateError::Mattermost(MattermostError::NoVhost { .. })) => return Vec::new(),
        Err(e @ IntegrateError::Mattermost(_)) => return vec![Line::warn(CHECK, e.to_string(), FIX)],
        Err(e @ IntegrateError::Backend(_)) => {
            return vec![Line::warn(
                CHECK,
                format!("cannot read Mattermost's configuration: {e}"),
                "set [integrate] mattermost_config (or mattermost_url and mattermost_token_file), or give doctor --mattermost-config PATH",
            )]
        }
    };
    let plan = &prepared.report.plan;
    let mut lines: Vec<Line> = plan
        .changes
        .iter()
        .map(|c| {
            Line::warn(
                CHECK,
                format!(
                    "{} is {}, vestibule needs {}",
                    c.key,
                    show(c.old.as_ref()),
                    show(Some(&c.new))
                ),
                FIX,
            )
        })
        .collect();
    lines.extend(plan.conflicts.iter().map(|c| {
        Line::warn(
            CHECK,
            format!(
                "{} is {} (set by an admin), vestibule needs {}",
                c.key,
                show(c.old.as_ref()),
                show(Some(&c.new))
            ),
            format!("{FIX} --force"),
        )
    }));
    if lines.is_empty() {
        lines.push(Line::ok(
            CHECK,
            format!(
                "settings match vhost `{}` ({})",
                prepared.report.vhost, prepared.report.location
            ),
        ));
    }
    lines
}

/// A value as JSON, so `""` and `(absent)` read differently.
fn show(v: Option<&Value>) -> String {
    v.map_or_else(|| "(absent)".to_string(), Value::to_string)
}
