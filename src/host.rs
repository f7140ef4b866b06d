//! Server names: the patterns a vhost answers to (`chat.example.org`, `*.example.org`), their reader,
//! and the router that picks a vhost for a Host header or an SNI name. Shared by the proxy (Host) and
//! TLS (SNI), so it belongs to neither.

use std::collections::HashMap;

use crate::config::diag::{Diagnostic, Diagnostics};
use crate::config::read;
use crate::config::source::{Loc, Node};

/// A server name a vhost answers to: exact, or `*.suffix`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HostPattern {
    /// One name, lower-cased: `chat.example.org`.
    Exact(String),
    /// The suffix including its leading dot: `*.example.org` is stored as `.example.org`.
    Wildcard(String),
}

impl std::fmt::Display for HostPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HostPattern::Exact(s) => f.write_str(s),
            HostPattern::Wildcard(s) => write!(f, "*{s}"),
        }
    }
}

/// Validate one server name: a DNS name (optionally `*.` wildcard) or an IP address.
pub fn host_pattern(node: &Node, name: &str, diags: &mut Diagnostics) -> Option<(HostPattern, Loc)> {
    let raw = read::string(node, name, diags)?;
    let s = raw.trim_end_matches('.').to_ascii_lowercase();
    let (wild, rest) = match s.strip_prefix("*.") {
        Some(r) => (true, r),
        None => (false, s.as_str()),
    };
    let is_ip = !wild && rest.parse::<std::net::IpAddr>().is_ok();
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    };
    if is_ip || (rest.len() <= 253 && rest.split('.').all(label_ok)) {
        let p = if wild {
            HostPattern::Wildcard(format!(".{rest}"))
        } else {
            HostPattern::Exact(rest.to_string())
        };
        return Some((p, node.loc.clone()));
    }
    let mut d = Diagnostic::at(&node.loc, format!("{name}: `{raw}` is not a valid server name"));
    d = if raw.contains(':') {
        d.hint("write the name without a port or scheme: \"chat.example.org\"")
    } else {
        d.hint(
            "use a DNS name like \"chat.example.org\", a wildcard like \"*.example.org\", or an IP address",
        )
    };
    diags.push(d);
    None
}

/// Longest Host we consider (a DNS name is at most 253 bytes; brackets and a port add a few).
const MAX_HOST: usize = 262;

/// Host -> vhost selection. Pure, allocation-free on lookup.
///
/// Order: exact server name, then the longest matching `*.suffix` wildcard (so `*.chat.example.org`
/// beats `*.example.org`, as in nginx), then the configured default vhost, else nothing (the caller
/// answers 421/404).
#[derive(Debug, Default, Clone)]
pub struct Router {
    exact: HashMap<Box<str>, usize>,
    wildcard: HashMap<Box<str>, usize>,
    default: Option<usize>,
}

impl Router {
    /// Add a name for vhost `index`; returns the previous owner if the name was already taken.
    pub fn insert(&mut self, pattern: &HostPattern, index: usize) -> Option<usize> {
        match pattern {
            HostPattern::Exact(n) => self.exact.insert(n.as_str().into(), index),
            HostPattern::Wildcard(s) => self.wildcard.insert(s.as_str().into(), index),
        }
    }

    /// The entry for names no pattern matches (`None`: unknown names get nothing).
    pub fn set_default(&mut self, index: Option<usize>) {
        self.default = index;
    }

    /// Every name that maps to `index` (not the default).
    pub fn names_of(&self, index: usize) -> Vec<HostPattern> {
        let exact = self
            .exact
            .iter()
            .filter(|(_, i)| **i == index)
            .map(|(n, _)| HostPattern::Exact(n.to_string()));
        let wild = self
            .wildcard
            .iter()
            .filter(|(_, i)| **i == index)
            .map(|(n, _)| HostPattern::Wildcard(n.to_string()));
        exact.chain(wild).collect()
    }

    /// The vhost for a `Host` header value (or `:authority`), port and trailing dot ignored, case-folded.
    pub fn lookup(&self, host: &[u8]) -> Option<usize> {
        let mut buf = [0u8; MAX_HOST];
        match normalize_host(host, &mut buf) {
            Some(h) => self.lookup_name(h).or(self.default),
            None => self.default,
        }
    }

    fn lookup_name(&self, host: &str) -> Option<usize> {
        if let Some(&i) = self.exact.get(host) {
            return Some(i);
        }
        if self.wildcard.is_empty() {
            return None;
        }
        // Walk suffixes from the longest: "a.b.example.org" tries ".b.example.org", then ".example.org"...
        let mut rest = host;
        while let Some(dot) = rest.find('.') {
            let suffix = &rest[dot..];
            if let Some(&i) = self.wildcard.get(suffix) {
                return Some(i);
            }
            rest = &rest[dot + 1..];
        }
        None
    }
}

/// Lower-case `raw` into `buf` without its port or trailing dot. `None` for empty, overlong or
/// non-ASCII hosts (which no configured name can match).
pub fn normalize_host<'b>(raw: &[u8], buf: &'b mut [u8; MAX_HOST]) -> Option<&'b str> {
    let host = if raw.first() == Some(&b'[') {
        // [v6]:port -> v6
        let end = raw.iter().position(|&b| b == b']')?;
        &raw[1..end]
    } else {
        match raw.iter().rposition(|&b| b == b':') {
            Some(colon) if raw[colon + 1..].iter().all(u8::is_ascii_digit) => &raw[..colon],
            _ => raw,
        }
    };
    let host = host.strip_suffix(b".").unwrap_or(host);
    if host.is_empty() || host.len() > MAX_HOST || !host.is_ascii() {
        return None;
    }
    let out = &mut buf[..host.len()];
    out.copy_from_slice(host);
    out.make_ascii_lowercase();
    std::str::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router() -> Router {
        let mut r = Router::default();
        r.insert(&HostPattern::Exact("chat.example.org".into()), 0);
        r.insert(&HostPattern::Wildcard(".example.org".into()), 1);
        r.insert(&HostPattern::Wildcard(".office.example.org".into()), 2);
        r.insert(&HostPattern::Exact("::1".into()), 3);
        r
    }

    #[test]
    fn exact_beats_wildcard() {
        assert_eq!(router().lookup(b"chat.example.org"), Some(0));
        assert_eq!(router().lookup(b"CHAT.Example.ORG:8443"), Some(0));
        assert_eq!(router().lookup(b"chat.example.org."), Some(0));
    }

    #[test]
    fn longest_wildcard_wins() {
        assert_eq!(router().lookup(b"www.example.org"), Some(1));
        assert_eq!(router().lookup(b"a.b.example.org"), Some(1));
        assert_eq!(router().lookup(b"docs.office.example.org"), Some(2));
        // The bare suffix is not matched by its wildcard.
        assert_eq!(router().lookup(b"example.org"), None);
    }

    #[test]
    fn ipv6_literal_and_ports() {
        assert_eq!(router().lookup(b"[::1]:8080"), Some(3));
        assert_eq!(router().lookup(b"[::1]"), Some(3));
    }

    #[test]
    fn unknown_uses_default() {
        let mut r = router();
        assert_eq!(r.lookup(b"evil.test"), None);
        assert_eq!(r.lookup(b""), None);
        r.set_default(Some(0));
        assert_eq!(r.lookup(b"evil.test"), Some(0));
        assert_eq!(r.lookup("héllo".as_bytes()), Some(0));
    }

    #[test]
    fn duplicate_insert_reports_previous_owner() {
        let mut r = router();
        assert_eq!(
            r.insert(&HostPattern::Exact("chat.example.org".into()), 7),
            Some(0)
        );
    }
}
