//! The routing snapshot: everything a request needs, built once per (re)load and swapped atomically.
//!
//! A request loads the current `Arc<Snapshot>` once and uses it to the end, so a reload never changes
//! the rules under a request in flight, and long-lived websockets keep the upstream they started with.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::config::defaults;
use super::config::upstream::UpstreamRef;
use super::config::vhost::{RouteConfig, Timeouts};
use crate::config::core::LogFormat;
use crate::config::Config;
use crate::config::{Diagnostic, Diagnostics};
use crate::dns::Dns;
use crate::metrics::{Metrics, VhostMetrics};

use super::upstream::Pool;
use crate::host::Router;
use crate::policy::embed::EmbedRule;
use crate::policy::headers::HeaderRules;
use crate::policy::remote_cluster::{Guard, Peers};

pub struct Route {
    /// `None` for a vhost's catch-all route.
    pub path: Option<regex::Regex>,
    pub pool: Arc<Pool>,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub write_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_body: u64,
    /// The vhost's header rules followed by the route's own.
    pub headers: HeaderRules,
    /// Answered by the push relay.
    pub push: bool,
}

pub struct Vhost {
    pub name: Arc<str>,
    pub routes: Vec<Route>,
    pub fallback: Route,
    pub metrics: VhostMetrics,
    /// Served over HTTPS (has a certificate).
    pub tls: bool,
    /// Plain-HTTP requests get redirected to HTTPS.
    pub redirect: bool,
    /// `Strict-Transport-Security` value for HTTPS responses, built once.
    pub hsts: Option<http::HeaderValue>,
    /// Who may frame this vhost's responses (`[embed]`).
    pub embed: Option<EmbedRule>,
    pub remote_cluster: Option<Guard>,
    pub onlyoffice: Option<OnlyOffice>,
}

/// The ONLYOFFICE JWT relay of a vhost with its metric handles.
pub struct OnlyOffice {
    pub rule: crate::policy::onlyoffice::RelayRule,
    pub relayed: prometheus::IntCounter,
    /// Rejections by `Reject::reason()`, resolved when they happen (rare; bounded label set).
    pub rejected: prometheus::IntCounterVec,
    pub vhost: Arc<str>,
}

pub struct Snapshot {
    pub router: Router,
    pub vhosts: Vec<Vhost>,
    pools: Vec<Arc<Pool>>,
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub unknown_host_status: u16,
    pub unknown_metrics: VhostMetrics,
    pub access_log: bool,
    pub log_format: LogFormat,
    /// Configured port of the first HTTPS listener, for redirects (`None`: no HTTPS listener); the
    /// bound one is named instead once known (`:0`).
    pub https_port: Option<u16>,
    pub redirect_status: u16,
    /// Remote-cluster peers seen (shared across reloads through the context).
    pub peers: Arc<Peers>,
    /// ACME orders in progress, for HTTP-01 answers.
    pub acme: Arc<crate::tls::acme::Registry>,
    /// What one client connection may hold (read once per connection).
    pub conn: super::config::ConnLimits,
    pub tls_handshake_timeout: std::time::Duration,
}

impl Snapshot {
    pub fn pools(&self) -> &[Arc<Pool>] {
        &self.pools
    }

    pub fn is_trusted(&self, ip: std::net::IpAddr) -> bool {
        self.trusted_proxies.iter().any(|n| n.contains(&ip))
    }

    /// Build from a validated config. Pools whose definition did not change are taken over from
    /// `previous`, keeping their health state and resolved addresses across a reload.
    pub fn build(
        cfg: &Config,
        previous: Option<&Snapshot>,
        dns: &Arc<Dns>,
        metrics: &Metrics,
        peers: &Arc<Peers>,
        acme: &Arc<crate::tls::acme::Registry>,
    ) -> Result<Snapshot, Diagnostics> {
        let mut diags = Diagnostics::default();
        let reusable: HashMap<&str, &Arc<Pool>> = previous
            .map(|p| {
                p.pools
                    .iter()
                    .map(|pool| (pool.identity.as_str(), pool))
                    .collect()
            })
            .unwrap_or_default();
        let mut pools: Vec<Arc<Pool>> = Vec::new();
        let mut pool_for = |u: &super::config::upstream::UpstreamConfig| -> Arc<Pool> {
            let identity = u.identity();
            if let Some(p) = pools.iter().find(|p| p.identity == identity) {
                return p.clone();
            }
            let p = reusable
                .get(identity.as_str())
                .map(|p| (*p).clone())
                .unwrap_or_else(|| Arc::new(Pool::new(u, dns.clone())));
            pools.push(p.clone());
            p
        };
        let named: HashMap<&str, &super::config::upstream::UpstreamConfig> =
            cfg.upstreams.iter().map(|u| (u.name.as_str(), u)).collect();

        let base = Timeouts {
            connect: Some(defaults::CONNECT_TIMEOUT),
            read: Some(defaults::READ_TIMEOUT),
            write: Some(defaults::WRITE_TIMEOUT),
            idle: Some(defaults::IDLE_TIMEOUT),
        };

        let mut router = Router::default();
        let mut vhosts = Vec::new();
        let mut owners: HashMap<String, (String, crate::config::source::Loc)> = HashMap::new();
        let mut push_errors = Vec::new();
        for v in &cfg.vhosts {
            let index = vhosts.len();
            for (pattern, loc) in &v.server_names {
                let key = pattern.to_string();
                if let Some((other, other_loc)) = owners.get(&key) {
                    diags.push(
                        Diagnostic::at(
                            loc,
                            format!(
                                "server name `{key}` of vhost `{}` is already claimed by vhost `{other}`",
                                v.name
                            ),
                        )
                        .hint(format!(
                            "remove it from one of the two files (the other is at {other_loc})"
                        )),
                    );
                    continue;
                }
                owners.insert(key, (v.name.clone(), loc.clone()));
                router.insert(pattern, index);
            }
            let mut resolve = |r: Option<&UpstreamRef>,
                               what: &str,
                               loc: &crate::config::source::Loc|
             -> Option<Arc<Pool>> {
                match r {
                    Some(UpstreamRef::Invalid) => None,
                    Some(UpstreamRef::Inline(u)) => Some(pool_for(u)),
                    Some(UpstreamRef::Named(n)) => match named.get(n.name.as_str()) {
                        Some(u) => Some(pool_for(u)),
                        None => {
                            let mut d = Diagnostic::at(
                                &n.loc,
                                format!("{what} names upstream `{}`, which is not defined", n.name),
                            );
                            d = match crate::config::diag::did_you_mean(&n.name, named.keys().copied()) {
                                Some(c) => d.hint(format!("did you mean `{c}`?")),
                                None => d.hint(format!(
                                    "define it in vestibule.toml or conf.d as [upstream.{}] with servers = [\"host:port\"], or write the servers here",
                                    n.name
                                )),
                            };
                            diags.push(d);
                            None
                        }
                    },
                    None => {
                        diags.push(Diagnostic::at(loc, format!("{what} names no upstream")).hint(
                            "add upstream = [\"127.0.0.1:8065\"] (or the name of an [upstream.NAME] pool)",
                        ));
                        None
                    }
                }
            };
            let vwhat = format!("vhost `{}`", v.name);
            let vpool = resolve(v.upstream.as_ref(), &vwhat, &v.loc);
            let vt = v.timeouts.or(base);
            let vmax = v.max_body.unwrap_or(defaults::MAX_BODY);
            let make = |path: Option<regex::Regex>,
                        pool: Arc<Pool>,
                        t: Timeouts,
                        max_body: u64,
                        own: Option<&HeaderRules>| {
                let mut headers = v.headers.clone();
                if let Some(own) = own {
                    headers.request.ops.extend(own.request.ops.iter().cloned());
                    headers.response.ops.extend(own.response.ops.iter().cloned());
                }
                Route {
                    push: false,
                    path,
                    pool,
                    connect_timeout: t.connect.unwrap_or(defaults::CONNECT_TIMEOUT),
                    read_timeout: t.read.unwrap_or(defaults::READ_TIMEOUT),
                    write_timeout: t.write.unwrap_or(defaults::WRITE_TIMEOUT),
                    idle_timeout: t.idle.unwrap_or(defaults::IDLE_TIMEOUT),
                    max_body,
                    headers,
                }
            };
            let mut routes = Vec::new();
            for (i, r) in v.routes.iter().enumerate() {
                let RouteConfig {
                    loc,
                    path,
                    upstream,
                    timeouts,
                    max_body,
                    headers,
                    push,
                } = r;
                let pool = match upstream {
                    Some(u) => resolve(Some(u), &format!("[[route]] #{} of {vwhat}", i + 1), loc),
                    None => vpool.clone(),
                };
                if *push && cfg.push.is_none() {
                    push_errors.push(
                        Diagnostic::at(
                            loc,
                            format!(
                                "[[route]] #{} of {vwhat} has push = true but [push] is not configured",
                                i + 1
                            ),
                        )
                        .hint("add a [push] section with its [[push.route]] to the main file"),
                    );
                }
                if let Some(pool) = pool {
                    let push = *push;
                    let mut route = make(
                        Some(path.clone()),
                        pool,
                        timeouts.or(vt),
                        max_body.unwrap_or(vmax),
                        Some(headers),
                    );
                    route.push = push;
                    routes.push(route);
                }
            }
            if let Some(pool) = vpool {
                vhosts.push(Vhost {
                    name: v.name.as_str().into(),
                    fallback: make(None, pool, vt, vmax, None),
                    routes,
                    metrics: metrics.vhost(&v.name),
                    tls: v.tls.is_some(),
                    redirect: v.redirect && v.tls.is_some() && !cfg.proxy.listen_tls.is_empty(),
                    hsts: v
                        .hsts
                        .and_then(|h| http::HeaderValue::from_str(&h.header_value()).ok()),
                    embed: v.embed.as_deref().map(EmbedRule::new),
                    remote_cluster: v.remote_cluster.clone().map(Guard::new),
                    onlyoffice: v.onlyoffice.clone().map(|rule| OnlyOffice {
                        rule,
                        relayed: metrics.onlyoffice_relayed.with_label_values(&[&v.name]),
                        rejected: metrics.onlyoffice_rejected.clone(),
                        vhost: v.name.as_str().into(),
                    }),
                });
            } else {
                // Keep indices aligned with the router; this snapshot is rejected anyway.
                continue;
            }
        }
        diags.0.extend(push_errors);
        match &cfg.proxy.default_vhost {
            Some(d) => {
                match cfg.vhosts.iter().position(|v| v.name == d.name) {
                    Some(i) => router.set_default(Some(i)),
                    None => {
                        let mut diag =
                            Diagnostic::at(&d.loc, format!("default_vhost `{}` is not a vhost", d.name));
                        diag = match crate::config::diag::did_you_mean(&d.name, cfg.vhosts.iter().map(|v| v.name.as_str())) {
                        Some(c) => diag.hint(format!("did you mean `{c}`? (vhost names are the file names in vhosts/ without .toml)")),
                        None => diag.hint("vhost names are the file names in vhosts/ without .toml"),
                    };
                        diags.push(diag);
                    }
                }
            }
            None => router.set_default(None),
        }
        if !diags.is_empty() {
            return Err(diags);
        }
        Ok(Snapshot {
            router,
            vhosts,
            pools,
            trusted_proxies: cfg.proxy.trusted_proxies.clone(),
            unknown_host_status: cfg.proxy.unknown_host_status,
            unknown_metrics: metrics.vhost("_unknown"),
            access_log: cfg.log.access_log != crate::access_log::Destination::Off,
            log_format: cfg.log.format,
            https_port: cfg.proxy.listen_tls.first().map(|l| l.addr.port()),
            redirect_status: cfg.proxy.redirect_status,
            peers: peers.clone(),
            acme: acme.clone(),
            conn: cfg.proxy.conn.clone(),
            tls_handshake_timeout: cfg.tls.handshake_timeout,
        })
    }

    /// Resolve and health-check every pool that has not been yet (new pools after a reload).
    pub async fn prime(&self, metrics: &Metrics) {
        for pool in &self.pools {
            if !pool.is_primed() {
                pool.prime(metrics).await;
            }
        }
    }
}
