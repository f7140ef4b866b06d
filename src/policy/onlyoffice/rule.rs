//! [`RelayRule`]: which header the token comes from and goes to, with which prefix, on which paths;
//! and the request-header rewrite that moves it there, after verification when configured.
//!
//! Edits headers only through pingora's `RequestHeader::remove_header` / `insert_header`, which keep
//! its header-case map in sync. Must never touch a request whose normalised path does not match, or
//! any header other than the two configured.

use std::time::SystemTime;

use http::header::{HeaderName, HeaderValue, AUTHORIZATION};
use pingora_http::RequestHeader;
use regex::Regex;

use super::{Reject, RuleError, Verifier, DEFAULT_CUSTOM_HEADER, DEFAULT_PATHS, DEFAULT_PREFIX};

/// What [`RelayRule::apply_matched`] did to a request, for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The token was moved from the source header to the custom header (and verified, if configured).
    Relayed,
    /// The token already was in the custom header (e.g. the Document Server runs with
    /// `JWT_HEADER=AuthorizationJWT`); it was verified, if configured, and its prefix normalised.
    AlreadyCustom,
    /// The path is not one of the rule's: the request is untouched. (Only `apply_at`, which the
    /// tests drive, says so: the proxy asks [`RelayRule::matched`] first.)
    #[cfg_attr(not(test), allow(dead_code))]
    NotMatched,
    /// The path matches but carries no token and no verifier is configured: the request is untouched
    /// and the upstream decides (a Document Server with JWT disabled sends none).
    NoToken,
}

#[cfg(test)]
impl Applied {
    /// A bounded metrics label (`relayed`, `already_custom`, `not_matched`, `no_token`).
    pub fn as_str(&self) -> &'static str {
        match self {
            Applied::Relayed => "relayed",
            Applied::AlreadyCustom => "already_custom",
            Applied::NotMatched => "not_matched",
            Applied::NoToken => "no_token",
        }
    }
}

/// A path the rule applies to (see [`RelayRule::matched`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Matched {
    /// The download route, whose token is bound to the requested file id.
    download: bool,
}

/// The JWT relay for one virtual host: on matching paths, move the token from `from` to `to`,
/// normalising the prefix, after verifying it when a [`Verifier`] is configured.
///
/// Built once at config load; the fields are private so a rule always has two distinct, valid header
/// names and a prefix that fits in a header value.
#[derive(Debug, Clone)]
pub struct RelayRule {
    from: HeaderName,
    to: HeaderName,
    /// `to` as configured (`AuthorizationJWT`), so the wire shows the spelling the admin wrote;
    /// pingora records it in its case map through `insert_header`.
    to_spelling: String,
    prefix: String,
    paths: Regex,
    verify: Option<Verifier>,
}

impl Default for RelayRule {
    /// Same as `RelayRule::mattermost`.
    fn default() -> Self {
        RelayRule::mattermost()
    }
}

impl RelayRule {
    /// The Mattermost vhost's rule with every default: `Authorization` to `AuthorizationJWT`, prefix
    /// `"Bearer "`, paths [`DEFAULT_PATHS`], no verification.
    pub(crate) fn mattermost() -> Self {
        RelayRule {
            from: AUTHORIZATION,
            to: HeaderName::from_static("authorizationjwt"),
            to_spelling: DEFAULT_CUSTOM_HEADER.to_string(),
            prefix: DEFAULT_PREFIX.to_string(),
            // A constant pattern, compiled by every test that builds the default rule.
            paths: Regex::new(DEFAULT_PATHS).expect("DEFAULT_PATHS is a valid regex"),
            verify: None,
        }
    }

    /// A rule with every part chosen: header names as configured (the spelling of `to` is kept on
    /// the wire), the prefix written in front of the token (and stripped, case-insensitively, from the
    /// incoming value), and the paths it applies to (matched against the percent-decoded path, no query).
    pub(crate) fn new(from: &str, to: &str, prefix: &str, paths: Regex) -> Result<Self, RuleError> {
        let parse = |name: &str| {
            HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| RuleError::InvalidHeaderName(name.to_string()))
        };
        let (from_name, to_name) = (parse(from)?, parse(to)?);
        if from_name == to_name {
            return Err(RuleError::SameHeader(to.to_string()));
        }
        // Printable ASCII only: `HeaderValue` would also take tabs and obs-text, which `extract_token`
        // could then never match on the way in.
        if !prefix.bytes().all(|b| (b' '..=b'~').contains(&b)) {
            return Err(RuleError::InvalidPrefix(prefix.to_string()));
        }
        Ok(RelayRule {
            from: from_name,
            to: to_name,
            to_spelling: to.to_string(),
            prefix: prefix.to_string(),
            paths,
            verify: None,
        })
    }

    /// Verify tokens with `verifier` before relaying them; a request without a token is then refused.
    pub(crate) fn with_verifier(mut self, verifier: Verifier) -> Self {
        self.verify = Some(verifier);
        self
    }

    /// Whether the rule applies to `path`, the request's normalised path ([`crate::policy::path`]): it is
    /// matched as the upstream routes it (decoded, cleaned), so `/api/%64ownload` or
    /// `/api//download` cannot reach `download` without being relayed or verified.
    pub(crate) fn matched(&self, path: &str) -> Option<Matched> {
        self.paths.is_match(path).then(|| Matched {
            download: path.ends_with("/download"),
        })
    }

    /// [`apply_at`](Self::apply_at) for a request whose normalised path the rule matched.
    pub(crate) fn apply_matched(
        &self,
        req: &mut RequestHeader,
        m: Matched,
        now: SystemTime,
    ) -> Result<Applied, Reject> {
        let download = m.download;
        let (applied, value) = match single_value(req, &self.from)? {
            Some(v) => (Applied::Relayed, v),
            None => match single_value(req, &self.to)? {
                Some(v) => (Applied::AlreadyCustom, v),
                None if self.verify.is_some() => return Err(Reject::Missing),
                None => return Ok(Applied::NoToken),
            },
        };
        let token = extract_token(value, self.prefix.trim())?;
        if let Some(verifier) = &self.verify {
            let query = download.then(|| req.uri.query().unwrap_or(""));
            verifier.verify(token, now, query)?;
        }
        let mut normalised = String::with_capacity(self.prefix.len() + token.len());
        normalised.push_str(&self.prefix);
        normalised.push_str(token);
        // Both parts are visible ASCII (checked at config load and by `to_str`), so this holds.
        let normalised = HeaderValue::try_from(normalised).map_err(|_| Reject::Malformed)?;

        if applied == Applied::Relayed {
            req.remove_header(&self.from);
        }
        req.insert_header(self.to_spelling.clone(), normalised)
            .map_err(|_| Reject::Malformed)?;
        Ok(applied)
    }
}

/// The only value of `name`, `None` when absent, malformed when repeated.
fn single_value<'r>(req: &'r RequestHeader, name: &HeaderName) -> Result<Option<&'r HeaderValue>, Reject> {
    let mut values = req.headers.get_all(name).iter();
    match (values.next(), values.next()) {
        (None, _) => Ok(None),
        (Some(v), None) => Ok(Some(v)),
        (Some(_), Some(_)) => Err(Reject::Malformed),
    }
}

/// The token in a header value: an optional `scheme` (the prefix without its spaces, matched
/// case-insensitively) followed by spaces or tabs, then one whitespace-free token.
fn extract_token<'v>(value: &'v HeaderValue, scheme: &str) -> Result<&'v str, Reject> {
    // `to_str` admits visible ASCII only, which also makes the byte slicing below safe.
    let value = value.to_str().map_err(|_| Reject::Malformed)?;
    let value = value.trim_matches([' ', '\t']);
    let mut rest = value;
    if !scheme.is_empty() && value.len() >= scheme.len() && value[..scheme.len()].eq_ignore_ascii_case(scheme)
    {
        let after = &value[scheme.len()..];
        let separated = after.starts_with([' ', '\t']);
        // `Bearer` alone has no token; `Bearerxyz` is a bare token that happens to start like the
        // scheme when the scheme ends in a word character.
        if after.is_empty() || separated || !scheme.ends_with(|c: char| c.is_ascii_alphanumeric()) {
            rest = after.trim_start_matches([' ', '\t']);
        }
    }
    if rest.is_empty() || rest.contains([' ', '\t']) {
        return Err(Reject::Malformed);
    }
    Ok(rest)
}

/// What the tests read back and drive directly; the proxy matches first ([`RelayRule::matched`])
/// and then calls [`RelayRule::apply_matched`].
#[cfg(test)]
impl RelayRule {
    /// The reverse direction, for a Document Server vhost: the custom header `custom` (as the plugin
    /// or another client sends it) becomes `Authorization: Bearer <token>`, what the Document Server's
    /// inbox expects by default, on `paths`.
    pub fn document_server(custom: &str, paths: Regex) -> Result<Self, RuleError> {
        RelayRule::new(custom, "Authorization", DEFAULT_PREFIX, paths)
    }

    /// The header the token is taken from.
    pub fn from(&self) -> &HeaderName {
        &self.from
    }

    /// The header the token is written to.
    pub fn to(&self) -> &HeaderName {
        &self.to
    }

    /// The prefix written in front of the token.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The paths the rule applies to.
    pub fn paths(&self) -> &Regex {
        &self.paths
    }

    /// The verifier, when edge verification is configured.
    pub fn verifier(&self) -> Option<&Verifier> {
        self.verify.as_ref()
    }

    /// Apply the rule to `req` as of `now`.
    ///
    /// Paths that do not match are untouched ([`Applied::NotMatched`]). On a matching path the token is
    /// taken from `from`, or from `to` when only `to` carries one; either header repeated is malformed
    /// (the proxy and the upstream might otherwise pick different copies). The token is verified when a
    /// verifier is configured, then `from` is removed and `to` set to `prefix + token`, replacing any
    /// copy a client sent. Method and `Upgrade` play no part: a websocket handshake is treated the same.
    pub fn apply_at(&self, req: &mut RequestHeader, now: SystemTime) -> Result<Applied, Reject> {
        let matched = self.matched(&crate::policy::path::normalize(req.uri.path()));
        match matched {
            Some(m) => self.apply_matched(req, m, now),
            None => Ok(Applied::NotMatched),
        }
    }
}
