//! The assembled configuration: the core keys read here, each module's section read by that module's
//! own reader. This file only calls them in order, so `config/` depends on the modules' `config`
//! readers and never the other way round.

use std::net::SocketAddr;
use std::path::PathBuf;

use super::core::{self, AdminConfig, LogConfig};
use super::diag::Diagnostics;
use super::read::{self, TableReader};
use super::source::Node;
use crate::mail::config::{self as mail, MailConfig};
use crate::proxy::config::upstream::UpstreamConfig;
use crate::proxy::config::vhost::VhostConfig;
use crate::proxy::config::{self as proxy, ProxyConfig};
use crate::push::config::{self as push, PushConfig};
use crate::tls::config::{self as tls, TlsConfig};
use crate::users::config::{self as users, UsersConfig};

#[derive(Debug)]
pub struct Config {
    /// Where this configuration came from, for messages.
    pub origin: String,
    pub state_dir: PathBuf,
    pub log: LogConfig,
    pub admin: AdminConfig,
    pub proxy: ProxyConfig,
    pub tls: TlsConfig,
    /// `[acme]`: the CA and account for `tls = "acme"` vhosts.
    pub acme: crate::tls::config::AcmeSettings,
    /// `[mail]`: the SMTP relay; `None` when the section is absent (module off).
    pub mail: Option<MailConfig>,
    /// `[push]`: the push-notification relay; `None` when the section is absent (module off).
    pub push: Option<PushConfig>,
    /// `[integrate]`: where the products' configurations are (for `integrate` and `doctor`).
    pub integrate: crate::integrate::config::IntegrateConfig,
    /// `[users]`: `vestibule users sync`'s source and Mattermost; `None` when absent (module off).
    pub users: Option<UsersConfig>,
    /// `[doctor]`: where `vestibule doctor` looks from (defaults without the section).
    pub doctor: crate::doctor::config::DoctorConfig,
    /// `[dns] servers`: name servers to ask instead of /etc/resolv.conf's.
    pub dns_servers: Vec<SocketAddr>,
    pub upstreams: Vec<UpstreamConfig>,
    pub vhosts: Vec<VhostConfig>,
}

/// Read the merged main tree (vestibule.toml + conf.d) and the vhost trees. Errors go to `diags`;
/// the result is a best-effort configuration (defaults in place of bad values, bad vhosts and routes
/// left out) so that cross-checks can still run and report everything in one pass. It must never be
/// served when `diags` is not empty.
///
/// Sections are read in a fixed order, which is the order their errors are listed in.
pub fn read(
    origin: String,
    main: &Node,
    vhosts: &[(String, Node)],
    diags: &mut Diagnostics,
) -> Option<Config> {
    let mut root = TableReader::new(main, "vestibule.toml", diags)?;
    let state_dir = root
        .opt("state_dir", diags, read::string)
        .map_or_else(|| PathBuf::from(core::STATE_DIR), PathBuf::from);
    let log = root.get("log").and_then(|n| core::read_log(n, diags));
    let admin = root
        .get("admin")
        .map_or_else(|| Some(AdminConfig::default()), |n| core::read_admin(n, diags));
    let empty = || Node::empty_table(main.loc.file.clone());
    let proxy = match root.get("proxy") {
        Some(n) => proxy::read_proxy(n, diags),
        None => proxy::read_proxy(&empty(), diags),
    };
    let tls = root
        .get("tls")
        .and_then(|n| tls::read_tls(n, diags))
        .unwrap_or_default();
    let push = root.get("push").and_then(|n| push::read_push(n, diags));
    let mail = root
        .get("mail")
        .and_then(|n| mail::read_mail(n, tls.handshake_timeout, diags));
    let integrate = root
        .get("integrate")
        .and_then(|n| crate::integrate::config::read_integrate(n, diags))
        .unwrap_or_default();
    let users = root.get("users").and_then(|n| users::read_users(n, diags));
    let dns_servers = root
        .get("dns")
        .and_then(|n| core::read_dns(n, diags))
        .unwrap_or_default();
    let acme = root
        .get("acme")
        .and_then(|n| tls::read_acme(n, diags))
        .unwrap_or_else(tls::default_acme);
    let doctor = root
        .get("doctor")
        .and_then(|n| crate::doctor::config::read_doctor(n, diags))
        .unwrap_or_default();
    let upstreams = root
        .get("upstream")
        .map(|n| proxy::upstream::read_upstreams(n, diags))
        .unwrap_or_default();
    root.finish(diags);

    let vhosts: Vec<VhostConfig> = vhosts
        .iter()
        .filter_map(|(name, node)| proxy::vhost::read_vhost(name, node, diags))
        .collect();

    Some(Config {
        origin,
        state_dir,
        log: log.unwrap_or_default(),
        admin: admin.unwrap_or_default(),
        proxy: proxy.unwrap_or_else(|| {
            proxy::read_proxy(&empty(), &mut Diagnostics::default()).expect("an empty table reads")
        }),
        tls,
        acme,
        mail,
        push,
        integrate,
        users,
        doctor,
        dns_servers,
        upstreams,
        vhosts,
    })
}
