//! Command-line modes. Each returns an exit code; `main` only parses and dispatches.

pub(crate) mod cert;
pub(crate) mod check;
pub(crate) mod doctor;
mod generate;
pub(crate) mod integrate;
pub(crate) mod mail;
pub(crate) mod out;
pub(crate) mod run;
pub mod sendmail;
pub(crate) mod status;
pub(crate) mod users;
pub(crate) mod vhost;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

// clap turns doc comments into --help text: the command's own text is in the attributes, and a
// doc comment here would replace it.
#[allow(missing_docs)]
#[derive(Debug, Parser)]
#[command(
    name = "vestibule",
    version,
    about = "The front door for self-hosted Mattermost, ONLYOFFICE and Kopano"
)]
pub struct Cli {
    #[command(subcommand)]
    #[allow(missing_docs)]
    pub command: Command,
}

// clap turns doc comments into --help text: the command's own text is in the attributes, and a
// doc comment here would replace it.
#[allow(missing_docs)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve: load the configuration, start every module, reload on SIGHUP
    Run {
        /// Main configuration file; conf.d/ and vhosts/ are read next to it
        /// [default: /etc/vestibule/vestibule.toml, else the embedded default]
        #[arg(short, long, value_name = "PATH")]
        config: Option<PathBuf>,
        /// Take over every listening socket of the running instance, which leaves once this one serves
        #[arg(short, long)]
        upgrade: bool,
    },
    /// Certificates: `cert status` lists every served name with its source, issuer and expiry
    Cert {
        #[command(subcommand)]
        #[allow(missing_docs)]
        action: CertAction,
    },
    /// What the running daemon sees: connected workspaces (remote clusters) and their last ping
    Status {
        /// Main configuration file (to find the admin listener)
        #[arg(short, long, value_name = "PATH")]
        config: Option<PathBuf>,
    },
    /// Virtual hosts: `vhost new` renders one from a template, `vhost list` shows them
    Vhost {
        #[command(subcommand)]
        #[allow(missing_docs)]
        action: VhostAction,
    },
    /// Mail relay: `mail queue`, `mail flush [ID]`, `mail drop ID`, `mail hash-password`
    Mail {
        #[command(subcommand)]
        #[allow(missing_docs)]
        action: MailAction,
    },
    /// Bring the products' configurations in line with vestibule's: `integrate all`, or one of
    /// mattermost, onlyoffice, kopano
    Integrate {
        #[command(subcommand)]
        #[allow(missing_docs)]
        product: IntegrateProduct,
    },
    /// Mattermost accounts from a directory or CSV file: `users sync`
    Users {
        #[command(subcommand)]
        #[allow(missing_docs)]
        action: UsersAction,
    },
    /// Submit a message from standard input to the local relay, as /usr/sbin/sendmail does:
    /// -t, -f ADDR, -i/-oi, -F NAME, recipients as arguments, -C for vestibule's configuration file.
    /// Exit 75 (try again later) when the relay does not answer. Also run as `sendmail` (a link)
    Sendmail {
        /// sendmail's options and the recipients
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, value_name = "ARGS")]
        args: Vec<String>,
    },
    /// Write the man pages into DIR (`man DIR`) or print a shell's completion script, for packaging
    #[command(hide = true)]
    Generate {
        /// `man`, or a shell: bash, zsh, fish, elvish, powershell
        what: String,
        /// Where `man` writes its pages
        dir: Option<PathBuf>,
    },
    /// Validate everything `run` would load, print what would be served; exit 0 if valid, 1 if not
    Check {
        /// Main configuration file [default: /etc/vestibule/vestibule.toml, else the embedded default]
        #[arg(short, long, value_name = "PATH")]
        config: Option<PathBuf>,
        /// Also check that every ACME name resolves, and to an address of this machine
        #[arg(long)]
        dns: bool,
    },
    /// One report of what is wrong, each line OK/WARN/FAIL with its fix; exit 0 all OK, 1 warnings, 2 failures
    Doctor {
        /// Main configuration file [default: /etc/vestibule/vestibule.toml, else the embedded default]
        #[arg(short, long, value_name = "PATH")]
        config: Option<PathBuf>,
        /// One JSON document (for monitoring) instead of the table
        #[arg(long)]
        json: bool,
        /// Mattermost's config.json [default: [integrate] mattermost_config, else /opt/mattermost/config/config.json, else /etc/mattermost/config.json]
        #[arg(long, alias = "config-json", value_name = "PATH", conflicts_with = "url")]
        mattermost_config: Option<PathBuf>,
        /// Read Mattermost's settings through its REST API at this address (configuration in the database) [default: [integrate] mattermost_url]
        #[arg(long, value_name = "URL", requires = "token_file")]
        url: Option<String>,
        /// File (mode 600) holding a system admin's personal access token, for --url
        #[arg(long, value_name = "PATH", requires = "url")]
        token_file: Option<PathBuf>,
        /// Document Server's local.json [default: [integrate] documentserver_config, else /etc/onlyoffice/documentserver/local.json]
        #[arg(long, value_name = "PATH")]
        documentserver_config: Option<PathBuf>,
    },
}

/// Where `integrate` reads and writes Mattermost's configuration: its file, or its REST API.
#[derive(Debug, clap::Args)]
pub struct MattermostAccess {
    /// Mattermost's config.json [default: /opt/mattermost/config/config.json, else /etc/mattermost/config.json]
    #[arg(long, value_name = "PATH", conflicts_with = "url")]
    config_json: Option<PathBuf>,
    /// Use Mattermost's REST API at this address instead of its file (configuration in the database)
    #[arg(long, value_name = "URL", requires = "token_file")]
    url: Option<String>,
    /// File (mode 600) holding a system admin's personal access token, for --url
    #[arg(long, value_name = "PATH", requires = "url")]
    token_file: Option<PathBuf>,
}

impl MattermostAccess {
    /// The back end these arguments name; `None` when none is given (then `[integrate]` decides).
    fn target(self) -> Option<crate::integrate::backend::Target> {
        match (self.url, self.token_file, self.config_json) {
            (Some(url), Some(token_file), _) => {
                Some(crate::integrate::backend::Target::Api { url, token_file })
            }
            (_, _, Some(path)) => Some(crate::integrate::backend::Target::File(Some(path))),
            _ => None,
        }
    }
}

// clap turns doc comments into --help text: the command's own text is in the attributes, and a
// doc comment here would replace it.
#[allow(missing_docs)]
#[derive(Debug, Subcommand)]
pub enum IntegrateProduct {
    /// Set Mattermost's SiteURL, listen address, trusted proxy headers, mail and push relays from
    /// vestibule's configuration; exit 0 done, 1 invalid configuration, 2 cannot read or write
    /// Mattermost's, 3 refused (an admin's value would change; see --force)
    Mattermost {
        /// vestibule's main configuration file [default: /etc/vestibule/vestibule.toml, else the embedded default]
        #[arg(short, long, value_name = "PATH")]
        config: Option<PathBuf>,
        /// The Mattermost vhost, when vestibule cannot tell which one it is
        #[arg(long, value_name = "NAME")]
        vhost: Option<String>,
        #[command(flatten)]
        mattermost: MattermostAccess,
        /// Print what would change (key: old -> new) and write nothing
        #[arg(long)]
        dry_run: bool,
        /// Also overwrite values an admin set differently
        #[arg(long)]
        force: bool,
        /// Also the Kopano packages' defaults: diagnostics off, webhooks may override name and icon,
        /// email batching on, only admins create teams
        #[arg(long)]
        packager_defaults: bool,
    },
    /// Put one JWT secret and its header into vestibule's Mattermost vhost, the Mattermost
    /// ONLYOFFICE plugin's settings and Document Server's local.json; exit codes as for mattermost
    Onlyoffice {
        /// vestibule's main configuration file [default: /etc/vestibule/vestibule.toml, else the embedded default]
        #[arg(short, long, value_name = "PATH")]
        config: Option<PathBuf>,
        /// The Mattermost vhost, when vestibule cannot tell which one it is
        #[arg(long, value_name = "NAME")]
        vhost: Option<String>,
        /// The JWT secret's file (created with mode 600 if missing) [default: the vhost's
        /// [onlyoffice] secret_file, else secrets/onlyoffice.jwt in vestibule's configuration directory]
        #[arg(long, value_name = "PATH")]
        secret_file: Option<PathBuf>,
        /// Document Server's local.json [default: [integrate] documentserver_config, else
        /// /etc/onlyoffice/documentserver/local.json]
        #[arg(long, value_name = "PATH")]
        documentserver_config: Option<PathBuf>,
        /// Document Server's address as browsers reach it, for the plugin [default: [integrate]
        /// documentserver_url, else the vhost whose upstream is checked on /healthcheck]
        #[arg(long, value_name = "URL")]
        documentserver_url: Option<String>,
        #[command(flatten)]
        mattermost: MattermostAccess,
        /// Print what would change (the secret as a hash prefix) and write nothing
        #[arg(long)]
        dry_run: bool,
        /// Also overwrite values an admin set differently
        #[arg(long)]
        force: bool,
    },
    /// Show Mattermost in Kopano WebApp: WebApp's origin in the vhost's embedding and in
    /// Notifymatters' trusted origins, and a WebApp Intranet button to Mattermost
    Kopano {
        /// vestibule's main configuration file [default: /etc/vestibule/vestibule.toml, else the embedded default]
        #[arg(short, long, value_name = "PATH")]
        config: Option<PathBuf>,
        /// The Mattermost vhost, when vestibule cannot tell which one it is
        #[arg(long, value_name = "NAME")]
        vhost: Option<String>,
        /// WebApp's origin, e.g. https://mail.example.org [default: [integrate] webapp_origin, else the
        /// vhost's one embedding origin]
        #[arg(long, value_name = "ORIGIN")]
        webapp_origin: Option<String>,
        /// WebApp's Intranet plugin configuration [default: [integrate] webapp_config, else
        /// /etc/kopano/webapp/config-intranet.php]; printed instead when missing
        #[arg(long, value_name = "PATH")]
        webapp_config: Option<PathBuf>,
        #[command(flatten)]
        mattermost: MattermostAccess,
        /// Print what would change and write nothing
        #[arg(long)]
        dry_run: bool,
        /// Also overwrite values an admin set differently
        #[arg(long)]
        force: bool,
    },
    /// Every product at once: mattermost, then onlyoffice (when the vhost has [onlyoffice]), then
    /// kopano (when WebApp's origin is known); exit code the worst of them
    All {
        /// vestibule's main configuration file [default: /etc/vestibule/vestibule.toml, else the embedded default]
        #[arg(short, long, value_name = "PATH")]
        config: Option<PathBuf>,
        /// The Mattermost vhost, when vestibule cannot tell which one it is
        #[arg(long, value_name = "NAME")]
        vhost: Option<String>,
        /// WebApp's origin, e.g. https://mail.example.org
        #[arg(long, value_name = "ORIGIN")]
        webapp_origin: Option<String>,
        #[command(flatten)]
        mattermost: MattermostAccess,
        /// Also the Kopano packages' Mattermost defaults
        #[arg(long)]
        packager_defaults: bool,
        /// Print what would change and write nothing
        #[arg(long)]
        dry_run: bool,
        /// Also overwrite values an admin set differently
        #[arg(long)]
        force: bool,
    },
}

// clap turns doc comments into --help text: the command's own text is in the attributes, and a
// doc comment here would replace it.
#[allow(missing_docs)]
#[derive(Debug, Subcommand)]
pub enum UsersAction {
    /// Create [users]'s directory (or CSV) users in Mattermost, add them to the team, make the first
    /// one system admin if no person is; skip disabled and existing ones. Exit 0 all handled,
    /// 1 invalid configuration, 2 source or Mattermost unusable, 3 some users failed
    Sync {
        /// Main configuration file [default: /etc/vestibule/vestibule.toml, else the embedded default]
        #[arg(short, long, value_name = "PATH")]
        config: Option<PathBuf>,
        /// The team (URL name) everyone joins, instead of [users] team
        #[arg(long, value_name = "NAME")]
        team: Option<String>,
        /// Read users from this CSV file (username,email,first,last[,disabled]) instead of the directory
        #[arg(long, value_name = "PATH")]
        csv: Option<PathBuf>,
        /// One initial password for every created user instead of random ones; `-` reads it from
        /// standard input (a password given here is visible in `ps`: prefer `-` or [users] password_file)
        #[arg(long, value_name = "PASSWORD")]
        password: Option<String>,
        /// Write the generated passwords to this file (created with mode 600) instead of stdout
        #[arg(long, value_name = "PATH")]
        passwords_file: Option<PathBuf>,
        /// Show what would change and write nothing
        #[arg(long)]
        dry_run: bool,
        /// One JSON document instead of lines
        #[arg(long)]
        json: bool,
        /// Also deactivate (never delete) password accounts missing from, or disabled in, the source
        #[arg(long)]
        deactivate_missing: bool,
    },
}

// clap turns doc comments into --help text: the command's own text is in the attributes, and a
// doc comment here would replace it.
#[allow(missing_docs)]
#[derive(Debug, Subcommand)]
pub enum CertAction {
    /// Every served name: vhost, source, issuer, not-after, days left
    Status {
        /// Main configuration file [default: /etc/vestibule/vestibule.toml, else the embedded default]
        #[arg(short, long, value_name = "PATH")]
        config: Option<PathBuf>,
    },
}

// clap turns doc comments into --help text: the command's own text is in the attributes, and a
// doc comment here would replace it.
#[allow(missing_docs)]
#[derive(Debug, Subcommand)]
pub enum VhostAction {
    /// Render vhosts/<NAME>.toml from a template, check it with the rest of the tree, then write it
    New {
        /// mattermost, onlyoffice or kopano-webapp
        #[arg(long)]
        template: String,
        /// The site's name (server name and file name), e.g. chat.example.org
        #[arg(long)]
        name: String,
        /// The application server, host:port
        #[arg(long)]
        upstream: String,
        /// An origin allowed to show the site in an iframe (repeatable), e.g. https://webapp.example.org
        #[arg(long = "embed-from", value_name = "ORIGIN")]
        embed_from: Vec<String>,
        /// acme, self-signed (default), none, or cert:PATH,key:PATH
        #[arg(long)]
        tls: Option<String>,
        /// Add the ONLYOFFICE JWT relay section (Mattermost template)
        #[arg(long)]
        onlyoffice: bool,
        /// Replace an existing file
        #[arg(long)]
        force: bool,
        /// Main configuration file [default: /etc/vestibule/vestibule.toml]
        #[arg(short, long, value_name = "PATH")]
        config: Option<PathBuf>,
    },
    /// List the vhosts of the configuration
    List {
        /// Main configuration file [default: /etc/vestibule/vestibule.toml, else the embedded default]
        #[arg(short, long, value_name = "PATH")]
        config: Option<PathBuf>,
    },
}

// clap turns doc comments into --help text: the command's own text is in the attributes, and a
// doc comment here would replace it.
#[allow(missing_docs)]
#[derive(Debug, Subcommand)]
pub enum MailAction {
    /// Queued messages: id, age, sender, pending recipients, attempts, last reply
    Queue {
        /// Main configuration file [default: /etc/vestibule/vestibule.toml, else the embedded default]
        #[arg(short, long, value_name = "PATH")]
        config: Option<PathBuf>,
    },
    /// Attempt delivery now: of every deferred message, or of the one given
    Flush {
        /// Queue id (from `mail queue`); all messages when absent
        id: Option<String>,
        /// Main configuration file [default: /etc/vestibule/vestibule.toml, else the embedded default]
        #[arg(short, long, value_name = "PATH")]
        config: Option<PathBuf>,
    },
    /// Delete a queued message without delivering it and without a bounce
    Drop {
        /// Queue id (from `mail queue`)
        id: String,
        /// Main configuration file [default: /etc/vestibule/vestibule.toml, else the embedded default]
        #[arg(short, long, value_name = "PATH")]
        config: Option<PathBuf>,
    },
    /// Read a password on stdin and print its argon2id hash, for `[mail] users_file`
    HashPassword,
}

/// Exit codes: 0 success, 1 invalid configuration, 2 any other failure (`integrate`: 3 refused).
pub fn dispatch(cli: Cli) -> i32 {
    match cli.command {
        Command::Run { config, upgrade } => run::run(crate::config::Location::from_arg(config), upgrade),
        Command::Check { config, dns } => check::check(crate::config::Location::from_arg(config), dns),
        Command::Doctor {
            config,
            json,
            mattermost_config,
            url,
            token_file,
            documentserver_config,
        } => {
            let mattermost = MattermostAccess {
                config_json: mattermost_config,
                url,
                token_file,
            };
            let sources = crate::doctor::Sources {
                mattermost: mattermost.target(),
                documentserver: documentserver_config,
            };
            doctor::doctor(crate::config::Location::from_arg(config), json, sources)
        }
        Command::Vhost {
            action:
                VhostAction::New {
                    template,
                    name,
                    upstream,
                    embed_from,
                    tls,
                    onlyoffice,
                    force,
                    config,
                },
        } => vhost::new(
            crate::config::Location::from_arg(config),
            vhost::NewVhost {
                template,
                name,
                upstream,
                embed_from,
                tls,
                onlyoffice,
                force,
            },
        ),
        Command::Vhost {
            action: VhostAction::List { config },
        } => vhost::list(crate::config::Location::from_arg(config)),
        Command::Mail { action } => match action {
            MailAction::Queue { config } => mail::queue(crate::config::Location::from_arg(config)),
            MailAction::Flush { id, config } => {
                mail::control(crate::config::Location::from_arg(config), mail::Op::Flush(id))
            }
            MailAction::Drop { id, config } => {
                mail::control(crate::config::Location::from_arg(config), mail::Op::Drop(id))
            }
            MailAction::HashPassword => mail::hash_password(),
        },
        Command::Integrate {
            product:
                IntegrateProduct::Mattermost {
                    config,
                    vhost,
                    mattermost,
                    dry_run,
                    force,
                    packager_defaults,
                },
        } => integrate::mattermost(
            crate::config::Location::from_arg(config),
            integrate::MattermostArgs {
                access: mattermost.target(),
                vhost,
                packager_defaults,
                dry_run,
                force,
            },
        ),
        Command::Integrate {
            product:
                IntegrateProduct::Kopano {
                    config,
                    vhost,
                    webapp_origin,
                    webapp_config,
                    mattermost,
                    dry_run,
                    force,
                },
        } => integrate::kopano(
            crate::config::Location::from_arg(config),
            integrate::KopanoArgs {
                vhost,
                webapp_origin,
                webapp_config,
                access: mattermost.target(),
                dry_run,
                force,
            },
        ),
        Command::Integrate {
            product:
                IntegrateProduct::All {
                    config,
                    vhost,
                    webapp_origin,
                    mattermost,
                    packager_defaults,
                    dry_run,
                    force,
                },
        } => integrate::all(
            crate::config::Location::from_arg(config),
            integrate::AllArgs {
                vhost,
                access: mattermost.target(),
                webapp_origin,
                packager_defaults,
                dry_run,
                force,
            },
        ),
        Command::Users {
            action:
                UsersAction::Sync {
                    config,
                    team,
                    csv,
                    password,
                    passwords_file,
                    dry_run,
                    json,
                    deactivate_missing,
                },
        } => users::sync(
            crate::config::Location::from_arg(config),
            users::SyncArgs {
                team,
                csv,
                password,
                passwords_file,
                dry_run,
                json,
                deactivate_missing,
            },
        ),
        Command::Sendmail { args } => sendmail::sendmail(args),
        Command::Generate { what, dir } => generate::generate(&what, dir.as_deref()),
        Command::Integrate {
            product:
                IntegrateProduct::Onlyoffice {
                    config,
                    vhost,
                    secret_file,
                    documentserver_config,
                    documentserver_url,
                    mattermost,
                    dry_run,
                    force,
                },
        } => integrate::onlyoffice(
            crate::config::Location::from_arg(config),
            integrate::OnlyofficeArgs {
                vhost,
                secret_file,
                documentserver_config,
                documentserver_url,
                access: mattermost.target(),
                dry_run,
                force,
            },
        ),
        Command::Status { config } => status::status(crate::config::Location::from_arg(config)),
        Command::Cert {
            action: CertAction::Status { config },
        } => cert::status(crate::config::Location::from_arg(config)),
    }
}
