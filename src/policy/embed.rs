//! Embedding policy: the response-header rewrite that lets configured origins (Kopano WebApp, DeskApp)
//! show Mattermost in an iframe.
//!
//! Owns: the validated [`Origin`] type for `frame-ancestors` sources, the [`FrameAncestors`] directive
//! built once at config load, and [`rewrite_csp`], which swaps that directive into a
//! `Content-Security-Policy` header value.
//!
//! Implements: spec/mattermost-proxy.md, "Embedding in Kopano WebApp / DeskApp"; the header value is
//! parsed the way browsers parse it, per CSP Level 3 §2.2.1 "parse a serialized CSP" and §2.2.2 "parse
//! a serialized CSP list" (<https://www.w3.org/TR/CSP3/#parse-serialized-policy>).
//!
//! Must never: touch, reorder or re-space any directive other than `frame-ancestors` (the packaged
//! Kopano vhost replaced the whole header and so threw away Mattermost's `script-src`: not doing that
//! is the point of this module); allow framing by anything but `'self'` and the configured origins;
//! panic or reject on any input; allocate more than one output buffer per header value.
//!
//! How the proxy uses it, on every upstream response:
//! 1. remove `X-Frame-Options` (its `SAMEORIGIN` would still block the configured origins, and a
//!    browser applies it on top of CSP);
//! 2. replace each `Content-Security-Policy` and each `Content-Security-Policy-Report-Only` header
//!    value `v` with `rewrite_csp(v, &fa)` (a header may repeat; each value is rewritten on its own);
//! 3. if the response has no `Content-Security-Policy` header, add
//!    `Content-Security-Policy: <fa.directive()>`. A `-Report-Only` header alone does not count: it
//!    enforces nothing, and with `X-Frame-Options` gone any site could frame the page.
//!
//! The output of [`rewrite_csp`] only adds visible ASCII and spaces to its input, so it is a valid
//! header value whenever the input was one (`HeaderValue::from_maybe_shared(Bytes::from(out))` takes
//! the buffer without copying).

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// The directive name this module owns, in the case it is written.
const FRAME_ANCESTORS: &[u8] = b"frame-ancestors";

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
    pub fn as_str(&self) -> &str {
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

/// The `frame-ancestors` directive for one virtual host: `'self'` followed by the configured origins
/// (duplicates removed, order kept). Built once at config load so the response path only copies
/// bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrameAncestors {
    directive: String,
}

impl FrameAncestors {
    /// Build the directive from the configured origins. With no origins it is
    /// `frame-ancestors 'self'`, which is what `X-Frame-Options: SAMEORIGIN` meant.
    #[must_use]
    pub fn new(origins: &[Origin]) -> Self {
        let mut directive = String::from("frame-ancestors 'self'");
        for (i, origin) in origins.iter().enumerate() {
            // Config sizes are tiny; a quadratic dedup keeps the header short without a set.
            if origins[..i].contains(origin) {
                continue;
            }
            directive.push(' ');
            directive.push_str(origin.as_str());
        }
        FrameAncestors { directive }
    }

    /// The full directive text, e.g. `frame-ancestors 'self' https://a.example https://b.example`.
    /// It is also the whole header value to add when a response has no CSP.
    #[must_use]
    pub fn directive(&self) -> &str {
        &self.directive
    }
}

/// Rewrite one `Content-Security-Policy` (or `-Report-Only`) header value so that every policy in it
/// has exactly one `frame-ancestors` directive, [`FrameAncestors::directive`].
///
/// The value is a comma-separated list of policies; each policy is split on `;` into directive
/// tokens, and a token's name is what precedes its first ASCII whitespace once leading and trailing
/// ASCII whitespace are stripped, compared ASCII case-insensitively (CSP3 §2.2.1). In each policy:
/// - the first `frame-ancestors` token is replaced by the directive, keeping the whitespace around it;
/// - later `frame-ancestors` tokens are dropped with the `;` before them (a browser ignores them
///   anyway, since the first occurrence of a directive wins);
/// - a policy without one gets `; <directive>` after its last non-whitespace byte (only ` ` when that
///   byte already is a `;`);
/// - every other byte, separator and whitespace run is copied unchanged.
///
/// Garbage is copied, never dropped: a browser ignores a token that is not ASCII (CSP3 §2.2.1 step
/// 2.2) or whose name it does not know, and this function leaves such tokens as they are. The one
/// exception is deliberate: a token named `frame-ancestors` counts as one even when its value has
/// non-ASCII bytes, so it is replaced too and the policy ends up with our directive only, whichever
/// occurrence a browser would have picked. A list element with no directive at all (empty or only
/// whitespace and `;`) is not a policy for a browser and is copied as is; if the whole value has no
/// policy (including an empty value), the result is the directive alone.
#[must_use]
pub fn rewrite_csp(value: &[u8], fa: &FrameAncestors) -> Vec<u8> {
    let directive = fa.directive.as_bytes();
    if value
        .iter()
        .all(|&b| b.is_ascii_whitespace() || b == b';' || b == b',')
    {
        return directive.to_vec();
    }
    // Worst case every policy grows by "; " plus the directive: reserve it once, never reallocate.
    let policies = value.iter().filter(|&&b| b == b',').count() + 1;
    let mut out = Vec::with_capacity(value.len() + policies * (directive.len() + 2));
    for (i, policy) in value.split(|&b| b == b',').enumerate() {
        if i > 0 {
            out.push(b',');
        }
        rewrite_policy(policy, directive, &mut out);
    }
    out
}

/// Append `policy` to `out` with its `frame-ancestors` replaced, deduplicated or added.
fn rewrite_policy(policy: &[u8], directive: &[u8], out: &mut Vec<u8>) {
    let mut has_directive = false;
    let mut has_frame_ancestors = false;
    for token in policy
        .split(|&b| b == b';')
        .filter_map(|piece| token_range(piece).map(|r| &piece[r]))
    {
        has_directive = true;
        if is_frame_ancestors(token) {
            has_frame_ancestors = true;
            break;
        }
    }

    if !has_directive {
        // An empty list element is no policy to a browser: adding one would be noise.
        out.extend_from_slice(policy);
    } else if has_frame_ancestors {
        let mut replaced = false;
        for (i, piece) in policy.split(|&b| b == b';').enumerate() {
            match token_range(piece) {
                Some(range) if is_frame_ancestors(&piece[range.clone()]) => {
                    // Piece 0 is never a duplicate, so the output always starts with it and every
                    // piece written later brings back its own leading ';'.
                    if replaced {
                        continue;
                    }
                    if i > 0 {
                        out.push(b';');
                    }
                    out.extend_from_slice(&piece[..range.start]);
                    out.extend_from_slice(directive);
                    out.extend_from_slice(&piece[range.end..]);
                    replaced = true;
                }
                _ => {
                    if i > 0 {
                        out.push(b';');
                    }
                    out.extend_from_slice(piece);
                }
            }
        }
    } else {
        // Insert before trailing whitespace so a ", " between policies keeps its shape.
        let end = policy
            .iter()
            .rposition(|b| !b.is_ascii_whitespace())
            .map_or(0, |p| p + 1);
        let (head, tail) = policy.split_at(end);
        out.extend_from_slice(head);
        out.extend_from_slice(if head.ends_with(b";") { b" " } else { b"; " });
        out.extend_from_slice(directive);
        out.extend_from_slice(tail);
    }
}

/// The directive token inside a `;`-separated piece: its byte range once leading and trailing ASCII
/// whitespace are stripped, or `None` when nothing is left (CSP3: empty tokens are skipped).
fn token_range(piece: &[u8]) -> Option<std::ops::Range<usize>> {
    let start = piece.iter().position(|b| !b.is_ascii_whitespace())?;
    let end = piece.iter().rposition(|b| !b.is_ascii_whitespace())? + 1;
    Some(start..end)
}

/// Whether a stripped token's name (up to the first ASCII whitespace) is `frame-ancestors`, in any
/// ASCII case as browsers lower-case directive names.
fn is_frame_ancestors(token: &[u8]) -> bool {
    let name_end = token
        .iter()
        .position(|b| b.is_ascii_whitespace())
        .unwrap_or(token.len());
    token[..name_end].eq_ignore_ascii_case(FRAME_ANCESTORS)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(s: &str) -> Origin {
        match s.parse() {
            Ok(o) => o,
            Err(e) => panic!("{s:?} should parse: {e}"),
        }
    }

    /// One allowed origin: the Kopano WebApp of the spec.
    fn webapp() -> FrameAncestors {
        FrameAncestors::new(&[origin("https://webapp.example.org")])
    }

    fn rewrite(value: &str, fa: &FrameAncestors) -> String {
        match String::from_utf8(rewrite_csp(value.as_bytes(), fa)) {
            Ok(s) => s,
            Err(e) => panic!("output of {value:?} is not UTF-8: {e}"),
        }
    }

    fn check_table(fa: &FrameAncestors, table: &[(&str, &str)]) {
        for (input, expected) in table {
            assert_eq!(&rewrite(input, fa), expected, "input: {input:?}");
        }
    }

    #[test]
    fn mattermost_headers() {
        check_table(
            &webapp(),
            &[
                // v5/v6 (web/handlers.go): fixed 'self', rudderlabs telemetry.
                (
                    "frame-ancestors 'self'; script-src 'self' cdn.rudderlabs.com",
                    "frame-ancestors 'self' https://webapp.example.org; script-src 'self' cdn.rudderlabs.com",
                ),
                // v5/v6 with a Cloud licence, a subpath (/mattermost) and a dev build.
                (
                    "frame-ancestors 'self'; script-src 'self' cdn.rudderlabs.com js.stripe.com/v3 \
                     'sha256-v8G7NQp0cUTkL+hkNrHt5IFFphUUJBpQFNAYKlP9m+w=' 'unsafe-eval' 'unsafe-inline'",
                    "frame-ancestors 'self' https://webapp.example.org; script-src 'self' cdn.rudderlabs.com \
                     js.stripe.com/v3 'sha256-v8G7NQp0cUTkL+hkNrHt5IFFphUUJBpQFNAYKlP9m+w=' 'unsafe-eval' \
                     'unsafe-inline'",
                ),
                // v7 and later: "frame-ancestors 'self' %s" with ServiceSettings.FrameAncestors empty
                // (the default) leaves a space before ';', which must survive.
                (
                    "frame-ancestors 'self' ; script-src 'self' cdn.rudderlabs.com",
                    "frame-ancestors 'self' https://webapp.example.org ; script-src 'self' cdn.rudderlabs.com",
                ),
                // ServiceSettings.FrameAncestors set by an admin for Teams.
                (
                    "frame-ancestors 'self' teams.microsoft.com; script-src 'self' cdn.rudderlabs.com",
                    "frame-ancestors 'self' https://webapp.example.org; script-src 'self' cdn.rudderlabs.com",
                ),
                // Current (rudderlabs dropped), with the subpath script hash.
                (
                    "frame-ancestors 'self' ; script-src 'self' 'sha256-v8G7NQp0cUTkL+hkNrHt5IFFphUUJBpQFNAYKlP9m+w='",
                    "frame-ancestors 'self' https://webapp.example.org ; script-src 'self' \
                     'sha256-v8G7NQp0cUTkL+hkNrHt5IFFphUUJBpQFNAYKlP9m+w='",
                ),
                // Current, dev build with DeveloperFlags.
                (
                    "frame-ancestors 'self' ; script-src 'self' 'unsafe-eval' 'unsafe-inline'",
                    "frame-ancestors 'self' https://webapp.example.org ; script-src 'self' 'unsafe-eval' \
                     'unsafe-inline'",
                ),
            ],
        );
    }

    #[test]
    fn several_origins_in_order_without_duplicates() {
        let fa = FrameAncestors::new(&[
            origin("https://webapp.example.org"),
            origin("https://*.example.net"),
            origin("HTTPS://WebApp.Example.org/"),
            origin("http://deskapp.example.org:8080"),
        ]);
        assert_eq!(
            fa.directive(),
            "frame-ancestors 'self' https://webapp.example.org https://*.example.net http://deskapp.example.org:8080"
        );
        assert_eq!(
            rewrite("frame-ancestors 'none'; default-src 'self'", &fa),
            "frame-ancestors 'self' https://webapp.example.org https://*.example.net \
             http://deskapp.example.org:8080; default-src 'self'"
        );
        assert_eq!(FrameAncestors::new(&[]).directive(), "frame-ancestors 'self'");
    }

    #[test]
    fn directive_name_case_position_and_duplicates() {
        check_table(
            &webapp(),
            &[
                (
                    "FRAME-ANCESTORS 'none'",
                    "frame-ancestors 'self' https://webapp.example.org",
                ),
                (
                    "script-src 'self'; Frame-Ancestors *; img-src data:",
                    "script-src 'self'; frame-ancestors 'self' https://webapp.example.org; img-src data:",
                ),
                // Later duplicates go, with the ';' before them; other directives stay in order.
                (
                    "frame-ancestors 'self'; script-src 'self'; frame-ancestors *; img-src data:",
                    "frame-ancestors 'self' https://webapp.example.org; script-src 'self'; img-src data:",
                ),
                (
                    "frame-ancestors a;frame-ancestors b;FRAME-ANCESTORS c",
                    "frame-ancestors 'self' https://webapp.example.org",
                ),
                (
                    "default-src 'self'; frame-ancestors 'none'; frame-ancestors *;",
                    "default-src 'self'; frame-ancestors 'self' https://webapp.example.org;",
                ),
                // A bare directive (value 'none') and a tab after the name.
                (
                    "frame-ancestors; img-src *",
                    "frame-ancestors 'self' https://webapp.example.org; img-src *",
                ),
                (
                    "frame-ancestors\t'none'",
                    "frame-ancestors 'self' https://webapp.example.org",
                ),
                // Not the same name: a prefix, a suffix, another directive's value.
                (
                    "frame-ancestors-x 'none'",
                    "frame-ancestors-x 'none'; frame-ancestors 'self' https://webapp.example.org",
                ),
                (
                    "frame-src frame-ancestors",
                    "frame-src frame-ancestors; frame-ancestors 'self' https://webapp.example.org",
                ),
                // Duplicates of other directives are not ours to fix.
                (
                    "script-src a; script-src b",
                    "script-src a; script-src b; frame-ancestors 'self' https://webapp.example.org",
                ),
            ],
        );
    }

    #[test]
    fn missing_directive_is_appended() {
        check_table(
            &webapp(),
            &[
                (
                    "script-src 'self' cdn.rudderlabs.com",
                    "script-src 'self' cdn.rudderlabs.com; frame-ancestors 'self' https://webapp.example.org",
                ),
                (
                    "default-src 'self';",
                    "default-src 'self'; frame-ancestors 'self' https://webapp.example.org",
                ),
                (
                    "default-src 'self' ;  ",
                    "default-src 'self' ; frame-ancestors 'self' https://webapp.example.org  ",
                ),
                (
                    "upgrade-insecure-requests",
                    "upgrade-insecure-requests; frame-ancestors 'self' https://webapp.example.org",
                ),
            ],
        );
    }

    #[test]
    fn policy_lists() {
        check_table(
            &webapp(),
            &[
                (
                    "frame-ancestors 'none', script-src 'self'",
                    "frame-ancestors 'self' https://webapp.example.org, script-src 'self'; frame-ancestors 'self' \
                     https://webapp.example.org",
                ),
                (
                    "script-src a , frame-ancestors *;img-src b,default-src c",
                    "script-src a; frame-ancestors 'self' https://webapp.example.org , frame-ancestors 'self' \
                     https://webapp.example.org;img-src b,default-src c; frame-ancestors 'self' \
                     https://webapp.example.org",
                ),
                // Empty list elements are no policy: copied as they are.
                (
                    "script-src a,, ,",
                    "script-src a; frame-ancestors 'self' https://webapp.example.org,, ,",
                ),
                (
                    ", frame-ancestors *",
                    ", frame-ancestors 'self' https://webapp.example.org",
                ),
                // A comma inside what looks like a URL still splits policies, as browsers do.
                (
                    "img-src https://a.example/x,y; frame-ancestors 'none'",
                    "img-src https://a.example/x; frame-ancestors 'self' https://webapp.example.org,y; \
                     frame-ancestors 'self' https://webapp.example.org",
                ),
            ],
        );
    }

    #[test]
    fn whitespace_is_kept_byte_for_byte() {
        check_table(
            &webapp(),
            &[
                (
                    "  frame-ancestors   'self'  ;   script-src  'self'\t;  ",
                    "  frame-ancestors 'self' https://webapp.example.org  ;   script-src  'self'\t;  ",
                ),
                (
                    "script-src  'self' ;\tframe-ancestors\t*\t; img-src x;;",
                    "script-src  'self' ;\tframe-ancestors 'self' https://webapp.example.org\t; img-src x;;",
                ),
                (
                    ";;script-src a;;",
                    ";;script-src a;; frame-ancestors 'self' https://webapp.example.org",
                ),
            ],
        );
    }

    #[test]
    fn empty_and_blank_values_get_the_directive_alone() {
        let fa = webapp();
        for input in ["", " ", "\t", ";", " ; ; ", ",", " , ; ,"] {
            assert_eq!(
                rewrite(input, &fa),
                "frame-ancestors 'self' https://webapp.example.org",
                "{input:?}"
            );
        }
    }

    #[test]
    fn garbage_is_copied_and_the_origins_still_allowed() {
        let fa = webapp();
        let table: &[(&[u8], &[u8])] = &[
            // A non-ASCII token is ignored by browsers: kept, and our directive added.
            (
                b"script-src 'self' https://\xc3\xa9.example",
                b"script-src 'self' https://\xc3\xa9.example; frame-ancestors 'self' https://webapp.example.org",
            ),
            // A frame-ancestors token with non-ASCII bytes is still ours to replace.
            (
                b"frame-ancestors https://\xc3\xa9.example; script-src 'self'; frame-ancestors *",
                b"frame-ancestors 'self' https://webapp.example.org; script-src 'self'",
            ),
            // Invalid UTF-8 (obs-text) survives untouched.
            (
                b"\xff\xfe; frame-ancestors 'none'",
                b"\xff\xfe; frame-ancestors 'self' https://webapp.example.org",
            ),
            // A non-breaking space is not ASCII whitespace: the name is not frame-ancestors.
            (
                b"frame-ancestors\xc2\xa0'none'",
                b"frame-ancestors\xc2\xa0'none'; frame-ancestors 'self' https://webapp.example.org",
            ),
            // Control bytes are not ASCII whitespace either (vertical tab, NUL, DEL).
            (
                b"frame-ancestors\x0b'none'; x\x00y\x7f",
                b"frame-ancestors\x0b'none'; x\x00y\x7f; frame-ancestors 'self' https://webapp.example.org",
            ),
            // Form feed and CR/LF are ASCII whitespace to CSP (never valid in a header, but parsed
            // the way a browser would).
            (
                b"\x0cframe-ancestors\r\n'none'\x0c; img-src *",
                b"\x0cframe-ancestors 'self' https://webapp.example.org\x0c; img-src *",
            ),
            // Junk without any structure is one unknown directive.
            (b"%%%", b"%%%; frame-ancestors 'self' https://webapp.example.org"),
        ];
        for (input, expected) in table {
            assert_eq!(
                rewrite_csp(input, &fa),
                expected.to_vec(),
                "input: {:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn output_is_a_valid_header_value_when_the_input_was() {
        // http's HeaderValue accepts tab, visible ASCII, space and obs-text (0x80-0xFF).
        let valid = |v: &[u8]| {
            v.iter()
                .all(|&b| b == b'\t' || (0x20..0x7f).contains(&b) || b >= 0x80)
        };
        let fa = FrameAncestors::new(&[origin("https://webapp.example.org"), origin("http://[::1]:8065")]);
        for input in [
            &b""[..],
            b"a",
            b"frame-ancestors x",
            b"\xff, ;",
            b"a\t,b;frame-ancestors c",
        ] {
            assert!(valid(input));
            assert!(valid(&rewrite_csp(input, &fa)), "{input:?}");
        }
    }

    #[test]
    fn one_allocation_per_header() {
        let fa = webapp();
        for input in ["a", "a,b,c,d", "a;b;c", "frame-ancestors x", ",,,,,x"] {
            let out = rewrite_csp(input.as_bytes(), &fa);
            let policies = input.matches(',').count() + 1;
            // The buffer reserved up front was enough: it never had to grow.
            assert_eq!(
                out.capacity(),
                input.len() + policies * (fa.directive().len() + 2),
                "{input:?}"
            );
        }
    }

    #[test]
    fn rewriting_twice_changes_nothing_more() {
        let fa = webapp();
        for input in [
            "frame-ancestors 'self' ; script-src 'self' cdn.rudderlabs.com",
            "a, b;",
            "",
        ] {
            let once = rewrite_csp(input.as_bytes(), &fa);
            assert_eq!(rewrite_csp(&once, &fa), once, "{input:?}");
        }
    }

    /// Random values built from CSP-ish pieces: the rewrite must keep every other token, in order, and
    /// leave exactly one `frame-ancestors`, ours, in every policy.
    #[test]
    fn random_values_keep_other_directives() {
        const PIECES: &[&[u8]] = &[
            b"frame-ancestors",
            b"FRAME-ancestors",
            b"frame-ancestors-x",
            b"script-src",
            b"'self'",
            b"a",
            b" ",
            b"\t",
            b"  ",
            b";",
            b";",
            b",",
            b"\xc3\xa9",
            b"\xff",
            b"*",
            b"\x0c",
        ];
        fn tokens(policy: &[u8]) -> Vec<&[u8]> {
            policy
                .split(|&b| b == b';')
                .filter_map(|p| token_range(p).map(|r| &p[r]))
                .collect()
        }
        let fa = webapp();
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..20_000 {
            let len = (next() % 12) as usize;
            let mut value = Vec::new();
            for _ in 0..len {
                value.extend_from_slice(PIECES[(next() % PIECES.len() as u64) as usize]);
            }
            let out = rewrite_csp(&value, &fa);
            let shown = String::from_utf8_lossy(&value).into_owned();
            let in_policies: Vec<&[u8]> = value.split(|&b| b == b',').collect();
            if in_policies.iter().all(|p| tokens(p).is_empty()) {
                assert_eq!(out, fa.directive().as_bytes(), "{shown:?}");
                continue;
            }
            let out_policies: Vec<&[u8]> = out.split(|&b| b == b',').collect();
            assert_eq!(in_policies.len(), out_policies.len(), "{shown:?}");
            for (before, after) in in_policies.iter().zip(&out_policies) {
                let (before, after) = (tokens(before), tokens(after));
                if before.is_empty() {
                    assert!(after.is_empty(), "{shown:?}");
                    continue;
                }
                let others = |t: &Vec<&[u8]>| -> Vec<Vec<u8>> {
                    t.iter()
                        .filter(|t| !is_frame_ancestors(t))
                        .map(|t| t.to_vec())
                        .collect()
                };
                assert_eq!(others(&before), others(&after), "{shown:?}");
                let ours: Vec<&&[u8]> = after.iter().filter(|t| is_frame_ancestors(t)).collect();
                assert_eq!(ours, [&fa.directive().as_bytes()], "{shown:?}");
            }
        }
    }

    #[test]
    fn valid_origins() {
        let table = [
            ("https://webapp.example.org", "https://webapp.example.org"),
            ("HTTPS://WebApp.Example.ORG", "https://webapp.example.org"),
            ("https://webapp.example.org/", "https://webapp.example.org"),
            ("http://localhost:8065", "http://localhost:8065"),
            ("https://webapp.example.org:443", "https://webapp.example.org:443"),
            ("http://webapp.example.org:80", "http://webapp.example.org:80"),
            (
                "https://webapp.example.org:08443",
                "https://webapp.example.org:8443",
            ),
            ("https://*.example.org", "https://*.example.org"),
            ("https://*.Example.org:8443/", "https://*.example.org:8443"),
            ("https://xn--bcher-kva.example", "https://xn--bcher-kva.example"),
            ("https://a-b.c0.example", "https://a-b.c0.example"),
            ("https://123.example", "https://123.example"),
            ("http://192.0.2.10", "http://192.0.2.10"),
            ("http://192.0.2.10:8080", "http://192.0.2.10:8080"),
            ("http://[::1]", "http://[::1]"),
            ("https://[2001:DB8:0:0::1]:8443", "https://[2001:db8::1]:8443"),
        ];
        for (input, expected) in table {
            let o = origin(input);
            assert_eq!(o.as_str(), expected, "{input:?}");
            assert_eq!(o.to_string(), expected);
        }
    }

    #[test]
    fn invalid_origins_say_what_and_how() {
        let table = [
            (
                "",
                "origin is empty: write it like \"https://webapp.example.org\"",
            ),
            (
                "webapp.example.org",
                "`webapp.example.org` has no scheme: write it with https:// or http://, like \
                 \"https://webapp.example.org\"",
            ),
            (
                "webapp.example.org:8443",
                "`webapp.example.org:8443` has no scheme: write it with https:// or http://, like \
                 \"https://webapp.example.org:8443\"",
            ),
            (
                "https:webapp.example.org",
                "`https:webapp.example.org` is missing `//` after `https:`: write it like \
                 \"https://webapp.example.org\"",
            ),
            (
                "http:/localhost:8065",
                "`http:/localhost:8065` is missing `//` after `http:`: write it like \
                 \"http://localhost:8065\"",
            ),
            (
                "/webapp",
                "`/webapp` has no scheme: write it with https:// or http://, like \
                 \"https://webapp.example.org\"",
            ),
            (
                "ftp://webapp.example.org",
                "`ftp://webapp.example.org` has scheme `ftp`: only http and https pages can frame \
                 Mattermost, write it like \"https://webapp.example.org\"",
            ),
            (
                "://webapp.example.org",
                "`://webapp.example.org` has no scheme: only http and https pages can frame Mattermost, \
                 write it like \"https://webapp.example.org\"",
            ),
            (
                "https://webapp.example.org/path",
                "`https://webapp.example.org/path` has a path: write the origin only, like \
                 \"https://webapp.example.org\"",
            ),
            (
                "https://webapp.example.org//",
                "`https://webapp.example.org//` has a path: write the origin only, like \
                 \"https://webapp.example.org\"",
            ),
            (
                "https://webapp.example.org\\x",
                "`https://webapp.example.org\\x` has a path: write the origin only, like \
                 \"https://webapp.example.org\"",
            ),
            (
                "https://webapp.example.org?a=b",
                "`https://webapp.example.org?a=b` has a query: write the origin only, like \
                 \"https://webapp.example.org\"",
            ),
            (
                "https://webapp.example.org/?a=b",
                "`https://webapp.example.org/?a=b` has a query: write the origin only, like \
                 \"https://webapp.example.org\"",
            ),
            (
                "https://webapp.example.org#top",
                "`https://webapp.example.org#top` has a fragment: write the origin only, like \
                 \"https://webapp.example.org\"",
            ),
            // The password never appears in the message.
            (
                "ftp://admin:s3cret@webapp.example.org",
                "`ftp://***@webapp.example.org` has scheme `ftp`: only http and https pages can frame \
                 Mattermost, write it like \"https://webapp.example.org\"",
            ),
            (
                "https://admin:s3 cret@webapp.example.org",
                "`https://***@webapp.example.org` contains whitespace or a control character: write the \
                 origin alone, like \"https://webapp.example.org\"",
            ),
            (
                "https://admin:s3cret@webapp.example.org",
                "`https://***@webapp.example.org` has user info before `@`: write the origin only, like \
                 \"https://webapp.example.org\"",
            ),
            (
                " https://webapp.example.org",
                "` https://webapp.example.org` contains whitespace or a control character: write the \
                 origin alone, like \"https://webapp.example.org\"",
            ),
            (
                "https://a.example https://b.example",
                "`https://a.example https://b.example` contains whitespace or a control character: write \
                 the origin alone, like \"https://webapp.example.org\"",
            ),
            (
                "https://webapp.example.org\n",
                "`https://webapp.example.org\\n` contains whitespace or a control character: write the \
                 origin alone, like \"https://webapp.example.org\"",
            ),
            (
                "https://bücher.example",
                "`https://bücher.example` contains the non-ASCII character `ü`: write an internationalised \
                 host in its punycode form, like \"https://xn--bcher-kva.example\"",
            ),
            // Characters that could break out of the directive are host errors.
            (
                "https://a.example;script-src",
                "`https://a.example;script-src` has `;` in its host: a host is letters, digits, `-` and \
                 `.`, like \"https://webapp.example.org\"",
            ),
            (
                "https://a.example,b",
                "`https://a.example,b` has `,` in its host: a host is letters, digits, `-` and `.`, like \
                 \"https://webapp.example.org\"",
            ),
            (
                "https://'self'",
                "`https://'self'` has `'` in its host: a host is letters, digits, `-` and `.`, like \
                 \"https://webapp.example.org\"",
            ),
            (
                "https://web_app.example.org",
                "`https://web_app.example.org` has `_` in its host: a host is letters, digits, `-` and \
                 `.`, like \"https://webapp.example.org\"",
            ),
            (
                "https://",
                "`https://` has no host: write it like \"https://webapp.example.org\"",
            ),
            (
                "https://:8443",
                "`https://:8443` has no host: write it like \"https://webapp.example.org\"",
            ),
            (
                "https://.example.org",
                "`https://.example.org` has an empty label (`..` or a leading dot) in its host: write it \
                 like \"https://webapp.example.org\"",
            ),
            (
                "https://a..example",
                "`https://a..example` has an empty label (`..` or a leading dot) in its host: write it \
                 like \"https://webapp.example.org\"",
            ),
            (
                "https://example.org.",
                "`https://example.org.` has a host ending in a dot: write it without, like \
                 \"https://example.org\"",
            ),
            (
                "https://-a.example",
                "`https://-a.example` has a host label starting or ending with `-`: write it like \
                 \"https://webapp.example.org\"",
            ),
            (
                "https://*",
                "`https://*` would let every site frame Mattermost: list the origins, or a subdomain \
                 wildcard like \"https://*.example.org\"",
            ),
            (
                "https://*.org",
                "`https://*.org` is too broad: a wildcard needs at least two labels after `*.`, like \
                 \"https://*.example.org\"",
            ),
            (
                "https://a.*.example.org",
                "`https://a.*.example.org` has a `*` inside the host: a wildcard must be the whole first \
                 label, like \"https://*.example.org\"",
            ),
            (
                "https://*webapp.example.org",
                "`https://*webapp.example.org` has a `*` inside the host: a wildcard must be the whole \
                 first label, like \"https://*.example.org\"",
            ),
            (
                "https://*.192.0.2.10",
                "`https://*.192.0.2.10` puts a wildcard on an IP address: a wildcard needs a DNS name, \
                 like \"https://*.example.org\"",
            ),
            (
                "http://192.0.2.256",
                "`http://192.0.2.256` has host `192.0.2.256`, which ends in a number but is not an IPv4 \
                 address: write four numbers from 0 to 255 like \"http://192.0.2.10\", or a DNS name",
            ),
            (
                "http://010.0.0.1",
                "`http://010.0.0.1` has host `010.0.0.1`, which ends in a number but is not an IPv4 \
                 address: write four numbers from 0 to 255 like \"http://192.0.2.10\", or a DNS name",
            ),
            (
                "https://webapp.example.org:",
                "`https://webapp.example.org:` has an empty port: drop the `:` or write a port, like \
                 \"https://webapp.example.org:8443\"",
            ),
            (
                "https://webapp.example.org:0",
                "`https://webapp.example.org:0` has port `0`, not a number from 1 to 65535: write it like \
                 \"https://webapp.example.org:8443\"",
            ),
            (
                "https://webapp.example.org:65536",
                "`https://webapp.example.org:65536` has port `65536`, not a number from 1 to 65535: write \
                 it like \"https://webapp.example.org:8443\"",
            ),
            (
                "https://webapp.example.org:+443",
                "`https://webapp.example.org:+443` has port `+443`, not a number from 1 to 65535: write it \
                 like \"https://webapp.example.org:8443\"",
            ),
            (
                "https://webapp.example.org:*",
                "`https://webapp.example.org:*` has a wildcard port: list each port as its own origin, \
                 like \"https://webapp.example.org:8443\"",
            ),
            (
                "https://2001:db8::1",
                "`https://2001:db8::1` has more than one `:`: write an IPv6 address in brackets, like \
                 \"https://[2001:db8::1]\"",
            ),
            (
                "https://[2001:db8::1",
                "`https://[2001:db8::1` has an unclosed `[`: write an IPv6 address like \
                 \"https://[2001:db8::1]\"",
            ),
            (
                "https://[fe80::1%25eth0]",
                "`https://[fe80::1%25eth0]` has `[fe80::1%25eth0]`, not a valid IPv6 address: write it \
                 like \"https://[2001:db8::1]\"",
            ),
            (
                "https://[::1]x",
                "`https://[::1]x` has `x` after the IPv6 address: write a port as `]:port`, like \
                 \"https://[::1]:8443\"",
            ),
        ];
        for (input, expected) in table {
            match input.parse::<Origin>() {
                Ok(o) => panic!("{input:?} should be rejected, got {o}"),
                Err(e) => assert_eq!(e, expected, "input: {input:?}"),
            }
        }
    }

    #[test]
    fn long_hosts_are_rejected() {
        let label = "a".repeat(64);
        let err = format!("https://{label}.example").parse::<Origin>().unwrap_err();
        assert!(err.contains("label longer than 63"), "{err}");
        let host = vec!["a".repeat(63); 4].join(".");
        let err = format!("https://{host}").parse::<Origin>().unwrap_err();
        assert!(err.contains("longer than 253"), "{err}");
        let ok = vec!["a".repeat(63); 3].join(".") + ".example";
        assert!(format!("https://{ok}").parse::<Origin>().is_ok());
    }
}
