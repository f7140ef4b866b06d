//! One `users sync`: read the source and Mattermost's state, plan, then (unless a dry run) apply
//! the plan in order: the team, the new accounts, team membership, the first admin, deactivations.
//!
//! A failure of one user (Mattermost refusing it) is recorded and the run goes on; a failure that
//! stops everything (the server unreachable, the token refused) ends the run, and the report still
//! lists what was done, so the passwords of the accounts already created are not lost.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::mattermost::{Client, MmError};
use super::plan::{self, Failure, Member, SourceUser, State};
use super::source;
use super::{Secrets, Setup};

/// Where the users come from in this run.
#[derive(Debug, Clone)]
pub enum Source {
    Ldap,
    Csv(PathBuf),
}

/// One run's choices: the section's values with the command line's on top.
#[derive(Debug, Clone)]
pub struct Options {
    pub source: Source,
    pub team: String,
    pub team_display_name: String,
    /// A common initial password instead of generated ones.
    pub password: Option<String>,
    /// Write generated passwords here (0600) instead of into the report.
    pub passwords_file: Option<PathBuf>,
    pub dry_run: bool,
    pub deactivate_missing: bool,
    /// Show a progress bar (a terminal, and not `--json`).
    pub progress: bool,
}

/// Why a run could not start or had to stop. Never contains a secret.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Ldap(#[from] source::ldap::LdapError),
    #[error(transparent)]
    Csv(#[from] source::csv::CsvError),
    #[error("{0}")]
    Mattermost(#[from] MmError),
    #[error("[users] source is ldap but there is no [users.ldap]: add it, or give --csv")]
    NoLdap,
    #[error(
        "team {team} would have {members} members, but this Mattermost takes at most {max} in a team \
         (TeamSettings.MaxUsersPerTeam; 50 on a fresh install): raise it in System Console > Site \
         Configuration > Users and Teams > Max Users Per Team, then run again (nothing was written)"
    )]
    TeamFull { team: String, members: usize, max: u64 },
    #[error(
        "the source gave no enabled user, and --deactivate-missing would deactivate {0} accounts: \
         nothing was written; check [users.ldap] base_dn and filter (or the CSV file)"
    )]
    EmptySource(usize),
    #[error("cannot write the passwords file {}: {source}", path.display())]
    PasswordsFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A created account; `password` is set when it is to be shown (generated, and no passwords file).
#[derive(Debug, Clone)]
pub struct Created {
    pub username: String,
    pub email: String,
    pub password: Option<String>,
}

/// What a run did (or, in a dry run, would do).
#[derive(Debug, Default)]
pub struct Report {
    pub team: String,
    pub team_created: bool,
    pub dry_run: bool,
    pub created: Vec<Created>,
    pub skipped_disabled: Vec<String>,
    pub skipped_existing: Vec<String>,
    pub added_to_team: Vec<String>,
    pub admin: Option<String>,
    pub deactivated: Vec<String>,
    pub failed: Vec<Failure>,
    /// The error that stopped the run before its end.
    pub stopped: Option<String>,
    /// Where generated passwords went, when they went to a file.
    pub passwords_file: Option<PathBuf>,
    /// Requests sent to Mattermost (retries included).
    pub requests: usize,
}

impl Report {
    pub fn changed_nothing(&self) -> bool {
        !self.team_created
            && self.created.is_empty()
            && self.added_to_team.is_empty()
            && self.admin.is_none()
            && self.deactivated.is_empty()
    }
}

/// Read the users of `opts.source`.
pub async fn read_source(
    setup: &Setup,
    secrets: &Secrets,
    opts: &Options,
) -> Result<Vec<SourceUser>, SyncError> {
    match &opts.source {
        Source::Csv(path) => Ok(source::csv::read(path)?),
        Source::Ldap => {
            let ldap = setup.config.ldap.as_ref().ok_or(SyncError::NoLdap)?;
            Ok(source::ldap::read(ldap, secrets.bind_password.as_deref()).await?)
        }
    }
}

/// Run a sync. `Err` when nothing could be done (source or Mattermost unreachable before any
/// change); a stop after changes is `Ok` with [`Report::stopped`] set.
pub async fn run(setup: &Setup, secrets: &Secrets, opts: &Options) -> Result<Report, SyncError> {
    let users = read_source(setup, secrets, opts).await?;
    let c = &setup.config;
    let m = c.mattermost.as_ref();
    let client = Client::new(
        m.map_or("http://127.0.0.1:8065", |m| m.url.value.as_str()),
        secrets.token.clone(),
        m.and_then(|m| m.ca_file.as_ref()).map(|f| f.value.as_path()),
        c.rate_limit,
        c.retries,
        c.timeout,
    )?;
    let me = client.me().await?;
    let team = client.team_by_name(&opts.team).await?;
    let names: Vec<String> = users
        .iter()
        .filter_map(|u| super::rules::username(&u.username).ok())
        .collect();
    let mut state = State {
        team_exists: team.is_some(),
        caller_id: me.id,
        ..State::default()
    };
    for u in client.users_by_usernames(&names).await? {
        state.existing.insert(u.username.clone(), u);
    }
    if let Some(t) = &team {
        state.team_members = client.team_member_ids(&t.id).await?;
    }
    state.human_admin_exists = client
        .users(Some("system_admin"))
        .await?
        .iter()
        .any(|u| u.active && !u.is_bot && u.is_system_admin());
    if opts.deactivate_missing {
        state.all_users = client.users(None).await?;
    }
    let plan = plan::plan(&users, &state, opts.deactivate_missing);
    // A directory that answers nothing (a filter typo, a wrong base) is not a company that left.
    if !plan.deactivate.is_empty() && users.iter().all(|u| u.disabled) {
        return Err(SyncError::EmptySource(plan.deactivate.len()));
    }
    // Mattermost refuses members past its limit one batch in: say so before anything is written.
    let members = state.team_members.len() + plan.add_to_team.len();
    let limits = if plan.add_to_team.is_empty() && plan.create.is_empty() {
        super::mattermost::Limits::default()
    } else {
        client.limits().await?
    };
    if !plan.add_to_team.is_empty() {
        if let Some(max) = limits.max_users_per_team {
            if members as u64 > max {
                return Err(SyncError::TeamFull {
                    team: opts.team.clone(),
                    members,
                    max,
                });
            }
        }
    }
    let mut report = Report {
        team: opts.team.clone(),
        dry_run: opts.dry_run,
        skipped_disabled: plan.skipped_disabled.clone(),
        skipped_existing: plan.skipped_existing.clone(),
        failed: plan.failed.clone(),
        ..Report::default()
    };
    if opts.dry_run {
        report.team_created = plan.create_team;
        report.created = plan
            .create
            .iter()
            .map(|u| Created {
                username: u.username.clone(),
                email: u.email.clone(),
                password: None,
            })
            .collect();
        report.added_to_team = plan
            .add_to_team
            .iter()
            .map(|m| m.username().to_string())
            .collect();
        report.admin = plan.make_admin.as_ref().map(|m| m.username().to_string());
        report.deactivated = plan.deactivate.iter().map(|(_, n)| n.clone()).collect();
        report.requests = client.sent.load(std::sync::atomic::Ordering::Relaxed);
        return Ok(report);
    }
    if plan.changes_nothing() {
        report.requests = client.sent.load(std::sync::atomic::Ordering::Relaxed);
        return Ok(report);
    }
    let roles: HashMap<String, String> = state
        .existing
        .values()
        .map(|u| (u.id.clone(), u.roles.clone()))
        .collect();
    if let Err(e) = apply(
        &client,
        &plan,
        team,
        &roles,
        opts,
        super::password::length_for(limits.password_minimum_length),
        &mut report,
    )
    .await
    {
        report.stopped = Some(e.to_string());
    }
    report.requests = client.sent.load(std::sync::atomic::Ordering::Relaxed);
    Ok(report)
}

async fn apply(
    client: &Client,
    plan: &plan::Plan,
    team: Option<super::mattermost::Team>,
    roles: &HashMap<String, String>,
    opts: &Options,
    password_len: usize,
    report: &mut Report,
) -> Result<(), SyncError> {
    let team = match team {
        Some(t) => t,
        None => {
            let t = match client.create_team(&opts.team, &opts.team_display_name).await {
                // Missing when planned: an earlier attempt of this request made it.
                Err(MmError::Api { id, .. }) if id == "app.team.save.existing.app_error" => {
                    client.team_by_name(&opts.team).await?.ok_or(MmError::Api {
                        method: reqwest::Method::POST,
                        path: "/api/v4/teams".into(),
                        status: 400,
                        id,
                        message: format!("team {} exists but cannot be read", opts.team),
                    })?
                }
                other => other?,
            };
            report.team_created = true;
            t
        }
    };
    let mut passwords = match (&opts.passwords_file, &opts.password, plan.create.is_empty()) {
        (Some(path), None, false) => Some(open_private(path).map_err(|source| SyncError::PasswordsFile {
            path: path.clone(),
            source,
        })?),
        _ => None,
    };
    report.passwords_file = passwords.as_ref().map(|(_, path)| path.clone());
    let bar = progress(opts.progress, plan.create.len() as u64);
    let mut ids: HashMap<String, (String, String)> = HashMap::new();
    for u in &plan.create {
        bar.set_message(u.username.clone());
        let generated = opts.password.is_none();
        let password = opts
            .password
            .clone()
            .unwrap_or_else(|| super::password::generate(password_len));
        let result = match client.create_user(u, &password).await {
            // The account did not exist when planned: an earlier attempt of this very request
            // (answered 5xx by a proxy, or cut off) created it, with this password.
            Err(MmError::Api { id, .. }) if id == "app.user.save.username_exists.app_error" => {
                match client.users_by_usernames(std::slice::from_ref(&u.username)).await {
                    Ok(found) => found
                        .into_iter()
                        .find(|f| f.email == u.email)
                        .ok_or(MmError::Api {
                            method: reqwest::Method::POST,
                            path: "/api/v4/users".into(),
                            status: 400,
                            id,
                            message: "an account with that username already exists".into(),
                        }),
                    Err(e) => Err(e),
                }
            }
            other => other,
        };
        match result {
            Ok(created) => {
                let shown = match (&mut passwords, generated) {
                    (Some((file, path)), true) => {
                        writeln!(file, "{}\t{}", u.username, password)
                            .and_then(|()| file.flush())
                            .map_err(|source| SyncError::PasswordsFile {
                                path: path.clone(),
                                source,
                            })?;
                        None
                    }
                    (None, true) => Some(password),
                    _ => None,
                };
                ids.insert(u.username.clone(), (created.id, created.roles));
                report.created.push(Created {
                    username: u.username.clone(),
                    email: u.email.clone(),
                    password: shown,
                });
            }
            Err(MmError::Api { message, id, .. }) => report.failed.push(Failure {
                username: u.username.clone(),
                reason: format!("Mattermost refused it: {message} ({id})"),
            }),
            Err(e) => {
                bar.finish_and_clear();
                return Err(e.into());
            }
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    let id_of = |m: &Member| -> Option<(String, String)> {
        match m {
            Member::Existing { id, .. } => Some((id.clone(), roles.get(id).cloned().unwrap_or_default())),
            Member::New { username } => ids.get(username).cloned(),
        }
    };
    let members: Vec<(String, String)> = plan
        .add_to_team
        .iter()
        .filter_map(|m| id_of(m).map(|(id, _)| (id, m.username().to_string())))
        .collect();
    for chunk in members.chunks(100) {
        let chunk_ids: Vec<String> = chunk.iter().map(|(id, _)| id.clone()).collect();
        match client.add_members(&team.id, &chunk_ids).await {
            Ok(()) => report.added_to_team.extend(chunk.iter().map(|(_, n)| n.clone())),
            Err(MmError::Api { message, id, .. }) => {
                report.failed.extend(chunk.iter().map(|(_, n)| Failure {
                    username: n.clone(),
                    reason: format!("not added to team {}: {message} ({id})", team.name),
                }))
            }
            Err(e) => return Err(e.into()),
        }
    }
    if let Some(m) = &plan.make_admin {
        if let Some((id, roles)) = id_of(m) {
            let roles = if roles.trim().is_empty() {
                "system_user".to_string()
            } else {
                roles
            };
            match client.set_roles(&id, &format!("{roles} system_admin")).await {
                Ok(()) => report.admin = Some(m.username().to_string()),
                Err(MmError::Api { message, id, .. }) => report.failed.push(Failure {
                    username: m.username().to_string(),
                    reason: format!("not made system admin: {message} ({id})"),
                }),
                Err(e) => return Err(e.into()),
            }
        }
    }
    for (id, username) in &plan.deactivate {
        match client.deactivate(id).await {
            Ok(()) => report.deactivated.push(username.clone()),
            Err(MmError::Api { message, id, .. }) => report.failed.push(Failure {
                username: username.clone(),
                reason: format!("not deactivated: {message} ({id})"),
            }),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Create `path` readable by its owner only, or append to it: the passwords of an earlier run that
/// stopped halfway are in there, and are nowhere else.
fn open_private(path: &Path) -> std::io::Result<(std::fs::File, PathBuf)> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)?;
    // An existing file keeps its mode: tighten it before the first password goes in.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    Ok((file, path.to_path_buf()))
}

fn progress(show: bool, len: u64) -> indicatif::ProgressBar {
    if !show {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len);
    if let Ok(style) = indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} users created  {msg}") {
        bar.set_style(style);
    }
    bar
}
