//! `[doctor]`: where `vestibule doctor` looks from. Every key is optional; without the section the
//! defaults below apply.

use std::net::{IpAddr, SocketAddr};

use crate::config::diag::Diagnostics;
use crate::config::read::{self, TableReader};
use crate::config::source::{Located, Node};

/// Public resolvers asked by default (Cloudflare, Google, Quad9): what a browser elsewhere sees.
pub const PUBLIC_RESOLVERS: &[&str] = &["1.1.1.1:53", "8.8.8.8:53", "9.9.9.9:53"];

/// `[doctor]`.
#[derive(Debug, Clone, PartialEq)]
pub struct DoctorConfig {
    /// Resolvers that answer as the Internet does; empty: public DNS is not asked.
    pub public_resolvers: Vec<SocketAddr>,
    /// Addresses that reach this machine although it does not hold them (a NAT router's public
    /// address forwarded here): a name resolving to one of them is fine.
    pub public_addresses: Vec<IpAddr>,
    /// The HTTP(S) server whose `Date` the clock is compared with; `None`: the ACME directory,
    /// else the Mattermost upstream. Validated at provision.
    pub clock_url: Option<Located<String>>,
}

impl Default for DoctorConfig {
    fn default() -> Self {
        DoctorConfig {
            public_resolvers: PUBLIC_RESOLVERS.iter().filter_map(|a| a.parse().ok()).collect(),
            public_addresses: Vec::new(),
            clock_url: None,
        }
    }
}

fn ip(node: &Node, name: &str, diags: &mut Diagnostics) -> Option<IpAddr> {
    let s = read::string(node, name, diags)?;
    match s.parse() {
        Ok(a) => Some(a),
        Err(_) => {
            diags.push(
                crate::config::Diagnostic::at(&node.loc, format!("{name}: `{s}` is not an IP address"))
                    .hint("write it as \"203.0.113.7\" or \"2001:db8::7\""),
            );
            None
        }
    }
}

/// Read `[doctor]`; keys left out keep their defaults.
pub fn read_doctor(node: &Node, diags: &mut Diagnostics) -> Option<DoctorConfig> {
    let mut t = TableReader::new(node, "[doctor]", diags)?;
    let mut cfg = DoctorConfig::default();
    if let Some(v) = t.opt("public_resolvers", diags, read::list(read::socket_addr)) {
        cfg.public_resolvers = v;
    }
    if let Some(v) = t.opt("public_addresses", diags, read::list(ip)) {
        cfg.public_addresses = v;
    }
    cfg.clock_url = t.opt("clock_url", diags, |n, name, d| {
        read::string(n, name, d).map(|value| Located {
            value,
            loc: n.loc.clone(),
        })
    });
    t.finish(diags);
    Some(cfg)
}
