//! `vestibule users sync`: import users from `[users]`'s directory or CSV file into Mattermost
//! (see `crate::users`), print what was done and a summary line, or (`--json`) one document.
//!
//! Exit codes: 0 every user handled (created, skipped or already there), 1 invalid configuration
//! or options, 2 the source or Mattermost could not be used (the run stopped), 3 some users
//! failed (each listed with its reason).

use std::io::IsTerminal;
use std::path::PathBuf;

use serde_json::json;

use super::out::{count, errln, fail, outln};
use crate::config::{self, Location};
use crate::users::config::SourceKind;
use crate::users::sync::{self, Options, Report, Source};

/// The command line's overrides of `[users]`.
#[derive(Debug, Default)]
pub struct SyncArgs {
    pub team: Option<String>,
    pub csv: Option<PathBuf>,
    pub password: Option<String>,
    pub passwords_file: Option<PathBuf>,
    pub dry_run: bool,
    pub json: bool,
    pub deactivate_missing: bool,
}

pub fn sync(location: Location, args: SyncArgs) -> i32 {
    let (cfg, modules) = match super::out::provisioned(config::load_partial(&location)) {
        Ok(m) => m,
        Err(code) => return code,
    };
    let Some(setup) = modules.users.setup() else {
        fail!("{} has no [users] section", cfg.origin);
        errln!("    add [users] team = \"...\" and [users.mattermost] url, token_file (see the README, Bulk users)");
        return 1;
    };
    let secrets = match setup.secrets() {
        Ok(s) => s,
        Err(diags) => {
            super::out::invalid(&diags);
            return 1;
        }
    };
    let uc = &setup.config;
    let source = match (&args.csv, uc.source, &uc.csv, &uc.ldap) {
        (Some(path), ..) => Source::Csv(path.clone()),
        (None, Some(SourceKind::Csv), Some(csv), _) | (None, None, Some(csv), None) => {
            Source::Csv(csv.value.clone())
        }
        (None, _, _, Some(_)) => Source::Ldap,
        _ => {
            fail!("no source: [users] has neither [users.ldap] nor csv");
            errln!("    add [users.ldap] (url, bind_dn, bind_password_file, base_dn), or give --csv FILE");
            return 1;
        }
    };
    let Some(team) = args
        .team
        .clone()
        .or_else(|| uc.team.as_ref().map(|t| t.value.clone()))
    else {
        fail!("no team: set [users] team or give --team NAME");
        return 1;
    };
    if let Err(why) = crate::users::rules::team_name(&team) {
        fail!("--team {team}: {why}");
        errln!("    Mattermost's team names are 2 to 64 lowercase letters, digits and `-`");
        return 1;
    }
    // `--password -`: one line of standard input, so the password stays out of `ps` and the history.
    let given = match args.password.as_deref() {
        Some("-") => {
            let mut line = String::new();
            if let Err(e) = std::io::stdin().read_line(&mut line) {
                fail!("--password -: cannot read the password from standard input: {e}");
                return 1;
            }
            Some(line.trim_end_matches(['\r', '\n']).to_string())
        }
        other => other.map(str::to_string),
    };
    let password = given.clone().or_else(|| secrets.common_password.clone());
    if let Some(p) = &given {
        if let Err(why) = crate::users::rules::password(p) {
            fail!("--password: the password {why}");
            return 1;
        }
    }
    let team_display_name = match (&args.team, &uc.team, &uc.team_display_name) {
        // A display name set for another team does not fit --team's.
        (Some(t), Some(ct), Some(d)) if *t == ct.value => d.clone(),
        (None, _, Some(d)) => d.clone(),
        _ => team.clone(),
    };
    let opts = Options {
        source,
        team,
        team_display_name,
        password,
        passwords_file: args.passwords_file.clone().or_else(|| uc.passwords_file.clone()),
        dry_run: args.dry_run,
        deactivate_missing: args.deactivate_missing || uc.deactivate_missing,
        progress: !args.json && std::io::stdout().is_terminal(),
    };
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            fail!("cannot start the async runtime: {e}");
            return 2;
        }
    };
    let report = match rt.block_on(sync::run(setup, &secrets, &opts)) {
        Ok(r) => r,
        Err(e) => {
            if args.json {
                outln!("{}", json!({"error": e.to_string()}));
            }
            fail!("{e}");
            return 2;
        }
    };
    if args.json {
        outln!("{}", json_report(&report));
    } else {
        text_report(&report);
    }
    if let Some(why) = &report.stopped {
        fail!("stopped: {why}");
        2
    } else if !report.failed.is_empty() {
        3
    } else {
        0
    }
}

fn text_report(r: &Report) {
    let would = if r.dry_run { "would " } else { "" };
    if r.team_created {
        outln!("{would}create team {}", r.team);
    }
    for c in &r.created {
        match &c.password {
            Some(p) => outln!("created {} <{}> password {p}", c.username, c.email),
            None => outln!(
                "{}{} {} <{}>",
                would,
                if r.dry_run { "create" } else { "created" },
                c.username,
                c.email
            ),
        }
    }
    for n in &r.skipped_disabled {
        outln!("skipped {n}: disabled in the source");
    }
    if let Some(a) = &r.admin {
        outln!("{would}make {a} system admin (there was none)");
    }
    for n in &r.deactivated {
        outln!(
            "{}{n}: missing from the source",
            if r.dry_run {
                "would deactivate "
            } else {
                "deactivated "
            }
        );
    }
    for f in &r.failed {
        errln!("failed {}: {}", f.username, f.reason);
    }
    if let Some(path) = &r.passwords_file {
        outln!("passwords written to {}", path.display());
    }
    let prefix = if r.dry_run {
        "dry run, nothing written: "
    } else {
        ""
    };
    if r.changed_nothing() && r.failed.is_empty() && r.stopped.is_none() {
        outln!(
            "{prefix}nothing to change: {} already in Mattermost and team {}, {} skipped as disabled",
            count(r.skipped_existing.len(), "user"),
            r.team,
            r.skipped_disabled.len()
        );
        return;
    }
    // "1 user created" / "1 user to create": the same counts, in the run's tense.
    let [create, add, deactivate] = if r.dry_run {
        ["to create", "to add", "to deactivate"]
    } else {
        ["created", "added", "deactivated"]
    };
    outln!(
        "{prefix}{} {create}, {} {add} to team {}, {} skipped as disabled, {} already there, {} {deactivate}, {} failed",
        count(r.created.len(), "user"),
        r.added_to_team.len(),
        r.team,
        r.skipped_disabled.len(),
        r.skipped_existing.len(),
        r.deactivated.len(),
        r.failed.len(),
    );
}

fn json_report(r: &Report) -> serde_json::Value {
    json!({
        "dry_run": r.dry_run,
        "changed": !r.dry_run && !r.changed_nothing(),
        "team": {"name": r.team, "created": r.team_created},
        "created": r.created.iter().map(|c| {
            let mut v = json!({"username": c.username, "email": c.email});
            if let Some(p) = &c.password {
                v["password"] = json!(p);
            }
            v
        }).collect::<Vec<_>>(),
        "skipped_disabled": r.skipped_disabled,
        "skipped_existing": r.skipped_existing,
        "added_to_team": r.added_to_team,
        "admin": r.admin,
        "deactivated": r.deactivated,
        "failed": r.failed.iter().map(|f| json!({"username": f.username, "reason": f.reason})).collect::<Vec<_>>(),
        "passwords_file": r.passwords_file.as_ref().map(|p| p.display().to_string()),
        "stopped": r.stopped,
        "requests": r.requests,
    })
}
