//! The certificate store: an `ArcSwap` snapshot mapping SNI names to certificates, and the rustls
//! resolver that reads it during handshakes.
//!
//! `resolve()` is synchronous and on the handshake path: it only loads the snapshot and does one or
//! two hash lookups. Sources (files, self-signed, later ACME) build new snapshots elsewhere and swap
//! them in; the next handshake sees the new certificate, connections already open are untouched.

use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::sign::CertifiedKey;

use super::load::Served;
use crate::host::Router;
use crate::metrics::Metrics;

/// One consistent set of served certificates.
#[derive(Default)]
pub struct CertSnapshot {
    /// SNI name -> index into `certs` (same matching rules as vhost selection), with the default
    /// certificate (unknown or missing SNI) as the router's default when the policy serves one.
    pub router: Router,
    pub certs: Vec<Arc<Served>>,
}

impl CertSnapshot {
    pub fn lookup(&self, sni: Option<&str>) -> Option<&Arc<Served>> {
        let i = self.router.lookup(sni.unwrap_or("").as_bytes())?;
        self.certs.get(i)
    }

    /// The same snapshot with the certificate of `vhost` replaced (a file changed on disk).
    pub fn with_replaced(&self, replacement: Served) -> CertSnapshot {
        let certs = self
            .certs
            .iter()
            .map(|c| {
                if c.vhost == replacement.vhost {
                    None
                } else {
                    Some(c.clone())
                }
            })
            .collect::<Vec<_>>();
        let replacement = Arc::new(replacement);
        CertSnapshot {
            router: self.router.clone(),
            certs: certs
                .into_iter()
                .map(|c| c.unwrap_or_else(|| replacement.clone()))
                .collect(),
        }
    }
}

/// The live store shared through the module context.
pub struct CertStore {
    current: ArcSwap<CertSnapshot>,
    metrics: Arc<Metrics>,
}

impl CertStore {
    pub fn new(metrics: Arc<Metrics>) -> CertStore {
        CertStore {
            current: ArcSwap::from_pointee(CertSnapshot::default()),
            metrics,
        }
    }

    pub fn load(&self) -> Arc<CertSnapshot> {
        self.current.load_full()
    }

    /// Serve `snap` from the next handshake on, and export its certificates' expiry.
    pub fn install(&self, snap: Arc<CertSnapshot>) {
        self.metrics.cert_expiry.reset();
        for c in &snap.certs {
            self.metrics
                .cert_expiry
                .with_label_values(&[&*c.vhost, c.source.label()])
                .set(c.not_after);
        }
        self.current.store(snap);
    }
}

impl CertStore {
    /// The key for a handshake naming `sni` (the default certificate when it names nothing we
    /// serve and one is configured); `None` refuses the handshake and is counted.
    pub fn resolve(&self, sni: Option<&str>) -> Option<Arc<CertifiedKey>> {
        let snap = self.current.load();
        match snap.lookup(sni) {
            Some(c) => Some(c.key.clone()),
            None => {
                // Refusing the handshake is the configured policy for names we do not serve.
                self.metrics
                    .tls_handshakes
                    .with_label_values(&["unknown_sni", "-"])
                    .inc();
                None
            }
        }
    }
}
