//! Check: embedding as a browser elsewhere sees it. `/` of each vhost with `[embed]` is fetched
//! through vestibule's own listener (HTTPS when the vhost has TLS, with its name as SNI and Host),
//! and the answer's `Content-Security-Policy: frame-ancestors` and `X-Frame-Options` are read:
//! every allowed origin must be there and nothing may deny framing. This catches what the
//! configuration alone cannot: a daemon not reloaded since `[embed]` changed, or the upstream's
//! own headers reaching the browser.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use super::checks::DEADLINE;
use super::http::cause;
use super::Line;
use crate::config::Config;
use crate::host::HostPattern;
use crate::tls::load::Source;
use crate::tls::store::CertSnapshot;

const CHECK: &str = "embedding";

/// Accepts the certificate the listener shows and notes its SHA-256: it is compared with the
/// configured one afterwards (a self-signed one is the daemon's own, unknown to this process, and
/// its validity is the certificates check's business). The handshake's signatures are verified,
/// so the answer does come from the certificate's key holder.
#[derive(Debug)]
struct Noted {
    provider: Arc<rustls::crypto::CryptoProvider>,
    seen: std::sync::Mutex<Option<String>>,
}

impl rustls::client::danger::ServerCertVerifier for Noted {
    fn verify_server_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        use sha2::Digest;
        let hex: String = sha2::Sha256::digest(end_entity.as_ref())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        if let Ok(mut seen) = self.seen.lock() {
            *seen = Some(hex);
        }
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

fn client(name: &str, addr: SocketAddr) -> Result<(reqwest::Client, Arc<Noted>), String> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let noted = Arc::new(Noted {
        provider: provider.clone(),
        seen: std::sync::Mutex::new(None),
    });
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(noted.clone())
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let client = reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .resolve(name, addr)
        .timeout(DEADLINE)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| e.to_string())?;
    Ok((client, noted))
}

/// Where this machine reaches a listener: a wildcard address through loopback.
fn reachable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(v4) if v4.is_unspecified() => SocketAddr::new(Ipv4Addr::LOCALHOST.into(), addr.port()),
        IpAddr::V6(v6) if v6.is_unspecified() => SocketAddr::new(Ipv6Addr::LOCALHOST.into(), addr.port()),
        _ => addr,
    }
}

/// What the headers of one answer say about framing by `origin`: `None` when it may frame.
pub fn denial(csp: &[&str], xfo: Option<&str>, origin: &str) -> Option<String> {
    if let Some(x) = xfo {
        return Some(format!("X-Frame-Options: {x} reaches browsers"));
    }
    let mut any = false;
    // Several headers, or several policies in one (comma-separated): a browser enforces each.
    for policy in csp.iter().flat_map(|h| h.split(',')) {
        let Some(sources) = policy.split(';').find_map(|d| {
            let mut words = d.split_ascii_whitespace();
            words
                .next()
                .filter(|n| n.eq_ignore_ascii_case("frame-ancestors"))
                .map(|_| words.collect::<Vec<_>>())
        }) else {
            continue;
        };
        any = true;
        let allowed = sources
            .iter()
            .any(|s| *s == "*" || s.trim_end_matches('/').eq_ignore_ascii_case(origin));
        if !allowed {
            return Some(format!(
                "frame-ancestors {} leaves out {origin}",
                sources.join(" ")
            ));
        }
    }
    (!any).then(|| "no Content-Security-Policy frame-ancestors".to_string())
}

/// One line per vhost with `[embed]`; `published` is the running daemon's listeners (none: the
/// listeners check already says it is not running).
/// `snap` holds the configured certificates: one from files or ACME must be the one served.
pub async fn check(cfg: &Config, snap: &CertSnapshot, published: &[(String, SocketAddr)]) -> Vec<Line> {
    let mut lines = Vec::new();
    for v in &cfg.vhosts {
        let Some(origins) = &v.embed else { continue };
        let Some(name) = v.server_names.iter().find_map(|(p, _)| match p {
            HostPattern::Exact(n) => Some(n.clone()),
            HostPattern::Wildcard(_) => None,
        }) else {
            continue;
        };
        let kind = if v.tls.is_some() { "https" } else { "http" };
        let Some((_, addr)) = published.iter().find(|(k, _)| k == kind) else {
            continue;
        };
        let addr = reachable(*addr);
        let url = format!("{kind}://{name}:{}/", addr.port());
        let fix = format!(
            "systemctl reload vestibule; if it persists, check [embed] of vhost {} (vestibule check)",
            v.name
        );
        let (resp, noted) = match client(&name, addr) {
            Ok((c, noted)) => (c.get(&url).send().await.map_err(|e| cause(&e)), Some(noted)),
            Err(e) => (Err(e), None),
        };
        let resp = match resp {
            Ok(r) => r,
            Err(e) => {
                lines.push(Line::fail(CHECK, format!("{url} via {addr}: {e}"), fix));
                continue;
            }
        };
        let seen = noted.and_then(|n| n.seen.lock().ok().and_then(|s| s.clone()));
        let configured = snap
            .certs
            .iter()
            .find(|c| *c.vhost == v.name)
            .filter(|c| matches!(c.source, Source::Files { .. } | Source::Acme));
        if let (Some(seen), Some(c)) = (&seen, configured) {
            if *seen != c.fingerprint {
                lines.push(Line::fail(
                    CHECK,
                    format!(
                        "{url} serves the certificate sha256 {}, not the configured one (sha256 {})",
                        &seen[..16],
                        &c.fingerprint[..16.min(c.fingerprint.len())]
                    ),
                    "systemctl reload vestibule",
                ));
                continue;
            }
        }
        let h = resp.headers();
        let csp: Vec<&str> = h
            .get_all(reqwest::header::CONTENT_SECURITY_POLICY)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        let xfo = h
            .get(reqwest::header::X_FRAME_OPTIONS)
            .and_then(|v| v.to_str().ok());
        let denied: Vec<String> = origins
            .iter()
            .filter_map(|o| denial(&csp, xfo, o.as_ref()))
            .collect::<Vec<_>>();
        let mut denied = denied;
        denied.dedup();
        if denied.is_empty() {
            let list: Vec<&str> = origins.iter().map(|o| o.as_ref()).collect();
            lines.push(Line::ok(
                CHECK,
                format!("{url} may be framed by {}", list.join(", ")),
            ));
        } else {
            lines.push(Line::fail(
                CHECK,
                format!("{url} (HTTP {}): {}", resp.status().as_u16(), denied.join("; ")),
                fix,
            ));
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::denial;

    const WEBAPP: &str = "https://webapp.example.org";

    #[test]
    fn every_policy_must_name_the_origin_and_nothing_may_deny() {
        assert_eq!(
            denial(
                &["frame-ancestors 'self' https://webapp.example.org"],
                None,
                WEBAPP
            ),
            None
        );
        assert_eq!(
            denial(
                &["script-src 'self'; FRAME-ANCESTORS https://WEBAPP.example.org/"],
                None,
                WEBAPP
            ),
            None
        );
        assert_eq!(denial(&["frame-ancestors *"], None, WEBAPP), None);
        assert!(denial(&["frame-ancestors 'self'"], None, WEBAPP)
            .unwrap()
            .contains("leaves out https://webapp.example.org"));
        // The second of two policies refuses: the browser refuses.
        assert!(denial(&["frame-ancestors *", "frame-ancestors 'none'"], None, WEBAPP).is_some());
        assert!(denial(&["frame-ancestors * , frame-ancestors 'self'"], None, WEBAPP).is_some());
        assert!(denial(&["script-src 'self'"], None, WEBAPP)
            .unwrap()
            .contains("no Content-Security-Policy frame-ancestors"));
        assert!(denial(&["frame-ancestors *"], Some("SAMEORIGIN"), WEBAPP)
            .unwrap()
            .contains("X-Frame-Options: SAMEORIGIN"));
    }
}
