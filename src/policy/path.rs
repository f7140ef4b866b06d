//! The one normalised path every path policy matches: routes, the remote-cluster guard, the
//! ONLYOFFICE JWT relay and the push route.
//!
//! A policy that matched the raw request path could be walked around: `/api/v4/%72emotecluster/ping`,
//! `/api/v4//remotecluster/ping` or `/api/v4/x/../remotecluster/ping` all reach Mattermost's
//! `remotecluster/ping` handler, because Go's `net/http` decodes the path once and Mattermost's router
//! (gorilla/mux) cleans it (`path.Clean`, answering a redirect to the clean path). So the policies
//! match what the upstream routes on:
//!
//! 1. percent-escapes of unreserved characters (`A-Z a-z 0-9 - . _ ~`) are decoded, once; `%2F` is
//!    decoded to `/` as Go's `URL.Path` does (so `remotecluster%2fping` is `remotecluster/ping`);
//!    every other escape stays encoded, its hex digits upper-cased (`%2f` and `%2F` are one path);
//! 2. repeated slashes are merged and `.`/`..` segments removed (`..` never climbs above `/`);
//! 3. a trailing slash is kept only when the decoded path ended with one (Go's `cleanPath`);
//! 4. comparison stays case-sensitive, as Go's router is.
//!
//! The upstream still receives the path exactly as the client sent it (as nginx's `proxy_pass`
//! without a URI part does): normalising only decides which policies apply, and a policy that
//! matches a variant of a path matches every variant the upstream treats as that path.
//!
//! Never allocates for a path that is already normal (the common case).

use std::borrow::Cow;

/// The normalised form of `raw` (the path of a request's origin-form target, without the query).
pub fn normalize(raw: &str) -> Cow<'_, str> {
    if is_normal(raw.as_bytes()) {
        return Cow::Borrowed(raw);
    }
    let decoded = decode_unreserved(raw.as_bytes());
    Cow::Owned(clean(&decoded))
}

/// True when `normalize` would return `raw` unchanged: absolute, no escapes, no empty or dot segments.
fn is_normal(raw: &[u8]) -> bool {
    if raw.first() != Some(&b'/') {
        return false;
    }
    if raw.contains(&b'%') {
        return false;
    }
    // Look at each segment after a '/': empty (a doubled slash) or "." / ".." needs cleaning.
    let mut segments = raw[1..].split(|&b| b == b'/').peekable();
    while let Some(seg) = segments.next() {
        let last = segments.peek().is_none();
        match seg {
            b"" if !last => return false,
            b"." | b".." => return false,
            _ => {}
        }
    }
    true
}

/// The value of one hex digit, either case (also used by the ONLYOFFICE query reader).
pub(super) fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Decode escapes of unreserved characters and of `/`, once; upper-case the others' hex digits.
/// Invalid escapes (`%zz`, a lone `%`) are kept as they are.
fn decode_unreserved(raw: &[u8]) -> Vec<u8> {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        if b == b'%' && i + 2 < raw.len() {
            if let (Some(h), Some(l)) = (hex(raw[i + 1]), hex(raw[i + 2])) {
                let v = h * 16 + l;
                if is_unreserved(v) || v == b'/' {
                    out.push(v);
                } else {
                    out.extend_from_slice(&[b'%', HEX[usize::from(h)], HEX[usize::from(l)]]);
                }
                i += 3;
                continue;
            }
        }
        out.push(b);
        i += 1;
    }
    out
}

/// Go's `cleanPath`: `path.Clean` (rooted, doubled slashes merged, dot segments removed), plus the
/// trailing slash the input had.
fn clean(path: &[u8]) -> String {
    let mut segments: Vec<&[u8]> = Vec::new();
    for seg in path.split(|&b| b == b'/') {
        match seg {
            b"" | b"." => {}
            b".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut out = Vec::with_capacity(path.len() + 1);
    for s in &segments {
        out.push(b'/');
        out.extend_from_slice(s);
    }
    if out.is_empty() || (path.last() == Some(&b'/') && !segments.is_empty()) {
        out.push(b'/');
    }
    // Only ASCII escapes were decoded and the input came from a `&str`: still UTF-8. The lossy
    // conversion is a formality that never replaces anything.
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

#[cfg(test)]
mod tests;
