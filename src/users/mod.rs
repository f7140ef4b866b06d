//! `users`: bulk provisioning of Mattermost accounts from a directory (LDAP, Active Directory) or a
//! CSV file, run by `vestibule users sync` (the better `mattermost-bulk-user-create` of NethServer).
//!
//! It owns the `[users]` section, reading the source ([`source`]), the plan of what changes
//! ([`plan`], pure and tested without a server), and applying it through Mattermost's REST API
//! ([`mattermost`], paced and retried; [`sync`]). It never deletes an account: users missing from
//! the source are at most deactivated, and only on request. Passwords it generates are shown once
//! (or written to a 0600 file) and never logged.
//!
//! As a module it only provisions: the secrets (Mattermost token, bind password, common password)
//! are read and checked (mode 0600) so `vestibule check` finds a bad file before a sync does; it
//! starts no service, since the command is the service.

pub mod config;
pub mod mattermost;
pub mod password;
pub mod plan;
pub mod rules;
pub mod source;
pub mod sync;

use pingora_core::server::Server;

use crate::config::diag::{Diagnostic, Diagnostics};
use crate::config::Config;
use crate::module::{Context, Module, ServiceError};
use config::{SourceKind, UsersConfig};

/// `[users]` provisioned: the section and the secrets it names, read and checked.
pub struct UsersModule {
    setup: Option<Setup>,
}

/// What a sync needs from the configuration. The secrets are not printed by `Debug`.
pub struct Setup {
    pub config: UsersConfig,
}

/// The secrets `users sync` reads when it runs (never the daemon: it only checks their files'
/// modes, so a root-owned token neither stops the service nor sits in its memory).
pub struct Secrets {
    pub token: String,
    pub bind_password: Option<String>,
    /// `password_file`'s common initial password.
    pub common_password: Option<String>,
}

impl Setup {
    /// Read the token, the bind password and the common password.
    pub fn secrets(&self) -> Result<Secrets, Diagnostics> {
        let uc = &self.config;
        let mut diags = Diagnostics::default();
        let token = uc
            .mattermost
            .as_ref()
            .and_then(|m| m.token_file.as_ref())
            .and_then(|tf| {
                secret_text(
                    tf,
                    "[users.mattermost] token_file",
                    "put a system admin's personal access token in it, readable only by its owner (chmod 600)",
                    &mut diags,
                )
            });
        let bind_password = uc
            .ldap
            .as_ref()
            .and_then(|l| l.bind_password_file.as_ref())
            .and_then(|pf| {
                secret_text(
                    pf,
                    "[users.ldap] bind_password_file",
                    "put the bind DN's password in it, readable only by its owner (chmod 600)",
                    &mut diags,
                )
            });
        let mut common_password = None;
        if let Some(pf) = &uc.password_file {
            common_password = secret_text(
                pf,
                "[users] password_file",
                "put the common initial password in it, readable only by its owner (chmod 600)",
                &mut diags,
            );
            if let Some(p) = &common_password {
                if let Err(why) = rules::password(p) {
                    diags.push(
                        Diagnostic::at(&pf.loc, format!("[users] password_file: the password {why}"))
                            .hint("Mattermost takes 8 to 72 characters by default; or drop password_file for random ones"),
                    );
                }
            }
        }
        match token {
            Some(token) if diags.is_empty() => Ok(Secrets {
                token,
                bind_password,
                common_password,
            }),
            _ => Err(diags),
        }
    }
}

/// A secret file's mode (and existence), without reading it.
fn check_secret(
    path: &crate::config::source::Located<std::path::PathBuf>,
    key: &str,
    hint: &str,
    diags: &mut Diagnostics,
) {
    if let Err(e) = crate::secret::check_private(&path.value) {
        diags.push(Diagnostic::at(&path.loc, format!("{key}: {e}")).hint(hint.to_string()));
    }
}

impl std::fmt::Debug for Setup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Setup")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl UsersModule {
    /// The provisioned section, `None` when `[users]` is absent.
    pub fn setup(&self) -> Option<&Setup> {
        self.setup.as_ref()
    }
}

/// A secret file's text, trimmed; errors point at the key that names the file.
fn secret_text(
    path: &crate::config::source::Located<std::path::PathBuf>,
    key: &str,
    hint: &str,
    diags: &mut Diagnostics,
) -> Option<String> {
    match crate::secret::load_secret(&path.value) {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(s) => Some(s.trim().to_string()),
            Err(_) => {
                diags.push(
                    Diagnostic::at(
                        &path.loc,
                        format!("{key}: {} is not UTF-8 text", path.value.display()),
                    )
                    .hint(hint.to_string()),
                );
                None
            }
        },
        Err(e) => {
            diags.push(Diagnostic::at(&path.loc, format!("{key}: {e}")).hint(hint.to_string()));
            None
        }
    }
}

/// A private CA file must hold PEM certificates.
fn check_ca(
    ca: Option<&crate::config::source::Located<std::path::PathBuf>>,
    section: &str,
    diags: &mut Diagnostics,
) {
    if let Some(ca) = ca {
        if let Err(e) = crate::tls::client::config(Some(&ca.value), &[]) {
            diags.push(
                Diagnostic::at(&ca.loc, format!("{section} ca_file: {e}"))
                    .hint("give a PEM file with the CA certificate that signed the server's"),
            );
        }
    }
}

/// `uc` with what `[users.mattermost]` leaves out taken from `[integrate]`'s Mattermost access
/// (`mattermost_url`, `mattermost_token_file`), so one token file serves `integrate`, `doctor` and
/// `users sync`.
fn with_integrate(uc: &UsersConfig, integrate: &crate::integrate::config::IntegrateConfig) -> UsersConfig {
    let mut uc = uc.clone();
    match &mut uc.mattermost {
        Some(m) => {
            if m.token_file.is_none() {
                m.token_file = integrate.mattermost_token_file.clone();
            }
        }
        None => {
            if let Some(token_file) = &integrate.mattermost_token_file {
                uc.mattermost = Some(config::MattermostConfig {
                    url: integrate
                        .mattermost_url
                        .clone()
                        .unwrap_or_else(|| crate::config::source::Located {
                            value: "http://127.0.0.1:8065".into(),
                            loc: token_file.loc.clone(),
                        }),
                    token_file: Some(token_file.clone()),
                    ca_file: None,
                });
            }
        }
    }
    uc
}

/// Check `[users]`'s files; `None` (with diagnostics) if one is unusable.
fn provision_setup(uc: &UsersConfig) -> Result<Setup, Diagnostics> {
    let mut diags = Diagnostics::default();
    match &uc.mattermost {
        None => diags.push(
            Diagnostic::at(&uc.loc, "[users] has no [users.mattermost] (and [integrate] no mattermost_token_file)")
                .hint("add [users.mattermost] url = \"http://127.0.0.1:8065\" and token_file (a system admin's personal access token, chmod 600)"),
        ),
        Some(m) => {
            if m.token_file.is_none() {
                diags.push(
                    Diagnostic::at(&uc.loc, "[users.mattermost] has no `token_file` (and [integrate] no mattermost_token_file)")
                        .hint("create a system admin's personal access token and put it in a file only vestibule's user can read (chmod 600)"),
                );
            }
            if let Some(tf) = &m.token_file {
                check_secret(
                    tf,
                    "[users.mattermost] token_file",
                    "put a system admin's personal access token in it, readable only by its owner (chmod 600)",
                    &mut diags,
                );
            }
            check_ca(m.ca_file.as_ref(), "[users.mattermost]", &mut diags);
        }
    }
    if let Some(l) = &uc.ldap {
        if let Some(pf) = &l.bind_password_file {
            check_secret(
                pf,
                "[users.ldap] bind_password_file",
                "put the bind DN's password in it, readable only by its owner (chmod 600)",
                &mut diags,
            );
        }
        check_ca(l.ca_file.as_ref(), "[users.ldap]", &mut diags);
    }
    // The CSV is read when `users sync` runs: a file being edited must not break a reload.
    if let Some(csv) = &uc.csv {
        if let Err(e) = std::fs::metadata(&csv.value) {
            diags.push(Diagnostic::at(
                &csv.loc,
                format!("[users] csv: cannot read {}: {e}", csv.value.display()),
            ));
        }
    }
    if let Some(pf) = &uc.password_file {
        check_secret(
            pf,
            "[users] password_file",
            "put the common initial password in it, readable only by its owner (chmod 600)",
            &mut diags,
        );
    }
    if uc.source.is_none() && uc.csv.is_some() && uc.ldap.is_some() {
        diags.push(
            Diagnostic::at(
                &uc.loc,
                "[users] has both `csv` and [users.ldap]: which is the source?",
            )
            .hint("add source = \"ldap\" or source = \"csv\""),
        );
    }
    if diags.is_empty() {
        Ok(Setup { config: uc.clone() })
    } else {
        Err(diags)
    }
}

impl Module for UsersModule {
    const NAME: &'static str = "users";
    type Inputs = ();

    fn provision(cfg: &Config, _ctx: &Context, _previous: Option<&Self>) -> Result<Self, Diagnostics> {
        let Some(uc) = &cfg.users else {
            return Ok(UsersModule { setup: None });
        };
        Ok(UsersModule {
            setup: Some(provision_setup(&with_integrate(uc, &cfg.integrate))?),
        })
    }

    /// The command is the service: nothing runs in the daemon.
    fn services(&self, _server: &mut Server, _ctx: &Context, (): ()) -> Result<(), ServiceError> {
        Ok(())
    }

    /// Read again by each `users sync`; nothing live to swap.
    fn apply(&self, _next: Self) -> Vec<String> {
        Vec::new()
    }

    fn summary(&self) -> Vec<String> {
        let Some(s) = &self.setup else {
            return Vec::new();
        };
        let c = &s.config;
        let mut lines = Vec::new();
        match (c.source, &c.ldap, &c.csv) {
            (Some(SourceKind::Csv), _, Some(csv)) | (None, None, Some(csv)) => {
                lines.push(format!("source CSV {}", csv.value.display()));
            }
            (_, Some(l), _) => lines.push(format!(
                "source {}{} ({}, base {}, filter {})",
                l.url.value,
                if l.starttls { " (StartTLS)" } else { "" },
                match l.schema {
                    config::Schema::OpenLdap => "OpenLDAP",
                    config::Schema::Ad => "Active Directory",
                },
                l.base_dn.as_ref().map_or("", |b| b.value.as_str()),
                source::ldap::filter(l),
            )),
            _ => lines.push("source: none configured (give --csv)".into()),
        }
        if let Some(m) = &c.mattermost {
            lines.push(format!(
                "Mattermost {} team {}, {} requests/s",
                m.url.value,
                c.team.as_ref().map_or("(give --team)", |t| t.value.as_str()),
                c.rate_limit
            ));
        }
        lines
    }

    fn warnings(&self) -> Vec<String> {
        let Some(s) = &self.setup else {
            return Vec::new();
        };
        let mut w = Vec::new();
        if let Some(l) = &s.config.ldap {
            let loopback = reqwest::Url::parse(&l.url.value)
                .ok()
                .is_some_and(|u| matches!(u.host_str(), Some("localhost" | "127.0.0.1" | "[::1]")));
            if l.url.value.starts_with("ldap://") && !l.starttls && !loopback && l.bind_dn.is_some() {
                w.push(format!(
                    "[users.ldap] url {} without starttls sends the bind password unencrypted: use ldaps:// or starttls = true",
                    l.url.value
                ));
            }
        }
        if s.config.deactivate_missing {
            w.push("[users] deactivate_missing = true: every `users sync` deactivates the accounts missing from the source".into());
        }
        w
    }
}
