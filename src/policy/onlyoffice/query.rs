//! Reading one parameter of a form-encoded query, as the plugin's Go code reads it, for the
//! `download` binding of a token to a file id.
//!
//! Must never resolve an ambiguous query (a repeated key) in a way the upstream might not, nor
//! allocate when there is nothing to decode.

use std::borrow::Cow;

use crate::policy::path::hex;

/// The value of `key` in a form-encoded query, if it occurs exactly once. A repeated key is refused
/// rather than resolved: the plugin (Go's `Query().Get`) takes the first, and any other choice here
/// would let a request verify one id and download another.
pub(super) fn single_query_param<'a>(query: &'a str, key: &str) -> Option<Cow<'a, str>> {
    let mut found = None;
    for pair in query.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if percent_decode(k, true) == key {
            if found.is_some() {
                return None;
            }
            found = Some(percent_decode(v, true));
        }
    }
    found
}

/// Percent-decode `s` (and `+` to space when `plus_is_space`, for form-encoded queries). Borrows when
/// there is nothing to decode, so the common request path does not allocate. Invalid escapes are
/// kept literally; invalid UTF-8 becomes U+FFFD.
fn percent_decode(s: &str, plus_is_space: bool) -> Cow<'_, str> {
    if !(s.contains('%') || plus_is_space && s.contains('+')) {
        return Cow::Borrowed(s);
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            if let (Some(hi), Some(lo)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            ) {
                out.push(hi << 4 | lo);
                i += 3;
                continue;
            }
        }
        out.push(if plus_is_space && b == b'+' { b' ' } else { b });
        i += 1;
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}
