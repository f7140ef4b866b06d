//! Edge verification of a Document Server JWT: the HMAC algorithm pinned by config ([`Algorithm`]),
//! the signature checked in constant time, `exp`/`nbf`/`iat` against the clock with a leeway, and a
//! `download` token bound to the file the request asks for ([`Verifier`]).
//!
//! Must never let a token choose how it is checked (`alg` must equal the configured one), parse a
//! payload before its signature holds, or show the secret or a token in a message or `Debug`.

use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::{Map, Value};
use sha2::{Sha256, Sha384, Sha512};

use super::query::single_query_param;
use super::{load_secret, Reject, RuleError, SecretError, DEFAULT_LEEWAY};

/// Longest token accepted: Document Server tokens are well under 2 KiB; a bound keeps a hostile
/// header from costing more than a fixed amount of decoding.
pub(super) const MAX_TOKEN_LEN: usize = 16 * 1024;

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
    pub(crate) fn as_str(&self) -> &'static str {
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
/// token to the requested file. A token whose `nbf` or `iat` is later than now plus the same leeway
/// is not valid yet (the Document Server's JWT library and the plugin refuse it too).
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
    pub(crate) fn new(algorithm: Algorithm, secret: Vec<u8>) -> Result<Self, SecretError> {
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
    pub(crate) fn from_secret_file(algorithm: Algorithm, path: &Path) -> Result<Self, SecretError> {
        Verifier::new(algorithm, load_secret(path)?)
    }

    /// Replace the clock tolerance for `exp` (default `DEFAULT_LEEWAY`, 60 seconds, the Document Server's).
    #[cfg(test)]
    pub fn with_leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// Verify `token` (without its prefix) at time `now`.
    ///
    /// `download_query`: `None` when the request is not a `download`; otherwise the request's raw query
    /// (`""` when it has none), whose single `id` must equal the single `id` in the query of the token's
    /// `payload.url`.
    ///
    /// The header's `alg` is checked before the signature and the payload is parsed only after the
    /// signature holds, so unauthenticated input reaches as little code as possible.
    pub(crate) fn verify(
        &self,
        token: &str,
        now: SystemTime,
        download_query: Option<&str>,
    ) -> Result<(), Reject> {
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
