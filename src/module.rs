//! The one lifecycle every module follows, and the context they share.
//!
//! 1. **provision**: from the validated configuration to a ready value. May read files; binds
//!    nothing and spawns nothing, so `vestibule check` can run it next to a live daemon.
//! 2. **validate**: cross-checks over the provisioned value and the whole configuration.
//! 3. **services**: only `run` gets here: register the pingora services and background tasks that
//!    bind and serve.
//! 4. **apply** (reload): take over a freshly provisioned and validated instance by swapping shared
//!    snapshots; anything that cannot change live is reported, and the old value keeps serving.
//!
//! The loader ([`Modules`]) runs the phases for every module and collects every error before giving
//! up, so an admin sees all problems at once (Caddy's loader is the model).

use std::path::PathBuf;
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
    /// The push relay, when `[push]` is configured: vhost routes with `push = true` hand requests to it.
    pub push: Arc<arc_swap::ArcSwapOption<crate::push::Shared>>,
    /// The mail queue's flush/drop control, for the admin listener (set when the relay starts).
    pub mail: Arc<arc_swap::ArcSwapOption<crate::mail::control::Control>>,
    /// ACME orders in progress: HTTP-01 answers for the proxy, status for the admin listener.
    pub acme: Arc<crate::tls::acme::Registry>,
    /// Remote-cluster peers seen by the proxy, reported by /metrics and `vestibule status`.
    pub peers: Arc<crate::policy::remote_cluster::Peers>,
    pub state_dir: PathBuf,
}

impl Context {
    /// The context for a loaded (possibly partial) configuration. Fails only if the DNS resolver
    /// cannot be built (the caller reports it and stops).
    pub fn for_config(cfg: Option<&Config>) -> Result<Context, crate::dns::DnsError> {
        let state_dir = cfg.map_or_else(
            || PathBuf::from(crate::config::core::STATE_DIR),
            |c| c.state_dir.clone(),
        );
        let dns = Dns::new(cfg.map_or(&[][..], |c| &c.dns_servers))?;
        Ok(Context::new(state_dir, dns))
    }

    pub fn new(state_dir: PathBuf, dns: Dns) -> Context {
        let metrics = Arc::new(Metrics::new());
        Context {
            certs: Arc::new(crate::tls::store::CertStore::new(metrics.clone())),
            metrics,
            dns: Arc::new(dns),
            peers: Arc::default(),
            acme: Arc::default(),
            push: Arc::default(),
            mail: Arc::default(),
            state_dir,
        }
    }
}

/// Provision and validate every module of a freshly loaded configuration: what `run`, `check` and a
/// reload all do. Reading errors and the modules' cross-checks are reported together.
pub fn provision_all(
    loaded: (Option<Config>, Diagnostics),
    ctx: &Context,
    previous: Option<&Modules>,
) -> Result<(Config, Modules), Diagnostics> {
    let (cfg, mut diags) = loaded;
    let Some(cfg) = cfg else { return Err(diags) };
    match Modules::provision(&cfg, ctx, previous) {
        Ok(m) if diags.is_empty() => Ok((cfg, m)),
        Ok(_) => Err(diags),
        Err(more) => {
            diags.0.extend(more.0);
            Err(diags)
        }
    }
}

/// Errors from starting services: binding a port, mostly.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("cannot listen on {addr} for {what}: {source}")]
    Bind {
        what: &'static str,
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot set up TLS: {0}")]
    Tls(String),
    #[error("cannot start the mail relay: {0}")]
    Mail(String),
}

pub trait Module: Sized {
    /// Short name for logs and the `check` summary.
    const NAME: &'static str;

    /// `previous` is the running instance on reload, `None` at start and in `check`.
    fn provision(cfg: &Config, ctx: &Context, previous: Option<&Self>) -> Result<Self, Diagnostics>;

    fn validate(&self, _cfg: &Config, _diags: &mut Diagnostics) {}

    fn services(&self, server: &mut Server, ctx: &Context) -> Result<(), ServiceError>;

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

/// Every module of one configuration, provisioned and validated together.
pub struct Modules {
    pub admin: crate::admin::Admin,
    pub tls: crate::tls::TlsModule,
    pub proxy: crate::proxy::ProxyModule,
    pub push: crate::push::PushModule,
    pub mail: crate::mail::MailModule,
}

impl Modules {
    pub fn provision(
        cfg: &Config,
        ctx: &Context,
        previous: Option<&Modules>,
    ) -> Result<Modules, Diagnostics> {
        let mut diags = Diagnostics::default();
        fn keep<T>(r: Result<T, Diagnostics>, diags: &mut Diagnostics) -> Option<T> {
            r.map_err(|d| diags.0.extend(d.0)).ok()
        }
        let admin = keep(
            crate::admin::Admin::provision(cfg, ctx, previous.map(|p| &p.admin)),
            &mut diags,
        );
        let tls = keep(
            crate::tls::TlsModule::provision(cfg, ctx, previous.map(|p| &p.tls)),
            &mut diags,
        );
        let proxy = keep(
            crate::proxy::ProxyModule::provision(cfg, ctx, previous.map(|p| &p.proxy)),
            &mut diags,
        );
        let push = keep(
            crate::push::PushModule::provision(cfg, ctx, previous.map(|p| &p.push)),
            &mut diags,
        );
        let mail = keep(
            crate::mail::MailModule::provision(cfg, ctx, previous.map(|p| &p.mail)),
            &mut diags,
        );
        let (Some(admin), Some(tls), Some(proxy), Some(push), Some(mail)) = (admin, tls, proxy, push, mail)
        else {
            return Err(diags);
        };
        admin.validate(cfg, &mut diags);
        tls.validate(cfg, &mut diags);
        proxy.validate(cfg, &mut diags);
        if diags.is_empty() {
            Ok(Modules {
                admin,
                tls,
                proxy,
                push,
                mail,
            })
        } else {
            Err(diags)
        }
    }

    pub fn services(&self, server: &mut Server, ctx: &Context) -> Result<(), ServiceError> {
        self.admin.services(server, ctx)?;
        self.tls.services(server, ctx)?;
        self.proxy.services(server, ctx)?;
        self.push.services(server, ctx)?;
        self.mail.services(server, ctx)
    }

    pub fn apply(&self, next: Modules) -> Vec<String> {
        let mut notes = self.admin.apply(next.admin);
        notes.extend(self.tls.apply(next.tls));
        notes.extend(self.proxy.apply(next.proxy));
        notes.extend(self.push.apply(next.push));
        notes.extend(self.mail.apply(next.mail));
        notes
    }

    pub fn summary(&self) -> Vec<(&'static str, Vec<String>)> {
        vec![
            (crate::admin::Admin::NAME, self.admin.summary()),
            (crate::tls::TlsModule::NAME, self.tls.summary()),
            (crate::proxy::ProxyModule::NAME, self.proxy.summary()),
            (crate::push::PushModule::NAME, self.push.summary()),
            (crate::mail::MailModule::NAME, self.mail.summary()),
        ]
    }

    pub fn warnings(&self) -> Vec<String> {
        let mut w = self.admin.warnings();
        w.extend(self.tls.warnings());
        w.extend(self.proxy.warnings());
        w
    }
}
