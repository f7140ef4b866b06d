//! Upstream pools: `[upstream.NAME]`, and `upstream = ...` in a vhost or route.

use std::time::Duration;

use super::{defaults, Named};
use crate::config::diag::{Diagnostic, Diagnostics};
use crate::config::read;
use crate::config::read::TableReader;
use crate::config::source::{Node, Value};

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
        servers,
        health_check: hc?,
        fail_timeout: fail_timeout.unwrap_or(defaults::FAIL_TIMEOUT),
        tls: tls.unwrap_or(false),
        sni,
    })
}

/// `upstream = "name"`, `upstream = ["host:port", ...]` or an `[upstream]` table.
pub fn read_upstream_ref(
    node: &Node,
    pool_name: String,
    what: &str,
    diags: &mut Diagnostics,
) -> Option<UpstreamRef> {
    let name = format!("`upstream` in {what}");
    let inline = |servers| UpstreamConfig {
        name: pool_name.clone(),
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

/// `[upstream.NAME]` sections, in the order written.
pub fn read_upstreams(node: &Node, diags: &mut Diagnostics) -> Vec<UpstreamConfig> {
    let mut upstreams = Vec::new();
    if let Some(mut t) = TableReader::new(node, "[upstream]", diags) {
        for entry in t.take_all() {
            let what = format!("[upstream.{}]", entry.key);
            if let Some(u) = read_upstream_table(&entry.node, entry.key.clone(), &what, diags) {
                upstreams.push(u);
            }
        }
        t.finish(diags);
    }
    upstreams
}
