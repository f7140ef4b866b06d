//! `vestibule integrate`: bring the products behind vestibule in line with its configuration.
//!
//! Each product follows the same steps, kept apart so that each can be tested alone:
//! 1. **desired** (`mattermost::desired`): from vestibule's loaded configuration to the settings the
//!    product needs; fails only on vestibule's configuration.
//! 2. **open** (`backend`): read the product's configuration document (file or REST API).
//! 3. **plan** (`plan`): compare; default values change, an admin's own values are conflicts.
//! 4. **apply**: nothing on a dry run or a conflict (unless forced), else write the changes.

pub mod backend;
pub mod config;
pub mod kopano;
pub mod mattermost;
mod module;
pub mod onlyoffice;
pub mod plan;
pub mod vhost_file;

use std::path::PathBuf;

use backend::{Backend, BackendError, Target};
use plan::Plan;

pub use module::IntegrateModule;

/// Why `integrate` did not complete.
#[derive(Debug, thiserror::Error)]
pub enum IntegrateError {
    /// vestibule's own configuration does not say what the product needs (exit 1).
    #[error(transparent)]
    Mattermost(#[from] mattermost::MattermostError),
    /// The product's configuration could not be read or written (exit 2).
    #[error(transparent)]
    Backend(#[from] BackendError),
}

/// One `integrate mattermost` run.
#[derive(Debug, Clone)]
pub struct Request {
    pub target: Target,
    /// How long one request to Mattermost's API may take ([`backend::API_TIMEOUT`] for integrate).
    pub api_timeout: std::time::Duration,
    pub options: mattermost::Options,
    pub dry_run: bool,
    pub force: bool,
}

/// What happened.
#[derive(Debug)]
pub enum Outcome {
    /// Dry run: nothing written.
    DryRun,
    /// Nothing to change.
    UpToDate,
    /// Admin-set values differ and `--force` was not given: nothing written.
    Refused,
    /// Written; the file back end's backup.
    Written { backup: Option<PathBuf> },
}

/// What one run found, for the command line to print before anything is written.
#[derive(Debug)]
pub struct Report {
    /// The vhost the settings come from.
    pub vhost: String,
    /// The file or URL read.
    pub location: String,
    pub notes: Vec<String>,
    pub plan: Plan,
}

/// A run read and planned, not yet applied.
pub struct Prepared {
    backend: Backend,
    pub report: Report,
}

/// Derive Mattermost's settings from `cfg`, read its configuration and plan the changes.
pub fn mattermost(cfg: &crate::config::Config, req: &Request) -> Result<Prepared, IntegrateError> {
    let mut desired = mattermost::desired(cfg, &req.options)?;
    let backend = Backend::open_within(&req.target, backend::file::MATTERMOST_PATHS, req.api_timeout)?;
    if !backend.may_add_keys() {
        for s in &mut desired.settings {
            if s.add_if_absent {
                s.add_if_absent = false;
                s.if_absent = "this Mattermost does not have it (or the token may not read it)";
            }
        }
    }
    let plan = Plan::new(backend.doc(), &desired.settings, req.force);
    Ok(Prepared {
        report: Report {
            vhost: desired.vhost,
            location: backend.location(),
            notes: desired.notes,
            plan,
        },
        backend,
    })
}

impl Prepared {
    /// Write the plan unless it is a dry run, is refused, or has nothing to change.
    pub fn apply(&self, req: &Request) -> Result<Outcome, IntegrateError> {
        let plan = &self.report.plan;
        Ok(if plan.refused(req.force) {
            Outcome::Refused
        } else if req.dry_run {
            Outcome::DryRun
        } else if plan.changes.is_empty() {
            Outcome::UpToDate
        } else {
            Outcome::Written {
                backup: self.backend.write(&plan.changes)?,
            }
        })
    }
}
