//! DNS preflight for ACME names (NethServer's "create the DNS record first" step, made automatic):
//! does each name resolve, to which addresses, and is any of them this machine's?

use crate::dns::Dns;

/// One name's answer.
#[derive(Debug)]
pub struct Answer {
    pub name: String,
    pub result: Result<Vec<(std::net::IpAddr, bool)>, String>,
}

impl std::fmt::Display for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.result {
            Ok(addrs) => {
                let list: Vec<String> = addrs.iter().map(|(a, _)| a.to_string()).collect();
                let local = addrs.iter().any(|(_, l)| *l);
                write!(
                    f,
                    "{} -> {} ({})",
                    self.name,
                    list.join(", "),
                    if local {
                        "local to this machine"
                    } else {
                        "NOT local to this machine: the CA will reach another host"
                    }
                )
            }
            Err(e) => write!(
                f,
                "{} does not resolve ({e}): create its DNS record before ordering",
                self.name
            ),
        }
    }
}

/// Whether `ip` is an address of this machine (binding to it succeeds only then).
pub fn is_local(ip: std::net::IpAddr) -> bool {
    std::net::UdpSocket::bind((ip, 0)).is_ok()
}

pub async fn check(dns: &Dns, names: &[String]) -> Vec<Answer> {
    let mut out = Vec::new();
    for n in names {
        let result = dns
            .lookup_ip(n)
            .await
            .map(|r| r.addrs.into_iter().map(|a| (a, is_local(a))).collect());
        out.push(Answer {
            name: n.clone(),
            result,
        });
    }
    out
}
