//! The [`Origin`] type: one `scheme://host[:port]` allowed to frame Mattermost, parsed and validated
//! once at config load so that the response path only pastes its text.
//!
//! Owns the parser and its error messages (what is wrong, how to write it instead; a password in
//! userinfo is never quoted back). Must never accept anything that could alter the policy it is
//! pasted into (whitespace, `;`, `,`, quotes) or a wildcard broader than one registrable domain.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// The example every error message ends with when the input gives nothing better to suggest.
const EXAMPLE: &str = "\"https://webapp.example.org\"";

/// A web origin allowed to frame Mattermost, validated once at config load:
/// `scheme://host[:port]`, written the way a CSP `frame-ancestors` host-source expects it.
///
/// - scheme: `http` or `https`;
/// - host: a DNS name (letters, digits, `-`; no trailing dot; internationalised names in punycode),
///   a wildcard `*.example.org` (any subdomain of `example.org`, not `example.org` itself, as CSP
///   matches it; at least two labels after `*.`), an IPv4 address, or a bracketed IPv6 address;
/// - port: optional, 1 to 65535; a default port (`:443`) is kept as written;
/// - no userinfo, path, query or fragment; a single trailing `/` is accepted and dropped.
///
/// The stored text is lower-cased (IPv4 and IPv6 in their canonical form), so it can be pasted into
/// a header as is: it never contains whitespace, `;`, `,` or quotes that could alter a policy.
///
/// CSP3's host-source grammar has no IPv6 literal; a browser that ignores one still applies the
/// other origins of the directive.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Origin {
    text: String,
}

impl Origin {
    /// The origin as it goes into the header, e.g. `https://webapp.example.org`.
    #[must_use]
    pub(crate) fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl AsRef<str> for Origin {
    fn as_ref(&self) -> &str {
        &self.text
    }
}

impl FromStr for Origin {
    /// A lowercase, one-line message saying what is wrong and how to write the origin instead;
    /// the config loader adds the file and position.
    type Err = String;

    fn from_str(input: &str) -> Result<Self, String> {
        parse_origin(input)
    }
}

fn parse_origin(input: &str) -> Result<Origin, String> {
    if input.is_empty() {
        return Err(format!("origin is empty: write it like {EXAMPLE}"));
    }
    // Everything quoted back goes through `shown`: it hides userinfo (it may hold a password) and
    // escapes control characters so the message stays on one line.
    let shown = shown(input);

    if let Some(c) = input.chars().find(|c| !c.is_ascii()) {
        return Err(format!(
            "`{shown}` contains the non-ASCII character `{c}`: write an internationalised host in \
             its punycode form, like \"https://xn--bcher-kva.example\""
        ));
    }
    if input
        .bytes()
        .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
    {
        return Err(format!(
            "`{shown}` contains whitespace or a control character: write the origin alone, like {EXAMPLE}"
        ));
    }
    let lower = input.to_ascii_lowercase();

    let Some(scheme_end) = lower.find("://") else {
        // "https:host" lacks the "//"; anything else lacks the scheme. Suggest the input fixed when
        // what is left looks like a host, so the message can be copied.
        let (scheme, host) = match lower.split_once(':') {
            Some((s @ ("http" | "https"), r)) => (Some(s), r.trim_start_matches('/')),
            _ => (None, lower.as_str()),
        };
        let plausible = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-:[]*".contains(&b));
        let hint = if plausible {
            format!("\"{}://{host}\"", scheme.unwrap_or("https"))
        } else {
            EXAMPLE.to_owned()
        };
        return Err(match scheme {
            Some(s) => format!("`{shown}` is missing `//` after `{s}:`: write it like {hint}"),
            None => format!("`{shown}` has no scheme: write it with https:// or http://, like {hint}"),
        });
    };
    let scheme = &lower[..scheme_end];
    let rest = &lower[scheme_end + 3..];
    // '\' ends the authority like '/' because browsers treat it so in http(s) URLs.
    let authority_end = rest.find(['/', '\\', '?', '#']).unwrap_or(rest.len());
    let (authority, after) = rest.split_at(authority_end);

    if scheme != "https" && scheme != "http" {
        let what = if scheme.is_empty() {
            "no scheme".to_owned()
        } else {
            format!("scheme `{scheme}`")
        };
        // The hint leaves out userinfo, which may hold a password.
        let host_port = authority.rsplit('@').next().unwrap_or(authority);
        return Err(format!(
            "`{shown}` has {what}: only http and https pages can frame Mattermost, write it like \
             \"https://{host_port}\""
        ));
    }
    if let Some(at) = authority.rfind('@') {
        let host_port = &authority[at + 1..];
        return Err(format!(
            "`{shown}` has user info before `@`: write the origin only, like \"{scheme}://{host_port}\""
        ));
    }
    let origin_hint = format!("\"{scheme}://{authority}\"");
    // "https://host/?q" is a query rather than a path: report what the user will recognise.
    let tail = match after.strip_prefix('/') {
        Some(r) if r.starts_with(['?', '#']) => r,
        _ => after,
    };
    match tail.as_bytes().first() {
        None => {}
        Some(b'/') if tail.len() == 1 => {}
        Some(b'?') => {
            return Err(format!(
                "`{shown}` has a query: write the origin only, like {origin_hint}"
            ));
        }
        Some(b'#') => {
            return Err(format!(
                "`{shown}` has a fragment: write the origin only, like {origin_hint}"
            ));
        }
        Some(_) => {
            return Err(format!(
                "`{shown}` has a path: write the origin only, like {origin_hint}"
            ));
        }
    }

    let (host, port) = split_host_port(authority, &shown, scheme)?;
    let host = canonical_host(host, &shown, scheme)?;
    let mut text = format!("{scheme}://{host}");
    if let Some(port) = port {
        let port = parse_port(port, &shown, scheme, &host)?;
        text.push(':');
        text.push_str(&port.to_string());
    }
    Ok(Origin { text })
}

/// Split `host[:port]`, `[v6]` or `[v6]:port`; the host keeps its brackets.
fn split_host_port<'a>(
    authority: &'a str,
    shown: &str,
    scheme: &str,
) -> Result<(&'a str, Option<&'a str>), String> {
    if authority.is_empty() {
        return Err(format!("`{shown}` has no host: write it like {EXAMPLE}"));
    }
    if authority.starts_with('[') {
        let Some(close) = authority.find(']') else {
            return Err(format!(
                "`{shown}` has an unclosed `[`: write an IPv6 address like \"{scheme}://[2001:db8::1]\""
            ));
        };
        let (host, after) = authority.split_at(close + 1);
        return match after.strip_prefix(':') {
            None if after.is_empty() => Ok((host, None)),
            Some(port) => Ok((host, Some(port))),
            None => Err(format!(
                "`{shown}` has `{after}` after the IPv6 address: write a port as `]:port`, like \
                 \"{scheme}://{host}:8443\""
            )),
        };
    }
    match authority.split_once(':') {
        None => Ok((authority, None)),
        Some((_, port)) if port.contains(':') => Err(format!(
            "`{shown}` has more than one `:`: write an IPv6 address in brackets, like \
             \"{scheme}://[2001:db8::1]\""
        )),
        Some(("", _)) => Err(format!("`{shown}` has no host: write it like {EXAMPLE}")),
        Some((host, port)) => Ok((host, Some(port))),
    }
}

fn parse_port(port: &str, shown: &str, scheme: &str, host: &str) -> Result<u16, String> {
    let hint = format!("\"{scheme}://{host}:8443\"");
    if port.is_empty() {
        return Err(format!(
            "`{shown}` has an empty port: drop the `:` or write a port, like {hint}"
        ));
    }
    if port == "*" {
        // A host-source could take ":*", but an origin has one port: listing them keeps the policy
        // as narrow as the operator meant.
        return Err(format!(
            "`{shown}` has a wildcard port: list each port as its own origin, like {hint}"
        ));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 && port.bytes().all(|b| b.is_ascii_digit()) => Ok(p),
        _ => Err(format!(
            "`{shown}` has port `{port}`, not a number from 1 to 65535: write it like {hint}"
        )),
    }
}

/// Validate a lower-cased host and return it as it goes into the header.
fn canonical_host(host: &str, shown: &str, scheme: &str) -> Result<String, String> {
    if let Some(inner) = host.strip_prefix('[') {
        let inner = inner.strip_suffix(']').unwrap_or(inner);
        return match inner.parse::<Ipv6Addr>() {
            Ok(ip) => Ok(format!("[{ip}]")),
            Err(_) => Err(format!(
                "`{shown}` has `[{inner}]`, not a valid IPv6 address: write it like \
                 \"{scheme}://[2001:db8::1]\""
            )),
        };
    }
    if host == "*" {
        return Err(format!(
            "`{shown}` would let every site frame Mattermost: list the origins, or a subdomain \
             wildcard like \"{scheme}://*.example.org\""
        ));
    }
    if let Some(name) = host.strip_prefix("*.") {
        check_dns_name(name, shown, scheme)?;
        if ends_in_number(name) {
            return Err(format!(
                "`{shown}` puts a wildcard on an IP address: a wildcard needs a DNS name, like \
                 \"{scheme}://*.example.org\""
            ));
        }
        if !name.contains('.') {
            return Err(format!(
                "`{shown}` is too broad: a wildcard needs at least two labels after `*.`, like \
                 \"{scheme}://*.example.org\""
            ));
        }
        return Ok(host.to_owned());
    }
    check_dns_name(host, shown, scheme)?;
    if ends_in_number(host) {
        // Browsers read a host ending in a number as IPv4 (WHATWG URL): only accept what that
        // reading gives unambiguously, written canonically.
        return match host.parse::<Ipv4Addr>() {
            Ok(ip) => Ok(ip.to_string()),
            Err(_) => Err(format!(
                "`{shown}` has host `{host}`, which ends in a number but is not an IPv4 address: \
                 write four numbers from 0 to 255 like \"{scheme}://192.0.2.10\", or a DNS name"
            )),
        };
    }
    Ok(host.to_owned())
}

fn ends_in_number(host: &str) -> bool {
    host.rsplit('.')
        .next()
        .is_some_and(|last| !last.is_empty() && last.bytes().all(|b| b.is_ascii_digit()))
}

/// Letters, digits and `-` in dot-separated labels of 1 to 63 characters, 253 at most in all, as
/// CSP's host-char allows; the wildcard is handled by the caller.
fn check_dns_name(name: &str, shown: &str, scheme: &str) -> Result<(), String> {
    let hint = format!("\"{scheme}://webapp.example.org\"");
    if name.contains('*') {
        return Err(format!(
            "`{shown}` has a `*` inside the host: a wildcard must be the whole first label, like \
             \"{scheme}://*.example.org\""
        ));
    }
    if let Some(trimmed) = name.strip_suffix('.') {
        if !trimmed.is_empty() && !trimmed.ends_with('.') {
            return Err(format!(
                "`{shown}` has a host ending in a dot: write it without, like \"{scheme}://{trimmed}\""
            ));
        }
    }
    if name.len() > 253 {
        return Err(format!(
            "`{shown}` has a host longer than 253 characters: write a real host name"
        ));
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err(format!(
                "`{shown}` has an empty label (`..` or a leading dot) in its host: write it like {hint}"
            ));
        }
        if label.len() > 63 {
            return Err(format!(
                "`{shown}` has a host label longer than 63 characters: write a real host name"
            ));
        }
        if let Some(c) = label.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '-')) {
            return Err(format!(
                "`{shown}` has `{c}` in its host: a host is letters, digits, `-` and `.`, like {hint}"
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!(
                "`{shown}` has a host label starting or ending with `-`: write it like {hint}"
            ));
        }
    }
    Ok(())
}

/// The input as error messages quote it: userinfo replaced by `***` (it may hold a password, and
/// config errors end up in logs), control characters escaped.
fn shown(input: &str) -> String {
    let redacted = input.find("://").and_then(|i| {
        let start = i + 3;
        let end = input[start..]
            .find(['/', '\\', '?', '#'])
            .map_or(input.len(), |e| start + e);
        let at = input[start..end].rfind('@')?;
        Some(format!("{}***{}", &input[..start], &input[start + at..]))
    });
    let text = redacted.as_deref().unwrap_or(input);
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}
