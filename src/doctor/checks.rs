//! The checks, in the order the report lists them. Each takes what it needs and returns its lines;
//! none prints, so each can be tested on its own.

use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::Duration;

use super::Line;
use super::Sources;
use crate::app::Modules;
use crate::config::Config;
use crate::module::Context;
use crate::tls::acme::Registry;
use crate::tls::load::{format_time, unix_now, Source};
use crate::tls::store::CertSnapshot;

/// How long one connection attempt may take: a dead peer must not hold up the report.
pub const DEADLINE: Duration = Duration::from_secs(3);

/// Fewer days than this before a certificate expires is a warning.
pub const WARN_DAYS: i64 = 14;

/// Check 2, listeners: the daemon runs (its `<state_dir>/listening` file exists and its addresses accept
/// connections) and serves every listener the configuration names.
pub fn listeners(cfg: &Config) -> Vec<Line> {
    const CHECK: &str = "listeners";
    let path = cfg.state_dir.join(crate::cli::run::LISTENING);
    let Some(published) = published(cfg) else {
        return vec![Line::fail(
            CHECK,
            format!("vestibule is not running (no {})", path.display()),
            "systemctl start vestibule",
        )];
    };
    let mut lines = Vec::new();
    for (kind, want) in configured(cfg) {
        // Port 0 in the configuration: the kernel chose one, so only the kind and address can match.
        let found = published
            .iter()
            .find(|(k, a)| k == kind && a.ip() == want.ip() && (want.port() == 0 || a.port() == want.port()));
        match found {
            None => lines.push(Line::fail(
                CHECK,
                format!("{kind} {want} is configured but not served"),
                "systemctl reload vestibule (or restart it; see journalctl -u vestibule)",
            )),
            Some((_, addr)) => match TcpStream::connect_timeout(addr, DEADLINE) {
                Ok(_) => lines.push(Line::ok(CHECK, format!("{kind} {addr}"))),
                Err(e) => lines.push(Line::fail(
                    CHECK,
                    format!("{kind} {addr} does not accept connections: {e}"),
                    "systemctl restart vestibule",
                )),
            },
        }
    }
    lines
}

/// The running daemon's listeners (`<state_dir>/listening`: kind and address), `None` when it
/// does not run.
pub fn published(cfg: &Config) -> Option<Vec<(String, SocketAddr)>> {
    let text = std::fs::read_to_string(cfg.state_dir.join(crate::cli::run::LISTENING)).ok()?;
    Some(
        text.lines()
            .filter_map(|l| {
                let (kind, addr) = l.split_once(' ')?;
                Some((kind.to_string(), addr.trim().parse().ok()?))
            })
            .collect(),
    )
}

/// Every listener the configuration names, as the daemon's `listening` file calls them.
fn configured(cfg: &Config) -> Vec<(&'static str, SocketAddr)> {
    let mut out: Vec<(&'static str, SocketAddr)> = Vec::new();
    out.extend(cfg.proxy.listen.iter().map(|a| ("http", *a)));
    out.extend(cfg.proxy.listen_tls.iter().map(|l| ("https", l.addr)));
    out.push(("admin", cfg.admin.listen));
    if let Some(push) = &cfg.push {
        out.push(("push", push.listen));
    }
    if let Some(mail) = &cfg.mail {
        out.extend(mail.listen.iter().map(|a| ("smtp", *a)));
        out.extend(mail.listen_tls.iter().map(|a| ("smtps", *a)));
    }
    out
}

/// Check 3, certificates: each vhost's certificate is in date (a warning under [`WARN_DAYS`]), not
/// self-signed on a public name, and its ACME order has no error.
pub fn certificates(snap: &CertSnapshot, acme: &Registry) -> Vec<Line> {
    const CHECK: &str = "certificates";
    let now = unix_now();
    let mut lines = Vec::new();
    for (i, c) in snap.certs.iter().enumerate() {
        let names: Vec<String> = snap.router.names_of(i).iter().map(|n| n.to_string()).collect();
        let shown = format!("vhost {} ({})", c.vhost, names.join(", "));
        let days = (c.not_after - now).div_euclid(86400);
        let public: Vec<&String> = names.iter().filter(|n| is_public(n)).collect();
        let line = match &c.source {
            _ if c.not_after <= now => Line::fail(
                CHECK,
                format!("{shown}: expired {} days ago", -days),
                renew_fix(&c.source),
            ),
            Source::SelfSigned if !public.is_empty() => Line::fail(
                CHECK,
                format!(
                    "{shown}: self-signed on a public name ({}): browsers refuse it",
                    public.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
                ),
                format!(
                    "set tls = \"acme\" (or cert/key files) in vhosts/{}.toml",
                    c.vhost
                ),
            ),
            Source::AcmePending => {
                let st = acme.status(&c.vhost);
                Line::warn(
                    CHECK,
                    match (st.last_error, st.next_attempt) {
                        (Some(e), Some((t, n))) => format!(
                            "{shown}: no ACME certificate yet; {} failed, last error: {e}; next attempt {}",
                            crate::cli::out::count(n as usize, "order"),
                            format_time(t)
                        ),
                        (Some(e), None) => format!("{shown}: no ACME certificate yet; last error: {e}"),
                        (None, _) => format!("{shown}: no ACME certificate yet (ordering)"),
                    },
                    "vestibule check --dns; see vestibule cert status",
                )
            }
            _ if days < WARN_DAYS => Line::warn(
                CHECK,
                format!("{shown}: expires in {days} days"),
                renew_fix(&c.source),
            ),
            Source::Acme => match acme.status(&c.vhost).last_error {
                Some(e) => Line::warn(
                    CHECK,
                    format!(
                        "{shown}: {days} days left; last renewal failed: {e}{}",
                        acme.status(&c.vhost)
                            .next_attempt
                            .map(|(t, _)| format!("; next attempt {}", format_time(t)))
                            .unwrap_or_default()
                    ),
                    "vestibule check --dns; see vestibule cert status",
                ),
                None => Line::ok(
                    CHECK,
                    format!(
                        "{shown}: ACME, {days} days left, next renewal {}",
                        // rustls-acme renews at two thirds of the lifetime.
                        format_time(c.not_after - (c.not_after - c.not_before) / 3)
                    ),
                ),
            },
            s => Line::ok(CHECK, format!("{shown}: {}, {days} days left", s.label())),
        };
        lines.push(line);
    }
    if lines.is_empty() {
        lines.push(Line::ok(CHECK, "no vhost serves TLS"));
    }
    lines
}

fn renew_fix(source: &Source) -> String {
    match source {
        Source::Files { cert, .. } => format!("replace {} and reload", cert.display()),
        Source::Acme | Source::AcmePending => "vestibule check --dns; see vestibule cert status".into(),
        Source::SelfSigned => "systemctl reload vestibule (a new self-signed certificate)".into(),
    }
}

/// Whether a browser from elsewhere may ask for this name: not loopback, not a private address, not
/// a special-use domain (RFC 6761, RFC 8375).
pub fn is_public(name: &str) -> bool {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    if let Ok(ip) = name.trim_matches(['[', ']']).parse::<IpAddr>() {
        return match ip {
            IpAddr::V4(v4) => !(v4.is_loopback() || v4.is_private() || v4.is_link_local()),
            IpAddr::V6(v6) => !(v6.is_loopback() || (v6.segments()[0] & 0xfe00) == 0xfc00),
        };
    }
    let private = [
        "localhost",
        "test",
        "invalid",
        "local",
        "internal",
        "lan",
        "home.arpa",
    ];
    let name = name.trim_start_matches("*.");
    !private
        .iter()
        .any(|p| name == *p || name.ends_with(&format!(".{p}")))
}

/// Check 4, upstreams: each server of each pool accepts a TCP connection within [`DEADLINE`].
pub async fn upstreams(cfg: &Config, dns: &crate::dns::Dns) -> Vec<Line> {
    const CHECK: &str = "upstreams";
    let mut lines = Vec::new();
    for pool in pools(cfg) {
        for server in &pool.servers {
            let shown = format!("{} {}:{}", pool.name, server.host, server.port);
            lines.push(match connect(dns, &server.host, server.port).await {
                Ok(addr) => Line::ok(CHECK, format!("{shown} answers ({addr})")),
                Err(e) => Line::fail(
                    CHECK,
                    format!("{shown} does not answer: {e}"),
                    format!(
                        "start the application server, or fix `servers` of upstream {}",
                        pool.name
                    ),
                ),
            });
        }
    }
    lines
}

/// Every pool: the named ones, then those written inline in a vhost or one of its routes.
fn pools(cfg: &Config) -> impl Iterator<Item = &crate::proxy::config::upstream::UpstreamConfig> {
    use crate::proxy::config::upstream::UpstreamRef;
    let inline = cfg.vhosts.iter().flat_map(|v| {
        v.upstream
            .iter()
            .chain(v.routes.iter().filter_map(|r| r.upstream.as_ref()))
            .filter_map(|u| match u {
                UpstreamRef::Inline(pool) => Some(pool),
                _ => None,
            })
    });
    cfg.upstreams.iter().chain(inline)
}

/// The first address of `host:port` that accepts a connection, the name resolved as the proxy
/// resolves it (vestibule's resolver: `[dns] servers`, else the system's), each step within
/// [`DEADLINE`].
async fn connect(dns: &crate::dns::Dns, host: &str, port: u16) -> std::io::Result<SocketAddr> {
    let host = host.trim_matches(['[', ']']);
    let resolved = tokio::time::timeout(DEADLINE, dns.lookup_ip(host))
        .await
        .map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("{host} did not resolve within {} s", DEADLINE.as_secs()),
            )
        })?
        .map_err(|e| std::io::Error::other(format!("{host} does not resolve: {e}")))?;
    let mut last = std::io::Error::other(format!("{host} has no address"));
    for ip in resolved.addrs {
        let addr = SocketAddr::new(ip, port);
        match tokio::time::timeout(DEADLINE, tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(_)) => return Ok(addr),
            Ok(Err(e)) => last = e,
            Err(_) => last = std::io::Error::new(std::io::ErrorKind::TimedOut, "connection timed out"),
        }
    }
    Err(last)
}

/// A queued message older than this is a warning: delivery is retried well within it.
pub const QUEUE_WARN_SECS: u64 = 3600;

/// Check 7, mail queue: the oldest message in the relay's spool is younger than
/// [`QUEUE_WARN_SECS`]. No line without `[mail]`.
pub fn mail_queue(cfg: &Config) -> Vec<Line> {
    const CHECK: &str = "mail queue";
    if cfg.mail.is_none() {
        return Vec::new();
    }
    let dir = cfg.state_dir.join("mail/queue");
    let entries = match crate::mail::spool::entries(&dir) {
        Ok(e) => e,
        // No queue directory yet: nothing was ever queued.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return vec![Line::ok(CHECK, "empty")],
        Err(e) => {
            return vec![Line::warn(
                CHECK,
                format!("cannot read the queue {}: {e}", dir.display()),
                "run doctor as root (or as the user vestibule runs as)",
            )]
        }
    };
    let mut created = Vec::new();
    let mut unreadable = 0usize;
    for id in entries {
        match crate::mail::spool::read_envelope(&dir, &id) {
            Ok(m) => created.push(m.created),
            Err(_) => unreadable += 1,
        }
    }
    if unreadable > 0 {
        return vec![Line::warn(
            CHECK,
            format!(
                "{} in {} cannot be read ({} readable)",
                crate::cli::out::count(unreadable, "queued message"),
                dir.display(),
                created.len()
            ),
            "run doctor as root (or as the user vestibule runs as); vestibule mail queue lists them",
        )];
    }
    let now = unix_now().max(0) as u64;
    match created.iter().min() {
        None => vec![Line::ok(CHECK, "empty")],
        Some(oldest) => {
            let age = now.saturating_sub(*oldest);
            let what = format!(
                "{} queued, the oldest for {} min",
                crate::cli::out::count(created.len(), "message"),
                age / 60
            );
            if age > QUEUE_WARN_SECS {
                vec![Line::warn(
                    CHECK,
                    what,
                    "vestibule mail queue (each recipient's last reply); check the smarthost",
                )]
            } else {
                vec![Line::ok(CHECK, what)]
            }
        }
    }
}

/// Run every check on a configuration that loaded, in the report's order; `sources` says where
/// the other products' configurations are read.
pub fn all(cfg: &Config, modules: &Modules, ctx: &Context, sources: &Sources) -> Vec<Line> {
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            return vec![Line::fail(
                "doctor",
                format!("cannot start the network checks' runtime: {e}"),
                "raise the open-files limit (ulimit -n)",
            )]
        }
    };
    let doctor = &modules.doctor;
    let acme_names = modules.tls.acme_names();
    let mut lines = listeners(cfg);
    let names = super::dns::names(cfg, &acme_names);
    lines.extend(rt.block_on(super::dns::check(&names, &ctx.dns, cfg, &doctor.config)));
    lines.extend(certificates(
        modules.tls.snapshot(),
        &modules.tls.acme_from_disk(),
    ));
    lines.extend(rt.block_on(upstreams(cfg, &ctx.dns)));
    let http = super::http::client(None);
    match &http {
        Ok(client) => lines.extend(rt.block_on(super::http::mattermost_ping(cfg, client))),
        Err(e) => lines.push(Line::fail(
            "doctor",
            format!("cannot build an HTTP client, so Mattermost and the clock are not checked: {e}"),
            "check the system's CA certificates (update-ca-certificates)",
        )),
    }
    // The integrate back ends run their own runtime: outside ours.
    let (mattermost, documentserver) = sources.resolve(&modules.integrate);
    lines.extend(super::mattermost::settings(
        cfg,
        &mattermost,
        modules.integrate.packager_defaults,
    ));
    let published = published(cfg).unwrap_or_default();
    lines.extend(rt.block_on(super::embed::check(cfg, modules.tls.snapshot(), &published)));
    lines.extend(super::onlyoffice::check(
        cfg,
        &mattermost,
        documentserver.as_ref(),
    ));
    lines.extend(rt.block_on(super::smarthost::check(modules.mail.smarthost(), ctx.dns.clone())));
    lines.extend(mail_queue(cfg));
    lines.extend(rt.block_on(super::push::check(cfg)));
    if let Ok(client) = &http {
        let peer = super::http::clock_peer(cfg, doctor.clock_url.as_ref(), !acme_names.is_empty());
        lines.extend(rt.block_on(super::http::clock(peer, client)));
    }
    lines
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::{certificates, is_public};
    use crate::doctor::Status;
    use crate::host::HostPattern;
    use crate::tls::acme::{Order, Registry};
    use crate::tls::backoff::Backoff;
    use crate::tls::load::{self, format_time, Source};
    use crate::tls::store::CertSnapshot;

    fn acme_cert(source: Source) -> (CertSnapshot, load::Served) {
        let names = [HostPattern::Exact("chat.example.org".into())];
        let mut served = load::self_signed("chat", &names).expect("a self-signed certificate");
        served.source = source;
        let snap = CertSnapshot {
            certs: vec![Arc::new(served.clone())],
            ..CertSnapshot::default()
        };
        (snap, served)
    }

    #[test]
    fn an_acme_certificate_shows_its_next_renewal() {
        let (snap, c) = acme_cert(Source::Acme);
        let lines = certificates(&snap, &Registry::default());
        assert_eq!(lines[0].status, Status::Ok, "{lines:?}");
        let renewal = format_time(c.not_after - (c.not_after - c.not_before) / 3);
        assert!(
            lines[0].what.contains("ACME, ") && lines[0].what.ends_with(&format!("next renewal {renewal}")),
            "{lines:?}"
        );
    }

    #[test]
    fn a_failed_acme_order_warns_with_its_error_and_next_attempt() {
        let (snap, _) = acme_cert(Source::AcmePending);
        let dir = tempfile::tempdir().unwrap();
        let backoff = Backoff::load(dir.path());
        let domains = vec!["chat.example.org".to_string()];
        let (next, _) = backoff.failed(
            &domains,
            crate::tls::load::unix_now(),
            "urn:ietf:params:acme:error:dns",
        );
        let registry = Registry::default();
        registry.restore(
            &Order {
                vhost: "chat".into(),
                domains,
            },
            &Backoff::load(dir.path()),
        );
        let lines = certificates(&snap, &registry);
        assert_eq!(lines[0].status, Status::Warn, "{lines:?}");
        assert!(
            lines[0].what.ends_with(&format!(
                "no ACME certificate yet; 1 order failed, last error: urn:ietf:params:acme:error:dns; next attempt {}",
                format_time(next)
            )),
            "{lines:?}"
        );
        assert_eq!(lines[0].fix, "vestibule check --dns; see vestibule cert status");
    }

    #[test]
    fn public_names_are_those_a_browser_elsewhere_may_ask_for() {
        for n in ["chat.example.org", "*.example.org", "8.8.8.8", "mattermost.com."] {
            assert!(is_public(n), "{n}");
        }
        for n in [
            "localhost",
            "chat.localhost",
            "box.lan",
            "a.home.arpa",
            "127.0.0.1",
            "10.1.2.3",
            "[::1]",
            "x.test",
        ] {
            assert!(!is_public(n), "{n}");
        }
    }
}
