//! Check: each public name vestibule serves (vhost names, ACME names) resolves to this machine, both
//! through the resolvers vestibule itself uses (`[dns] servers`, else the system's) and through
//! public DNS (`[doctor] public_resolvers`): a name right in one and wrong in the other is the
//! classic "works here, not from outside" (or the reverse for the ACME CA).

use std::net::{IpAddr, SocketAddr};

use super::checks::{is_public, DEADLINE};
use super::config::DoctorConfig;
use super::Line;
use crate::config::Config;
use crate::dns::{Dns, DnsError};
use crate::host::HostPattern;

const CHECK: &str = "dns";

/// Every exact, public-looking name of every vhost, and the ACME names, in order, once each.
/// Wildcards have no address of their own; local names (`.lan`, `localhost`) are not in public DNS.
pub fn names(cfg: &Config, acme: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let exact = cfg.vhosts.iter().flat_map(|v| {
        v.server_names.iter().filter_map(|(p, _)| match p {
            HostPattern::Exact(n) => Some(n.clone()),
            HostPattern::Wildcard(_) => None,
        })
    });
    for n in exact.chain(acme.iter().cloned()) {
        let n = n.trim_end_matches('.').to_ascii_lowercase();
        if n.parse::<IpAddr>().is_ok() || !is_public(&n) || out.contains(&n) {
            continue;
        }
        out.push(n);
    }
    out
}

/// Whether `ip` reaches this machine: it holds the address (binding to it works; the kernel knows
/// its own addresses, loopback included), or `[doctor] public_addresses` lists it (NAT).
fn is_ours(ip: IpAddr, extra: &[IpAddr]) -> bool {
    extra.contains(&ip) || std::net::UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok()
}

/// The addresses one resolver set gives `name` when all are this machine's; else what is wrong
/// and its fix.
async fn ask(dns: &Dns, name: &str, ours: &[IpAddr]) -> Result<Vec<IpAddr>, (String, String)> {
    let fqdn = format!("{name}.");
    match tokio::time::timeout(DEADLINE, dns.lookup_ip(&fqdn)).await {
        Err(_) => Err((
            format!("no answer within {} s", DEADLINE.as_secs()),
            "check that the resolvers are reachable (UDP and TCP port 53)".into(),
        )),
        Ok(Err(e)) => Err((
            match &e {
                DnsError::Lookup(n) if n.is_nx_domain() => "does not resolve (no such name)".to_string(),
                DnsError::Lookup(n) if n.is_no_records_found() => {
                    "does not resolve (no A or AAAA record)".to_string()
                }
                e => format!("does not resolve ({e})"),
            },
            format!("add an A (and AAAA) record for {name} with this machine's public address"),
        )),
        Ok(Ok(r)) => {
            let elsewhere: Vec<String> = r
                .addrs
                .iter()
                .filter(|ip| !is_ours(**ip, ours))
                .map(|ip| ip.to_string())
                .collect();
            if elsewhere.is_empty() {
                Ok(r.addrs)
            } else {
                Err((
                    format!("resolves to {}, not this machine", elsewhere.join(", ")),
                    format!(
                        "point {name}'s A/AAAA records at this machine (behind NAT: list the forwarded \
                         address in [doctor] public_addresses)"
                    ),
                ))
            }
        }
    }
}

/// One line per name: OK when both resolver sets agree on this machine, else one FAIL per set.
pub async fn check(names: &[String], configured: &Dns, cfg: &Config, doctor: &DoctorConfig) -> Vec<Line> {
    let public = if doctor.public_resolvers.is_empty() {
        None
    } else {
        match Dns::new(&doctor.public_resolvers) {
            Ok(d) => Some(d),
            Err(e) => {
                return vec![Line::fail(CHECK, e.to_string(), "fix [doctor] public_resolvers")];
            }
        }
    };
    let configured_label = if cfg.dns_servers.is_empty() {
        "the system's resolvers".to_string()
    } else {
        "[dns] servers".to_string()
    };
    let public_label = format!(
        "public DNS ({})",
        doctor
            .public_resolvers
            .iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    // All names at once: each lookup has its deadline, so the whole check takes about one.
    let (public, configured_label, public_label) = (public.as_ref(), &configured_label, &public_label);
    let per_name = names.iter().map(|name| async move {
        let mut lines = Vec::new();
        let mut found = Vec::new();
        let mut failed = false;
        let sets = std::iter::once((configured, configured_label)).chain(public.map(|p| (p, public_label)));
        for (dns, label) in sets {
            match ask(dns, name, &doctor.public_addresses).await {
                Ok(addrs) => found.extend(addrs),
                Err((what, fix)) => {
                    failed = true;
                    lines.push(Line::fail(CHECK, format!("{name} through {label}: {what}"), fix));
                }
            }
        }
        if !failed {
            found.sort();
            found.dedup();
            let shown: Vec<String> = found.iter().map(|a| a.to_string()).collect();
            let through = match public {
                Some(_) => format!("{configured_label} and public DNS"),
                None => configured_label.clone(),
            };
            lines.push(Line::ok(
                CHECK,
                format!("{name} -> {} (this machine) through {through}", shown.join(", ")),
            ));
        }
        lines
    });
    futures_util::future::join_all(per_name)
        .await
        .into_iter()
        .flatten()
        .collect()
}
