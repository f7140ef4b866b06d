//! Checks over HTTP: Mattermost answers its health endpoint, and the clock agrees with a peer's
//! `Date`. Every request carries [`DEADLINE`].

use std::path::Path;

use super::checks::DEADLINE;
use super::Line;
use crate::config::Config;
use crate::proxy::config::upstream::UpstreamConfig;

/// A client trusting the system roots (and `ca_file`), answering within [`DEADLINE`].
pub fn client(ca_file: Option<&Path>) -> Result<reqwest::Client, String> {
    // reqwest checks for a process-wide provider even with a preconfigured TLS backend.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let tls = crate::tls::client::config(ca_file, &[b"http/1.1"]).map_err(|e| e.to_string())?;
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .timeout(DEADLINE)
        .connect_timeout(DEADLINE)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("vestibule-doctor/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| e.to_string())
}

/// reqwest's own message ("error sending request") hides why; the innermost cause says it.
pub fn cause(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return format!("no answer within {} s", DEADLINE.as_secs());
    }
    let mut cause: &dyn std::error::Error = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// The pools of the vhosts that front Mattermost (see `integrate::mattermost::is_mattermost`: a
/// route for `/api/v4/websocket`, or a health check on `/api/v4/system/ping`).
pub fn mattermost_pools(cfg: &Config) -> Vec<(&str, &UpstreamConfig)> {
    cfg.vhosts
        .iter()
        .filter(|v| crate::integrate::mattermost::is_mattermost(cfg, v))
        .filter_map(|v| Some((v.name.as_str(), crate::integrate::mattermost::upstream(cfg, v)?)))
        .collect()
}

/// `http://host:port` of one server of `pool`.
fn base(pool: &UpstreamConfig, server: &crate::proxy::config::upstream::ServerAddr) -> String {
    let scheme = if pool.tls { "https" } else { "http" };
    let host = if server.host.contains(':') && !server.host.starts_with('[') {
        format!("[{}]", server.host)
    } else {
        server.host.clone()
    };
    format!("{scheme}://{host}:{}", server.port)
}

/// Check: each server behind a Mattermost vhost answers `GET /api/v4/system/ping` with
/// `{"status":"OK"}` (Mattermost's own health answer: its database and file store work).
pub async fn mattermost_ping(cfg: &Config, client: &reqwest::Client) -> Vec<Line> {
    const CHECK: &str = "mattermost";
    let mut lines = Vec::new();
    for (vhost, pool) in mattermost_pools(cfg) {
        for server in &pool.servers {
            let url = format!("{}/api/v4/system/ping", base(pool, server));
            let fix =
                format!("systemctl status mattermost; or fix `servers` of the upstream of vhost {vhost}");
            let answer = match client.get(&url).send().await {
                Ok(r) => {
                    let code = r.status().as_u16();
                    match r
                        .bytes()
                        .await
                        .map(|b| serde_json::from_slice::<serde_json::Value>(&b))
                    {
                        Ok(Ok(doc)) => Ok((code, doc)),
                        Ok(Err(e)) => Err(format!("HTTP {code}, not Mattermost's JSON ({e})")),
                        Err(e) => Err(format!("HTTP {code}, then {}", cause(&e))),
                    }
                }
                Err(e) => Err(cause(&e)),
            };
            lines.push(match answer {
                Ok((200, doc)) if doc["status"] == "OK" => {
                    Line::ok(CHECK, format!("{url} answers status OK"))
                }
                Ok((code, doc)) => Line::fail(
                    CHECK,
                    format!("{url} answers HTTP {code}, status {}", doc["status"]),
                    format!("Mattermost is unhealthy: see its log (mattermost.log); {fix}"),
                ),
                Err(e) => Line::fail(CHECK, format!("{url} does not answer: {e}"), fix),
            });
        }
    }
    lines
}

/// More seconds of difference than this is a warning: logs disagree, tokens near their leeway.
pub const CLOCK_WARN_SECS: i64 = 10;
/// More than this is a failure: JWTs (60 s leeway) and ACME orders are refused.
pub const CLOCK_FAIL_SECS: i64 = 300;

/// Where the clock is compared: `[doctor] clock_url`, else the ACME directory when a vhost uses
/// ACME, else the first Mattermost upstream.
pub fn clock_peer(cfg: &Config, clock_url: Option<&reqwest::Url>, acme: bool) -> Option<String> {
    if let Some(u) = clock_url {
        return Some(u.to_string());
    }
    if acme {
        return Some(cfg.acme.directory.clone());
    }
    let (_, pool) = mattermost_pools(cfg).into_iter().next()?;
    let server = pool.servers.first()?;
    Some(format!("{}/api/v4/system/ping", base(pool, server)))
}

/// Check: the system clock against the `Date` of `peer` (whole seconds; the request's own time is
/// well under one).
pub async fn clock(peer: Option<String>, client: &reqwest::Client) -> Vec<Line> {
    const CHECK: &str = "clock";
    let Some(url) = peer else {
        return vec![Line::ok(
            CHECK,
            "not compared: no ACME directory or Mattermost to ask (set [doctor] clock_url)",
        )];
    };
    let fix_peer = "set [doctor] clock_url to an HTTP server this machine reaches";
    let resp = match client.head(&url).send().await {
        Ok(r) => r,
        Err(e) => {
            return vec![Line::warn(
                CHECK,
                format!("cannot ask {url} for the time: {}", cause(&e)),
                fix_peer,
            )]
        }
    };
    let now = chrono::Utc::now().timestamp();
    let date = resp
        .headers()
        .get(reqwest::header::DATE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| chrono::DateTime::parse_from_rfc2822(v).ok());
    let Some(date) = date else {
        return vec![Line::warn(
            CHECK,
            format!("{url} sends no valid Date header"),
            fix_peer,
        )];
    };
    let skew = now - date.timestamp();
    let what = match skew {
        0 => format!("in step with {url}"),
        s if s > 0 => format!("{s} s ahead of {url}"),
        s => format!("{} s behind {url}", -s),
    };
    let fix = "enable time synchronisation: timedatectl set-ntp true (systemd-timesyncd or chrony)";
    vec![match skew.abs() {
        s if s > CLOCK_FAIL_SECS => {
            Line::fail(CHECK, format!("{what}: JWTs and ACME orders are refused"), fix)
        }
        s if s > CLOCK_WARN_SECS => Line::warn(CHECK, what, fix),
        _ => Line::ok(CHECK, what),
    }]
}
