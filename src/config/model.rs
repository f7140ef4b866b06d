//! The validated configuration: typed values read once from the merged tree.
//!
//! Nothing on the request path ever re-parses a string from here. Cross-checks that need the whole
//! tree (a vhost naming a missing upstream, two vhosts claiming one name) belong to the modules'
//! `validate` phase, not to this reader.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::diag::{Diagnostic, Diagnostics};
use super::read::{self, TableReader};
use super::source::{Loc, Node, Value};

/// Defaults chosen for a packaged Mattermost install (see spec/mattermost-proxy.md).
pub mod defaults {
    use std::time::Duration;
    pub const STATE_DIR: &str = "/var/lib/vestibule";
    pub const ADMIN_LISTEN: &str = "127.0.0.1:9180";
    pub const PROXY_LISTEN: &str = "0.0.0.0:80";
    pub const MAX_BODY: u64 = 100 << 20;
    pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
    pub const READ_TIMEOUT: Duration = Duration::from_secs(600);
    pub const WRITE_TIMEOUT: Duration = Duration::from_secs(300);
    pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
    pub const HEALTH_INTERVAL: Duration = Duration::from_secs(5);
    pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);
    pub const FAIL_TIMEOUT: Duration = Duration::from_secs(10);
    pub const GRACE_PERIOD: Duration = Duration::from_secs(10);
    pub const UPSTREAM_KEEPALIVE: usize = 128;
    /// Six months: Mattermost's documented value.
    pub const HSTS_MAX_AGE: u64 = 15_768_000;
    pub const CERT_WATCH_INTERVAL: Duration = Duration::from_secs(60);
    /// nginx's `keepalive_timeout`.
    pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(75);
    /// nginx's `client_header_timeout`, for the whole head.
    pub const CLIENT_HEADER_TIMEOUT: Duration = Duration::from_secs(60);
    /// nginx's `large_client_header_buffers 4 8k`.
    pub const MAX_HEADER_SIZE: u64 = 32 << 10;
    pub const MAX_CONNECTIONS: usize = 10_000;
    /// Room for an office behind one NAT address (a browser opens up to 6 connections per name).
    pub const MAX_CONNECTIONS_PER_IP: usize = 512;
    pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
}

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
    pub acme: crate::tls::acme::AcmeSettings,
    /// `[mail]`: the SMTP relay; `None` when the section is absent (module off).
    pub mail: Option<MailConfig>,
    /// `[push]`: the push-notification relay; `None` when the section is absent (module off).
    pub push: Option<PushConfig>,
    /// `[dns] servers`: name servers to ask instead of /etc/resolv.conf's.
    pub dns_servers: Vec<SocketAddr>,
    pub upstreams: Vec<UpstreamConfig>,
    pub vhosts: Vec<VhostConfig>,
}

/// `[mail]`: the SMTP relay.
#[derive(Debug, Clone, PartialEq)]
pub struct MailConfig {
    pub listen: Vec<SocketAddr>,
    pub hostname: String,
    /// May relay without authentication.
    pub trusted_networks: Vec<ipnet::IpNet>,
    pub max_message_size: u64,
    pub max_recipients: usize,
    pub max_connections: usize,
    /// Per untrusted address (trusted networks have no per-address cap).
    pub max_connections_per_ip: usize,
    /// Of `max_connections`, kept for trusted networks: untrusted clients share the rest.
    pub reserved_for_trusted: usize,
    /// Percent (1-100) of `max_connections` busy from which the relay is under stress.
    pub stress_threshold: u8,
    /// Wait for each command line (or line of message text).
    pub idle_timeout: Duration,
    /// The same under stress (Postfix's stress mode: idle sessions make room quickly).
    pub stress_idle_timeout: Duration,
    /// The whole TLS handshake, implicit TLS or after STARTTLS: `[tls] handshake_timeout`.
    pub tls_handshake_timeout: Duration,
    /// `smtp://host[:587]` (STARTTLS required) or `smtps://host[:465]`.
    pub smarthost: Option<String>,
    /// `smarthost_tls = "none"`: plaintext to the smarthost (for one on loopback).
    pub smarthost_plaintext: bool,
    /// First retry delay after a temporary failure (then doubling to 4000 s).
    pub first_retry: Duration,
    /// Implicit-TLS listeners (submissions, RFC 8314), beside the STARTTLS ones in `listen`.
    pub listen_tls: Vec<SocketAddr>,
    /// `name:argon2-hash` lines (0600): users who may relay after AUTH over TLS.
    pub users_file: Option<PathBuf>,
    /// `username:password` for the smarthost (0600).
    pub smarthost_auth_file: Option<PathBuf>,
    /// A PEM CA to trust for the smarthost's certificate, besides the system's roots.
    pub smarthost_ca_file: Option<PathBuf>,
    /// Envelope sender domains accepted (`.example.org` includes subdomains); `None`: any.
    pub sender_domains: Option<Vec<String>>,
    /// Recipient domains accepted; `None`: any.
    pub recipient_domains: Option<Vec<String>>,
    /// How long a message may wait before it bounces (Postfix: 5 days).
    pub queue_lifetime: Duration,
    /// Port of MX hosts (25; another value only for labs and tests).
    pub mx_port: u16,
    /// Queue only, deliver nothing (maintenance, or a machine that must not send mail).
    pub hold: bool,
}

/// `[push]`: the Mattermost push-notification relay.
#[derive(Debug, Clone)]
pub struct PushConfig {
    pub listen: SocketAddr,
    /// Client networks allowed to send (Mattermost servers).
    pub allow: Vec<ipnet::IpNet>,
    pub contents: crate::push::notification::Contents,
    pub rate_per_second: u32,
    pub rate_burst: u32,
    pub max_body: u64,
    pub attempt_timeout: Duration,
    pub total_timeout: Duration,
    pub routes: Vec<PushRoute>,
}

#[derive(Debug, Clone)]
pub struct PushRoute {
    pub loc: Loc,
    /// Platforms (`-vN` suffix stripped) this route serves.
    pub platforms: Vec<String>,
    pub dest: PushDest,
}

#[derive(Debug, Clone)]
pub enum PushDest {
    Upstream {
        url: String,
        ca_file: Option<PathBuf>,
    },
    Apns {
        key_file: PathBuf,
        key_id: String,
        team_id: String,
        topic: String,
        endpoint: String,
        ca_file: Option<PathBuf>,
    },
    Fcm {
        service_account_file: PathBuf,
        endpoint: String,
        ca_file: Option<PathBuf>,
    },
}

/// `[tls]`: settings shared by every HTTPS listener.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    /// What to do with a handshake whose SNI names no vhost (or that sends none):
    /// `None` = serve the default vhost's certificate if it has one, else refuse.
    pub unknown_sni: Option<UnknownSni>,
    /// How often certificate files are checked for changes (besides SIGHUP).
    pub watch_interval: Duration,
    /// How long a client has to complete a TLS handshake.
    pub handshake_timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnknownSni {
    Refuse,
    Default,
}

/// An HTTPS listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsListener {
    pub addr: SocketAddr,
    pub h2: bool,
}

/// Where a vhost's certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsSource {
    /// PEM files: the full chain, and the private key (RSA, ECDSA or Ed25519).
    Files { cert: PathBuf, key: PathBuf },
    /// Generated at start-up for the vhost's names.
    SelfSigned,
    /// Ordered from the ACME CA of `[acme]` (Let's Encrypt by default).
    Acme,
}

/// `Strict-Transport-Security` for a vhost's HTTPS responses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hsts {
    pub max_age: u64,
    pub include_subdomains: bool,
    pub preload: bool,
}

impl Hsts {
    pub fn header_value(&self) -> String {
        let mut v = format!("max-age={}", self.max_age);
        if self.include_subdomains {
            v.push_str("; includeSubDomains");
        }
        if self.preload {
            v.push_str("; preload");
        }
        v
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone)]
pub struct LogConfig {
    pub level: String,
    pub format: LogFormat,
    pub access_log: crate::access_log::Destination,
}

#[derive(Debug, Clone)]
pub struct AdminConfig {
    pub listen: SocketAddr,
}

#[derive(Debug, Clone)]
pub struct ProxyConfig {
    pub listen: Vec<SocketAddr>,
    pub listen_tls: Vec<TlsListener>,
    /// 308 always, or 301 for GET/HEAD (and 308 for the rest) when set to 301.
    pub redirect_status: u16,
    pub threads: usize,
    pub default_vhost: Option<Named>,
    pub unknown_host_status: u16,
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub grace_period: Duration,
    pub upstream_keepalive: usize,
    pub conn: ConnLimits,
}

/// What one client connection to the proxy listeners may hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnLimits {
    /// Idle time allowed between requests on a kept-alive HTTP/1 connection.
    pub keepalive_timeout: Duration,
    /// Time allowed for a whole request head (from the connection's start, or after the keep-alive
    /// wait on a reused connection).
    pub client_header_timeout: Duration,
    /// Largest request head (request line and headers), in bytes.
    pub max_header_size: u64,
    /// Open client connections over all proxy listeners.
    pub max_connections: usize,
    /// Open client connections from one address.
    pub max_connections_per_ip: usize,
}

impl Default for ConnLimits {
    fn default() -> Self {
        ConnLimits {
            keepalive_timeout: defaults::KEEPALIVE_TIMEOUT,
            client_header_timeout: defaults::CLIENT_HEADER_TIMEOUT,
            max_header_size: defaults::MAX_HEADER_SIZE,
            max_connections: defaults::MAX_CONNECTIONS,
            max_connections_per_ip: defaults::MAX_CONNECTIONS_PER_IP,
        }
    }
}

/// A reference by name, with where it was written.
#[derive(Debug, Clone)]
pub struct Named {
    pub name: String,
    pub loc: Loc,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ServerAddr {
    pub host: String,
    pub port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheckConfig {
    pub enabled: bool,
    /// HTTP path to GET; `None` checks that a TCP connection opens.
    pub path: Option<String>,
    pub host: Option<String>,
    pub interval: Duration,
    pub timeout: Duration,
    pub fails: usize,
    pub passes: usize,
}

impl Default for HealthCheckConfig {
    fn default() -> Self {
        HealthCheckConfig {
            enabled: true,
            path: None,
            host: None,
            interval: defaults::HEALTH_INTERVAL,
            timeout: defaults::HEALTH_TIMEOUT,
            fails: 1,
            passes: 1,
        }
    }
}

#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// The pool's name: its key under `[upstream.NAME]`, or `<vhost>` / `<vhost>#route<N>` inline.
    pub name: String,
    pub loc: Loc,
    pub servers: Vec<ServerAddr>,
    pub health_check: HealthCheckConfig,
    /// How long a server that refused a connection is left out (passive failure marking).
    pub fail_timeout: Duration,
    pub tls: bool,
    pub sni: Option<String>,
}

impl UpstreamConfig {
    /// Everything that makes two pools interchangeable; a reload keeps a pool (and its health state)
    /// whose identity did not change.
    pub fn identity(&self) -> String {
        format!(
            "{}|{:?}|{:?}|{:?}|{}|{:?}",
            self.name, self.servers, self.health_check, self.fail_timeout, self.tls, self.sni
        )
    }
}

#[derive(Debug, Clone)]
pub enum UpstreamRef {
    Named(Named),
    Inline(UpstreamConfig),
    /// Given but invalid (already reported): cross-checks skip it rather than report it again.
    Invalid,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timeouts {
    pub connect: Option<Duration>,
    pub read: Option<Duration>,
    pub write: Option<Duration>,
    pub idle: Option<Duration>,
}

impl Timeouts {
    /// `self`, with anything unset taken from `base`.
    pub fn or(self, base: Timeouts) -> Timeouts {
        Timeouts {
            connect: self.connect.or(base.connect),
            read: self.read.or(base.read),
            write: self.write.or(base.write),
            idle: self.idle.or(base.idle),
        }
    }
}

/// A server name a vhost answers to: exact, or `*.suffix`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HostPattern {
    Exact(String),
    /// The suffix including its leading dot: `*.example.org` is stored as `.example.org`.
    Wildcard(String),
}

impl std::fmt::Display for HostPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HostPattern::Exact(s) => f.write_str(s),
            HostPattern::Wildcard(s) => write!(f, "*{s}"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct VhostConfig {
    pub name: String,
    pub loc: Loc,
    pub server_names: Vec<(HostPattern, Loc)>,
    pub tls: Option<(TlsSource, Loc)>,
    /// Plain-HTTP requests for a TLS vhost are redirected to HTTPS (default), or proxied when false.
    pub redirect: bool,
    /// `None`: no HSTS header (also for vhosts without TLS).
    pub hsts: Option<Hsts>,
    /// `[embed] allow_origins`: origins allowed to frame this vhost.
    pub embed: Option<Vec<crate::policy::embed::Origin>>,
    /// `[remote_cluster] allow`: networks allowed to call Mattermost's server-to-server routes.
    pub remote_cluster: Option<Vec<ipnet::IpNet>>,
    pub headers: crate::policy::headers::HeaderRules,
    /// `[onlyoffice]`: the JWT relay (and optional verification) for the ONLYOFFICE routes.
    pub onlyoffice: Option<crate::policy::onlyoffice::RelayRule>,
    pub upstream: Option<UpstreamRef>,
    pub timeouts: Timeouts,
    pub max_body: Option<u64>,
    pub routes: Vec<RouteConfig>,
}

#[derive(Debug, Clone)]
pub struct RouteConfig {
    pub loc: Loc,
    pub path: regex::Regex,
    pub upstream: Option<UpstreamRef>,
    pub timeouts: Timeouts,
    pub max_body: Option<u64>,
    pub headers: crate::policy::headers::HeaderRules,
    /// Answered by the push relay (`[push]`) instead of an upstream.
    pub push: bool,
}

/// Read the merged main tree (vestibule.toml + conf.d) and the vhost trees. Errors go to `diags`;
/// the result is a best-effort configuration (defaults in place of bad values, bad vhosts and routes
/// left out) so that cross-checks can still run and report everything in one pass. It must never be
/// served when `diags` is not empty.
pub fn read(
    origin: String,
    main: &Node,
    vhosts: &[(String, Node)],
    diags: &mut Diagnostics,
) -> Option<Config> {
    let before = diags.len();
    let mut root = TableReader::new(main, "vestibule.toml", diags)?;
    let state_dir = root
        .opt("state_dir", diags, read::string)
        .map_or_else(|| PathBuf::from(defaults::STATE_DIR), PathBuf::from);
    let log = root.get("log").and_then(|n| read_log(n, diags));
    let admin = root.get("admin").map_or_else(
        || {
            Some(AdminConfig {
                listen: defaults::ADMIN_LISTEN.parse().expect("constant"),
            })
        },
        |n| read_admin(n, diags),
    );
    let proxy = match root.get("proxy") {
        Some(n) => read_proxy(n, diags),
        None => read_proxy(&Node::empty_table(main.loc.file.clone()), diags),
    };
    let tls = match root.get("tls") {
        Some(n) => read_tls(n, diags),
        None => None,
    }
    .unwrap_or(TlsConfig {
        unknown_sni: None,
        watch_interval: defaults::CERT_WATCH_INTERVAL,
        handshake_timeout: defaults::TLS_HANDSHAKE_TIMEOUT,
    });
    let push = root.get("push").and_then(|n| read_push(n, diags));
    let mail = root
        .get("mail")
        .and_then(|n| read_mail(n, tls.handshake_timeout, diags));
    let dns_servers = root
        .get("dns")
        .and_then(|n| {
            let mut t = TableReader::new(n, "[dns]", diags)?;
            let servers = t.opt("servers", diags, read::list(read::socket_addr));
            t.finish(diags);
            servers
        })
        .unwrap_or_default();
    let acme = root
        .get("acme")
        .and_then(|n| read_acme(n, diags))
        .unwrap_or(crate::tls::acme::AcmeSettings {
            directory: crate::tls::acme::LETS_ENCRYPT.to_string(),
            contact: Vec::new(),
            ca_file: None,
            tls_alpn: false,
        });
    let mut upstreams = Vec::new();
    if let Some(n) = root.get("upstream") {
        if let Some(mut t) = TableReader::new(n, "[upstream]", diags) {
            for entry in t.take_all() {
                let what = format!("[upstream.{}]", entry.key);
                if let Some(u) = read_upstream_table(&entry.node, entry.key.clone(), &what, diags) {
                    upstreams.push(u);
                }
            }
            t.finish(diags);
        }
    }
    root.finish(diags);

    let vhosts: Vec<VhostConfig> = vhosts
        .iter()
        .filter_map(|(name, node)| read_vhost(name, node, diags))
        .collect();

    let _ = before;
    Some(Config {
        origin,
        state_dir,
        log: log.unwrap_or(LogConfig {
            level: "info".into(),
            format: LogFormat::Text,
            access_log: crate::access_log::Destination::Stderr,
        }),
        admin: admin.unwrap_or_else(|| AdminConfig {
            listen: defaults::ADMIN_LISTEN.parse().expect("constant"),
        }),
        proxy: proxy.unwrap_or_else(|| {
            read_proxy(
                &Node::empty_table(main.loc.file.clone()),
                &mut Diagnostics::default(),
            )
            .expect("an empty table reads")
        }),
        tls,
        acme,
        mail,
        push,
        dns_servers,
        upstreams,
        vhosts,
    })
}

/// `[acme] contact = "mailto:admin@example.org"`, `directory = "letsencrypt" | "staging" | URL`, `ca_file`.
fn read_acme(node: &Node, diags: &mut Diagnostics) -> Option<crate::tls::acme::AcmeSettings> {
    let mut t = TableReader::new(node, "[acme]", diags)?;
    let contact = t.opt(
        "contact",
        diags,
        read::list(|n, name, d| {
            let s = read::string(n, name, d)?;
            let s = if s.contains(':') { s } else { format!("mailto:{s}") };
            Some(s)
        }),
    );
    let directory = t.opt("directory", diags, |n, name, d| {
        let s = read::string(n, name, d)?;
        match s.as_str() {
            "letsencrypt" | "production" => Some(crate::tls::acme::LETS_ENCRYPT.to_string()),
            "staging" | "letsencrypt-staging" => Some(crate::tls::acme::LETS_ENCRYPT_STAGING.to_string()),
            url if url.starts_with("https://") => Some(url.to_string()),
            _ => {
                d.push(
                    Diagnostic::at(&n.loc, format!("{name}: `{s}` is not an ACME directory"))
                        .hint("write \"letsencrypt\", \"staging\" or the https:// URL of a directory"),
                );
                None
            }
        }
    });
    let ca_file = t.opt("ca_file", diags, read::string).map(PathBuf::from);
    let challenge = t.opt("challenge", diags, read::one_of(&["http-01", "tls-alpn-01"]));
    t.finish(diags);
    Some(crate::tls::acme::AcmeSettings {
        directory: directory.unwrap_or_else(|| crate::tls::acme::LETS_ENCRYPT.to_string()),
        contact: contact.unwrap_or_default(),
        ca_file,
        tls_alpn: challenge == Some("tls-alpn-01"),
    })
}

/// `tls_handshake_timeout` is `[tls] handshake_timeout`, shared with the HTTPS listeners.
fn read_mail(node: &Node, tls_handshake_timeout: Duration, diags: &mut Diagnostics) -> Option<MailConfig> {
    let mut t = TableReader::new(node, "[mail]", diags)?;
    let listen = t.opt("listen", diags, read::list(read::socket_addr));
    let hostname = t.opt("hostname", diags, read::string);
    let trusted = t.opt("trusted_networks", diags, read::list(read::cidr));
    let size = t.opt("max_message_size", diags, read::byte_size);
    let rcpts = t.opt("max_recipients", diags, read::int_in(1, 10_000));
    let conns = t.opt("max_connections", diags, read::int_in(1, 100_000));
    let per_ip = t.opt("max_connections_per_ip", diags, read::int_in(1, 100_000));
    let smarthost = t.opt("smarthost", diags, read::string);
    let smarthost_tls = t.opt("smarthost_tls", diags, read::one_of(&["required", "none"]));
    let first_retry = t.opt("first_retry", diags, read::duration);
    let listen_tls = t.opt("listen_tls", diags, read::list(read::socket_addr));
    let users_file = t.opt("users_file", diags, read::string).map(PathBuf::from);
    let auth_file = t
        .opt("smarthost_auth_file", diags, read::string)
        .map(PathBuf::from);
    let ca_file = t.opt("smarthost_ca_file", diags, read::string).map(PathBuf::from);
    let sender_domains = t.opt("sender_domains", diags, read::list(read::string));
    let recipient_domains = t.opt("recipient_domains", diags, read::list(read::string));
    let lifetime = t.opt("queue_lifetime", diags, read::duration);
    let mx_port = t.opt("mx_port", diags, read::int_in(1, 65535));
    let hold = t.opt("hold", diags, read::boolean);
    let max_connections = conns.map_or(100, |n| n as usize);
    let reserved = t.opt("reserved_for_trusted", diags, |n, name, d| {
        let v = read::int_in(0, 100_000)(n, name, d)? as usize;
        if v > max_connections {
            d.push(
                Diagnostic::at(
                    &n.loc,
                    format!("{name} ({v}) is more than max_connections ({max_connections})"),
                )
                .hint("reserve at most max_connections (which leaves no slot to untrusted clients)"),
            );
            return None;
        }
        Some(v)
    });
    let stress = t.opt("stress_threshold", diags, read_percent);
    let idle = t.opt("idle_timeout", diags, positive_duration);
    let stress_idle = t.opt("stress_idle_timeout", diags, positive_duration);
    // Default: a fifth of the slots (20 of the default 100).
    let reserved_for_trusted = reserved.unwrap_or(max_connections / 5);
    t.finish(diags);
    Some(MailConfig {
        listen: listen.unwrap_or_else(|| vec!["127.0.0.1:25".parse().expect("constant")]),
        hostname: hostname.unwrap_or_else(|| "localhost".to_string()),
        trusted_networks: trusted.unwrap_or_else(|| {
            vec![
                "127.0.0.0/8".parse().expect("constant"),
                "::1/128".parse().expect("constant"),
            ]
        }),
        max_message_size: size.unwrap_or(10 << 20),
        max_recipients: rcpts.map_or(100, |n| n as usize),
        max_connections,
        max_connections_per_ip: per_ip.map_or(20, |n| n as usize),
        smarthost,
        smarthost_plaintext: smarthost_tls == Some("none"),
        first_retry: first_retry.unwrap_or(Duration::from_secs(300)),
        listen_tls: listen_tls.unwrap_or_default(),
        users_file,
        smarthost_auth_file: auth_file,
        smarthost_ca_file: ca_file,
        sender_domains,
        recipient_domains,
        queue_lifetime: lifetime.unwrap_or(Duration::from_secs(5 * 86400)),
        mx_port: mx_port.map_or(25, |p| p as u16),
        hold: hold.unwrap_or(false),
        reserved_for_trusted,
        stress_threshold: stress.unwrap_or(75),
        idle_timeout: idle.unwrap_or(crate::mail::session::COMMAND_TIMEOUT),
        stress_idle_timeout: stress_idle.unwrap_or(Duration::from_secs(10)),
        tls_handshake_timeout,
    })
}

/// `"75%"`: a share of 1 to 100 percent.
fn read_percent(node: &Node, name: &str, diags: &mut Diagnostics) -> Option<u8> {
    let s = read::string(node, name, diags)?;
    match s
        .trim()
        .strip_suffix('%')
        .and_then(|n| n.trim().parse::<u8>().ok())
    {
        Some(n) if (1..=100).contains(&n) => Some(n),
        _ => {
            diags.push(
                Diagnostic::at(
                    &node.loc,
                    format!("{name}: `{s}` is not a percentage from 1% to 100%"),
                )
                .hint("write for example \"75%\""),
            );
            None
        }
    }
}

fn read_push(node: &Node, diags: &mut Diagnostics) -> Option<PushConfig> {
    use crate::push::notification::Contents;
    let mut t = TableReader::new(node, "[push]", diags)?;
    let listen = t.opt("listen", diags, read::socket_addr);
    let allow = t.opt("allow", diags, read::list(read::cidr));
    let contents = t.opt("contents", diags, read::one_of(&["full", "generic", "id_only"]));
    let rate = t.opt("rate_limit", diags, |n, name, d| {
        let mut r = TableReader::new(n, name.to_string(), d)?;
        let per = r.opt("per_second", d, read::int_in(1, 1_000_000));
        let burst = r.opt("burst", d, read::int_in(1, 1_000_000));
        r.finish(d);
        Some((per, burst))
    });
    let max_body = t.opt("max_body", diags, read::byte_size);
    let attempt = t.opt("attempt_timeout", diags, read::duration);
    let total = t.opt("total_timeout", diags, read::duration);
    let mut routes = Vec::new();
    if let Some(rn) = t.get("route") {
        let items: &[Node] = match &rn.value {
            Value::Array(items) => items,
            _ => std::slice::from_ref(rn),
        };
        for (i, item) in items.iter().enumerate() {
            if let Some(r) = read_push_route(item, &format!("[[push.route]] #{}", i + 1), diags) {
                routes.push(r);
            }
        }
    }
    t.finish(diags);
    let total = total.unwrap_or(Duration::from_secs(25));
    if total >= Duration::from_secs(30) {
        diags.push(
            Diagnostic::at(&node.loc, "[push] total_timeout must stay under 30s")
                .hint("Mattermost gives up after 30 s; an answer after that is lost"),
        );
    }
    if routes.is_empty() {
        diags.push(
            Diagnostic::at(&node.loc, "[push] has no [[push.route]]")
                .hint("add [[push.route]] platforms = [\"apple_rn\", \"android_rn\"] upstream = \"https://push.mattermost.com\""),
        );
    }
    let (per, burst) = rate.unwrap_or((None, None));
    Some(PushConfig {
        listen: listen.unwrap_or_else(|| "127.0.0.1:8066".parse().expect("constant")),
        allow: allow.unwrap_or_else(|| {
            vec![
                "127.0.0.0/8".parse().expect("constant"),
                "::1/128".parse().expect("constant"),
            ]
        }),
        contents: match contents {
            Some("generic") => Contents::Generic,
            Some("id_only") => Contents::IdOnly,
            _ => Contents::Full,
        },
        rate_per_second: per.unwrap_or(200) as u32,
        rate_burst: burst.unwrap_or(400) as u32,
        max_body: max_body.unwrap_or(64 << 10),
        attempt_timeout: attempt.unwrap_or(Duration::from_secs(8)),
        total_timeout: total,
        routes,
    })
}

fn read_push_route(node: &Node, what: &str, diags: &mut Diagnostics) -> Option<PushRoute> {
    let mut t = TableReader::new(node, what.to_string(), diags)?;
    let platforms = t.opt("platforms", diags, read::list(read::string));
    let upstream = t.opt("upstream", diags, read::string);
    let ca_file = t.opt("ca_file", diags, read::string).map(PathBuf::from);
    let apns = t.get("apns");
    let fcm = t.get("fcm");
    let mut dests = Vec::new();
    if let Some(url) = upstream {
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            diags.push(
                Diagnostic::at(
                    &node.loc,
                    format!("`upstream` in {what}: `{url}` is not an http(s) URL"),
                )
                .hint("write upstream = \"https://push.mattermost.com\""),
            );
        }
        dests.push(PushDest::Upstream {
            url,
            ca_file: ca_file.clone(),
        });
    }
    if let Some(n) = apns {
        let mut a = TableReader::new(n, format!("`apns` in {what}"), diags)?;
        let key_file = a.opt("key_file", diags, read::string);
        let key_id = a.opt("key_id", diags, read::string);
        let team_id = a.opt("team_id", diags, read::string);
        let topic = a.opt("topic", diags, read::string);
        let sandbox = a.opt("sandbox", diags, read::boolean).unwrap_or(false);
        let endpoint = a.opt("endpoint", diags, read::string);
        a.finish(diags);
        match (key_file, key_id, team_id, topic) {
            (Some(k), Some(kid), Some(team), Some(topic)) => dests.push(PushDest::Apns {
                key_file: k.into(),
                key_id: kid,
                team_id: team,
                topic,
                endpoint: endpoint.unwrap_or_else(|| {
                    if sandbox { crate::push::apns::SANDBOX } else { crate::push::apns::PRODUCTION }.to_string()
                }),
                ca_file: ca_file.clone(),
            }),
            _ => diags.push(
                Diagnostic::at(&n.loc, format!("`apns` in {what} needs key_file, key_id, team_id and topic"))
                    .hint("apns = { key_file = \"/etc/vestibule/secrets/AuthKey_ABC123.p8\", key_id = \"ABC123\", team_id = \"TEAM123\", topic = \"com.example.chat\" }"),
            ),
        }
    }
    if let Some(n) = fcm {
        let mut f = TableReader::new(n, format!("`fcm` in {what}"), diags)?;
        let sa = f.opt("service_account_file", diags, read::string);
        let endpoint = f.opt("endpoint", diags, read::string);
        f.finish(diags);
        match sa {
            Some(sa) => dests.push(PushDest::Fcm {
                service_account_file: sa.into(),
                endpoint: endpoint.unwrap_or_else(|| crate::push::fcm::ENDPOINT.to_string()),
                ca_file: ca_file.clone(),
            }),
            None => diags.push(Diagnostic::at(
                &n.loc,
                format!("`fcm` in {what} needs service_account_file"),
            )),
        }
    }
    t.finish(diags);
    let platforms = match platforms {
        Some(p) if !p.is_empty() => p,
        _ => {
            diags.push(
                Diagnostic::at(&node.loc, format!("{what} has no `platforms`"))
                    .hint("list the platforms it serves, e.g. platforms = [\"apple_rn\", \"android_rn\"]"),
            );
            return None;
        }
    };
    if dests.len() != 1 {
        diags.push(
            Diagnostic::at(&node.loc, format!("{what} needs exactly one of `upstream`, `apns`, `fcm`"))
                .hint("store apps: upstream = \"https://push.mattermost.com\"; self-built apps: apns = {...} or fcm = {...}"),
        );
        return None;
    }
    Some(PushRoute {
        loc: node.loc.clone(),
        platforms,
        dest: dests.remove(0),
    })
}

fn read_tls(node: &Node, diags: &mut Diagnostics) -> Option<TlsConfig> {
    let mut t = TableReader::new(node, "[tls]", diags)?;
    let unknown = t.opt("unknown_sni", diags, read::one_of(&["refuse", "default"]));
    let watch = t.opt("watch_interval", diags, read::duration);
    let handshake = t.opt("handshake_timeout", diags, positive_duration);
    t.finish(diags);
    Some(TlsConfig {
        unknown_sni: unknown.map(|u| {
            if u == "refuse" {
                UnknownSni::Refuse
            } else {
                UnknownSni::Default
            }
        }),
        watch_interval: watch
            .unwrap_or(defaults::CERT_WATCH_INTERVAL)
            .max(Duration::from_millis(100)),
        handshake_timeout: handshake.unwrap_or(defaults::TLS_HANDSHAKE_TIMEOUT),
    })
}

/// A duration that must not be zero (a zero deadline would refuse everything).
fn positive_duration(node: &Node, name: &str, diags: &mut Diagnostics) -> Option<Duration> {
    let d = read::duration(node, name, diags)?;
    if d.is_zero() {
        diags.push(
            Diagnostic::at(&node.loc, format!("{name} must be longer than 0")).hint("write e.g. \"10s\""),
        );
        return None;
    }
    Some(d)
}

/// `"0.0.0.0:443"` or `{ addr = "0.0.0.0:443", h2 = false }`.
fn tls_listener(node: &Node, name: &str, diags: &mut Diagnostics) -> Option<TlsListener> {
    if let Value::Table(_) = node.value {
        let mut t = TableReader::new(node, format!("an entry of {name}"), diags)?;
        let addr = t.opt("addr", diags, read::socket_addr);
        let h2 = t.opt("h2", diags, read::boolean);
        t.finish(diags);
        return match addr {
            Some(addr) => Some(TlsListener {
                addr,
                h2: h2.unwrap_or(true),
            }),
            None => {
                diags.push(
                    Diagnostic::at(&node.loc, format!("an entry of {name} has no `addr`"))
                        .hint("write { addr = \"0.0.0.0:443\", h2 = true }"),
                );
                None
            }
        };
    }
    read::socket_addr(node, name, diags).map(|addr| TlsListener { addr, h2: true })
}

fn tls_listeners(node: &Node, name: &str, diags: &mut Diagnostics) -> Option<Vec<TlsListener>> {
    match &node.value {
        Value::Array(items) => {
            let before = diags.len();
            let out: Vec<_> = items
                .iter()
                .filter_map(|n| tls_listener(n, name, diags))
                .collect();
            (diags.len() == before).then_some(out)
        }
        _ => tls_listener(node, name, diags).map(|l| vec![l]),
    }
}

/// `tls = "self-signed"`, `tls = { cert = "...", key = "..." }` (`"acme"` comes with the ACME module).
fn read_vhost_tls(node: &Node, what: &str, diags: &mut Diagnostics) -> Option<(TlsSource, Loc)> {
    let name = format!("`tls` in {what}");
    let hint = "write tls = \"self-signed\" or tls = { cert = \"/etc/ssl/chat/fullchain.pem\", key = \"/etc/ssl/chat/privkey.pem\" }";
    match &node.value {
        Value::Str(s) if s == "self-signed" => Some((TlsSource::SelfSigned, node.loc.clone())),
        Value::Str(s) if s == "acme" => Some((TlsSource::Acme, node.loc.clone())),
        Value::Str(s) => {
            diags.push(
                Diagnostic::at(&node.loc, format!("{name}: `{s}` is not a certificate source")).hint(hint),
            );
            None
        }
        Value::Table(_) => {
            let mut t = TableReader::new(node, name.clone(), diags)?;
            let cert = t.opt("cert", diags, read::string);
            let key = t.opt("key", diags, read::string);
            t.finish(diags);
            match (cert, key) {
                (Some(c), Some(k)) => Some((
                    TlsSource::Files {
                        cert: c.into(),
                        key: k.into(),
                    },
                    node.loc.clone(),
                )),
                _ => {
                    diags.push(
                        Diagnostic::at(&node.loc, format!("{name} needs both `cert` and `key`")).hint(hint),
                    );
                    None
                }
            }
        }
        other => {
            diags.push(
                Diagnostic::at(
                    &node.loc,
                    format!("{name} must be a string or a table, found {}", other.type_name()),
                )
                .hint(hint),
            );
            None
        }
    }
}

/// `hsts = false`, `hsts = true`, or `hsts = { max_age = "182d", include_subdomains = true, preload = true }`.
fn read_hsts(node: &Node, what: &str, diags: &mut Diagnostics) -> Option<Option<Hsts>> {
    let default = Hsts {
        max_age: defaults::HSTS_MAX_AGE,
        include_subdomains: false,
        preload: false,
    };
    match node.value {
        Value::Bool(false) => Some(None),
        Value::Bool(true) => Some(Some(default)),
        _ => {
            let mut t = TableReader::new(node, format!("`hsts` in {what}"), diags)?;
            let max_age = t.opt("max_age", diags, read::duration);
            let sub = t.opt("include_subdomains", diags, read::boolean);
            let preload = t.opt("preload", diags, read::boolean);
            t.finish(diags);
            Some(Some(Hsts {
                max_age: max_age.map_or(default.max_age, |d| d.as_secs()),
                include_subdomains: sub.unwrap_or(false),
                preload: preload.unwrap_or(false),
            }))
        }
    }
}

fn read_log(node: &Node, diags: &mut Diagnostics) -> Option<LogConfig> {
    let mut t = TableReader::new(node, "[log]", diags)?;
    let level = t.opt(
        "level",
        diags,
        read::one_of(&["error", "warn", "info", "debug", "trace"]),
    );
    let format = t.opt("format", diags, read::one_of(&["text", "json"]));
    let access_log = t.opt("access_log", diags, access_log_destination);
    t.finish(diags);
    Some(LogConfig {
        level: level.unwrap_or("info").to_string(),
        format: if format == Some("json") {
            LogFormat::Json
        } else {
            LogFormat::Text
        },
        access_log: access_log.unwrap_or(crate::access_log::Destination::Stderr),
    })
}

/// `access_log = true` (stderr), `false`, or an absolute file path.
fn access_log_destination(
    node: &Node,
    name: &str,
    diags: &mut Diagnostics,
) -> Option<crate::access_log::Destination> {
    use crate::access_log::Destination;
    match &node.value {
        Value::Bool(true) => Some(Destination::Stderr),
        Value::Bool(false) => Some(Destination::Off),
        Value::Str(s) if std::path::Path::new(s).is_absolute() => Some(Destination::File(s.into())),
        _ => {
            diags.push(
                Diagnostic::at(
                    &node.loc,
                    format!("{name} must be true, false or an absolute file path"),
                )
                .hint("for example access_log = \"/var/log/vestibule/access.log\""),
            );
            None
        }
    }
}

fn read_admin(node: &Node, diags: &mut Diagnostics) -> Option<AdminConfig> {
    let mut t = TableReader::new(node, "[admin]", diags)?;
    let listen = t.opt("listen", diags, read::socket_addr);
    t.finish(diags);
    Some(AdminConfig {
        listen: listen.unwrap_or_else(|| defaults::ADMIN_LISTEN.parse().expect("constant")),
    })
}

fn read_proxy(node: &Node, diags: &mut Diagnostics) -> Option<ProxyConfig> {
    let mut t = TableReader::new(node, "[proxy]", diags)?;
    let listen = t.opt("listen", diags, read::list(read::socket_addr));
    let listen_tls = t.opt("listen_tls", diags, tls_listeners);
    let redirect_status = t.opt("redirect_status", diags, |n, name, d| {
        let i = read::integer(n, name, d)?;
        if i == 301 || i == 308 {
            Some(i as u16)
        } else {
            d.push(
                Diagnostic::at(&n.loc, format!("{name} must be 308 or 301, found {i}")).hint(
                    "308 keeps the method; 301 is used for GET and HEAD only, other methods still get 308",
                ),
            );
            None
        }
    });
    let threads = t.opt("threads", diags, read::int_in(1, 256));
    let default_vhost = t.opt("default_vhost", diags, |n, name, d| {
        read::string(n, name, d).map(|s| Named {
            name: s,
            loc: n.loc.clone(),
        })
    });
    let unknown = t.opt("unknown_host_status", diags, |n, name, d| {
        let i = read::integer(n, name, d)?;
        if i == 404 || i == 421 {
            Some(i as u16)
        } else {
            d.push(
                Diagnostic::at(&n.loc, format!("{name} must be 404 or 421, found {i}"))
                    .hint("421 (Misdirected Request) tells clients the name is not served here"),
            );
            None
        }
    });
    let trusted = t.opt("trusted_proxies", diags, read::list(read::cidr));
    let grace = t.opt("grace_period", diags, read::duration);
    let keepalive = t.opt("upstream_keepalive", diags, read::int_in(0, 65536));
    let d = ConnLimits::default();
    let conn = ConnLimits {
        keepalive_timeout: t
            .opt("keepalive_timeout", diags, positive_duration)
            .unwrap_or(d.keepalive_timeout),
        client_header_timeout: t
            .opt("client_header_timeout", diags, positive_duration)
            .unwrap_or(d.client_header_timeout),
        max_header_size: t
            .opt("max_header_size", diags, |n, name, dg| {
                let v = read::byte_size(n, name, dg)?;
                if (1024..=(1 << 20)).contains(&v) {
                    Some(v)
                } else {
                    dg.push(
                        Diagnostic::at(
                            &n.loc,
                            format!("{name} must be between 1KiB and 1MiB, found {v} bytes"),
                        )
                        .hint("the default, \"32KiB\", fits any browser's cookies and Mattermost's tokens"),
                    );
                    None
                }
            })
            .unwrap_or(d.max_header_size),
        max_connections: t
            .opt("max_connections", diags, read::int_in(1, 10_000_000))
            .map_or(d.max_connections, |v| v as usize),
        max_connections_per_ip: t
            .opt("max_connections_per_ip", diags, read::int_in(1, 10_000_000))
            .map_or(d.max_connections_per_ip, |v| v as usize),
    };
    t.finish(diags);
    Some(ProxyConfig {
        listen: listen.unwrap_or_else(|| vec![defaults::PROXY_LISTEN.parse().expect("constant")]),
        listen_tls: listen_tls.unwrap_or_default(),
        redirect_status: redirect_status.unwrap_or(308),
        threads: threads.map_or_else(default_threads, |t| t as usize),
        default_vhost,
        unknown_host_status: unknown.unwrap_or(421),
        trusted_proxies: trusted.unwrap_or_default(),
        grace_period: grace.unwrap_or(defaults::GRACE_PERIOD),
        upstream_keepalive: keepalive.map_or(defaults::UPSTREAM_KEEPALIVE, |k| k as usize),
        conn,
    })
}

fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn read_timeouts(t: &mut TableReader<'_>, diags: &mut Diagnostics) -> Timeouts {
    Timeouts {
        connect: t.opt("connect_timeout", diags, read::duration),
        read: t.opt("read_timeout", diags, read::duration),
        write: t.opt("write_timeout", diags, read::duration),
        idle: t.opt("idle_timeout", diags, read::duration),
    }
}

/// `host:port` of an upstream server; IPv6 in brackets.
fn server_addr(node: &Node, name: &str, diags: &mut Diagnostics) -> Option<ServerAddr> {
    let s = read::string(node, name, diags)?;
    let parsed = s.rsplit_once(':').and_then(|(host, port)| {
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let port: u16 = port.parse().ok()?;
        let ok_host = !host.is_empty()
            && (host.parse::<std::net::IpAddr>().is_ok()
                || host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.'));
        ok_host.then(|| ServerAddr {
            host: host.to_ascii_lowercase(),
            port,
        })
    });
    if parsed.is_none() {
        diags.push(
            Diagnostic::at(&node.loc, format!("{name}: `{s}` is not a server address")).hint(
                "write host:port, for example \"127.0.0.1:8065\", \"mattermost.lan:8065\" or \"[::1]:8065\"",
            ),
        );
    }
    parsed
}

fn read_health_check(node: &Node, what: &str, diags: &mut Diagnostics) -> Option<HealthCheckConfig> {
    let mut hc = HealthCheckConfig::default();
    if let Value::Bool(b) = node.value {
        hc.enabled = b;
        return Some(hc);
    }
    let mut t = TableReader::new(node, format!("`health_check` in {what}"), diags)?;
    if let Some(p) = t.opt("path", diags, read::string) {
        if !p.starts_with('/') {
            diags.push(
                Diagnostic::at(t.loc(), format!("health check path `{p}` must start with `/`"))
                    .hint("for Mattermost use \"/api/v4/system/ping\""),
            );
        }
        hc.path = Some(p);
    }
    hc.host = t.opt("host", diags, read::string);
    hc.enabled = t.opt("enabled", diags, read::boolean).unwrap_or(true);
    if let Some(i) = t.opt("interval", diags, read::duration) {
        hc.interval = i.max(Duration::from_millis(100));
    }
    if let Some(i) = t.opt("timeout", diags, read::duration) {
        hc.timeout = i;
    }
    if let Some(n) = t.opt("fails", diags, read::int_in(1, 100)) {
        hc.fails = n as usize;
    }
    if let Some(n) = t.opt("passes", diags, read::int_in(1, 100)) {
        hc.passes = n as usize;
    }
    t.finish(diags);
    Some(hc)
}

/// `[upstream.NAME]` or an inline `[upstream]` table in a vhost or route.
fn read_upstream_table(
    node: &Node,
    name: String,
    what: &str,
    diags: &mut Diagnostics,
) -> Option<UpstreamConfig> {
    let mut t = TableReader::new(node, what.to_string(), diags)?;
    let servers = t.opt("servers", diags, read::list(server_addr));
    let hc = t
        .get("health_check")
        .map(|n| read_health_check(n, what, diags))
        .unwrap_or_else(|| Some(HealthCheckConfig::default()));
    let fail_timeout = t.opt("fail_timeout", diags, read::duration);
    let tls = t.opt("tls", diags, read::boolean);
    let sni = t.opt("sni", diags, read::string);
    t.finish(diags);
    let servers = match servers {
        Some(s) if !s.is_empty() => s,
        Some(_) => {
            diags.error(&node.loc, format!("{what} lists no servers"));
            return None;
        }
        None => {
            diags.push(
                Diagnostic::at(&node.loc, format!("{what} has no `servers`"))
                    .hint("add servers = [\"127.0.0.1:8065\"]"),
            );
            return None;
        }
    };
    Some(UpstreamConfig {
        name,
        loc: node.loc.clone(),
        servers,
        health_check: hc?,
        fail_timeout: fail_timeout.unwrap_or(defaults::FAIL_TIMEOUT),
        tls: tls.unwrap_or(false),
        sni,
    })
}

/// `upstream = "name"`, `upstream = ["host:port", ...]` or an `[upstream]` table.
fn read_upstream_ref(
    node: &Node,
    pool_name: String,
    what: &str,
    diags: &mut Diagnostics,
) -> Option<UpstreamRef> {
    let name = format!("`upstream` in {what}");
    let inline = |servers| UpstreamConfig {
        name: pool_name.clone(),
        loc: node.loc.clone(),
        servers,
        health_check: HealthCheckConfig::default(),
        fail_timeout: defaults::FAIL_TIMEOUT,
        tls: false,
        sni: None,
    };
    match &node.value {
        Value::Str(s) if !s.contains(':') => Some(UpstreamRef::Named(Named {
            name: s.clone(),
            loc: node.loc.clone(),
        })),
        Value::Str(_) | Value::Array(_) => {
            let servers = read::list(server_addr)(node, &name, diags)?;
            if servers.is_empty() {
                diags.error(&node.loc, format!("{name} lists no servers"));
                return None;
            }
            Some(UpstreamRef::Inline(inline(servers)))
        }
        Value::Table(_) => read_upstream_table(node, pool_name, &name, diags).map(UpstreamRef::Inline),
        other => {
            diags.push(
                Diagnostic::at(
                    &node.loc,
                    format!(
                        "{name} must be a name, a list of servers or a table, found {}",
                        other.type_name()
                    ),
                )
                .hint("write upstream = [\"127.0.0.1:8065\"] or upstream = \"mattermost\""),
            );
            None
        }
    }
}

/// Validate one server name: a DNS name (optionally `*.` wildcard) or an IP address.
fn host_pattern(node: &Node, name: &str, diags: &mut Diagnostics) -> Option<(HostPattern, Loc)> {
    let raw = read::string(node, name, diags)?;
    let s = raw.trim_end_matches('.').to_ascii_lowercase();
    let (wild, rest) = match s.strip_prefix("*.") {
        Some(r) => (true, r),
        None => (false, s.as_str()),
    };
    let is_ip = !wild && rest.parse::<std::net::IpAddr>().is_ok();
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    };
    if is_ip || (rest.len() <= 253 && rest.split('.').all(label_ok)) {
        let p = if wild {
            HostPattern::Wildcard(format!(".{rest}"))
        } else {
            HostPattern::Exact(rest.to_string())
        };
        return Some((p, node.loc.clone()));
    }
    let mut d = Diagnostic::at(&node.loc, format!("{name}: `{raw}` is not a valid server name"));
    d = if raw.contains(':') {
        d.hint("write the name without a port or scheme: \"chat.example.org\"")
    } else {
        d.hint(
            "use a DNS name like \"chat.example.org\", a wildcard like \"*.example.org\", or an IP address",
        )
    };
    diags.push(d);
    None
}

fn read_vhost(name: &str, node: &Node, diags: &mut Diagnostics) -> Option<VhostConfig> {
    let what = format!("vhost `{name}`");
    let before = diags.len();
    let mut t = TableReader::new(node, what.clone(), diags)?;
    let server_names = t.opt("server_names", diags, read::list(host_pattern));
    let tls = t.get("tls").and_then(|n| read_vhost_tls(n, &what, diags));
    let redirect = t.opt("redirect", diags, read::boolean);
    let hsts = t.get("hsts").and_then(|n| read_hsts(n, &what, diags));
    let embed = t.get("embed").and_then(|n| read_embed(n, &what, diags));
    let remote_cluster = t
        .get("remote_cluster")
        .and_then(|n| read_remote_cluster(n, &what, diags));
    let headers = t
        .get("headers")
        .map(|n| read_header_rules(n, &what, diags))
        .unwrap_or_default();
    let onlyoffice = t.get("onlyoffice").and_then(|n| read_onlyoffice(n, &what, diags));
    let upstream = t
        .get("upstream")
        .map(|n| read_upstream_ref(n, name.to_string(), &what, diags).unwrap_or(UpstreamRef::Invalid));
    let timeouts = read_timeouts(&mut t, diags);
    let max_body = t.opt("max_body", diags, read::byte_size);
    let mut routes = Vec::new();
    if let Some(rn) = t.get("route") {
        match &rn.value {
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    let rwhat = format!("[[route]] #{} of {what}", i + 1);
                    if let Some(r) = read_route(item, format!("{name}#route{}", i + 1), &rwhat, diags) {
                        routes.push(r);
                    }
                }
            }
            _ => diags.push(
                Diagnostic::at(&rn.loc, format!("`route` in {what} must be an array of tables"))
                    .hint("write each route as a [[route]] section"),
            ),
        }
    }
    t.finish(diags);
    let loc = node.loc.clone();
    let server_names = match server_names {
        Some(s) if !s.is_empty() => s,
        Some(_) => {
            diags.error(&loc, format!("{what} lists no server names"));
            return None;
        }
        None => {
            if diags.len() == before {
                diags.push(
                    Diagnostic::at(&loc, format!("{what} has no `server_names`"))
                        .hint("add server_names = [\"chat.example.org\"]"),
                );
            }
            return None;
        }
    };
    let hsts = match (&tls, hsts) {
        (None, _) => None,
        (Some(_), Some(h)) => h,
        (Some(_), None) => Some(Hsts {
            max_age: defaults::HSTS_MAX_AGE,
            include_subdomains: false,
            preload: false,
        }),
    };
    Some(VhostConfig {
        name: name.to_string(),
        loc,
        server_names,
        redirect: redirect.unwrap_or(tls.is_some()),
        tls,
        hsts,
        embed,
        remote_cluster,
        headers,
        onlyoffice,
        upstream,
        timeouts,
        max_body,
        routes,
    })
}

fn read_route(node: &Node, pool_name: String, what: &str, diags: &mut Diagnostics) -> Option<RouteConfig> {
    let mut t = TableReader::new(node, what.to_string(), diags)?;
    let path = t.opt("path", diags, read::regex);
    let upstream = t
        .get("upstream")
        .map(|n| read_upstream_ref(n, pool_name, what, diags).unwrap_or(UpstreamRef::Invalid));
    let timeouts = read_timeouts(&mut t, diags);
    let max_body = t.opt("max_body", diags, read::byte_size);
    let headers = t
        .get("headers")
        .map(|n| read_header_rules(n, what, diags))
        .unwrap_or_default();
    let push = t.opt("push", diags, read::boolean).unwrap_or(false);
    let has_path = t.get("path").is_some();
    t.finish(diags);
    if !has_path {
        diags.push(
            Diagnostic::at(&node.loc, format!("{what} has no `path`"))
                .hint("add a path regex, for example path = \"^/api/v[0-9]+/(users/)?websocket$\""),
        );
    }
    Some(RouteConfig {
        loc: node.loc.clone(),
        path: path?,
        upstream,
        timeouts,
        max_body,
        headers,
        push,
    })
}

/// `[embed] allow_origins = ["https://webapp.example.org"]`.
fn read_embed(node: &Node, what: &str, diags: &mut Diagnostics) -> Option<Vec<crate::policy::embed::Origin>> {
    let mut t = TableReader::new(node, format!("[embed] of {what}"), diags)?;
    let origins = t.opt(
        "allow_origins",
        diags,
        read::list(|n, name, d| {
            let s = read::string(n, name, d)?;
            match s.parse::<crate::policy::embed::Origin>() {
                Ok(o) => Some(o),
                Err(e) => {
                    d.error(&n.loc, format!("{name}: {e}"));
                    None
                }
            }
        }),
    );
    let has = t.get("allow_origins").is_some();
    t.finish(diags);
    if !has {
        diags.push(
            Diagnostic::at(&node.loc, format!("[embed] of {what} has no `allow_origins`"))
                .hint("add allow_origins = [\"https://webapp.example.org\"]"),
        );
    }
    origins
}

/// `[onlyoffice]`: move the Document Server's JWT between `Authorization` and the plugin's header.
fn read_onlyoffice(
    node: &Node,
    what: &str,
    diags: &mut Diagnostics,
) -> Option<crate::policy::onlyoffice::RelayRule> {
    use crate::policy::onlyoffice as oo;
    let label = format!("[onlyoffice] of {what}");
    let mut t = TableReader::new(node, label.clone(), diags)?;
    let direction = t.opt(
        "direction",
        diags,
        read::one_of(&["to-plugin", "to-document-server"]),
    );
    let header = t.opt("header", diags, read::string);
    let prefix = t.opt("prefix", diags, read::string);
    let paths = t.opt("paths", diags, read::regex);
    let secret = t.get("secret_file").and_then(|n| {
        read::string(n, &format!("`secret_file` in {label}"), diags).map(|s| (s, n.loc.clone()))
    });
    let algorithm = t.opt("algorithm", diags, read::one_of(&["HS256", "HS384", "HS512"]));
    t.finish(diags);
    let header = header.unwrap_or_else(|| oo::DEFAULT_CUSTOM_HEADER.to_string());
    let prefix = prefix.unwrap_or_else(|| oo::DEFAULT_PREFIX.to_string());
    let rule = if direction == Some("to-document-server") {
        let paths = paths.unwrap_or_else(|| regex::Regex::new("^/").expect("constant"));
        oo::RelayRule::new(&header, "Authorization", &prefix, paths)
    } else {
        let paths = paths.unwrap_or_else(|| regex::Regex::new(oo::DEFAULT_PATHS).expect("constant"));
        oo::RelayRule::new("Authorization", &header, &prefix, paths)
    };
    let mut rule = match rule {
        Ok(r) => r,
        Err(e) => {
            diags.error(&node.loc, format!("{label}: {e}"));
            return None;
        }
    };
    if let Some((path, loc)) = secret {
        let alg: oo::Algorithm = algorithm
            .unwrap_or("HS256")
            .parse()
            .unwrap_or(oo::Algorithm::HS256);
        match oo::Verifier::from_secret_file(alg, std::path::Path::new(&path)) {
            Ok(v) => rule = rule.with_verifier(v),
            Err(e) => {
                diags.push(Diagnostic::at(&loc, format!("`secret_file` in {label}: {e}")).hint(
                    "put the Document Server's JWT secret (DESJwt / JWT_SECRET) alone in a file owned by vestibule with mode 0600",
                ));
                return None;
            }
        }
    } else if algorithm.is_some() {
        diags.push(
            Diagnostic::at(
                &node.loc,
                format!("{label}: `algorithm` is set but there is no `secret_file` to verify with"),
            )
            .hint("add secret_file = \"/etc/vestibule/secrets/onlyoffice.jwt\" or remove `algorithm`"),
        );
    }
    Some(rule)
}

/// `[remote_cluster] allow = ["203.0.113.0/24"]`.
fn read_remote_cluster(node: &Node, what: &str, diags: &mut Diagnostics) -> Option<Vec<ipnet::IpNet>> {
    let mut t = TableReader::new(node, format!("[remote_cluster] of {what}"), diags)?;
    let allow = t.opt("allow", diags, read::list(read::cidr));
    t.finish(diags);
    Some(allow.unwrap_or_default())
}

/// Header names that frame or route a message: rules must not touch them.
const PROTECTED_HEADERS: [&str; 7] = [
    "connection",
    "content-length",
    "transfer-encoding",
    "upgrade",
    "keep-alive",
    "te",
    "trailer",
];

fn header_name(node: &Node, name: &str, diags: &mut Diagnostics) -> Option<http::HeaderName> {
    let s = read::string(node, name, diags)?;
    header_name_str(&s, &node.loc, name, diags)
}

fn header_name_str(s: &str, loc: &Loc, name: &str, diags: &mut Diagnostics) -> Option<http::HeaderName> {
    match http::HeaderName::from_bytes(s.as_bytes()) {
        Ok(h) if PROTECTED_HEADERS.contains(&h.as_str()) => {
            diags.push(
                Diagnostic::at(loc, format!("{name}: `{s}` cannot be changed by a header rule"))
                    .hint("connection-level headers are managed by the proxy itself"),
            );
            None
        }
        Ok(h) => Some(h),
        Err(_) => {
            diags.push(
                Diagnostic::at(loc, format!("{name}: `{s}` is not a valid header name"))
                    .hint("header names are letters, digits and -_.!#$%&'*+^`|~ without spaces or colons"),
            );
            None
        }
    }
}

fn header_value(node: &Node, name: &str, diags: &mut Diagnostics) -> Option<http::HeaderValue> {
    let s = read::string(node, name, diags)?;
    match http::HeaderValue::from_str(&s) {
        Ok(v) => Some(v),
        Err(_) => {
            diags.push(
                Diagnostic::at(
                    &node.loc,
                    format!("{name}: the value is not a valid header value"),
                )
                .hint("header values cannot contain newlines or other control characters"),
            );
            None
        }
    }
}

/// `[headers.request]` / `[headers.response]` with `remove`, `set`, `add`, `replace`.
fn read_header_rules(
    node: &Node,
    what: &str,
    diags: &mut Diagnostics,
) -> crate::policy::headers::HeaderRules {
    let mut rules = crate::policy::headers::HeaderRules::default();
    let Some(mut t) = TableReader::new(node, format!("[headers] of {what}"), diags) else {
        return rules;
    };
    if let Some(n) = t.get("request") {
        rules.request = read_rules(n, &format!("[headers.request] of {what}"), diags);
    }
    if let Some(n) = t.get("response") {
        rules.response = read_rules(n, &format!("[headers.response] of {what}"), diags);
    }
    t.finish(diags);
    rules
}

fn read_rules(node: &Node, what: &str, diags: &mut Diagnostics) -> crate::policy::headers::Rules {
    use crate::policy::headers::Op;
    let mut ops = Vec::new();
    let Some(mut t) = TableReader::new(node, what.to_string(), diags) else {
        return crate::policy::headers::Rules { ops };
    };
    if let Some(names) = t.opt("remove", diags, read::list(header_name)) {
        ops.extend(names.into_iter().map(Op::Remove));
    }
    for (key, add) in [("set", false), ("add", true)] {
        let Some(n) = t.get(key) else { continue };
        let Some(mut pairs) = TableReader::new(n, format!("`{key}` in {what}"), diags) else {
            continue;
        };
        for e in pairs.take_all() {
            let label = format!("`{key}.{}` in {what}", e.key);
            let (Some(h), Some(v)) = (
                header_name_str(&e.key, &e.key_loc, &label, diags),
                header_value(&e.node, &label, diags),
            ) else {
                continue;
            };
            ops.push(if add { Op::Add(h, v) } else { Op::Set(h, v) });
        }
        pairs.finish(diags);
    }
    if let Some(n) = t.get("replace") {
        let items: &[Node] = match &n.value {
            Value::Array(items) => items,
            _ => std::slice::from_ref(n),
        };
        for item in items {
            let Some(mut r) = TableReader::new(item, format!("a `replace` rule in {what}"), diags) else {
                continue;
            };
            let name = r.opt("name", diags, header_name);
            let re = r.opt("regex", diags, |n, label, d| {
                let s = read::string(n, label, d)?;
                regex::bytes::Regex::new(&s)
                    .map_err(|e| {
                        d.error(
                            &n.loc,
                            format!(
                                "{label}: invalid regular expression: {}",
                                e.to_string().lines().last().unwrap_or("").trim()
                            ),
                        )
                    })
                    .ok()
            });
            let with = r.opt("with", diags, read::string);
            r.finish(diags);
            match (name, re, with) {
                (Some(n), Some(re), Some(w)) => ops.push(Op::Replace(n, re, w)),
                (None, _, _) | (_, _, None) if diags.is_empty() => diags.push(
                    Diagnostic::at(
                        &item.loc,
                        format!("a `replace` rule in {what} needs `name`, `regex` and `with`"),
                    )
                    .hint("write { name = \"Location\", regex = \"^http://\", with = \"https://\" }"),
                ),
                _ => {}
            }
        }
    }
    t.finish(diags);
    // Apply order is remove, set, add, replace whatever order they were written in.
    ops.sort_by_key(|op| match op {
        Op::Remove(_) => 0,
        Op::Set(..) => 1,
        Op::Add(..) => 2,
        Op::Replace(..) => 3,
    });
    crate::policy::headers::Rules { ops }
}
