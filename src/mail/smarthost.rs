//! The smarthost: its `smtp://` / `smtps://` URL, how the connection is secured, and the settings
//! the delivery pool is built from.

/// How the relay reaches its smarthost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Smarthost {
    pub host: String,
    pub port: u16,
    pub security: Security,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// `smtps://`: TLS from the first byte.
    Implicit,
    /// `smtp://`: STARTTLS required.
    StartTls,
    /// `smtp://` with `smarthost_tls = "none"`: plaintext (a smarthost on loopback only).
    None,
}

/// Why `[mail] smarthost` is not a smarthost URL (each names the part to fix).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SmarthostUrlError {
    #[error("`{0}` is not an smtp:// or smtps:// URL")]
    NotUrl(String),
    #[error("`{0}` is not smtp or smtps")]
    Scheme(String),
    #[error("`{0}` is not a port")]
    Port(String),
    #[error("`{0}` has no host")]
    NoHost(String),
}

/// `smtp://host[:587]`, `smtps://host[:465]`.
pub fn parse_url(url: &str, plaintext: bool) -> Result<Smarthost, SmarthostUrlError> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| SmarthostUrlError::NotUrl(url.to_string()))?;
    let (security, default_port) = match (scheme, plaintext) {
        ("smtps", _) => (Security::Implicit, 465),
        ("smtp", false) => (Security::StartTls, 587),
        ("smtp", true) => (Security::None, 25),
        _ => return Err(SmarthostUrlError::Scheme(scheme.to_string())),
    };
    let rest = rest.trim_end_matches('/');
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) => (h, p.parse().map_err(|_| SmarthostUrlError::Port(p.to_string()))?),
        None => (rest, default_port),
    };
    if host.is_empty() {
        return Err(SmarthostUrlError::NoHost(url.to_string()));
    }
    Ok(Smarthost {
        host: host.trim_matches(['[', ']']).to_string(),
        port,
        security,
    })
}

/// Smarthost settings, from `[mail]`.
pub struct SmarthostSettings {
    pub smarthost: Smarthost,
    /// `(username, password)` from `smarthost_auth_file`.
    pub credentials: Option<(String, String)>,
    /// `smarthost_ca_file` and its PEM, trusted besides the system roots.
    pub ca: Option<(std::path::PathBuf, Vec<u8>)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(parse_url("smtp://relay.example.org", false).unwrap().port, 587);
        assert_eq!(
            parse_url("smtps://relay.example.org", false).unwrap().security,
            Security::Implicit
        );
        assert_eq!(
            parse_url("smtp://127.0.0.1:2526", true).unwrap(),
            Smarthost {
                host: "127.0.0.1".into(),
                port: 2526,
                security: Security::None
            }
        );
        assert!(parse_url("http://x", false).is_err());
    }
}
