//! `integrate` as a module: its `[integrate]` section provisioned and checked like every other
//! module's, so `vestibule check` finds a token file open to others or a malformed URL before
//! `integrate` or `doctor` is run. It serves nothing: its commands are its service.

use std::path::PathBuf;

use pingora_core::server::Server;

use super::backend::Target;
use super::config::IntegrateConfig;
use crate::config::{Config, Diagnostic, Diagnostics};
use crate::module::{Context, Module, ServiceError};

/// Where the products' configurations are, resolved from `[integrate]`.
#[derive(Debug, Clone)]
pub struct IntegrateModule {
    /// Mattermost's configuration: its file (`None`: the packaged locations) or its REST API.
    pub mattermost: Target,
    /// Document Server's local.json (`None`: the packaged location).
    pub documentserver_config: Option<PathBuf>,
    /// Document Server's address as browsers reach it (`None`: the ONLYOFFICE vhost's).
    pub documentserver_url: Option<String>,
    /// Kopano WebApp's origin (`None`: the Mattermost vhost's one embedding origin).
    pub webapp_origin: Option<String>,
    /// WebApp's Intranet plugin configuration (`None`: the packaged location).
    pub webapp_config: Option<PathBuf>,
    /// Also the Kopano packages' Mattermost defaults.
    pub packager_defaults: bool,
    warnings: Vec<String>,
    summary: Vec<String>,
}

impl Module for IntegrateModule {
    const NAME: &'static str = "integrate";
    type Inputs = ();

    fn provision(cfg: &Config, _ctx: &Context, _previous: Option<&Self>) -> Result<Self, Diagnostics> {
        provision(&cfg.integrate)
    }

    fn services(&self, _server: &mut Server, _ctx: &Context, _inputs: ()) -> Result<(), ServiceError> {
        Ok(())
    }

    /// Nothing in the daemon reads this module: each command provisions its own from the files.
    fn apply(&self, _next: Self) -> Vec<String> {
        Vec::new()
    }

    fn summary(&self) -> Vec<String> {
        self.summary.clone()
    }

    fn warnings(&self) -> Vec<String> {
        self.warnings.clone()
    }
}

fn provision(c: &IntegrateConfig) -> Result<IntegrateModule, Diagnostics> {
    let mut diags = Diagnostics::default();
    let mut warnings = Vec::new();
    let mut summary = Vec::new();

    let mattermost = match (&c.mattermost_url, &c.mattermost_token_file, &c.mattermost_config) {
        (Some(url), _, Some(_)) => {
            diags.push(
                Diagnostic::at(&url.loc, "[integrate] has both mattermost_url and mattermost_config")
                    .hint("keep mattermost_config for a config.json, mattermost_url for a configuration in the database"),
            );
            Target::File(None)
        }
        (Some(url), Some(token), None) => {
            if !(url.value.starts_with("http://") || url.value.starts_with("https://")) {
                diags.push(
                    Diagnostic::at(
                        &url.loc,
                        format!(
                            "[integrate] mattermost_url {:?} is not an http:// or https:// URL",
                            url.value
                        ),
                    )
                    .hint("mattermost_url = \"http://127.0.0.1:8065\""),
                );
            }
            // Only the mode: `integrate` and `doctor` read the token, the daemon never does.
            if let Err(e) = crate::secret::check_private(&token.value) {
                diags.push(Diagnostic::at(
                    &token.loc,
                    format!("[integrate] mattermost_token_file: {e}"),
                ));
            }
            summary.push(format!("Mattermost: REST API at {}", url.value));
            Target::Api {
                url: url.value.clone(),
                token_file: token.value.clone(),
            }
        }
        (Some(url), None, None) => {
            diags.push(
                Diagnostic::at(&url.loc, "[integrate] mattermost_url needs mattermost_token_file")
                    .hint("a file (mode 600) holding a system admin's personal access token"),
            );
            Target::File(None)
        }
        (None, Some(token), _) => {
            diags.push(
                Diagnostic::at(
                    &token.loc,
                    "[integrate] mattermost_token_file is set but mattermost_url is not",
                )
                .hint("add mattermost_url = \"http://127.0.0.1:8065\", or remove the token file"),
            );
            Target::File(None)
        }
        (None, None, file) => {
            let path = file.as_ref().map(|f| f.value.clone());
            summary.push(match &path {
                Some(p) => format!("Mattermost: {}", p.display()),
                None => format!(
                    "Mattermost: {} (the first that exists)",
                    super::backend::file::MATTERMOST_PATHS.join(", ")
                ),
            });
            Target::File(path)
        }
    };

    for (key, path, who) in [
        ("mattermost_config", &c.mattermost_config, "Mattermost's settings"),
        (
            "documentserver_config",
            &c.documentserver_config,
            "Document Server's secret",
        ),
        ("webapp_config", &c.webapp_config, "WebApp's Intranet plugin"),
    ] {
        if let Some(p) = path {
            if !p.value.exists() {
                warnings.push(format!(
                    "[integrate] {key} {} does not exist: `vestibule integrate` and `doctor` cannot read {who}",
                    p.value.display()
                ));
            }
        }
    }

    if let Some(u) = &c.documentserver_url {
        if !(u.value.starts_with("https://") || u.value.starts_with("http://")) {
            diags.push(
                Diagnostic::at(
                    &u.loc,
                    format!(
                        "[integrate] documentserver_url {:?} is not an http:// or https:// URL",
                        u.value
                    ),
                )
                .hint("documentserver_url = \"https://office.example.org/\""),
            );
        }
    }
    let webapp_origin = c
        .webapp_origin
        .as_ref()
        .and_then(|o| match super::kopano::origin(&o.value) {
            Ok(origin) => {
                summary.push(format!("Kopano WebApp: {origin}"));
                Some(origin)
            }
            Err(e) => {
                diags.push(Diagnostic::at(&o.loc, format!("[integrate] webapp_origin: {e}")));
                None
            }
        });
    if !diags.is_empty() {
        return Err(diags);
    }
    Ok(IntegrateModule {
        mattermost,
        documentserver_config: c.documentserver_config.as_ref().map(|l| l.value.clone()),
        documentserver_url: c.documentserver_url.as_ref().map(|l| l.value.clone()),
        webapp_origin,
        webapp_config: c.webapp_config.as_ref().map(|l| l.value.clone()),
        packager_defaults: c.packager_defaults,
        warnings,
        summary,
    })
}
