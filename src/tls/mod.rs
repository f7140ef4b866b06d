//! The `tls` module: the certificate store behind every HTTPS listener (spec/tls-acme.md).
//!
//! Owns which certificate each SNI name gets: PEM files (validated: key matches, not expired, covers
//! the vhost's names) or self-signed ones; ACME will be a third source feeding the same store. Swaps
//! certificates live: on SIGHUP (whole reload) and when a watched file changes; a bad new file keeps
//! the old certificate serving. It never does I/O on the handshake path.

pub mod acme;
pub mod backoff;
pub mod client;
pub mod coalesce;
pub mod config;
pub mod listener;
pub mod load;
pub mod preflight;
pub mod problem;
pub mod status;
pub mod store;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora_core::listeners::TlsAccept;
use pingora_core::server::{Server, ShutdownWatch};
use pingora_core::services::background::BackgroundService;

use crate::config::{Config, Diagnostic, Diagnostics};
use crate::host::HostPattern;
use crate::metrics::Metrics;
use crate::module::{Context, Module, ServiceError};
use config::{TlsSource, UnknownSni};

use load::{FileStamp, Served, Source};
use store::{CertSnapshot, CertStore};

pub struct TlsModule {
    snapshot: Arc<CertSnapshot>,
    store: Arc<CertStore>,
    watch_interval: Duration,
    warnings: Vec<String>,
    /// The ACME orders and CA of this configuration ...
    orders: Vec<acme::Order>,
    acme_settings: acme::AcmeSettings,
    /// ... and the live ones the ACME service follows (shared from the first instance on).
    live_orders: Arc<ArcSwap<Vec<acme::Order>>>,
    live_settings: Arc<ArcSwap<Option<acme::AcmeSettings>>>,
    acme_dir: std::path::PathBuf,
}

impl TlsModule {
    pub fn snapshot(&self) -> &CertSnapshot {
        &self.snapshot
    }

    /// What the ACME state directory says about this configuration's orders (failures and the
    /// next attempt), for `cert status` when no daemon runs.
    pub fn acme_from_disk(&self) -> acme::Registry {
        let registry = acme::Registry::default();
        let backoff = backoff::Backoff::load(&self.acme_dir);
        for order in &self.orders {
            registry.restore(order, &backoff);
        }
        registry
    }

    /// Every name an ACME order covers.
    pub fn acme_names(&self) -> Vec<String> {
        self.orders
            .iter()
            .flat_map(|o| o.domains.iter().cloned())
            .collect()
    }
}

impl Module for TlsModule {
    const NAME: &'static str = "tls";
    type Inputs = ();

    fn provision(cfg: &Config, ctx: &Context, previous: Option<&Self>) -> Result<Self, Diagnostics> {
        let mut diags = Diagnostics::default();
        let mut warnings = Vec::new();
        // Self-signed certificates survive a reload when the vhost's names did not change, so clients
        // that accepted one are not asked again.
        let reusable: HashMap<&str, &Arc<Served>> = previous
            .map(|p| {
                p.snapshot
                    .certs
                    .iter()
                    .filter(|c| c.source == Source::SelfSigned)
                    .map(|c| (&*c.vhost, c))
                    .collect()
            })
            .unwrap_or_default();
        let mut snap = CertSnapshot::default();
        let mut index_of_vhost = HashMap::new();
        let mut orders = Vec::new();
        for v in &cfg.vhosts {
            let Some((source, loc)) = &v.tls else { continue };
            let names: Vec<HostPattern> = v.server_names.iter().map(|(n, _)| n.clone()).collect();
            let served = match source {
                TlsSource::Files { cert, key } => load::from_files(&v.name, cert, key, &names),
                TlsSource::Acme => {
                    let mut domains = Vec::new();
                    for (n, nloc) in &v.server_names {
                        match n {
                            HostPattern::Exact(d) if d.parse::<std::net::IpAddr>().is_err() => domains.push(d.clone()),
                            _ => diags.push(
                                Diagnostic::at(nloc, format!("vhost `{}`: ACME cannot issue a certificate for `{n}`", v.name))
                                    .hint("HTTP-01 validates DNS names only: no wildcards, no IP addresses; use certificate files for those"),
                            ),
                        }
                    }
                    let acme_dir = acme::dir(&cfg.state_dir);
                    let cached = std::fs::read(acme::cert_path(&acme_dir, &domains, &cfg.acme.directory))
                        .ok()
                        .and_then(|pem| acme::parse_pem(&v.name, &pem).ok());
                    orders.push(acme::Order {
                        vhost: v.name.as_str().into(),
                        domains,
                    });
                    match cached {
                        Some(s) => Ok(s),
                        // On reload, what is served *now* (ACME may have issued since the last load).
                        None => match previous
                            .map(|_| ctx.certs.load())
                            .and_then(|live| live.certs.iter().find(|c| *c.vhost == *v.name).cloned())
                        {
                            // A changed name list: the old certificate serves until the new one arrives.
                            Some(prev) if matches!(prev.source, Source::Acme | Source::AcmePending) => {
                                Ok(prev.as_ref().clone())
                            }
                            _ => {
                                warnings.push(format!(
                                    "vhost `{}` is served with a temporary self-signed certificate until ACME issues one",
                                    v.name
                                ));
                                load::self_signed(&v.name, &names).map(|mut s| {
                                    s.source = Source::AcmePending;
                                    s
                                })
                            }
                        },
                    }
                }
                TlsSource::SelfSigned => {
                    let public: Vec<String> = names
                        .iter()
                        .filter(|n| load::looks_public(n))
                        .map(|n| n.to_string())
                        .collect();
                    if !public.is_empty() {
                        warnings.push(format!(
                            "vhost `{}` serves {} with a self-signed certificate: mobile apps and browsers refuse self-signed certificates; use tls = {{ cert, key }} (or ACME when available)",
                            v.name,
                            public.join(", ")
                        ));
                    }
                    match reusable.get(v.name.as_str()) {
                        Some(prev) if names.iter().all(|n| load::covers(&prev.names, n)) => {
                            Ok(prev.as_ref().clone())
                        }
                        _ => load::self_signed(&v.name, &names),
                    }
                }
            };
            match served {
                Ok(s) => {
                    let i = snap.certs.len();
                    for (n, _) in &v.server_names {
                        snap.router.insert(n, i);
                    }
                    index_of_vhost.insert(v.name.as_str(), i);
                    snap.certs.push(Arc::new(s));
                }
                Err(e) => diags.push(Diagnostic::at(loc, format!("vhost `{}`: {e}", v.name)).hint(
                    "fix the files (full chain first, then the matching key) or use tls = \"self-signed\"",
                )),
            }
        }
        let default_cert = cfg
            .proxy
            .default_vhost
            .as_ref()
            .and_then(|d| index_of_vhost.get(d.name.as_str()).copied());
        match cfg.tls.unknown_sni {
            Some(UnknownSni::Refuse) => snap.router.set_default(None),
            Some(UnknownSni::Default) if default_cert.is_none() && diags.is_empty() => diags.push(
                Diagnostic::in_file(
                    &cfg.origin,
                    "[tls] unknown_sni = \"default\" needs a default_vhost with tls",
                )
                .hint("set [proxy] default_vhost to a vhost that has `tls`, or use unknown_sni = \"refuse\""),
            ),
            _ => snap.router.set_default(default_cert),
        }
        if !cfg.proxy.listen_tls.is_empty() && snap.certs.is_empty() && diags.is_empty() {
            warnings.push(
                "[proxy] listen_tls is set but no vhost has `tls`: every handshake will be refused".into(),
            );
        }
        if cfg.proxy.listen_tls.is_empty() {
            for v in cfg.vhosts.iter().filter(|v| v.tls.is_some()) {
                warnings.push(format!(
                    "vhost `{}` has `tls` but there is no HTTPS listener: add [proxy] listen_tls = [\"0.0.0.0:443\"]",
                    v.name
                ));
            }
        }
        if !diags.is_empty() {
            return Err(diags);
        }
        Ok(TlsModule {
            snapshot: Arc::new(snap),
            store: ctx.certs.clone(),
            watch_interval: cfg.tls.watch_interval,
            warnings,
            orders,
            acme_settings: cfg.acme.clone(),
            live_orders: previous.map_or_else(Arc::default, |p| p.live_orders.clone()),
            live_settings: previous.map_or_else(
                || Arc::new(ArcSwap::from_pointee(None)),
                |p| p.live_settings.clone(),
            ),
            acme_dir: acme::dir(&cfg.state_dir),
        })
    }

    fn services(&self, server: &mut Server, ctx: &Context, (): ()) -> Result<(), ServiceError> {
        self.store.install(self.snapshot.clone());
        self.live_orders.store(Arc::new(self.orders.clone()));
        self.live_settings
            .store(Arc::new(Some(self.acme_settings.clone())));
        server.add_service(pingora_core::services::background::background_service(
            "acme",
            acme::AcmeService {
                settings: self.live_settings.clone(),
                orders: self.live_orders.clone(),
                dir: self.acme_dir.clone(),
                store: self.store.clone(),
                registry: ctx.acme.clone(),
                metrics: ctx.metrics.clone(),
            },
        ));
        let watcher = FileWatcher {
            store: self.store.clone(),
            interval: self.watch_interval,
            metrics: ctx.metrics.clone(),
        };
        server.add_service(pingora_core::services::background::background_service(
            "certificates",
            watcher,
        ));
        Ok(())
    }

    fn apply(&self, next: Self) -> Vec<String> {
        self.store.install(next.snapshot.clone());
        self.live_orders.store(Arc::new(next.orders.clone()));
        self.live_settings
            .store(Arc::new(Some(next.acme_settings.clone())));
        if next.watch_interval != self.watch_interval {
            vec!["[tls] watch_interval changed: restart to apply".into()]
        } else {
            Vec::new()
        }
    }

    fn summary(&self) -> Vec<String> {
        self.snapshot
            .certs
            .iter()
            .map(|c| {
                format!(
                    "certificate for vhost {}: {} ({}), expires {}",
                    c.vhost,
                    c.names.join(", "),
                    c.source.label(),
                    load::format_time(c.not_after)
                )
            })
            .collect()
    }

    fn warnings(&self) -> Vec<String> {
        self.warnings.clone()
    }
}

/// Re-reads certificate files whose stamp changed; a bad file is logged once and the old certificate
/// keeps serving until the file changes again.
struct FileWatcher {
    store: Arc<CertStore>,
    interval: Duration,
    metrics: Arc<Metrics>,
}

impl FileWatcher {
    async fn check(&self, failed: &mut HashMap<Arc<str>, (FileStamp, FileStamp)>) {
        let snap = self.store.load();
        for c in &snap.certs {
            let (Source::Files { cert, key }, Some(stamps)) = (&c.source, c.stamps) else {
                continue;
            };
            let (cert, key) = (cert.clone(), key.clone());
            let now = tokio::task::spawn_blocking(move || (FileStamp::of(&cert), FileStamp::of(&key))).await;
            let Ok((Ok(cs), Ok(ks))) = now else { continue };
            if (cs, ks) == stamps || failed.get(&c.vhost) == Some(&(cs, ks)) {
                continue;
            }
            let Source::Files { cert, key } = c.source.clone() else {
                continue;
            };
            let vhost = c.vhost.clone();
            // The names to cover are the ones the current certificate was accepted for.
            let names: Vec<HostPattern> = snap.router.names_of(
                snap.certs
                    .iter()
                    .position(|x| Arc::ptr_eq(x, c))
                    .unwrap_or(usize::MAX),
            );
            let loaded =
                tokio::task::spawn_blocking(move || load::from_files(&vhost, &cert, &key, &names)).await;
            match loaded {
                Ok(Ok(new)) => {
                    tracing::info!(vhost = %c.vhost, fingerprint = %new.fingerprint, expires = %load::format_time(new.not_after), "certificate file changed: now serving the new certificate");
                    failed.remove(&c.vhost);
                    let next = Arc::new(self.store.load().with_replaced(new));
                    self.store.install(next);
                    self.metrics.cert_reloads.with_label_values(&["success"]).inc();
                }
                Ok(Err(e)) => {
                    tracing::error!(vhost = %c.vhost, error = %e, "certificate file changed but cannot be used; still serving the previous certificate");
                    failed.insert(c.vhost.clone(), (cs, ks));
                    self.metrics.cert_reloads.with_label_values(&["failure"]).inc();
                }
                Err(_) => {}
            }
        }
    }
}

#[async_trait]
impl BackgroundService for FileWatcher {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut failed = HashMap::new();
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => self.check(&mut failed).await,
                _ = shutdown.changed() => return,
            }
        }
    }
}

/// SNI as seen in the handshake, attached to the connection for the proxy (h1 and h2 alike).
#[derive(Debug)]
pub struct Sni(pub String);

/// pingora handshake callbacks: count handshakes and hand the SNI to the HTTP layer.
pub struct HandshakeCallbacks {
    pub metrics: Arc<Metrics>,
}

#[async_trait]
impl TlsAccept for HandshakeCallbacks {
    async fn handshake_complete_callback(
        &self,
        tls: &pingora_core::protocols::tls::TlsRef,
    ) -> Option<Arc<dyn std::any::Any + Send + Sync>> {
        self.metrics
            .tls_handshakes
            .with_label_values(&["ok", tls.version().unwrap_or("unknown")])
            .inc();
        tls.server_name()
            .map(|n| Arc::new(Sni(n.to_ascii_lowercase())) as Arc<dyn std::any::Any + Send + Sync>)
    }
}
