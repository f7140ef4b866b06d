//! `[mail]`: the SMTP relay's section, read into its final types.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::config::diag::{Diagnostic, Diagnostics};
use crate::config::read::{self, located_path, located_string, positive_duration, TableReader};
use crate::config::source::{Located, Node};
use crate::mail::address::{DomainList, Hostname};
use crate::mail::smarthost::{self, Smarthost};

/// `[mail]`: the SMTP relay.
#[derive(Debug, Clone, PartialEq)]
pub struct MailConfig {
    pub listen: Vec<SocketAddr>,
    /// Our name in the greeting, `Received:` and HELO/EHLO to other servers.
    pub hostname: Located<Hostname>,
    /// May relay without authentication.
    pub trusted_networks: Vec<ipnet::IpNet>,
    pub max_message_size: u64,
    pub max_recipients: usize,
    pub max_connections: usize,
    /// Per untrusted address (trusted networks have no per-address cap).
    pub max_connections_per_ip: usize,
    /// Of `max_connections`, kept for trusted networks: untrusted clients share the rest.
    pub reserved_for_trusted: usize,
    /// Percent (1-100) of `max_connections` busy from which the relay is under stress.
    pub stress_threshold: u8,
    /// Wait for each command line (or line of message text).
    pub idle_timeout: Duration,
    /// The same under stress (Postfix's stress mode: idle sessions make room quickly).
    pub stress_idle_timeout: Duration,
    /// The whole TLS handshake, implicit TLS or after STARTTLS: `[tls] handshake_timeout`.
    pub tls_handshake_timeout: Duration,
    /// `smtp://host[:587]` (STARTTLS required) or `smtps://host[:465]`.
    /// With `smarthost_tls = "none"` folded in (plaintext, for a smarthost on loopback).
    pub smarthost: Option<Located<SmarthostUrl>>,
    /// First retry delay after a temporary failure (then doubling to 4000 s).
    pub first_retry: Duration,
    /// Implicit-TLS listeners (submissions, RFC 8314), beside the STARTTLS ones in `listen`.
    pub listen_tls: Vec<SocketAddr>,
    /// `name:argon2-hash` lines (0600): users who may relay after AUTH over TLS.
    pub users_file: Option<Located<PathBuf>>,
    /// `username:password` for the smarthost (0600).
    pub smarthost_auth_file: Option<Located<PathBuf>>,
    /// A PEM CA to trust for the smarthost's certificate, besides the system's roots.
    pub smarthost_ca_file: Option<Located<PathBuf>>,
    /// Envelope sender domains accepted (`.example.org` includes subdomains); `None`: any.
    pub sender_domains: Option<Located<DomainList>>,
    /// Recipient domains accepted; `None`: any.
    pub recipient_domains: Option<Located<DomainList>>,
    /// How long a message may wait before it bounces (Postfix: 5 days).
    pub queue_lifetime: Duration,
    /// Port of MX hosts (25; another value only for labs and tests).
    pub mx_port: u16,
    /// Queue only, deliver nothing (maintenance, or a machine that must not send mail).
    pub hold: bool,
}

/// `tls_handshake_timeout` is `[tls] handshake_timeout`, shared with the HTTPS listeners.
/// `smarthost`: as written (for the summary) and parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct SmarthostUrl {
    pub url: String,
    pub target: Smarthost,
}

/// `sender_domains` / `recipient_domains`: validated and lower-cased once.
fn domain_list(key: &'static str) -> impl Fn(&Node, &str, &mut Diagnostics) -> Option<Located<DomainList>> {
    move |node, name, diags| {
        let list = read::list(read::string)(node, name, diags)?;
        match DomainList::new(&list) {
            Ok(value) => Some(Located {
                value,
                loc: node.loc.clone(),
            }),
            Err(e) => {
                diags.push(
                    Diagnostic::at(
                        &node.loc,
                        format!("[mail] {key}: `{}` is not a domain ({})", e.value, e.reason),
                    )
                    .hint("write domains like \"example.org\", or \".example.org\" for its subdomains"),
                );
                None
            }
        }
    }
}

pub fn read_mail(
    node: &Node,
    tls_handshake_timeout: Duration,
    diags: &mut Diagnostics,
) -> Option<MailConfig> {
    let mut t = TableReader::new(node, "[mail]", diags)?;
    let listen = t.opt("listen", diags, read::list(read::socket_addr));
    let hostname = t.opt("hostname", diags, located_string);
    let trusted = t.opt("trusted_networks", diags, read::list(read::cidr));
    let size = t.opt("max_message_size", diags, read::byte_size);
    let rcpts = t.opt("max_recipients", diags, read::int_in(1, 10_000));
    let conns = t.opt("max_connections", diags, read::int_in(1, 100_000));
    let per_ip = t.opt("max_connections_per_ip", diags, read::int_in(1, 100_000));
    let smarthost = t.opt("smarthost", diags, located_string);
    let smarthost_tls = t.opt("smarthost_tls", diags, read::one_of(&["required", "none"]));
    let first_retry = t.opt("first_retry", diags, read::duration);
    let listen_tls = t.opt("listen_tls", diags, read::list(read::socket_addr));
    let users_file = t.opt("users_file", diags, located_path);
    let auth_file = t.opt("smarthost_auth_file", diags, located_path);
    let ca_file = t.opt("smarthost_ca_file", diags, located_path);
    let sender_domains = t.opt("sender_domains", diags, domain_list("sender_domains"));
    let recipient_domains = t.opt("recipient_domains", diags, domain_list("recipient_domains"));
    let lifetime = t.opt("queue_lifetime", diags, read::duration);
    let mx_port = t.opt("mx_port", diags, read::int_in(1, 65535));
    let hold = t.opt("hold", diags, read::boolean);
    let max_connections = conns.map_or(100, |n| n as usize);
    let reserved = t.opt("reserved_for_trusted", diags, |n, name, d| {
        let v = read::int_in(0, 100_000)(n, name, d)? as usize;
        if v > max_connections {
            d.push(
                Diagnostic::at(
                    &n.loc,
                    format!("{name} ({v}) is more than max_connections ({max_connections})"),
                )
                .hint("reserve at most max_connections (which leaves no slot to untrusted clients)"),
            );
            return None;
        }
        Some(v)
    });
    let stress = t.opt("stress_threshold", diags, read_percent);
    let idle = t.opt("idle_timeout", diags, positive_duration);
    let stress_idle = t.opt("stress_idle_timeout", diags, positive_duration);
    // Default: a fifth of the slots (20 of the default 100).
    let reserved_for_trusted = reserved.unwrap_or(max_connections / 5);
    t.finish(diags);
    let hostname = read_hostname(hostname, node, diags);
    let smarthost = match (smarthost, &auth_file) {
        (Some(s), _) => read_smarthost(s, smarthost_tls == Some("none"), auth_file.as_ref(), diags),
        (None, Some(auth)) => {
            diags.push(
                Diagnostic::at(
                    &auth.loc,
                    "[mail] smarthost_auth_file is set but there is no smarthost",
                )
                .hint("set smarthost = \"smtp://relay.example.org:587\", or remove smarthost_auth_file"),
            );
            None
        }
        (None, None) => None,
    };
    Some(MailConfig {
        listen: listen.unwrap_or_else(|| vec!["127.0.0.1:25".parse().expect("constant")]),
        hostname,
        trusted_networks: trusted.unwrap_or_else(|| {
            vec![
                "127.0.0.0/8".parse().expect("constant"),
                "::1/128".parse().expect("constant"),
            ]
        }),
        max_message_size: size.unwrap_or(10 << 20),
        max_recipients: rcpts.map_or(100, |n| n as usize),
        max_connections,
        max_connections_per_ip: per_ip.map_or(20, |n| n as usize),
        smarthost,
        first_retry: first_retry.unwrap_or(Duration::from_secs(300)),
        listen_tls: listen_tls.unwrap_or_default(),
        users_file,
        smarthost_auth_file: auth_file,
        smarthost_ca_file: ca_file,
        sender_domains,
        recipient_domains,
        queue_lifetime: lifetime.unwrap_or(Duration::from_secs(5 * 86400)),
        mx_port: mx_port.map_or(25, |p| p as u16),
        hold: hold.unwrap_or(false),
        reserved_for_trusted,
        stress_threshold: stress.unwrap_or(75),
        idle_timeout: idle.unwrap_or(crate::mail::session::COMMAND_TIMEOUT),
        stress_idle_timeout: stress_idle.unwrap_or(Duration::from_secs(10)),
        tls_handshake_timeout,
    })
}

/// `"75%"`: a share of 1 to 100 percent.
fn read_percent(node: &Node, name: &str, diags: &mut Diagnostics) -> Option<u8> {
    let s = read::string(node, name, diags)?;
    match s
        .trim()
        .strip_suffix('%')
        .and_then(|n| n.trim().parse::<u8>().ok())
    {
        Some(n) if (1..=100).contains(&n) => Some(n),
        _ => {
            diags.push(
                Diagnostic::at(
                    &node.loc,
                    format!("{name}: `{s}` is not a percentage from 1% to 100%"),
                )
                .hint("write for example \"75%\""),
            );
            None
        }
    }
}

/// `hostname`, validated once (`localhost` when absent); an invalid one is reported where written.
fn read_hostname(
    hostname: Option<Located<String>>,
    table: &Node,
    diags: &mut Diagnostics,
) -> Located<Hostname> {
    let fallback = || Hostname::new("localhost").expect("constant");
    let Some(h) = hostname else {
        return Located {
            value: fallback(),
            loc: table.loc.clone(),
        };
    };
    let value = Hostname::new(&h.value).unwrap_or_else(|e| {
        diags.push(
            Diagnostic::at(&h.loc, format!("[mail] hostname `{}`: {}", h.value, e.reason))
                .hint("the relay's fully qualified name, e.g. \"chat.example.org\""),
        );
        fallback()
    });
    Located { value, loc: h.loc }
}

/// `smarthost` with `smarthost_tls`; a password (`smarthost_auth_file`) never goes in clear.
fn read_smarthost(
    url: Located<String>,
    plaintext: bool,
    auth_file: Option<&Located<PathBuf>>,
    diags: &mut Diagnostics,
) -> Option<Located<SmarthostUrl>> {
    let target = match smarthost::parse_url(&url.value, plaintext) {
        Ok(t) => t,
        Err(e) => {
            diags.push(
                Diagnostic::at(&url.loc, format!("[mail] smarthost: {e}")).hint(
                    "write smarthost = \"smtp://relay.example.org:587\" (STARTTLS) or \"smtps://relay.example.org:465\"",
                ),
            );
            return None;
        }
    };
    if let (smarthost::Security::None, Some(auth)) = (target.security, auth_file) {
        diags.push(
            Diagnostic::at(
                &auth.loc,
                "[mail] smarthost_auth_file with smarthost_tls = \"none\" would send the password in clear",
            )
            .hint("use STARTTLS (smtp://) or implicit TLS (smtps://) to a smarthost that needs a password"),
        );
        return None;
    }
    Some(Located {
        value: SmarthostUrl {
            url: url.value,
            target,
        },
        loc: url.loc,
    })
}

#[cfg(test)]
mod tests;
