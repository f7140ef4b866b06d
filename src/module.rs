//! The one lifecycle every module follows, and the context they share.
//!
//! 1. **provision**: from the validated configuration to a ready value. May read files; binds
//!    nothing and spawns nothing, so `vestibule check` can run it next to a live daemon. Every
//!    configuration error is found here or in `validate`, so `check` rejects what `run` rejects.
//! 2. **validate**: cross-checks over the provisioned value and the whole configuration.
//! 3. **warnings**: what works but an admin should hear about (`check` prints, `run` logs them).
//! 4. **prime** (reload only): asynchronous preparation before a new instance takes over (the proxy
//!    resolves and health-checks the upstream pools it added).
//! 5. **services**: only `run` gets here: bind and register the services and background tasks.
//!    May fail only on what the running system refuses (a taken port, a locked spool), never on
//!    the configuration.
//! 6. **apply** (reload): take over a freshly provisioned and validated instance by swapping shared
//!    snapshots; anything that cannot change live is reported, and the old value keeps serving.
//!
//! The loader (`crate::app`) runs the phases for every module and collects every error before
//! giving up, so an admin sees all problems at once (Caddy's loader is the model). This file knows
//! no module: modules import it, never the other way round.

use std::sync::Arc;

use pingora_core::server::Server;

use crate::config::{Config, Diagnostics};
use crate::dns::Dns;
use crate::metrics::Metrics;

/// What every module is handed: built once per process, kept across reloads.
pub struct Context {
    pub metrics: Arc<Metrics>,
    pub dns: Arc<Dns>,
    /// The live certificate store: the `tls` module fills it, HTTPS listeners read it.
    pub certs: Arc<crate::tls::store::CertStore>,
    /// ACME orders in progress: HTTP-01 answers for the proxy, status for the admin listener.
    pub acme: Arc<crate::tls::acme::Registry>,
    /// Remote-cluster peers seen by the proxy, reported by /metrics and `vestibule status`.
    pub peers: Arc<crate::policy::remote_cluster::Peers>,
}

impl Context {
    /// The context for a loaded (possibly partial) configuration. Fails only if the DNS resolver
    /// cannot be built (the caller reports it and stops).
    pub fn for_config(cfg: Option<&Config>) -> Result<Context, crate::dns::DnsError> {
        let dns = Dns::new(cfg.map_or(&[][..], |c| &c.dns_servers))?;
        Ok(Context::new(dns))
    }

    /// A fresh context around `dns`: empty metrics, certificate store, ACME registry and peers.
    pub fn new(dns: Dns) -> Context {
        let metrics = Arc::new(Metrics::new());
        Context {
            certs: Arc::new(crate::tls::store::CertStore::new(metrics.clone())),
            metrics,
            dns: Arc::new(dns),
            peers: Arc::default(),
            acme: Arc::default(),
        }
    }
}

/// Errors from starting services: binding a port, mostly.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Bind(#[from] crate::handover::BindError),
    /// rustls refused to build a server configuration (no protocol version or ticketer available).
    #[error("cannot set up TLS: {0}")]
    Tls(#[source] rustls::Error),
    /// The mail spool cannot be opened (permissions, or another instance holds its lock).
    #[error("cannot open the mail spool: {0}")]
    Spool(#[source] Box<dyn std::error::Error + Send + Sync>),
}

pub trait Module: Sized {
    /// Short name for logs and the `check` summary.
    const NAME: &'static str;

    /// What this module takes from other modules when its services start (the push relay for the
    /// proxy, the mail queue's control for the admin listener); `()` for most. The loader passes
    /// it explicitly, so no module reaches into another one.
    type Inputs;

    /// `previous` is the running instance on reload, `None` at start and in `check`.
    fn provision(cfg: &Config, ctx: &Context, previous: Option<&Self>) -> Result<Self, Diagnostics>;

    fn validate(&self, _cfg: &Config, _diags: &mut Diagnostics) {}

    /// Asynchronous preparation of a reloaded instance before [`apply`](Self::apply).
    fn prime(&self, _ctx: &Context) -> impl std::future::Future<Output = ()> + Send {
        async {}
    }

    fn services(&self, server: &mut Server, ctx: &Context, inputs: Self::Inputs) -> Result<(), ServiceError>;

    /// Take over `next` (provisioned from a new configuration). Returns notes for the log about
    /// changes that need a restart to take effect.
    fn apply(&self, next: Self) -> Vec<String>;

    /// Lines for `vestibule check`'s summary.
    fn summary(&self) -> Vec<String> {
        Vec::new()
    }

    /// Things that work but that an admin should hear about (logged by `run`, printed by `check`).
    fn warnings(&self) -> Vec<String> {
        Vec::new()
    }
}
