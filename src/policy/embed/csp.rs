//! The `frame-ancestors` directive built once per virtual host ([`FrameAncestors`]) and
//! [`rewrite_csp`], which swaps it into one `Content-Security-Policy` header value.
//!
//! Parses the value the way browsers do (CSP3 §2.2.1 and §2.2.2) and copies every other byte as it
//! came: it must never touch, reorder or re-space another directive, panic on any input, or allocate
//! more than the one output buffer per header value.

use super::Origin;

/// The directive name this module owns, in the case it is written.
const FRAME_ANCESTORS: &[u8] = b"frame-ancestors";

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
    pub(crate) fn directive(&self) -> &str {
        &self.directive
    }
}

/// Rewrite one `Content-Security-Policy` (or `-Report-Only`) header value so that every policy in it
/// has exactly one `frame-ancestors` directive, `FrameAncestors::directive`.
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
pub(super) fn token_range(piece: &[u8]) -> Option<std::ops::Range<usize>> {
    let start = piece.iter().position(|b| !b.is_ascii_whitespace())?;
    let end = piece.iter().rposition(|b| !b.is_ascii_whitespace())? + 1;
    Some(start..end)
}

/// Whether a stripped token's name (up to the first ASCII whitespace) is `frame-ancestors`, in any
/// ASCII case as browsers lower-case directive names.
pub(super) fn is_frame_ancestors(token: &[u8]) -> bool {
    let name_end = token
        .iter()
        .position(|b| b.is_ascii_whitespace())
        .unwrap_or(token.len());
    token[..name_end].eq_ignore_ascii_case(FRAME_ANCESTORS)
}
