//! The `proxy` module: HTTP listeners, virtual hosts, routes and upstream pools on pingora.
//!
//! Owns the routing snapshot (`ArcSwap<Snapshot>`) that requests read and reloads replace. Never
//! blocks a request on DNS or health checks: those run in the [`keeper::UpstreamKeeper`].
//! Implements what spec/mattermost-proxy.md asks of a proxy in front of Mattermost.

pub mod access;
pub mod config;
pub mod conn;
pub mod gauge;
pub mod keeper;
pub mod listener;
pub mod pages;
mod push_route;
pub mod refused;
pub mod service;
pub mod snapshot;
pub mod tunnel;
pub mod upstream;

use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use pingora_core::server::Server;

use crate::config::{Config, Diagnostics};
use crate::module::{Context, Module, ServiceError};

use snapshot::Snapshot;

/// Concurrent HTTP/2 streams per client connection (nginx's `http2_max_concurrent_streams`).
const H2_MAX_STREAMS: u32 = 128;

pub struct ProxyModule {
    pub state: Arc<ArcSwap<Snapshot>>,
    listen: Vec<SocketAddr>,
    listen_tls: Vec<config::TlsListener>,
    threads: usize,
    summary: Vec<String>,
}

impl Module for ProxyModule {
    const NAME: &'static str = "proxy";
    /// The push relay, for routes with `push = true` (`None` without `[push]`: they answer 503).
    type Inputs = Option<Arc<crate::push::Relay>>;

    /// Resolve and health-check the pools this instance added, so a reload never swaps in a pool
    /// whose servers are unknown.
    async fn prime(&self, ctx: &Context) {
        self.state.load().prime(&ctx.metrics).await;
    }

    fn provision(cfg: &Config, ctx: &Context, previous: Option<&Self>) -> Result<Self, Diagnostics> {
        let prev = previous.map(|p| p.state.load_full());
        let snap = Snapshot::build(
            cfg,
            prev.as_deref(),
            &ctx.dns,
            &ctx.metrics,
            &ctx.peers,
            &ctx.acme,
        )?;
        let mut summary: Vec<String> = cfg
            .proxy
            .listen
            .iter()
            .map(|a| format!("listen http://{a}"))
            .collect();
        summary.extend(cfg.proxy.listen_tls.iter().map(|l| {
            let alpn = if l.h2 { "h2, http/1.1" } else { "http/1.1" };
            format!("listen https://{} ({alpn})", l.addr)
        }));
        for v in &cfg.vhosts {
            let names: Vec<String> = v.server_names.iter().map(|(n, _)| n.to_string()).collect();
            let default = cfg.proxy.default_vhost.as_ref().is_some_and(|d| d.name == v.name);
            summary.push(format!(
                "vhost {}{}: {} -> {} route(s) + default",
                v.name,
                if default { " (default)" } else { "" },
                names.join(", "),
                v.routes.len()
            ));
        }
        for p in snap.pools() {
            summary.push(format!("upstream {}", p.name));
        }
        Ok(ProxyModule {
            state: Arc::new(ArcSwap::from_pointee(snap)),
            listen: cfg.proxy.listen.clone(),
            listen_tls: cfg.proxy.listen_tls.clone(),
            threads: cfg.proxy.threads,
            summary,
        })
    }

    fn services(&self, server: &mut Server, ctx: &Context, push: Self::Inputs) -> Result<(), ServiceError> {
        let proxy = service::Proxy {
            state: self.state.clone(),
            metrics: ctx.metrics.clone(),
            push,
        };
        // Every listener, plain and TLS, is vestibule's own accept loop (proxy::listener) into one
        // pingora proxy application wrapped with the connection limits (proxy::conn).
        let mut http = pingora_proxy::http_proxy(&server.configuration, proxy);
        // HTTP/2's own bounds on what one client may hold: the head size limit of HTTP/1 (h2
        // answers 431 above it) and nginx's 128 concurrent streams per connection.
        let mut h2 = pingora_core::protocols::http::v2::server::H2Options::new();
        let max_head = self.state.load().conn.max_header_size;
        h2.max_header_list_size(u32::try_from(max_head).unwrap_or(u32::MAX))
            .max_concurrent_streams(H2_MAX_STREAMS);
        http.h2_options = Some(h2);
        // An idle HTTP/2 connection is closed after keepalive_timeout, as an HTTP/1 one is.
        let mut options = pingora_core::apps::HttpServerOptions::default();
        options.h2_idle_timeout = Some(self.state.load().conn.keepalive_timeout);
        http.server_options = Some(options);
        let app = Arc::new(conn::Guarded {
            inner: Arc::new(http),
            state: self.state.clone(),
            metrics: ctx.metrics.clone(),
        });
        let conns = Arc::new(listener::ConnCounter::new(ctx.metrics.http_connections.clone()));
        let plain = self.listen.iter().map(|a| (*a, None));
        let tls = self.listen_tls.iter().map(|l| (l.addr, Some(l.h2)));
        for (addr, h2) in plain.chain(tls) {
            let acceptor = match h2 {
                None => None,
                Some(h2) => {
                    let config = crate::tls::listener::server_config(ctx.certs.clone(), ctx.acme.clone(), h2)
                        .map_err(ServiceError::Tls)?;
                    Some(Arc::new(
                        pingora_core::listeners::tls::Acceptor::from_server_config(config),
                    ))
                }
            };
            let what = if acceptor.is_some() {
                "the HTTPS proxy"
            } else {
                "the HTTP proxy"
            };
            let socket = crate::handover::bind(addr, what)?;
            if let (Some(_), Ok(local)) = (h2, socket.local_addr()) {
                service::https_listener_bound(local.port());
            }
            let service = listener::ProxyListener {
                listener: std::sync::Mutex::new(Some(socket)),
                tls: acceptor,
                app: app.clone(),
                metrics: ctx.metrics.clone(),
                conns: conns.clone(),
            };
            let scheme = if h2.is_some() { "https" } else { "http" };
            let mut bg =
                pingora_core::services::background::background_service(&format!("{scheme} {addr}"), service);
            bg.threads = Some(self.threads);
            server.add_service(bg);
        }
        let keeper = keeper::UpstreamKeeper {
            state: self.state.clone(),
            metrics: ctx.metrics.clone(),
        };
        server.add_service(pingora_core::services::background::background_service(
            "upstreams",
            keeper,
        ));
        Ok(())
    }

    fn apply(&self, next: Self) -> Vec<String> {
        self.state.store(next.state.load_full());
        let mut notes = Vec::new();
        if next.listen != self.listen || next.listen_tls != self.listen_tls {
            notes.push("proxy listen addresses changed: restart (or graceful upgrade) to apply".to_string());
        }
        if next.threads != self.threads {
            notes.push("proxy threads changed: restart to apply".to_string());
        }
        notes
    }

    fn summary(&self) -> Vec<String> {
        self.summary.clone()
    }
}
