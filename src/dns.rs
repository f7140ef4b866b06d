//! One hickory resolver for every DNS question vestibule asks: upstream names (re-resolved when their
//! TTL runs out), and later MX lookups and the ACME preflight.
//!
//! Never blocks: lookups are async. The system configuration (/etc/resolv.conf, /etc/hosts) is read
//! once when the context is built; without it the resolver falls back to hickory's defaults.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use hickory_resolver::net::NetError;
use hickory_resolver::TokioResolver;

/// Why a resolver could not be built or a lookup failed.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// The resolver itself: vestibule cannot resolve any name until this is fixed.
    #[error("cannot set up the DNS resolver: {0}; check /etc/resolv.conf, or list the servers to ask in [dns] servers")]
    Resolver(#[source] NetError),
    /// A lookup failed (SERVFAIL, timeout, unreachable server): temporary, asked again later.
    #[error(transparent)]
    Lookup(#[from] NetError),
    /// The name exists but has no address.
    #[error("{0} has no A or AAAA record")]
    NoAddress(String),
}

pub struct Dns {
    resolver: TokioResolver,
}

/// Addresses of a name and how long they may be used.
pub struct Resolved {
    pub addrs: Vec<IpAddr>,
    pub valid_until: Instant,
}

/// Where mail for a domain goes (RFC 5321 section 5.1, RFC 7505).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MailHosts {
    /// Exchange names, most preferred first (the domain itself when it has no MX but exists).
    Hosts(Vec<String>),
    /// `MX 0 .`: the domain accepts no mail.
    NullMx,
    /// NXDOMAIN.
    NoDomain,
}

impl Dns {
    /// The resolver for `[dns] servers`, or the system's when the list is empty.
    pub fn new(servers: &[SocketAddr]) -> Result<Dns, DnsError> {
        if servers.is_empty() {
            return Dns::from_system();
        }
        use hickory_resolver::config::{NameServerConfig, ResolverConfig};
        let name_servers = servers
            .iter()
            .map(|s| {
                let mut ns = NameServerConfig::udp_and_tcp(s.ip());
                for c in &mut ns.connections {
                    c.port = s.port();
                }
                ns
            })
            .collect::<Vec<_>>();
        let resolver = TokioResolver::builder_with_config(
            ResolverConfig::from_parts(None, Vec::new(), name_servers),
            hickory_resolver::net::runtime::TokioRuntimeProvider::default(),
        )
        .build()
        .map_err(DnsError::Resolver)?;
        Ok(Dns { resolver })
    }

    /// Every A and every AAAA record of `host` (asked separately: `lookup_ip` stops at the A
    /// records when there are some, and a stale AAAA would go unseen). An error only when neither
    /// has a record (the A lookup's error, which says NXDOMAIN as well as the AAAA one).
    pub async fn a_and_aaaa(&self, host: &str) -> Result<Vec<IpAddr>, DnsError> {
        use hickory_resolver::proto::rr::{RData, RecordType};
        let (v4, v6) = tokio::join!(
            self.resolver.lookup(host, RecordType::A),
            self.resolver.lookup(host, RecordType::AAAA)
        );
        let mut addrs = Vec::new();
        let mut error = None;
        for answer in [v4, v6] {
            match answer {
                Ok(lookup) => addrs.extend(lookup.answers().iter().filter_map(|r| match &r.data {
                    RData::A(a) => Some(IpAddr::V4(a.0)),
                    RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                    _ => None,
                })),
                Err(e) if e.is_no_records_found() && error.is_some() => {}
                Err(e) => {
                    error.get_or_insert(e);
                }
            }
        }
        match (addrs.is_empty(), error) {
            (false, _) => Ok(addrs),
            (true, Some(e)) => Err(DnsError::Lookup(e)),
            (true, None) => Err(DnsError::NoAddress(host.to_string())),
        }
    }

    /// The mail exchangers of `domain`. `Err` is a temporary failure (SERVFAIL, timeout): retry later.
    pub async fn mail_hosts(&self, domain: &str) -> Result<MailHosts, DnsError> {
        use hickory_resolver::proto::rr::RData;
        let fqdn = format!("{}.", domain.trim_end_matches('.'));
        match self.resolver.mx_lookup(fqdn.as_str()).await {
            Ok(lookup) => {
                let mut mx: Vec<(u16, String)> = lookup
                    .answers()
                    .iter()
                    .filter_map(|r| match &r.data {
                        RData::MX(mx) => Some((mx.preference, mx.exchange.to_string())),
                        _ => None,
                    })
                    .collect();
                // RFC 7505: a single MX whose exchange is the root means "no mail here".
                if mx.iter().any(|(_, host)| host == ".") {
                    return Ok(MailHosts::NullMx);
                }
                mx.sort();
                let hosts: Vec<String> = mx
                    .into_iter()
                    .map(|(_, h)| h.trim_end_matches('.').to_string())
                    .collect();
                if hosts.is_empty() {
                    return Ok(MailHosts::Hosts(vec![domain.to_string()]));
                }
                Ok(MailHosts::Hosts(hosts))
            }
            Err(e) if e.is_nx_domain() => Ok(MailHosts::NoDomain),
            // No MX record: the domain's own A/AAAA records are its implicit MX.
            Err(e) if e.is_no_records_found() => Ok(MailHosts::Hosts(vec![domain.to_string()])),
            Err(e) => Err(DnsError::Lookup(e)),
        }
    }

    /// The resolver of the system configuration (hickory's defaults if it cannot be read).
    pub fn from_system() -> Result<Dns, DnsError> {
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
        Ok(Dns {
            resolver: resolver.map_err(DnsError::Resolver)?,
        })
    }

    /// A and AAAA records of `host` (or the literal address).
    pub async fn lookup_ip(&self, host: &str) -> Result<Resolved, DnsError> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(Resolved {
                addrs: vec![ip],
                valid_until: Instant::now() + Duration::from_secs(365 * 86400),
            });
        }
        let lookup = self.resolver.lookup_ip(host).await?;
        let addrs: Vec<IpAddr> = lookup.iter().collect();
        if addrs.is_empty() {
            return Err(DnsError::NoAddress(host.to_string()));
        }
        Ok(Resolved {
            addrs,
            valid_until: lookup.valid_until(),
        })
    }
}
