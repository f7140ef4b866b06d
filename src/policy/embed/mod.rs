//! Embedding policy: the response-header rewrite that lets configured origins (Kopano WebApp, DeskApp)
//! show Mattermost in an iframe.
//!
//! Owns: the validated [`Origin`] type for `frame-ancestors` sources (`origin`), the
//! [`FrameAncestors`] directive built once at config load and [`rewrite_csp`], which swaps that
//! directive into a `Content-Security-Policy` header value (`csp`), and [`EmbedRule`], the rewrite of
//! a whole response the proxy calls (`response`).
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
//! What `EmbedRule::apply` does to every upstream response:
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

pub(crate) mod config;
mod csp;
mod origin;
mod response;

pub use csp::{rewrite_csp, FrameAncestors};
pub use origin::Origin;
pub use response::EmbedRule;

#[cfg(test)]
mod tests;
