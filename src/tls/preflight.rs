//! DNS preflight for ACME names (NethServer's "create the DNS record first" step, made automatic):
//! does each name resolve, to which addresses, and is any of them this machine's as the CA sees it?
//!
//! A loopback answer (127.0.0.0/8, ::1) is bound locally but no public CA can connect to it, so it
//! does not count as this machine: a name that resolves only there fails the check.

use std::net::IpAddr;

use crate::dns::Dns;

/// Where one address of a name leads, for a CA validating from the outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// An address of this machine other than loopback.
    ThisMachine,
    /// A loopback address: this machine, but only for itself.
    Loopback,
    /// Not an address of this machine.
    Elsewhere,
}

impl Reach {
    fn label(self) -> &'static str {
        match self {
            Reach::ThisMachine => "this machine",
            Reach::Loopback => "loopback",
            Reach::Elsewhere => "not this machine",
        }
    }
}

/// One name's answer.
#[derive(Debug)]
pub struct Answer {
    pub name: String,
    pub result: Result<Vec<(IpAddr, Reach)>, crate::dns::DnsError>,
}

impl Answer {
    /// Whether a CA resolving the name as this machine does would reach this machine.
    pub fn reachable(&self) -> bool {
        matches!(&self.result, Ok(a) if a.iter().any(|(_, r)| *r == Reach::ThisMachine))
    }
}

impl std::fmt::Display for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let addrs = match &self.result {
            Ok(addrs) => addrs,
            Err(e) => {
                return write!(
                    f,
                    "{} does not resolve ({e}): create its DNS record before ordering",
                    self.name
                )
            }
        };
        let list: Vec<String> = addrs
            .iter()
            .map(|(a, r)| format!("{a} ({})", r.label()))
            .collect();
        write!(f, "{} -> {}", self.name, list.join(", "))?;
        if self.reachable() {
            return Ok(());
        }
        if addrs.iter().all(|(_, r)| *r == Reach::Loopback) {
            write!(
                f,
                ": a public CA cannot reach a loopback address; point the DNS record at this machine's public address"
            )
        } else {
            write!(
                f,
                ": the CA would validate another host; point the DNS record at this machine (behind NAT with port forwarding, this check cannot tell)"
            )
        }
    }
}

/// Where `ip` leads: binding to it succeeds only for this machine's addresses.
pub fn reach(ip: IpAddr) -> Reach {
    if ip.is_loopback() || ip.to_canonical().is_loopback() {
        Reach::Loopback
    } else if std::net::UdpSocket::bind((ip, 0)).is_ok() {
        Reach::ThisMachine
    } else {
        Reach::Elsewhere
    }
}

pub async fn check(dns: &Dns, names: &[String]) -> Vec<Answer> {
    let mut out = Vec::new();
    for n in names {
        let result = dns
            .lookup_ip(n)
            .await
            .map(|r| r.addrs.into_iter().map(|a| (a, reach(a))).collect());
        out.push(Answer {
            name: n.clone(),
            result,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(addrs: &[&str]) -> Answer {
        Answer {
            name: "chat.example.org".into(),
            result: Ok(addrs
                .iter()
                .map(|a| {
                    let ip: IpAddr = a.parse().unwrap();
                    (ip, reach(ip))
                })
                .collect()),
        }
    }

    #[test]
    fn loopback_is_not_reachable() {
        for a in ["127.0.0.1", "127.0.1.1", "::1", "::ffff:127.0.0.1"] {
            let ip: IpAddr = a.parse().unwrap();
            assert_eq!(reach(ip), Reach::Loopback, "{a}");
        }
        let a = answer(&["127.0.0.1", "::1"]);
        assert!(!a.reachable());
        assert!(
            a.to_string()
                .contains("a public CA cannot reach a loopback address"),
            "{a}"
        );
    }

    #[test]
    fn another_host_is_not_reachable() {
        // TEST-NET-3: documentation only, never this machine's.
        let a = answer(&["203.0.113.9"]);
        assert_eq!(a.result.as_ref().unwrap()[0].1, Reach::Elsewhere);
        assert!(!a.reachable());
        assert!(
            a.to_string().starts_with(
                "chat.example.org -> 203.0.113.9 (not this machine): the CA would validate another host"
            ),
            "{a}"
        );
        let unresolved = Answer {
            name: "x.example.org".into(),
            result: Err(crate::dns::DnsError::NoAddress("x.example.org".into())),
        };
        assert!(!unresolved.reachable());
    }

    #[test]
    fn one_address_of_this_machine_is_enough() {
        let a = Answer {
            name: "chat.example.org".into(),
            result: Ok(vec![
                ("192.0.2.7".parse().unwrap(), Reach::ThisMachine),
                ("127.0.0.1".parse().unwrap(), Reach::Loopback),
            ]),
        };
        assert!(a.reachable());
        assert_eq!(
            a.to_string(),
            "chat.example.org -> 192.0.2.7 (this machine), 127.0.0.1 (loopback)"
        );
    }
}
