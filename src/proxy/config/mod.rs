//! `[proxy]`: listeners, connection limits and what the proxy answers to unknown names; the vhosts,
//! routes and upstream pools are read in [`vhost`] and [`upstream`].

pub mod upstream;
pub mod vhost;

use std::net::SocketAddr;
use std::time::Duration;

use crate::config::diag::{Diagnostic, Diagnostics};
use crate::config::read::{self, positive_duration, TableReader};
use crate::config::source::{Loc, Node, Value};

/// Defaults chosen for a packaged Mattermost install (see spec/mattermost-proxy.md).
pub mod defaults {
    use std::time::Duration;
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
    /// nginx's `keepalive_timeout`.
    pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(75);
    /// nginx's `client_header_timeout`, for the whole head.
    pub const CLIENT_HEADER_TIMEOUT: Duration = Duration::from_secs(60);
    /// nginx's `large_client_header_buffers 4 8k`.
    pub const MAX_HEADER_SIZE: u64 = 32 << 10;
    pub const MAX_CONNECTIONS: usize = 10_000;
    /// Room for an office behind one NAT address (a browser opens up to 6 connections per name).
    pub const MAX_CONNECTIONS_PER_IP: usize = 512;
}

/// An HTTPS listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsListener {
    pub addr: SocketAddr,
    pub h2: bool,
}

/// `[proxy]`: the HTTP(S) listeners and what they accept.
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

pub fn read_proxy(node: &Node, diags: &mut Diagnostics) -> Option<ProxyConfig> {
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
