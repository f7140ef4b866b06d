//! The `proxy` module: HTTP listeners, virtual hosts, routes and upstream pools on pingora.
//!
//! Owns the routing snapshot (`ArcSwap<Snapshot>`) that requests read and reloads replace. Never
//! blocks a request on DNS or health checks: those run in the [`upstream::UpstreamKeeper`].
//! Implements what spec/mattermost-proxy.md asks of a proxy in front of Mattermost.

pub mod pages;
pub mod router;
pub mod service;
pub mod snapshot;
pub mod upstream;

use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use pingora_core::server::Server;

use crate::config::{Config, Diagnostics};
use crate::module::{Context, Module, ServiceError};

use snapshot::Snapshot;

pub struct ProxyModule {
    pub state: Arc<ArcSwap<Snapshot>>,
    listen: Vec<SocketAddr>,
    listen_tls: Vec<crate::config::model::TlsListener>,
    threads: usize,
    summary: Vec<String>,
}

impl ProxyModule {
    /// Resolve and health-check the pools this instance added (call before `apply`).
    pub async fn prime(&self, ctx: &Context) {
        self.state.load().prime(&ctx.metrics).await;
    }
}

impl Module for ProxyModule {
    const NAME: &'static str = "proxy";

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

    fn services(&self, server: &mut Server, ctx: &Context) -> Result<(), ServiceError> {
        // pingora reports a bind failure only once it runs; check first so the admin gets a clear error.
        let all = self.listen.iter().map(|a| (a, "the HTTP proxy"));
        for (addr, what) in all.chain(self.listen_tls.iter().map(|l| (&l.addr, "the HTTPS proxy"))) {
            std::net::TcpListener::bind(addr).map_err(|source| ServiceError::Bind {
                what,
                addr: *addr,
                source,
            })?;
        }
        let make_proxy = || service::Proxy {
            state: self.state.clone(),
            metrics: ctx.metrics.clone(),
            push: ctx.push.clone(),
        };
        let proxy = make_proxy();
        let mut svc = pingora_proxy::http_proxy_service_with_name(&server.configuration, proxy, "proxy");
        for addr in &self.listen {
            // No 64 KiB read buffer per connection (pingora's default): pingora reads request
            // headers into its own buffer anyway, and an idle websocket would keep the 64 KiB for
            // hours. The 1460-byte write buffer coalesces a response header with a small body.
            svc.add_listener(
                pingora_core::listeners::ListenerConfig::tcp(addr.to_string()).l4_buffer(
                    pingora_core::protocols::l4::stream::L4BufferSettings::new(
                        0,
                        crate::tls::coalesce::WRITE_BUFFER,
                    ),
                ),
            );
        }
        // HTTPS: vestibule's own accept loop (crate::tls::listener) into a second instance of the same
        // proxy application, so that the rustls configuration (ALPN, tickets) is ours.
        let tls_app = Arc::new(pingora_proxy::http_proxy(&server.configuration, make_proxy()));
        for l in &self.listen_tls {
            let config = crate::tls::listener::server_config(ctx.certs.clone(), ctx.acme.clone(), l.h2)
                .map_err(ServiceError::Tls)?;
            let listener = std::net::TcpListener::bind(l.addr)
                .and_then(|s| s.set_nonblocking(true).map(|_| s))
                .map_err(|source| ServiceError::Bind {
                    what: "the HTTPS proxy",
                    addr: l.addr,
                    source,
                })?;
            let service = crate::tls::listener::TlsListener {
                addr: l.addr,
                listener: std::sync::Mutex::new(Some(listener)),
                acceptor: Arc::new(pingora_core::listeners::tls::Acceptor::from_server_config(config)),
                app: tls_app.clone(),
                metrics: ctx.metrics.clone(),
            };
            let mut bg =
                pingora_core::services::background::background_service(&format!("https {}", l.addr), service);
            bg.threads = Some(self.threads);
            server.add_service(bg);
        }
        svc.threads = Some(self.threads);
        server.add_service(svc);
        let keeper = upstream::UpstreamKeeper {
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
