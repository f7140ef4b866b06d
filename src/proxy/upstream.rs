//! Upstream pools: round robin over the servers of one `[upstream]`, with active health checks
//! (pingora-load-balancing), passive failure marking, and names resolved with hickory and
//! re-resolved when their TTL runs out.
//!
//! The request path only reads: `select` takes an `ArcSwap` snapshot of the backends and of the
//! passive-failure marks. All DNS and health-check work happens in the [`UpstreamKeeper`](super::keeper::UpstreamKeeper) background
//! service (or, on reload, before the new snapshot is swapped in).

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora_load_balancing::discovery::ServiceDiscovery;
use pingora_load_balancing::health_check::{HttpHealthCheck, TcpHealthCheck};
use pingora_load_balancing::selection::RoundRobin;
use pingora_load_balancing::{Backend, Backends, LoadBalancer};
use tokio::sync::watch;

use super::config::upstream::{ServerAddr, UpstreamConfig};
use crate::dns::Dns;
use crate::metrics::Metrics;

/// Milliseconds since the process's first call: a cheap monotonic clock for atomics.
fn now_ms() -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    BASE.get_or_init(Instant::now).elapsed().as_millis() as u64
}

/// Longest a resolved name is used before asking again, whatever its TTL.
const MAX_DNS_REFRESH: Duration = Duration::from_secs(300);
/// Shortest interval between resolutions, and the retry delay after a failed one.
const MIN_DNS_REFRESH: Duration = Duration::from_secs(1);

pub struct Pool {
    pub name: Arc<str>,
    pub identity: String,
    pub tls: bool,
    pub sni: String,
    lb: LoadBalancer<RoundRobin>,
    config: UpstreamConfig,
    discovery_expiry: Arc<AtomicU64>,
    passive: ArcSwap<HashMap<SocketAddr, AtomicU64>>,
    primed: watch::Sender<bool>,
    next_update: AtomicU64,
    next_health: AtomicU64,
    updating: AtomicBool,
    checking: AtomicBool,
}

struct DnsDiscovery {
    servers: Vec<ServerAddr>,
    dns: Arc<Dns>,
    /// `now_ms()` at which the shortest TTL among the answers runs out.
    expiry: Arc<AtomicU64>,
    pool: Arc<str>,
}

#[async_trait]
impl ServiceDiscovery for DnsDiscovery {
    async fn discover(&self) -> pingora_error::Result<(BTreeSet<Backend>, HashMap<u64, bool>)> {
        let mut backends = BTreeSet::new();
        let mut expiry = now_ms() + MAX_DNS_REFRESH.as_millis() as u64;
        let mut failures = Vec::new();
        for s in &self.servers {
            match self.dns.lookup_ip(&s.host).await {
                Ok(r) => {
                    let left = r
                        .valid_until
                        .saturating_duration_since(Instant::now())
                        .max(MIN_DNS_REFRESH);
                    expiry = expiry.min(now_ms() + left.as_millis() as u64);
                    for ip in r.addrs {
                        let addr = SocketAddr::new(ip, s.port);
                        backends.insert(Backend {
                            addr: pingora_core::protocols::l4::socket::SocketAddr::Inet(addr),
                            weight: 1,
                            ext: Default::default(),
                        });
                    }
                }
                Err(e) => {
                    tracing::warn!(upstream = %self.pool, server = %s.host, error = %e, "cannot resolve upstream server");
                    failures.push(format!("{}: {e}", s.host));
                }
            }
        }
        if backends.is_empty() {
            // Keep whatever was resolved before; try again soon.
            self.expiry.store(
                now_ms() + MIN_DNS_REFRESH.as_millis() as u64 * 5,
                Ordering::Relaxed,
            );
            return pingora_error::Error::e_explain(
                pingora_error::ErrorType::ConnectNoRoute,
                format!(
                    "no upstream server of `{}` resolved: {}",
                    self.pool,
                    failures.join("; ")
                ),
            );
        }
        if !failures.is_empty() {
            expiry = expiry.min(now_ms() + MIN_DNS_REFRESH.as_millis() as u64 * 5);
        }
        self.expiry.store(expiry, Ordering::Relaxed);
        Ok((backends, HashMap::new()))
    }
}

impl Pool {
    pub fn new(config: &UpstreamConfig, dns: Arc<Dns>) -> Pool {
        let name: Arc<str> = config.name.as_str().into();
        let expiry = Arc::new(AtomicU64::new(0));
        let discovery = DnsDiscovery {
            servers: config.servers.clone(),
            dns,
            expiry: expiry.clone(),
            pool: name.clone(),
        };
        let sni = config
            .sni
            .clone()
            .unwrap_or_else(|| config.servers[0].host.clone());
        let mut backends = Backends::new(Box::new(discovery));
        let hc = &config.health_check;
        if hc.enabled {
            match &hc.path {
                Some(path) => {
                    let host = hc.host.clone().unwrap_or_else(|| config.servers[0].host.clone());
                    let mut check = HttpHealthCheck::new(&host, config.tls);
                    if let Ok(mut req) = pingora_http::RequestHeader::build("GET", path.as_bytes(), None) {
                        let _ = req.append_header("Host", host.as_str());
                        let _ = req.append_header("User-Agent", "vestibule-health-check");
                        check.req = req;
                    }
                    check.peer_template.sni = sni.clone();
                    check.peer_template.options.connection_timeout = Some(hc.timeout);
                    check.peer_template.options.read_timeout = Some(hc.timeout);
                    check.consecutive_failure = hc.fails;
                    check.consecutive_success = hc.passes;
                    backends.set_health_check(Box::new(check));
                }
                None => {
                    let mut check = if config.tls {
                        TcpHealthCheck::new_tls(&sni)
                    } else {
                        TcpHealthCheck::new()
                    };
                    check.peer_template.options.connection_timeout = Some(hc.timeout);
                    check.consecutive_failure = hc.fails;
                    check.consecutive_success = hc.passes;
                    backends.set_health_check(check);
                }
            }
        }
        let (primed, _) = watch::channel(false);
        Pool {
            identity: config.identity(),
            tls: config.tls,
            sni,
            lb: LoadBalancer::from_backends(backends),
            config: config.clone(),
            discovery_expiry: expiry,
            passive: ArcSwap::from_pointee(HashMap::new()),
            primed,
            next_update: AtomicU64::new(0),
            next_health: AtomicU64::new(0),
            updating: AtomicBool::new(false),
            checking: AtomicBool::new(false),
            name,
        }
    }

    /// Number of distinct servers (for bounding retries).
    pub fn len(&self) -> usize {
        self.lb.backends().get_backend().len()
    }

    /// The next server: healthy and not recently refused, else any healthy, else any at all (when
    /// every check failed, trying beats a certain 502: checks can lag a recovery). `avoid` is the
    /// server a retried request just failed on: another healthy one is preferred. Without it, a
    /// request whose reused connection broke could be retried on the same server when concurrent
    /// requests moved round robin on meanwhile, and fail for good there.
    pub fn select(&self, avoid: Option<SocketAddr>) -> Option<SocketAddr> {
        let now = now_ms();
        let passive = self.passive.load();
        let inet = |b: &Backend| b.addr.as_inet().copied();
        let fresh = |b: &Backend| {
            inet(b).is_some_and(|a| {
                passive
                    .get(&a)
                    .is_none_or(|until| until.load(Ordering::Relaxed) <= now)
            })
        };
        let other = |b: &Backend| avoid.is_none() || inet(b) != avoid;
        self.lb
            .select_with(b"", 64, |b, healthy| healthy && fresh(b) && other(b))
            .or_else(|| self.lb.select_with(b"", 64, |b, healthy| healthy && fresh(b)))
            .or_else(|| self.lb.select_with(b"", 64, |b, _| fresh(b)))
            .or_else(|| self.lb.select_with(b"", 64, |_, _| true))
            .and_then(|b| inet(&b))
    }

    /// Leave `addr` out of selection for `fail_timeout` after it refused a connection.
    pub fn mark_failed(&self, addr: SocketAddr) {
        if let Some(until) = self.passive.load().get(&addr) {
            until.store(
                now_ms() + self.config.fail_timeout.as_millis() as u64,
                Ordering::Relaxed,
            );
        }
    }

    /// Wait (bounded) until the first resolution is done. Only the first requests after start ever wait.
    pub async fn wait_primed(&self, limit: Duration) {
        if *self.primed.borrow() {
            return;
        }
        let mut rx = self.primed.subscribe();
        let _ = tokio::time::timeout(limit, rx.wait_for(|p| *p)).await;
    }

    pub fn is_primed(&self) -> bool {
        *self.primed.borrow()
    }

    async fn update(&self) {
        if let Err(e) = self.lb.update().await {
            tracing::warn!(upstream = %self.name, error = %e, "upstream discovery failed; keeping the previous servers");
        }
        let backends = self.lb.backends().get_backend();
        let current = self.passive.load();
        let changed = backends.len() != current.len()
            || backends
                .iter()
                .any(|b| b.addr.as_inet().is_none_or(|a| !current.contains_key(a)));
        if changed {
            let map = backends
                .iter()
                .filter_map(|b| b.addr.as_inet().copied())
                .map(|a| {
                    let until = current.get(&a).map_or(0, |u| u.load(Ordering::Relaxed));
                    (a, AtomicU64::new(until))
                })
                .collect();
            self.passive.store(Arc::new(map));
        }
        self.next_update
            .store(self.discovery_expiry.load(Ordering::Relaxed), Ordering::Relaxed);
        self.primed.send_replace(true);
    }

    async fn health_check(&self, metrics: &Metrics) {
        self.lb.backends().run_health_check(true).await;
        for b in self.lb.backends().get_backend().iter() {
            let up = self.lb.backends().ready(b);
            metrics
                .upstream_healthy
                .with_label_values(&[&*self.name, &b.addr.to_string()])
                .set(up as i64);
        }
        self.next_health.store(
            now_ms() + self.config.health_check.interval.as_millis() as u64,
            Ordering::Relaxed,
        );
    }

    /// Resolve and check once, now: used on reload before the new pools take traffic.
    pub async fn prime(&self, metrics: &Metrics) {
        self.update().await;
        if self.config.health_check.enabled {
            self.health_check(metrics).await;
        }
    }

    /// Start whatever periodic work is due, without waiting for it.
    pub(super) fn maintain(self: &Arc<Self>, metrics: &Arc<Metrics>) {
        let now = now_ms();
        if now >= self.next_update.load(Ordering::Relaxed) && !self.updating.swap(true, Ordering::AcqRel) {
            let pool = self.clone();
            tokio::spawn(async move {
                pool.update().await;
                pool.updating.store(false, Ordering::Release);
            });
        }
        if self.config.health_check.enabled
            && self.is_primed()
            && now >= self.next_health.load(Ordering::Relaxed)
            && !self.checking.swap(true, Ordering::AcqRel)
        {
            let pool = self.clone();
            let metrics = metrics.clone();
            tokio::spawn(async move {
                pool.health_check(&metrics).await;
                pool.checking.store(false, Ordering::Release);
            });
        }
    }
}
