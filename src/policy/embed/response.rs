//! [`EmbedRule`]: the embedding policy of one virtual host, built once at config load, and the rewrite
//! of each upstream response header the proxy calls it for (see the parent module for the steps).
//!
//! Only ever edits `X-Frame-Options` and the two CSP headers, and only through pingora's
//! `ResponseHeader` methods, which keep its header-case map in sync with the header map.

use bytes::Bytes;
use http::header::{
    HeaderName, HeaderValue, CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY_REPORT_ONLY, X_FRAME_OPTIONS,
};
use pingora_http::ResponseHeader;

use super::{rewrite_csp, FrameAncestors, Origin};

/// The headers whose values are rewritten, the enforcing one first.
const CSP_HEADERS: [HeaderName; 2] = [CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY_REPORT_ONLY];

/// Who may frame one virtual host's responses, ready to apply.
#[derive(Clone, Debug)]
pub struct EmbedRule {
    frame_ancestors: FrameAncestors,
    /// `Content-Security-Policy: frame-ancestors ...` for responses that have none.
    csp_only: HeaderValue,
}

impl EmbedRule {
    /// The rule for `origins` (`'self'` is always allowed, see [`FrameAncestors::new`]).
    #[must_use]
    pub(crate) fn new(origins: &[Origin]) -> Self {
        let frame_ancestors = FrameAncestors::new(origins);
        // An `Origin` is visible ASCII without quotes or separators, so the directive always is a
        // valid header value: this cannot fail.
        let csp_only = HeaderValue::from_str(frame_ancestors.directive())
            .expect("validated origins make a valid header value");
        EmbedRule {
            frame_ancestors,
            csp_only,
        }
    }

    /// Let the allowed origins frame this response: drop `X-Frame-Options`, rewrite only
    /// `frame-ancestors` in every CSP header value, add an enforcing CSP when there is none.
    pub(crate) fn apply(&self, resp: &mut ResponseHeader) {
        resp.remove_header(&X_FRAME_OPTIONS);
        let mut has_enforcing = false;
        for name in CSP_HEADERS {
            if !resp.headers.contains_key(&name) {
                continue;
            }
            has_enforcing |= name == CONTENT_SECURITY_POLICY;
            let rewritten: Vec<Vec<u8>> = resp
                .headers
                .get_all(&name)
                .iter()
                .map(|v| rewrite_csp(v.as_bytes(), &self.frame_ancestors))
                .collect();
            resp.remove_header(&name);
            for value in rewritten {
                if let Ok(v) = HeaderValue::from_maybe_shared(Bytes::from(value)) {
                    let _ = resp.append_header(name.clone(), v);
                }
            }
        }
        if !has_enforcing {
            let _ = resp.insert_header(CONTENT_SECURITY_POLICY, self.csp_only.clone());
        }
    }
}
