//! Command-line modes. Each returns an exit code; `main` only parses and dispatches.

pub mod cert;
pub mod check;
pub mod run;
pub mod status;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "vestibule",
    version,
    about = "The front door for self-hosted Mattermost, ONLYOFFICE and Kopano"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve: load the configuration, start every module, reload on SIGHUP
    Run {
        /// Main configuration file; conf.d/ and vhosts/ are read next to it
        /// [default: /etc/vestibule/vestibule.toml, else the embedded default]
        #[arg(short, long, value_name = "PATH")]
        config: Option<PathBuf>,
        /// Take over the listening sockets of a running instance (graceful upgrade; send it SIGQUIT)
        #[arg(short, long)]
        upgrade: bool,
    },
    /// Certificates: `cert status` lists every served name with its source, issuer and expiry
    Cert {
        #[command(subcommand)]
        action: CertAction,
    },
    /// What the running daemon sees: connected workspaces (remote clusters) and their last ping
    Status {
        /// Main configuration file (to find the admin listener)
        #[arg(short, long, value_name = "PATH")]
        config: Option<PathBuf>,
    },
    /// Validate everything `run` would load, print what would be served; exit 0 if valid, 1 if not
    Check {
        /// Main configuration file [default: /etc/vestibule/vestibule.toml, else the embedded default]
        #[arg(short, long, value_name = "PATH")]
        config: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum CertAction {
    /// Every served name: vhost, source, issuer, not-after, days left
    Status {
        /// Main configuration file [default: /etc/vestibule/vestibule.toml, else the embedded default]
        #[arg(short, long, value_name = "PATH")]
        config: Option<PathBuf>,
    },
}

/// Exit codes: 0 success, 1 invalid configuration, 2 any other failure.
pub fn dispatch(cli: Cli) -> i32 {
    match cli.command {
        Command::Run { config, upgrade } => run::run(crate::config::Location::from_arg(config), upgrade),
        Command::Check { config } => check::check(crate::config::Location::from_arg(config)),
        Command::Status { config } => status::status(crate::config::Location::from_arg(config)),
        Command::Cert {
            action: CertAction::Status { config },
        } => cert::status(crate::config::Location::from_arg(config)),
    }
}
