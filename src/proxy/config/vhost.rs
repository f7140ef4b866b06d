//! One vhost file (`vhosts/NAME.toml`) and its `[[route]]`s.

use std::time::Duration;

use super::upstream::{read_upstream_ref, UpstreamRef};
use crate::config::diag::{Diagnostic, Diagnostics};
use crate::config::read::{self, TableReader};
use crate::config::source::{Loc, Node, Value};
use crate::host::{host_pattern, HostPattern};
use crate::policy::embed::config::read_embed;
use crate::policy::headers::config::read_header_rules;
use crate::policy::onlyoffice::config::read_onlyoffice;
use crate::policy::remote_cluster::config::read_remote_cluster;
use crate::tls::config::{read_hsts, read_vhost_tls, Hsts, TlsSource};

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

fn read_timeouts(t: &mut TableReader<'_>, diags: &mut Diagnostics) -> Timeouts {
    Timeouts {
        connect: t.opt("connect_timeout", diags, read::duration),
        read: t.opt("read_timeout", diags, read::duration),
        write: t.opt("write_timeout", diags, read::duration),
        idle: t.opt("idle_timeout", diags, read::duration),
    }
}

pub fn read_vhost(name: &str, node: &Node, diags: &mut Diagnostics) -> Option<VhostConfig> {
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
            max_age: crate::tls::config::HSTS_MAX_AGE,
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
