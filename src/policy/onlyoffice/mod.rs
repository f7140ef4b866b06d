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
//!
//! Files: `jwt` verifies a token ([`Algorithm`], [`Verifier`]), `query` reads the `id` a download
//! asks for, `rule` moves the token between headers ([`RelayRule`], [`Applied`]); the shared
//! constants, [`Reject`] and [`RuleError`] are here.

use std::time::Duration;

pub(crate) mod config;
mod jwt;
mod query;
mod rule;

pub use crate::secret::{load_secret, SecretError};
pub use jwt::{Algorithm, Verifier};
pub use rule::{Applied, RelayRule};

/// Default paths of the rule: the two plugin routes the Document Server calls with a header JWT.
pub(crate) const DEFAULT_PATHS: &str = r"^/plugins/com\.onlyoffice\.mattermost/api/(download|callback)$";

/// Default custom header the plugin reads its JWT from (`DESJwtHeader` in the plugin settings).
pub(crate) const DEFAULT_CUSTOM_HEADER: &str = "AuthorizationJWT";

/// Default prefix before the token, on both sides (`token.outbox.prefix`, the plugin's default).
pub(crate) const DEFAULT_PREFIX: &str = "Bearer ";

/// Clock tolerance for `exp`, the Document Server's own default.
pub(crate) const DEFAULT_LEEWAY: Duration = Duration::from_secs(60);

/// Body of the 403 answered for a [`Reject`], the plugin's own answer for a refused callback.
pub(crate) const REJECT_BODY: &[u8] = br#"{"error":1}"#;

/// Why a request carrying (or failing to carry) a JWT on a relayed path was refused.
///
/// Carries no data on purpose: nothing derived from the token can leak through `Display` or `Debug`.
/// The caller answers 403 with `REJECT_BODY` and counts `Reject::reason`.
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
    pub(crate) fn reason(&self) -> &'static str {
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

#[cfg(test)]
mod tests;
