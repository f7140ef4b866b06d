//! One hickory resolver for every DNS question vestibule asks: upstream names (re-resolved when their
//! TTL runs out), and later MX lookups and the ACME preflight.
//!
//! Never blocks: lookups are async. The system configuration (/etc/resolv.conf, /etc/hosts) is read
//! once when the context is built; without it the resolver falls back to hickory's defaults.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use hickory_resolver::TokioResolver;

pub struct Dns {
    resolver: TokioResolver,
}

/// Addresses of a name and how long they may be used.
pub struct Resolved {
    pub addrs: Vec<IpAddr>,
    pub valid_until: Instant,
}

impl Dns {
    pub fn from_system() -> Dns {
        let resolver = match TokioResolver::builder_tokio() {
            Ok(b) => b.build(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the system DNS configuration; using hickory's defaults");
                TokioResolver::builder_with_config(
                    hickory_resolver::config::ResolverConfig::default(),
                    hickory_resolver::net::runtime::TokioRuntimeProvider::default(),
                )
                .build()
            }
        };
        let resolver = resolver.unwrap_or_else(|e| panic!("hickory resolver could not be built: {e}"));
        Dns { resolver }
    }

    /// A and AAAA records of `host` (or the literal address).
    pub async fn lookup_ip(&self, host: &str) -> Result<Resolved, String> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(Resolved {
                addrs: vec![ip],
                valid_until: Instant::now() + Duration::from_secs(365 * 86400),
            });
        }
        let lookup = self.resolver.lookup_ip(host).await.map_err(|e| e.to_string())?;
        let addrs: Vec<IpAddr> = lookup.iter().collect();
        if addrs.is_empty() {
            return Err(format!("{host} has no A or AAAA record"));
        }
        Ok(Resolved {
            addrs,
            valid_until: lookup.valid_until(),
        })
    }
}
