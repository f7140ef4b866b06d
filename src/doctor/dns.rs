//! Check: each public name vestibule serves (vhost names, ACME names) resolves to this machine, both
//! through the resolvers vestibule itself uses (`[dns] servers`, else the system's) and through
//! public DNS (`[doctor] public_resolvers`): a name right in one and wrong in the other is the
//! classic "works here, not from outside" (or the reverse for the ACME CA).

use std::net::{IpAddr, SocketAddr};

use super::checks::{is_public, DEADLINE};
use super::config::DoctorConfig;
use super::{Line, Status};
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

/// Whether this machine holds `ip` (binding to it works: the kernel knows its own addresses,
/// loopback included).
fn is_local(ip: IpAddr) -> bool {
    std::net::UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok()
}

/// Whether browsers elsewhere on the Internet can reach `ip` at all: not loopback, private,
/// link-local, shared (CGNAT), documentation or unspecified.
fn is_global(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => {
            let [o0, o1, ..] = a.octets();
            !(a.is_loopback()
                || a.is_private()
                || a.is_link_local()
                || a.is_broadcast()
                || a.is_documentation()
                || a.is_unspecified()
                || o0 == 0
                || (o0 == 100 && (64..128).contains(&o1)))
        }
        IpAddr::V6(a) => {
            let s = a.segments();
            !(a.is_loopback()
                || a.is_unspecified()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || (s[0] == 0x2001 && s[1] == 0x0db8))
                && a.to_ipv4_mapped().is_none_or(|v4| is_global(IpAddr::V4(v4)))
        }
    }
}

/// What one resolved address means for a name served here.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Ours,
    /// A global address that is not on any interface: another machine, or this one behind NAT or
    /// a cloud's public address.
    MaybeNat,
    /// Nobody reaches it: another machine's private address, or (through public DNS) an address
    /// only this network knows.
    Wrong,
}

fn verdict(ip: IpAddr, public_dns: bool, listed: &[IpAddr]) -> Verdict {
    if listed.contains(&ip) {
        Verdict::Ours
    } else if public_dns && !is_global(ip) {
        Verdict::Wrong
    } else if is_local(ip) {
        Verdict::Ours
    } else if is_global(ip) {
        Verdict::MaybeNat
    } else {
        Verdict::Wrong
    }
}

/// What one resolver set says of `name`: its addresses when all are this machine's; else a WARN
/// (only global addresses not on an interface: NAT, or a cloud's public address) or a FAIL, with
/// what is wrong and its fix.
async fn ask(
    dns: &Dns,
    name: &str,
    public_dns: bool,
    listed: &[IpAddr],
) -> Result<Vec<IpAddr>, (Status, String, String)> {
    let fqdn = format!("{name}.");
    match tokio::time::timeout(DEADLINE, dns.a_and_aaaa(&fqdn)).await {
        Err(_) => Err((
            Status::Fail,
            format!("no answer within {} s", DEADLINE.as_secs()),
            "check that the resolvers are reachable (UDP and TCP port 53)".into(),
        )),
        Ok(Err(e)) => Err((
            Status::Fail,
            match &e {
                DnsError::Lookup(n) if n.is_nx_domain() => "does not resolve (no such name)".to_string(),
                DnsError::Lookup(n) if n.is_no_records_found() => {
                    "does not resolve (no A or AAAA record)".to_string()
                }
                e => format!("does not resolve ({e})"),
            },
            format!("add an A (and AAAA) record for {name} with this machine's public address"),
        )),
        Ok(Ok(addrs)) => {
            let judged: Vec<(IpAddr, Verdict)> = addrs
                .iter()
                .map(|ip| (*ip, verdict(*ip, public_dns, listed)))
                .collect();
            let shown = |v: Verdict| {
                judged
                    .iter()
                    .filter(|(_, j)| *j == v)
                    .map(|(ip, _)| ip.to_string())
                    .collect::<Vec<_>>()
            };
            let (wrong, nat) = (shown(Verdict::Wrong), shown(Verdict::MaybeNat));
            if !wrong.is_empty() {
                Err((
                    Status::Fail,
                    if public_dns {
                        format!("resolves to {}, which no one outside can reach", wrong.join(", "))
                    } else {
                        format!("resolves to {}, not this machine", wrong.join(", "))
                    },
                    format!(
                        "point {name}'s A and AAAA records at this machine's public addresses (remove a \
                         stale AAAA); an address that does reach it goes in [doctor] public_addresses"
                    ),
                ))
            } else if !nat.is_empty() {
                Err((
                    Status::Warn,
                    format!("resolves to {}, not an address of this machine", nat.join(", ")),
                    format!(
                        "behind NAT or with a cloud's public address, list it in [doctor] public_addresses; \
                         else point {name}'s A/AAAA records at this machine"
                    ),
                ))
            } else {
                Ok(addrs)
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
        let sets = std::iter::once((configured, configured_label, false))
            .chain(public.map(|p| (p, public_label, true)));
        for (dns, label, public_dns) in sets {
            match ask(dns, name, public_dns, &doctor.public_addresses).await {
                Ok(addrs) => found.extend(addrs),
                Err((status, what, fix)) => {
                    failed = true;
                    let what = format!("{name} through {label}: {what}");
                    lines.push(match status {
                        Status::Warn => Line::warn(CHECK, what, fix),
                        _ => Line::fail(CHECK, what, fix),
                    });
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_no_one_outside_reaches_are_not_global() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.10",
            "169.254.1.1",
            "100.64.0.1",
            "192.0.2.7",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "2001:db8::7",
            "::ffff:192.168.1.1",
        ] {
            assert!(!is_global(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "93.184.216.34",
            "100.128.0.1",
            "2a00:1450:4001:81b::200e",
            "::ffff:93.184.216.34",
        ] {
            assert!(is_global(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn through_public_dns_only_a_global_address_can_be_ours_unless_listed() {
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(verdict(lo, false, &[]), Verdict::Ours);
        assert_eq!(verdict(lo, true, &[]), Verdict::Wrong);
        assert_eq!(verdict(lo, true, &[lo]), Verdict::Ours);
        let other_lan: IpAddr = "192.0.2.7".parse().unwrap();
        assert_eq!(verdict(other_lan, false, &[]), Verdict::Wrong);
        let cloud: IpAddr = "93.184.216.34".parse().unwrap();
        assert_eq!(verdict(cloud, true, &[]), Verdict::MaybeNat);
        assert_eq!(verdict(cloud, true, &[cloud]), Verdict::Ours);
    }
}
