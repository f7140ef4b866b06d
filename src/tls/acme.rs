//! Let's Encrypt (any ACME CA) certificates through rustls-acme (spec/tls-acme.md).
//!
//! One order per `tls = "acme"` vhost, all its names as SANs, answered with HTTP-01 by the port-80
//! listener. rustls-acme runs the protocol and the renewal schedule (at 2/3 of the lifetime); after a
//! failed order vestibule stops it and waits out its own backoff ([`super::backoff`]). This module
//! gives rustls-acme a cache that writes atomically with 0600 files in a 0700 directory, and turns
//! every certificate that passes through the cache into the certificate store, so ACME certificates
//! are served, swapped, listed and exported like any other.
//!
//! With `challenge = "tls-alpn-01"` the HTTPS listener answers the validation instead (vestibule's own
//! accept loop offers `acme-tls/1` next to `h2` and `http/1.1`), for sites whose port 80 is closed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use futures_util::StreamExt;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls_acme::{AcmeConfig, EventError, EventOk, ResolvesServerCertAcme, UseChallenge};
use sha2::{Digest, Sha256};

use super::backoff::Backoff;
use super::load::{self, Served, Source};
use super::store::CertStore;
use crate::metrics::Metrics;

pub use super::config::AcmeSettings;

/// One certificate order: a vhost and its names.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Order {
    pub vhost: Arc<str>,
    pub domains: Vec<String>,
}

/// `<state_dir>/acme`.
pub fn dir(state_dir: &Path) -> PathBuf {
    state_dir.join("acme")
}

fn hashed(parts: &[String], directory: &str) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    h.update(directory.as_bytes());
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(h.finalize())
}

/// Where the certificate of `domains` from `directory` is cached.
pub fn cert_path(dir: &Path, domains: &[String], directory: &str) -> PathBuf {
    dir.join(format!("cert_{}.pem", hashed(domains, directory)))
}

fn account_path(dir: &Path, contact: &[String], directory: &str) -> PathBuf {
    dir.join(format!("account_{}.key", hashed(contact, directory)))
}

/// Why a certificate from the ACME cache or the CA cannot be served (the order is then retried; a
/// cached one is ignored and ordered again).
#[derive(Debug, thiserror::Error)]
pub enum AcmePemError {
    #[error("not a certificate chain: {0:?}")]
    Chain(rustls::pki_types::pem::Error),
    #[error("no private key: {0:?}")]
    NoKey(rustls::pki_types::pem::Error),
    #[error("no certificate")]
    NoCertificate,
    #[error("unusable key: {0}")]
    Key(#[source] rustls::Error),
    #[error(transparent)]
    Load(#[from] load::LoadError),
}

/// A certificate as rustls-acme stores it (PKCS#8 key PEM first, then the chain) made servable.
pub fn parse_pem(vhost: &str, pem: &[u8]) -> Result<Served, AcmePemError> {
    use rustls::pki_types::pem::PemObject;
    let mut sections = rustls::pki_types::pem::PemObject::pem_slice_iter(pem)
        .collect::<Result<Vec<rustls::pki_types::CertificateDer<'static>>, _>>()
        .map_err(AcmePemError::Chain)?;
    let key = PrivatePkcs8KeyDer::from_pem_slice(pem).map_err(AcmePemError::NoKey)?;
    if sections.is_empty() {
        return Err(AcmePemError::NoCertificate);
    }
    let signing = rustls::crypto::ring::sign::any_supported_type(&PrivateKeyDer::Pkcs8(key))
        .map_err(AcmePemError::Key)?;
    let chain = std::mem::take(&mut sections);
    let ck = rustls::sign::CertifiedKey::new(chain, signing);
    Ok(load::describe(vhost, Source::Acme, ck, "ACME certificate")?)
}

/// What `cert status` and /metrics say about one order.
#[derive(Debug, Clone, Default)]
pub struct Status {
    pub last_error: Option<String>,
    pub last_success: Option<i64>,
    /// Set while the order waits out its backoff: (unix time of the next attempt, failures so far).
    pub next_attempt: Option<(i64, u32)>,
}

/// Shared by the ACME service, the proxy (HTTP-01 answers) and the admin listener.
#[derive(Default)]
pub struct Registry {
    resolvers: ArcSwap<Vec<(Vec<String>, Arc<ResolvesServerCertAcme>)>>,
    status: Mutex<HashMap<Arc<str>, Status>>,
}

impl Registry {
    /// The key authorization for an HTTP-01 `token`, if `host` is a name being ordered.
    pub fn key_auth(&self, host: &str, token: &str) -> Option<String> {
        let list = self.resolvers.load();
        list.iter()
            .filter(|(domains, _)| domains.iter().any(|d| d == host))
            .find_map(|(_, r)| r.get_http_01_key_auth(token))
    }

    /// The rustls-acme resolver answering TLS-ALPN-01 for `sni`, if it is being ordered.
    pub fn challenge_resolver(&self, sni: &str) -> Option<Arc<ResolvesServerCertAcme>> {
        let list = self.resolvers.load();
        list.iter()
            .find(|(domains, _)| domains.iter().any(|d| d.eq_ignore_ascii_case(sni)))
            .map(|(_, r)| r.clone())
    }

    fn set_resolvers(&self, v: Vec<(Vec<String>, Arc<ResolvesServerCertAcme>)>) {
        self.resolvers.store(Arc::new(v));
    }

    fn update(&self, vhost: &Arc<str>, f: impl FnOnce(&mut Status)) {
        if let Ok(mut m) = self.status.lock() {
            f(m.entry(vhost.clone()).or_default());
        }
    }

    /// Take over what the backoff state says about `order`: while it waits (also right after a
    /// restart), and for `cert status` when no daemon runs.
    pub fn restore(&self, order: &Order, backoff: &Backoff) {
        if let Some(st) = backoff.state(&order.domains) {
            let next = backoff.next_attempt(&order.domains).unwrap_or(st.next_attempt);
            self.update(&order.vhost, |s| {
                s.last_error = Some(st.last_error.clone());
                s.next_attempt = Some((next, st.failures));
            });
        }
    }

    pub fn status(&self, vhost: &str) -> Status {
        self.status
            .lock()
            .ok()
            .and_then(|m| m.get(vhost).cloned())
            .unwrap_or_default()
    }
}

/// The rustls-acme cache: files under `<state_dir>/acme`, and every certificate into the store.
struct Cache {
    dir: PathBuf,
    order: Order,
    store: Arc<CertStore>,
}

#[async_trait]
impl rustls_acme::CertCache for Cache {
    type EC = std::io::Error;

    async fn load_cert(&self, domains: &[String], directory_url: &str) -> Result<Option<Vec<u8>>, Self::EC> {
        match tokio::fs::read(cert_path(&self.dir, domains, directory_url)).await {
            Ok(pem) => Ok(Some(pem)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn store_cert(&self, domains: &[String], directory_url: &str, cert: &[u8]) -> Result<(), Self::EC> {
        let path = cert_path(&self.dir, domains, directory_url);
        let data = cert.to_vec();
        tokio::task::spawn_blocking(move || crate::files::write_private(&path, &data))
            .await
            .map_err(std::io::Error::other)??;
        match parse_pem(&self.order.vhost, cert) {
            Ok(served) => {
                tracing::info!(vhost = %self.order.vhost, fingerprint = %served.fingerprint, expires = %load::format_time(served.not_after), "serving the new ACME certificate");
                let next = Arc::new(self.store.load().with_replaced(served));
                self.store.install(next);
            }
            Err(e) => {
                tracing::error!(vhost = %self.order.vhost, error = %e, "the ACME certificate cannot be served")
            }
        }
        Ok(())
    }
}

#[async_trait]
impl rustls_acme::AccountCache for Cache {
    type EA = std::io::Error;

    async fn load_account(
        &self,
        contact: &[String],
        directory_url: &str,
    ) -> Result<Option<Vec<u8>>, Self::EA> {
        match tokio::fs::read(account_path(&self.dir, contact, directory_url)).await {
            Ok(k) => Ok(Some(k)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn store_account(
        &self,
        contact: &[String],
        directory_url: &str,
        account: &[u8],
    ) -> Result<(), Self::EA> {
        let path = account_path(&self.dir, contact, directory_url);
        let data = account.to_vec();
        tokio::task::spawn_blocking(move || crate::files::write_private(&path, &data))
            .await
            .map_err(std::io::Error::other)?
    }
}

/// The background service that runs one rustls-acme state machine per order.
pub struct AcmeService {
    pub settings: Arc<ArcSwap<Option<AcmeSettings>>>,
    pub orders: Arc<ArcSwap<Vec<Order>>>,
    pub dir: PathBuf,
    pub store: Arc<CertStore>,
    pub registry: Arc<Registry>,
    pub metrics: Arc<Metrics>,
}

type Running =
    HashMap<(Order, Option<AcmeSettings>), (tokio::task::JoinHandle<()>, Arc<ResolvesServerCertAcme>)>;

impl AcmeService {
    fn start_order(
        &self,
        order: Order,
        settings: AcmeSettings,
        backoff: Arc<Backoff>,
    ) -> Option<(tokio::task::JoinHandle<()>, Arc<ResolvesServerCertAcme>)> {
        let client = match crate::tls::client::config(settings.ca_file.as_deref(), &[]) {
            Ok(c) => Arc::new(c),
            Err(e) => {
                tracing::error!(vhost = %order.vhost, error = %e, "ACME client set-up failed");
                self.registry
                    .update(&order.vhost, |s| s.last_error = Some(e.to_string()));
                return None;
            }
        };
        let cache = Cache {
            dir: self.dir.clone(),
            order: order.clone(),
            store: self.store.clone(),
        };
        let mut state = AcmeConfig::new_with_client_config(order.domains.clone(), client)
            .directory(&settings.directory)
            .contact(settings.contact.iter())
            .challenge_type(if settings.tls_alpn {
                UseChallenge::TlsAlpn01
            } else {
                UseChallenge::Http01
            })
            .cache(cache)
            .state();
        let resolver = state.resolver();
        let (registry, metrics) = (self.registry.clone(), self.metrics.clone());
        // Both results from 0, so an alert sees the first failure as an increase.
        for result in ["success", "failure"] {
            metrics.acme_orders.with_label_values(&[&*order.vhost, result]);
        }
        let task = tokio::spawn(async move {
            tracing::info!(vhost = %order.vhost, domains = ?order.domains, directory = %settings.directory, "ACME: managing the certificate");
            while let Some(event) = state.next().await {
                match event {
                    Ok(EventOk::DeployedNewCert) => {
                        metrics
                            .acme_orders
                            .with_label_values(&[&*order.vhost, "success"])
                            .inc();
                        metrics
                            .acme_last_success
                            .with_label_values(&[&*order.vhost])
                            .set(crate::files::unix_now());
                        registry.update(&order.vhost, |s| {
                            s.last_success = Some(crate::files::unix_now());
                            s.last_error = None;
                            s.next_attempt = None;
                        });
                        let (b, domains) = (backoff.clone(), order.domains.clone());
                        let _ = tokio::task::spawn_blocking(move || b.succeeded(&domains)).await;
                    }
                    Ok(EventOk::DeployedCachedCert) => {
                        tracing::info!(vhost = %order.vhost, "ACME: the cached certificate is valid; no new order until renewal")
                    }
                    Ok(ok) => tracing::debug!(vhost = %order.vhost, event = ?ok, "ACME"),
                    Err(err @ EventError::Order(_)) => {
                        metrics
                            .acme_orders
                            .with_label_values(&[&*order.vhost, "failure"])
                            .inc();
                        let text = super::problem::describe(&err);
                        let (b, domains, t) = (backoff.clone(), order.domains.clone(), text.clone());
                        let now = crate::files::unix_now();
                        let (next, failures) =
                            tokio::task::spawn_blocking(move || b.failed(&domains, now, &t))
                                .await
                                .unwrap_or((now + super::backoff::delay(1).as_secs() as i64, 1));
                        tracing::error!(vhost = %order.vhost, error = %text, failures, next_attempt = %load::format_time(next), "ACME order failed; the current certificate stays in service");
                        registry.update(&order.vhost, |s| {
                            s.last_error = Some(text);
                            s.next_attempt = Some((next, failures));
                        });
                        // Ends this state machine (and rustls-acme's own quick retries): the service
                        // starts a new one when the backoff has passed.
                        break;
                    }
                    Err(err) => {
                        // Cache trouble: rustls-acme carries on (it orders anew when it cannot read).
                        tracing::error!(vhost = %order.vhost, error = %err, "ACME state error");
                        let text = err.to_string();
                        registry.update(&order.vhost, |s| s.last_error = Some(text));
                    }
                }
            }
        });
        Some((task, resolver))
    }

    fn reconcile(&self, running: &mut Running, backoff: &Arc<Backoff>) {
        let settings = self.settings.load();
        let desired: Vec<(Order, Option<AcmeSettings>)> = self
            .orders
            .load()
            .iter()
            .map(|o| (o.clone(), (**settings).clone()))
            .collect();
        // A finished task is an order that failed: it starts again once its backoff has passed.
        running.retain(|key, (task, _)| {
            let keep = desired.contains(key) && !task.is_finished();
            if !keep {
                task.abort();
            }
            keep
        });
        let now = crate::files::unix_now();
        for key in desired {
            if running.contains_key(&key) {
                continue;
            }
            if backoff.next_attempt(&key.0.domains).is_some_and(|t| t > now) {
                // So that `cert status` says when, also after a restart or for a reloaded order.
                self.registry.restore(&key.0, backoff);
                continue;
            }
            let Some(s) = key.1.clone() else { continue };
            if let Some(r) = self.start_order(key.0.clone(), s, backoff.clone()) {
                running.insert(key, r);
            }
        }
        self.registry.set_resolvers(
            running
                .iter()
                .map(|((o, _), (_, r))| (o.domains.clone(), r.clone()))
                .collect(),
        );
    }
}

#[async_trait]
impl BackgroundService for AcmeService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        if let Err(e) = crate::files::ensure_private_dir(&self.dir) {
            tracing::error!(dir = %self.dir.display(), error = %e, "cannot create the ACME state directory; no certificate can be ordered");
        }
        // DNS preflight: say early when a name cannot be validated here.
        let names: Vec<String> = self
            .orders
            .load()
            .iter()
            .flat_map(|o| o.domains.clone())
            .collect();
        if !names.is_empty() {
            // In its own task: a name that times out must not hold up the orders.
            tokio::spawn(async move {
                let dns = match crate::dns::Dns::from_system() {
                    Ok(d) => d,
                    Err(e) => {
                        tracing::warn!(error = %e, "ACME DNS preflight skipped");
                        return;
                    }
                };
                for a in super::preflight::check(&dns, &names).await {
                    if a.reachable() {
                        tracing::info!("ACME DNS preflight: {a}")
                    } else {
                        tracing::warn!("ACME DNS preflight: {a}")
                    }
                }
            });
        }
        let dir = self.dir.clone();
        let backoff = match tokio::task::spawn_blocking(move || Backoff::load(&dir)).await {
            Ok(b) => Arc::new(b),
            Err(_) => Arc::new(Backoff::load(&self.dir)),
        };
        for order in self.orders.load().iter() {
            if let Some(next) = backoff.next_attempt(&order.domains) {
                if next > crate::files::unix_now() {
                    tracing::warn!(vhost = %order.vhost, next_attempt = %load::format_time(next), "ACME: waiting after earlier failed orders before ordering again");
                }
            }
        }
        let mut running = Running::new();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = tick.tick() => self.reconcile(&mut running, &backoff),
                _ = shutdown.changed() => break,
            }
        }
        for (task, _) in running.values() {
            task.abort();
        }
    }
}
