//! The ONLYOFFICE JWT relay: moves the Document Server's JWT into the header the Mattermost
//! ONLYOFFICE plugin reads, and optionally verifies it at the edge.
//!
//! Implements `spec/onlyoffice-jwt.md` ("What the proxy does"). Mattermost's plugin router takes
//! `Authorization: Bearer …` for a Mattermost session token (older versions delete it before the plugin
//! sees it), so the plugin reads the Document Server's JWT from a custom header (`AuthorizationJWT` by
//! default). On the two plugin routes the Document Server calls (`/download` and `/callback`), a
//! [`RelayRule`] moves the token from `Authorization` to that header. The reverse direction (a custom
//! header renamed to `Authorization` for the Document Server's inbox) is the same rule built the other way
//! round ([`RelayRule::document_server`]).
//!
//! This module owns:
//! - the rule (which header, which prefix, which paths), validated once at config load;
//! - the header rewrite, done only through pingora's `RequestHeader::remove_header` / `insert_header`, which
//!   keep pingora's header-case map in sync (editing `req.headers` directly would desynchronise it);
//! - the optional edge verification ([`Verifier`]: HMAC algorithm pinned by config, constant-time signature
//!   check, `exp` with leeway, file id of `download` bound to the token);
//! - loading the shared secret from a file that only its owner can read ([`load_secret`]).
//!
//! It must never:
//! - put a token or the secret into an error, a `Debug` rendering or a log line: [`Reject`] carries no
//!   data, and [`Verifier`]'s `Debug` is written by hand;
//! - touch requests whose path does not match, or rename any header other than the two configured;
//! - let a request escape the rule by its method, by being a websocket upgrade or by percent-encoding
//!   its path (the path is matched after percent-decoding, as Mattermost's Go router sees it);
//! - do I/O on the request path: the only I/O is [`load_secret`], called at config load.

use std::borrow::Cow;
use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use http::header::{HeaderName, HeaderValue, AUTHORIZATION};
use pingora_http::RequestHeader;
use regex::Regex;
use serde_json::{Map, Value};

pub use crate::secret::{load_secret, SecretError};
use sha2::{Sha256, Sha384, Sha512};

/// Default paths of the rule: the two plugin routes the Document Server calls with a header JWT.
pub const DEFAULT_PATHS: &str = r"^/plugins/com\.onlyoffice\.mattermost/api/(download|callback)$";

/// Default custom header the plugin reads its JWT from (`DESJwtHeader` in the plugin settings).
pub const DEFAULT_CUSTOM_HEADER: &str = "AuthorizationJWT";

/// Default prefix before the token, on both sides (`token.outbox.prefix`, the plugin's default).
pub const DEFAULT_PREFIX: &str = "Bearer ";

/// Clock tolerance for `exp`, the Document Server's own default.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(60);

/// Body of the 403 answered for a [`Reject`], the plugin's own answer for a refused callback.
pub const REJECT_BODY: &[u8] = br#"{"error":1}"#;

/// Longest token accepted: Document Server tokens are well under 2 KiB; a bound keeps a hostile
/// header from costing more than a fixed amount of decoding.
const MAX_TOKEN_LEN: usize = 16 * 1024;

/// Why a request carrying (or failing to carry) a JWT on a relayed path was refused.
///
/// Carries no data on purpose: nothing derived from the token can leak through `Display` or `Debug`.
/// The caller answers 403 with [`REJECT_BODY`] and counts [`Reject::reason`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Reject {
    /// Verification is configured but neither header carries a token.
    #[error("missing token")]
    Missing,
    /// The header value is not a single token, or the token is not a well-formed JWT.
    #[error("malformed token")]
    Malformed,
    /// The token's `alg` is not the configured HMAC algorithm (this includes `none`).
    #[error("wrong token algorithm")]
    WrongAlgorithm,
    /// The signature does not match the shared secret.
    #[error("bad token signature")]
    BadSignature,
    /// `exp` is further in the past than the leeway allows.
    #[error("token expired")]
    Expired,
    /// `nbf` (not before) or `iat` (issued at) is later than now plus the leeway: the token is not
    /// valid yet (the Document Server's JWT library and the plugin's refuse it too).
    #[error("token not valid yet")]
    NotYetValid,
    /// On `download`, the file id in the token's `payload.url` is not the requested `id`.
    #[error("token file id does not match the request")]
    IdMismatch,
}

impl Reject {
    /// A bounded metrics label (`missing`, `malformed`, `wrong_algorithm`, `bad_signature`, `expired`,
    /// `not_yet_valid`, `id_mismatch`).
    pub fn reason(&self) -> &'static str {
        match self {
            Reject::Missing => "missing",
            Reject::Malformed => "malformed",
            Reject::WrongAlgorithm => "wrong_algorithm",
            Reject::BadSignature => "bad_signature",
            Reject::Expired => "expired",
            Reject::NotYetValid => "not_yet_valid",
            Reject::IdMismatch => "id_mismatch",
        }
    }
}

/// What [`RelayRule::apply`] did to a request, for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The token was moved from the source header to the custom header (and verified, if configured).
    Relayed,
    /// The token already was in the custom header (e.g. the Document Server runs with
    /// `JWT_HEADER=AuthorizationJWT`); it was verified, if configured, and its prefix normalised.
    AlreadyCustom,
    /// The path is not one of the rule's: the request is untouched.
    NotMatched,
    /// The path matches but carries no token and no verifier is configured: the request is untouched
    /// and the upstream decides (a Document Server with JWT disabled sends none).
    NoToken,
}

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

/// A configuration mistake in a relay rule or verifier. Messages say what to change.
#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    /// A configured header name is not a valid HTTP field name.
    #[error("`{0}` is not a valid HTTP header name")]
    InvalidHeaderName(String),
    /// `from` and `to` name the same header.
    #[error("the JWT relay would move `{0}` onto itself: set a different target header")]
    SameHeader(String),
    /// The prefix is not printable ASCII (controls, tabs, non-ASCII).
    #[error("the JWT prefix `{0}` cannot go in an HTTP header value: use printable ASCII, e.g. \"Bearer \"")]
    InvalidPrefix(String),
    /// The algorithm is not one of HS256, HS384, HS512.
    #[error("unsupported JWT algorithm `{0}`: use HS256, HS384 or HS512")]
    UnsupportedAlgorithm(String),
}

/// The HMAC algorithms a [`Verifier`] can be pinned to. The Document Server signs with HS256 unless
/// `services.CoAuthoring.token.outbox.algorithm` says otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Algorithm {
    /// HMAC-SHA-256, the Document Server's default.
    #[default]
    HS256,
    /// HMAC-SHA-384.
    HS384,
    /// HMAC-SHA-512.
    HS512,
}

impl Algorithm {
    /// The JOSE name, as it appears in a token's `alg`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Algorithm::HS256 => "HS256",
            Algorithm::HS384 => "HS384",
            Algorithm::HS512 => "HS512",
        }
    }

    /// Constant-time check of `sig` over `msg`: `verify_slice` compares with `subtle`, so the time
    /// taken does not tell how many leading bytes of a forged signature were right.
    fn verify(self, key: &[u8], msg: &[u8], sig: &[u8]) -> bool {
        fn check<M: Mac + hmac::digest::KeyInit>(key: &[u8], msg: &[u8], sig: &[u8]) -> bool {
            // HMAC accepts keys of any length, so this cannot fail; refuse rather than panic anyway.
            let Ok(mut mac) = <M as Mac>::new_from_slice(key) else {
                return false;
            };
            mac.update(msg);
            mac.verify_slice(sig).is_ok()
        }
        match self {
            Algorithm::HS256 => check::<Hmac<Sha256>>(key, msg, sig),
            Algorithm::HS384 => check::<Hmac<Sha384>>(key, msg, sig),
            Algorithm::HS512 => check::<Hmac<Sha512>>(key, msg, sig),
        }
    }
}

impl FromStr for Algorithm {
    type Err = RuleError;

    /// Parses `HS256`, `HS384` or `HS512` (case-insensitive, as a config value).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512]
            .into_iter()
            .find(|a| a.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| RuleError::UnsupportedAlgorithm(s.to_string()))
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Edge verification of Document Server JWTs with the shared secret.
///
/// Accepts only the configured HMAC algorithm, checks the signature in constant time, rejects a token
/// whose `exp` is older than now minus the leeway (a token without `exp` is accepted: the Document
/// Server adds one to outbox tokens, the plugin decides about the rest), and on `download` binds the
/// token to the requested file. `nbf` and `iat` are not checked: the spec asks for `exp` only, and
/// the Document Server's tokens carry `iat` and `exp`.
#[derive(Clone)]
pub struct Verifier {
    algorithm: Algorithm,
    secret: Vec<u8>,
    leeway: Duration,
}

// By hand: a derived Debug would print the secret.
impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("algorithm", &self.algorithm)
            .field("leeway", &self.leeway)
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl Verifier {
    /// A verifier for `algorithm` with `secret` (normally from [`load_secret`]) and the default leeway.
    pub fn new(algorithm: Algorithm, secret: Vec<u8>) -> Result<Self, SecretError> {
        // An empty HMAC key is valid to the algorithm but known to anyone: refuse it.
        if secret.is_empty() {
            return Err(SecretError::EmptyKey);
        }
        Ok(Verifier {
            algorithm,
            secret,
            leeway: DEFAULT_LEEWAY,
        })
    }

    /// [`load_secret`] then [`Verifier::new`].
    pub fn from_secret_file(algorithm: Algorithm, path: &Path) -> Result<Self, SecretError> {
        Verifier::new(algorithm, load_secret(path)?)
    }

    /// Replace the clock tolerance for `exp` (default [`DEFAULT_LEEWAY`], the Document Server's).
    pub fn with_leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// The algorithm tokens must be signed with.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// Verify `token` (without its prefix) at time `now`.
    ///
    /// `download_query`: `None` when the request is not a `download`; otherwise the request's raw query
    /// (`""` when it has none), whose single `id` must equal the single `id` in the query of the token's
    /// `payload.url`.
    ///
    /// The header's `alg` is checked before the signature and the payload is parsed only after the
    /// signature holds, so unauthenticated input reaches as little code as possible.
    pub fn verify(&self, token: &str, now: SystemTime, download_query: Option<&str>) -> Result<(), Reject> {
        if token.is_empty() {
            return Err(Reject::Missing);
        }
        if token.len() > MAX_TOKEN_LEN {
            return Err(Reject::Malformed);
        }
        let mut parts = token.split('.');
        let (Some(header_b64), Some(payload_b64), Some(sig_b64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(Reject::Malformed);
        };

        let header = decode_json_object(header_b64)?;
        let alg = header
            .get("alg")
            .and_then(Value::as_str)
            .ok_or(Reject::Malformed)?;
        // Exact, case-sensitive match (RFC 7515 4.1.1): `none`, other HMACs and asymmetric
        // algorithms all stop here, so a token can never choose how it is checked.
        if alg != self.algorithm.as_str() {
            return Err(Reject::WrongAlgorithm);
        }
        // RFC 7515 4.1.11: an extension we do not understand must make the token invalid.
        if header.contains_key("crit") {
            return Err(Reject::Malformed);
        }

        let sig = URL_SAFE_NO_PAD.decode(sig_b64).map_err(|_| Reject::Malformed)?;
        let signing_input = &token[..header_b64.len() + 1 + payload_b64.len()];
        if !self
            .algorithm
            .verify(&self.secret, signing_input.as_bytes(), &sig)
        {
            return Err(Reject::BadSignature);
        }

        let claims = decode_json_object(payload_b64)?;
        // NumericDates may be fractional (RFC 7519 2); a non-number is a malformed token.
        let date = |name: &str| -> Result<Option<f64>, Reject> {
            claims
                .get(name)
                .map(|v| v.as_f64().ok_or(Reject::Malformed))
                .transpose()
        };
        let now = now.duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
        let leeway = self.leeway.as_secs_f64();
        if date("exp")?.is_some_and(|exp| now > exp + leeway) {
            return Err(Reject::Expired);
        }
        // RFC 7519 4.1.5: not to be accepted before `nbf`; a token issued in the future (`iat`) is as
        // suspect. Both with the same clock tolerance as `exp`.
        for claim in ["nbf", "iat"] {
            if date(claim)?.is_some_and(|t| t > now + leeway) {
                return Err(Reject::NotYetValid);
            }
        }
        if let Some(query) = download_query {
            check_file_id(&claims, query)?;
        }
        Ok(())
    }
}

fn decode_json_object(b64: &str) -> Result<Map<String, Value>, Reject> {
    let bytes = URL_SAFE_NO_PAD.decode(b64).map_err(|_| Reject::Malformed)?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(Reject::Malformed),
    }
}

/// The `download` binding: the token is for one file, the request must ask for that file.
fn check_file_id(claims: &Map<String, Value>, request_query: &str) -> Result<(), Reject> {
    let url = claims
        .get("payload")
        .and_then(|p| p.get("url"))
        .and_then(Value::as_str)
        .ok_or(Reject::IdMismatch)?;
    let url = url.split('#').next().unwrap_or_default();
    let url_query = url.split_once('?').map_or("", |(_, q)| q);
    let token_id = single_query_param(url_query, "id").ok_or(Reject::IdMismatch)?;
    let request_id = single_query_param(request_query, "id").ok_or(Reject::IdMismatch)?;
    if token_id.is_empty() || token_id != request_id {
        return Err(Reject::IdMismatch);
    }
    Ok(())
}

/// The value of `key` in a form-encoded query, if it occurs exactly once. A repeated key is refused
/// rather than resolved: the plugin (Go's `Query().Get`) takes the first, and any other choice here
/// would let a request verify one id and download another.
fn single_query_param<'a>(query: &'a str, key: &str) -> Option<Cow<'a, str>> {
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
    fn hex(b: u8) -> Option<u8> {
        match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            b'A'..=b'F' => Some(b - b'A' + 10),
            _ => None,
        }
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

/// A path the rule applies to (see [`RelayRule::matched`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Matched {
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
    /// Same as [`RelayRule::mattermost`].
    fn default() -> Self {
        RelayRule::mattermost()
    }
}

impl RelayRule {
    /// The Mattermost vhost's rule with every default: `Authorization` to `AuthorizationJWT`, prefix
    /// `"Bearer "`, paths [`DEFAULT_PATHS`], no verification.
    pub fn mattermost() -> Self {
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
    pub fn new(from: &str, to: &str, prefix: &str, paths: Regex) -> Result<Self, RuleError> {
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

    /// The reverse direction, for a Document Server vhost: the custom header `custom` (as the plugin
    /// or another client sends it) becomes `Authorization: Bearer <token>`, what the Document Server's
    /// inbox expects by default, on `paths`.
    pub fn document_server(custom: &str, paths: Regex) -> Result<Self, RuleError> {
        RelayRule::new(custom, "Authorization", DEFAULT_PREFIX, paths)
    }

    /// Verify tokens with `verifier` before relaying them; a request without a token is then refused.
    pub fn with_verifier(mut self, verifier: Verifier) -> Self {
        self.verify = Some(verifier);
        self
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

    /// Apply the rule to `req` now. See [`RelayRule::apply_at`].
    pub fn apply(&self, req: &mut RequestHeader) -> Result<Applied, Reject> {
        self.apply_at(req, SystemTime::now())
    }

    /// Apply the rule to `req` as of `now`.
    ///
    /// Paths that do not match are untouched ([`Applied::NotMatched`]). On a matching path the token is
    /// taken from `from`, or from `to` when only `to` carries one; either header repeated is malformed
    /// (the proxy and the upstream might otherwise pick different copies). The token is verified when a
    /// verifier is configured, then `from` is removed and `to` set to `prefix + token`, replacing any
    /// copy a client sent. Method and `Upgrade` play no part: a websocket handshake is treated the same.
    pub fn apply_at(&self, req: &mut RequestHeader, now: SystemTime) -> Result<Applied, Reject> {
        let matched = self.matched(&super::path::normalize(req.uri.path()));
        match matched {
            Some(m) => self.apply_matched(req, m, now),
            None => Ok(Applied::NotMatched),
        }
    }

    /// Whether the rule applies to `path`, the request's normalised path ([`super::path`]): it is
    /// matched as the upstream routes it (decoded, cleaned), so `/api/%64ownload` or
    /// `/api//download` cannot reach `download` without being relayed or verified.
    pub fn matched(&self, path: &str) -> Option<Matched> {
        self.paths.is_match(path).then(|| Matched {
            download: path.ends_with("/download"),
        })
    }

    /// [`apply_at`](Self::apply_at) for a request whose normalised path the rule matched.
    pub fn apply_matched(
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;

    const SECRET: &[u8] = b"s3cr3t-shared-with-the-document-server";
    const FILE_ID: &str = "8bq3n1wdm7yr5jz6tk4e9xgahp";
    const DOWNLOAD: &str = "/plugins/com.onlyoffice.mattermost/api/download";
    const CALLBACK: &str = "/plugins/com.onlyoffice.mattermost/api/callback";
    const NOW: u64 = 1_750_000_000;

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(NOW)
    }

    fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// Sign `claims` with `alg` (any string, so tests can forge headers) and `secret`.
    fn sign_with(alg: &str, secret: &[u8], claims: &Value) -> String {
        let header = serde_json::json!({ "alg": alg, "typ": "JWT" });
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let sig = match alg {
            "HS384" => {
                let mut m = <Hmac<Sha384> as Mac>::new_from_slice(secret).unwrap();
                m.update(input.as_bytes());
                m.finalize().into_bytes().to_vec()
            }
            "HS512" => {
                let mut m = <Hmac<Sha512> as Mac>::new_from_slice(secret).unwrap();
                m.update(input.as_bytes());
                m.finalize().into_bytes().to_vec()
            }
            "none" => Vec::new(),
            _ => {
                let mut m = <Hmac<Sha256> as Mac>::new_from_slice(secret).unwrap();
                m.update(input.as_bytes());
                m.finalize().into_bytes().to_vec()
            }
        };
        format!("{input}.{}", b64(&sig))
    }

    /// The Document Server's outbox token for downloading `id`, expiring at `exp`.
    fn download_token(id: &str, exp: u64) -> String {
        let url = format!("https://chat.example.com{DOWNLOAD}?id={id}");
        sign_with(
            "HS256",
            SECRET,
            &serde_json::json!({ "payload": { "url": url }, "exp": exp, "iat": exp - 300 }),
        )
    }

    fn valid_token() -> String {
        download_token(FILE_ID, NOW + 240)
    }

    fn verifying_rule() -> RelayRule {
        RelayRule::mattermost().with_verifier(Verifier::new(Algorithm::HS256, SECRET.to_vec()).unwrap())
    }

    fn request(method: &str, path_and_query: &str, headers: &[(&'static str, &str)]) -> RequestHeader {
        let mut req = RequestHeader::build(method, path_and_query.as_bytes(), None).unwrap();
        for (name, value) in headers {
            req.append_header(*name, *value).unwrap();
        }
        req
    }

    fn download_request(auth: &str) -> RequestHeader {
        request(
            "GET",
            &format!("{DOWNLOAD}?id={FILE_ID}"),
            &[("Authorization", auth)],
        )
    }

    fn header<'a>(req: &'a RequestHeader, name: &str) -> Option<&'a str> {
        req.headers.get(name).map(|v| v.to_str().unwrap())
    }

    fn wire(req: &RequestHeader) -> String {
        let mut buf = Vec::new();
        req.header_to_h1_wire(&mut buf);
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn valid_token_is_relayed_to_the_custom_header() {
        let token = valid_token();
        let mut req = download_request(&format!("Bearer {token}"));
        assert_eq!(verifying_rule().apply_at(&mut req, now()), Ok(Applied::Relayed));
        assert_eq!(header(&req, "authorization"), None);
        assert_eq!(
            header(&req, "authorizationjwt"),
            Some(format!("Bearer {token}").as_str())
        );
        // The case map was kept in sync: the wire has the configured spelling and no Authorization.
        let wire = wire(&req);
        assert!(
            wire.contains(&format!("AuthorizationJWT: Bearer {token}\r\n")),
            "{wire}"
        );
        assert!(!wire.to_ascii_lowercase().contains("authorization:"), "{wire}");
    }

    #[test]
    fn relay_without_verifier_only_renames() {
        let mut req = request(
            "POST",
            CALLBACK,
            &[("Authorization", "Bearer opaque"), ("X-Other", "1")],
        );
        assert_eq!(
            RelayRule::default().apply_at(&mut req, now()),
            Ok(Applied::Relayed)
        );
        assert_eq!(header(&req, "authorizationjwt"), Some("Bearer opaque"));
        assert_eq!(header(&req, "authorization"), None);
        assert_eq!(header(&req, "x-other"), Some("1"));
    }

    #[test]
    fn expired_token_is_rejected() {
        // exp + 60 s leeway is one second in the past.
        let token = download_token(FILE_ID, NOW - 61);
        let mut req = download_request(&format!("Bearer {token}"));
        assert_eq!(verifying_rule().apply_at(&mut req, now()), Err(Reject::Expired));
        // A refused request is left as it came: the caller answers 403 without forwarding it.
        assert_eq!(header(&req, "authorizationjwt"), None);
    }

    #[test]
    fn expired_token_within_leeway_is_accepted() {
        let token = download_token(FILE_ID, NOW - 30);
        let mut req = download_request(&format!("Bearer {token}"));
        assert_eq!(verifying_rule().apply_at(&mut req, now()), Ok(Applied::Relayed));
        // At exactly exp + leeway the token is still good ("now > exp + 60" rejects).
        let token = download_token(FILE_ID, NOW - 60);
        let mut req = download_request(&format!("Bearer {token}"));
        assert_eq!(verifying_rule().apply_at(&mut req, now()), Ok(Applied::Relayed));
        // A custom leeway replaces the default.
        let strict = RelayRule::mattermost().with_verifier(
            Verifier::new(Algorithm::HS256, SECRET.to_vec())
                .unwrap()
                .with_leeway(Duration::ZERO),
        );
        let mut req = download_request(&format!("Bearer {token}"));
        assert_eq!(strict.apply_at(&mut req, now()), Err(Reject::Expired));
    }

    #[test]
    fn future_nbf_and_iat_are_refused_beyond_the_leeway() {
        let rule = verifying_rule();
        let with = |claims: Value| {
            let token = sign_with("HS256", SECRET, &claims);
            let mut req = request("POST", CALLBACK, &[("Authorization", &format!("Bearer {token}"))]);
            rule.apply_at(&mut req, now())
        };
        for claim in ["nbf", "iat"] {
            // Within the leeway (clock skew), at or before now: accepted.
            for at in [NOW - 600, NOW, NOW + 30] {
                assert_eq!(
                    with(serde_json::json!({ claim: at, "exp": NOW + 240 })),
                    Ok(Applied::Relayed),
                    "{claim}={at}"
                );
            }
            // Later than now plus the leeway: not valid yet.
            for at in [NOW + 61, NOW + 3600, NOW + 10 * 365 * 86400] {
                assert_eq!(
                    with(serde_json::json!({ claim: at, "exp": NOW + 7200 })),
                    Err(Reject::NotYetValid),
                    "{claim}={at}"
                );
            }
            assert_eq!(
                with(serde_json::json!({ claim: "soon" })),
                Err(Reject::Malformed),
                "{claim}"
            );
        }
    }

    #[test]
    fn missing_exp_is_accepted_and_non_numeric_exp_is_malformed() {
        let url = format!("https://chat.example.com{DOWNLOAD}?id={FILE_ID}");
        let token = sign_with("HS256", SECRET, &serde_json::json!({ "payload": { "url": url } }));
        let mut req = download_request(&format!("Bearer {token}"));
        assert_eq!(verifying_rule().apply_at(&mut req, now()), Ok(Applied::Relayed));

        let token = sign_with(
            "HS256",
            SECRET,
            &serde_json::json!({ "payload": { "url": url }, "exp": "soon" }),
        );
        let mut req = download_request(&format!("Bearer {token}"));
        assert_eq!(verifying_rule().apply_at(&mut req, now()), Err(Reject::Malformed));
    }

    #[test]
    fn wrong_signature_is_rejected() {
        let url = format!("https://chat.example.com{DOWNLOAD}?id={FILE_ID}");
        let claims = serde_json::json!({ "payload": { "url": url }, "exp": NOW + 240 });
        let forged = sign_with("HS256", b"not-the-secret", &claims);
        let mut req = download_request(&format!("Bearer {forged}"));
        assert_eq!(
            verifying_rule().apply_at(&mut req, now()),
            Err(Reject::BadSignature)
        );

        // A valid signature over a different payload: swap the payload of a genuine token.
        let genuine = valid_token();
        let other = download_token("otherfileid0000000000000000", NOW + 240);
        let mut parts: Vec<&str> = genuine.split('.').collect();
        parts[1] = other.split('.').nth(1).unwrap();
        let mut req = download_request(&format!("Bearer {}", parts.join(".")));
        assert_eq!(
            verifying_rule().apply_at(&mut req, now()),
            Err(Reject::BadSignature)
        );

        // A truncated signature (whole base64 quanta, 30 bytes) has the wrong length: still a bad
        // signature, never a panic.
        let truncated = &genuine[..genuine.len() - 3];
        let mut req = download_request(&format!("Bearer {truncated}"));
        assert_eq!(
            verifying_rule().apply_at(&mut req, now()),
            Err(Reject::BadSignature)
        );
    }

    #[test]
    fn alg_none_is_rejected() {
        let url = format!("https://chat.example.com{DOWNLOAD}?id={FILE_ID}");
        let claims = serde_json::json!({ "payload": { "url": url }, "exp": NOW + 240 });
        for alg in ["none", "None", "hs256"] {
            let token = sign_with(alg, SECRET, &claims);
            let mut req = download_request(&format!("Bearer {token}"));
            assert_eq!(
                verifying_rule().apply_at(&mut req, now()),
                Err(Reject::WrongAlgorithm),
                "{alg}"
            );
        }
    }

    #[test]
    fn other_hmac_than_configured_is_rejected() {
        let url = format!("https://chat.example.com{DOWNLOAD}?id={FILE_ID}");
        let claims = serde_json::json!({ "payload": { "url": url }, "exp": NOW + 240 });
        let hs512 = sign_with("HS512", SECRET, &claims);
        let mut req = download_request(&format!("Bearer {hs512}"));
        assert_eq!(
            verifying_rule().apply_at(&mut req, now()),
            Err(Reject::WrongAlgorithm)
        );

        // Configured for HS512, the same token passes and an HS256 one does not.
        let rule = RelayRule::mattermost()
            .with_verifier(Verifier::new("hs512".parse().unwrap(), SECRET.to_vec()).unwrap());
        let mut req = download_request(&format!("Bearer {hs512}"));
        assert_eq!(rule.apply_at(&mut req, now()), Ok(Applied::Relayed));
        let mut req = download_request(&format!("Bearer {}", valid_token()));
        assert_eq!(rule.apply_at(&mut req, now()), Err(Reject::WrongAlgorithm));

        let hs384 = sign_with("HS384", SECRET, &claims);
        let rule =
            RelayRule::mattermost().with_verifier(Verifier::new(Algorithm::HS384, SECRET.to_vec()).unwrap());
        let mut req = download_request(&format!("Bearer {hs384}"));
        assert_eq!(rule.apply_at(&mut req, now()), Ok(Applied::Relayed));
    }

    #[test]
    fn mismatched_file_id_is_rejected() {
        let token = download_token("someotherfile00000000000000", NOW + 240);
        let mut req = download_request(&format!("Bearer {token}"));
        assert_eq!(
            verifying_rule().apply_at(&mut req, now()),
            Err(Reject::IdMismatch)
        );

        let token = valid_token();
        let auth = format!("Bearer {token}");
        for target in [
            DOWNLOAD.to_string(),                            // no query
            format!("{DOWNLOAD}?file={FILE_ID}"),            // no id
            format!("{DOWNLOAD}?id={FILE_ID}&id=otherfile"), // repeated: which one would the plugin use?
            format!("{DOWNLOAD}?id=otherfile&id={FILE_ID}"),
        ] {
            let mut req = request("GET", &target, &[("Authorization", &auth)]);
            assert_eq!(
                verifying_rule().apply_at(&mut req, now()),
                Err(Reject::IdMismatch),
                "{target}"
            );
        }

        // Encoded the same way or differently, the same id matches.
        let mut req = request(
            "GET",
            &format!("{DOWNLOAD}?x=1&%69d={FILE_ID}"),
            &[("Authorization", &auth)],
        );
        assert_eq!(verifying_rule().apply_at(&mut req, now()), Ok(Applied::Relayed));

        // A token with no payload.url does not authorise any download.
        let bare = sign_with("HS256", SECRET, &serde_json::json!({ "exp": NOW + 240 }));
        let mut req = download_request(&format!("Bearer {bare}"));
        assert_eq!(
            verifying_rule().apply_at(&mut req, now()),
            Err(Reject::IdMismatch)
        );
    }

    #[test]
    fn callback_is_not_bound_to_a_file_id() {
        // The callback's header token signs the body, which this layer does not see.
        let body_token = sign_with(
            "HS256",
            SECRET,
            &serde_json::json!({ "payload": { "status": 2 }, "exp": NOW + 240 }),
        );
        let mut req = request(
            "POST",
            &format!("{CALLBACK}?file={FILE_ID}"),
            &[("Authorization", &format!("Bearer {body_token}"))],
        );
        assert_eq!(verifying_rule().apply_at(&mut req, now()), Ok(Applied::Relayed));
    }

    #[test]
    fn missing_header() {
        let mut req = request("GET", &format!("{DOWNLOAD}?id={FILE_ID}"), &[]);
        assert_eq!(verifying_rule().apply_at(&mut req, now()), Err(Reject::Missing));
        // Without a verifier the rule has nothing to move and leaves the decision to the plugin.
        assert_eq!(
            RelayRule::mattermost().apply_at(&mut req, now()),
            Ok(Applied::NoToken)
        );
        assert!(req.headers.is_empty());
    }

    #[test]
    fn malformed_values_are_rejected() {
        let token = valid_token();
        let two_parts: String = token.rsplit_once('.').unwrap().0.to_string();
        for auth in [
            "Bearer not-a-jwt".to_string(),
            "Bearer a.b.c".to_string(),
            format!("Bearer {two_parts}"),
            format!("Bearer {token}.extra"),
            format!("Bearer {token}="),
            format!("Bearer {}", "A".repeat(MAX_TOKEN_LEN + 1)),
        ] {
            let mut req = download_request(&auth);
            assert_eq!(
                verifying_rule().apply_at(&mut req, now()),
                Err(Reject::Malformed),
                "{auth}"
            );
        }
        // Not a single token: refused even without a verifier, as nothing sensible can be relayed.
        for auth in ["Basic dXNlcjpwYXNz", "Bearer", "Bearer   ", "", "Bearer a b"] {
            let mut req = download_request(auth);
            assert_eq!(
                RelayRule::mattermost().apply_at(&mut req, now()),
                Err(Reject::Malformed),
                "{auth:?}"
            );
        }
        // Two Authorization headers: the proxy and the upstream could pick different ones.
        let auth = format!("Bearer {token}");
        let mut req = request(
            "GET",
            &format!("{DOWNLOAD}?id={FILE_ID}"),
            &[("Authorization", auth.as_str()), ("Authorization", auth.as_str())],
        );
        assert_eq!(verifying_rule().apply_at(&mut req, now()), Err(Reject::Malformed));
        // A header JSON that is not an object, or lacks alg.
        let claims = b64(br#"{"exp":1}"#);
        for header in [b64(b"[1]"), b64(br#"{"typ":"JWT"}"#), "!!".to_string()] {
            let mut req = download_request(&format!("Bearer {header}.{claims}.c2ln"));
            assert_eq!(verifying_rule().apply_at(&mut req, now()), Err(Reject::Malformed));
        }
    }

    #[test]
    fn token_already_in_custom_header_is_accepted() {
        let token = valid_token();
        let mut req = request(
            "GET",
            &format!("{DOWNLOAD}?id={FILE_ID}"),
            &[("AuthorizationJWT", &format!("bearer  {token}"))],
        );
        assert_eq!(
            verifying_rule().apply_at(&mut req, now()),
            Ok(Applied::AlreadyCustom)
        );
        assert_eq!(
            header(&req, "authorizationjwt"),
            Some(format!("Bearer {token}").as_str())
        );
        assert_eq!(req.headers.len(), 1);

        // A forged one in the custom header is verified just the same.
        let forged = sign_with("HS256", b"guess", &serde_json::json!({ "exp": NOW + 240 }));
        let mut req = request(
            "GET",
            &format!("{DOWNLOAD}?id={FILE_ID}"),
            &[("AuthorizationJWT", &format!("Bearer {forged}"))],
        );
        assert_eq!(
            verifying_rule().apply_at(&mut req, now()),
            Err(Reject::BadSignature)
        );

        // When both carry one, `from` wins and a client's copy of `to` is replaced by the verified one.
        let mut req = request(
            "GET",
            &format!("{DOWNLOAD}?id={FILE_ID}"),
            &[
                ("Authorization", &format!("Bearer {token}")),
                ("AuthorizationJWT", "Bearer planted"),
            ],
        );
        assert_eq!(verifying_rule().apply_at(&mut req, now()), Ok(Applied::Relayed));
        assert_eq!(
            header(&req, "authorizationjwt"),
            Some(format!("Bearer {token}").as_str())
        );
        assert_eq!(req.headers.len(), 1);
    }

    #[test]
    fn lower_case_bearer_and_extra_spaces_are_normalised() {
        let token = valid_token();
        for auth in [
            format!("bearer {token}"),
            format!("BEARER   {token}"),
            format!("  Bearer\t{token}  "),
            token.clone(), // bare token, no prefix
        ] {
            let mut req = download_request(&auth);
            assert_eq!(
                verifying_rule().apply_at(&mut req, now()),
                Ok(Applied::Relayed),
                "{auth:?}"
            );
            assert_eq!(
                header(&req, "authorizationjwt"),
                Some(format!("Bearer {token}").as_str())
            );
        }
    }

    #[test]
    fn non_matching_paths_are_untouched() {
        let auth = "Bearer mattermost-session-token";
        for path in [
            "/api/v4/users/me",
            "/plugins/com.onlyoffice.mattermost/api/editor",
            "/plugins/com.onlyoffice.mattermost/api/download/",
            "/plugins/com.onlyoffice.mattermost/api/downloads",
            "/x/plugins/com.onlyoffice.mattermost/api/download",
            "/plugins/com.onlyoffice.mattermost/api/download%3Fid=1",
        ] {
            let mut req = request(
                "GET",
                path,
                &[("Authorization", auth), ("AuthorizationJWT", "Bearer x")],
            );
            assert_eq!(
                verifying_rule().apply_at(&mut req, now()),
                Ok(Applied::NotMatched),
                "{path}"
            );
            assert_eq!(header(&req, "authorization"), Some(auth));
            assert_eq!(header(&req, "authorizationjwt"), Some("Bearer x"));
            assert!(wire(&req).contains("Authorization: Bearer mattermost-session-token\r\n"));
        }
    }

    #[test]
    fn percent_encoded_path_does_not_escape_the_rule() {
        let forged = sign_with("HS256", b"guess", &serde_json::json!({ "exp": NOW + 240 }));
        for path in [
            "/plugins/com.onlyoffice.mattermost/api/%64ownload",
            "/plugins/com%2Eonlyoffice.mattermost/api/download",
            "/plugins/com.onlyoffice.mattermost/api%2Fcallback",
        ] {
            let mut req = request(
                "GET",
                &format!("{path}?id={FILE_ID}"),
                &[("AuthorizationJWT", &format!("Bearer {forged}"))],
            );
            assert_eq!(
                verifying_rule().apply_at(&mut req, now()),
                Err(Reject::BadSignature),
                "{path}"
            );
        }
        let mut req = request(
            "GET",
            &format!("/plugins/com.onlyoffice.mattermost/api/%64ownload?id={FILE_ID}"),
            &[("Authorization", &format!("Bearer {}", valid_token()))],
        );
        assert_eq!(verifying_rule().apply_at(&mut req, now()), Ok(Applied::Relayed));
    }

    #[test]
    fn websocket_upgrade_gets_the_same_treatment() {
        let upgrade = |auth: &str| {
            request(
                "GET",
                &format!("{DOWNLOAD}?id={FILE_ID}"),
                &[
                    ("Upgrade", "websocket"),
                    ("Connection", "Upgrade"),
                    ("Sec-WebSocket-Version", "13"),
                    ("Authorization", auth),
                ],
            )
        };
        let forged = sign_with("HS256", b"guess", &serde_json::json!({ "exp": NOW + 240 }));
        let mut req = upgrade(&format!("Bearer {forged}"));
        assert_eq!(
            verifying_rule().apply_at(&mut req, now()),
            Err(Reject::BadSignature)
        );

        let token = valid_token();
        let mut req = upgrade(&format!("Bearer {token}"));
        assert_eq!(verifying_rule().apply_at(&mut req, now()), Ok(Applied::Relayed));
        assert_eq!(header(&req, "authorization"), None);
        assert_eq!(
            header(&req, "authorizationjwt"),
            Some(format!("Bearer {token}").as_str())
        );
        // Nothing else is renamed or dropped.
        assert_eq!(header(&req, "upgrade"), Some("websocket"));
        assert_eq!(header(&req, "connection"), Some("Upgrade"));

        // Any method, same result.
        for method in ["HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"] {
            let mut req = request(
                method,
                &format!("{DOWNLOAD}?id={FILE_ID}"),
                &[("Authorization", &format!("Bearer {forged}"))],
            );
            assert_eq!(
                verifying_rule().apply_at(&mut req, now()),
                Err(Reject::BadSignature),
                "{method}"
            );
        }
    }

    #[test]
    fn reverse_direction_for_the_document_server() {
        let paths = Regex::new(r"^/(coauthoring/CommandService\.ashx|ConvertService\.ashx)$").unwrap();
        let rule = RelayRule::document_server("AuthorizationJWT", paths).unwrap();
        let mut req = request(
            "POST",
            "/ConvertService.ashx",
            &[("AuthorizationJWT", "bearer tok.en.sig")],
        );
        assert_eq!(rule.apply_at(&mut req, now()), Ok(Applied::Relayed));
        assert_eq!(header(&req, "authorizationjwt"), None);
        assert_eq!(header(&req, "authorization"), Some("Bearer tok.en.sig"));
        assert!(wire(&req).contains("Authorization: Bearer tok.en.sig\r\n"));
        let mut req = request(
            "GET",
            "/web-apps/apps/api/documents/api.js",
            &[("AuthorizationJWT", "Bearer t")],
        );
        assert_eq!(rule.apply_at(&mut req, now()), Ok(Applied::NotMatched));
    }

    #[test]
    fn rule_configuration_is_validated() {
        let paths = || Regex::new(DEFAULT_PATHS).unwrap();
        assert!(matches!(
            RelayRule::new("Authorization", "AUTHORIZATION", "Bearer ", paths()),
            Err(RuleError::SameHeader(_))
        ));
        assert!(matches!(
            RelayRule::new("Author ization", "X", "Bearer ", paths()),
            Err(RuleError::InvalidHeaderName(_))
        ));
        for prefix in ["Bearer\n", "Bearer\t", "Bearé "] {
            assert!(matches!(
                RelayRule::new("Authorization", "X-JWT", prefix, paths()),
                Err(RuleError::InvalidPrefix(_))
            ));
        }
        assert!(matches!(
            "RS256".parse::<Algorithm>(),
            Err(RuleError::UnsupportedAlgorithm(_))
        ));
        assert!(matches!(
            Verifier::new(Algorithm::HS256, Vec::new()),
            Err(SecretError::EmptyKey)
        ));

        // A custom header and an empty prefix: the token travels bare on both sides, and a value with a
        // scheme is not a bare token.
        let rule = RelayRule::new("Authorization", "X-OO-Token", "", paths()).unwrap();
        let mut req = download_request("abc");
        assert_eq!(rule.apply_at(&mut req, now()), Ok(Applied::Relayed));
        assert_eq!(header(&req, "x-oo-token"), Some("abc"));
        let mut req = download_request("Bearer abc");
        assert_eq!(rule.apply_at(&mut req, now()), Err(Reject::Malformed));
    }

    #[test]
    fn rfc7515_hs256_example_verifies() {
        // RFC 7515 appendix A.1: an independent known-answer test of the HMAC and base64url path.
        let key = URL_SAFE_NO_PAD
            .decode("AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow")
            .unwrap();
        let token = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9\
                     .eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ\
                     .dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let verifier = Verifier::new(Algorithm::HS256, key).unwrap();
        let at = UNIX_EPOCH + Duration::from_secs(1_300_819_380);
        assert_eq!(verifier.verify(token, at, None), Ok(()));
        assert_eq!(
            verifier.verify(token, at + Duration::from_secs(61), None),
            Err(Reject::Expired)
        );
    }

    #[test]
    fn nothing_secret_in_errors_or_debug() {
        let token = valid_token();
        let verifier = Verifier::new(Algorithm::HS256, SECRET.to_vec()).unwrap();
        let secret = std::str::from_utf8(SECRET).unwrap();
        for shown in [format!("{verifier:?}"), format!("{:?}", verifying_rule())] {
            assert!(!shown.contains(secret), "{shown}");
            assert!(!shown.contains(&format!("{:?}", SECRET)), "{shown}");
        }
        let all = [
            Reject::Missing,
            Reject::Malformed,
            Reject::WrongAlgorithm,
            Reject::BadSignature,
            Reject::Expired,
            Reject::IdMismatch,
        ];
        let mut reasons: Vec<&str> = all.iter().map(Reject::reason).collect();
        for r in all {
            let (shown, debug) = (r.to_string(), format!("{r:?}"));
            assert_eq!(shown, shown.to_lowercase());
            assert!(!shown.contains(&token) && !debug.contains(&token));
            assert!(r.reason().bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
        }
        reasons.dedup();
        assert_eq!(reasons.len(), 6);
        assert_eq!(Reject::BadSignature.reason(), "bad_signature");
        assert_eq!(REJECT_BODY, br#"{"error":1}"#);
    }

    fn secret_file(contents: &[u8], mode: u32) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(contents).unwrap();
        file.flush().unwrap();
        std::fs::set_permissions(file.path(), std::fs::Permissions::from_mode(mode)).unwrap();
        file
    }

    #[test]
    fn load_secret_refuses_a_group_or_world_readable_file() {
        for mode in [0o644, 0o640, 0o604, 0o620, 0o602, 0o660] {
            let file = secret_file(b"secret\n", mode);
            let err = load_secret(file.path()).unwrap_err();
            assert!(matches!(err, SecretError::Permissions { .. }), "{mode:o}");
            let msg = err.to_string();
            assert!(msg.contains("chmod 600"), "{msg}");
            assert!(msg.contains(&file.path().display().to_string()), "{msg}");
            assert!(
                !msg.contains("secret\n") && !format!("{err:?}").contains("\"secret"),
                "{msg}"
            );
        }
    }

    #[test]
    fn load_secret_accepts_0600_and_trims_one_newline() {
        let file = secret_file(b"s3cr3t\n", 0o600);
        assert_eq!(load_secret(file.path()).unwrap(), b"s3cr3t");
        let file = secret_file(b"s3cr3t\r\n", 0o400);
        assert_eq!(load_secret(file.path()).unwrap(), b"s3cr3t");
        // Only one newline is trimmed: the rest is part of the secret as written.
        let file = secret_file(b"s3cr3t\n\n", 0o600);
        assert_eq!(load_secret(file.path()).unwrap(), b"s3cr3t\n");
        let file = secret_file(b" spaced ", 0o600);
        assert_eq!(load_secret(file.path()).unwrap(), b" spaced ");

        // And a verifier built from it checks tokens signed with it.
        let file = secret_file(&[SECRET, b"\n"].concat(), 0o600);
        let verifier = Verifier::from_secret_file(Algorithm::HS256, file.path()).unwrap();
        assert_eq!(
            verifier.verify(&valid_token(), now(), Some(&format!("id={FILE_ID}"))),
            Ok(())
        );
    }

    #[test]
    fn load_secret_refuses_empty_and_unreadable() {
        for contents in [&b""[..], b"\n", b"\r\n"] {
            let file = secret_file(contents, 0o600);
            let err = load_secret(file.path()).unwrap_err();
            assert!(matches!(err, SecretError::Empty { .. }), "{contents:?}");
        }
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("absent");
        let err = load_secret(&missing).unwrap_err();
        assert!(matches!(err, SecretError::Read { .. }));
        assert!(err.to_string().contains("absent"));
    }

    #[test]
    fn default_rule_matches_the_spec() {
        let rule = RelayRule::default();
        assert_eq!(rule.from(), &AUTHORIZATION);
        assert_eq!(rule.to().as_str(), "authorizationjwt");
        assert_eq!(rule.prefix(), "Bearer ");
        assert_eq!(rule.paths().as_str(), DEFAULT_PATHS);
        assert!(rule.verifier().is_none());
        assert!(rule.paths().is_match(DOWNLOAD) && rule.paths().is_match(CALLBACK));
        assert_eq!(Applied::AlreadyCustom.as_str(), "already_custom");
    }
}
