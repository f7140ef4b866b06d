//! `vestibule integrate mattermost`: the Mattermost settings that follow from vestibule's own
//! configuration (the Mattermost vhost, `[mail]`, `[push]`).
//!
//! Every key name, type and default below is Mattermost's own (`model.Config` in Mattermost's
//! server): `SMTPPort` is a string, `TrustedProxyIPHeader` a list of strings, the booleans are JSON
//! booleans. Values listed as defaults are what Mattermost writes into a fresh `config.json` or an
//! upgraded one (several settings differ between the two), so vestibule replaces them without
//! `--force`; any other value is an admin's choice and is only reported.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use serde_json::json;

use super::plan::{Setting, Want};
use crate::config::Config;
use crate::proxy::config::upstream::UpstreamRef;
use crate::proxy::config::vhost::VhostConfig;
use crate::push::notification::Contents;

/// Why the settings cannot be derived from vestibule's configuration.
#[derive(Debug, thiserror::Error)]
pub enum MattermostError {
    #[error(
        "no vhost of {origin} serves Mattermost (none has the websocket route or the \
         /api/v4/system/ping health check of the mattermost template){}: create one with \
         `vestibule vhost new --template mattermost --name NAME --upstream HOST:PORT`, or name it with --vhost",
        known(vhosts)
    )]
    NoVhost { origin: String, vhosts: Vec<String> },
    #[error(
        "several vhosts of {origin} look like Mattermost ({}): choose one with --vhost NAME",
        names.join(", ")
    )]
    SeveralVhosts { origin: String, names: Vec<String> },
    #[error("no vhost `{name}` in {origin}{}: give one of them to --vhost", known(vhosts))]
    UnknownVhost {
        name: String,
        origin: String,
        vhosts: Vec<String>,
    },
    #[error(
        "vhost `{0}` has only wildcard server names, so Mattermost's SiteURL cannot be derived: \
         add its exact name first in server_names"
    )]
    NoExactName(String),
}

fn known(vhosts: &[String]) -> String {
    if vhosts.is_empty() {
        " (it has no vhosts)".to_string()
    } else {
        format!(" (vhosts: {})", vhosts.join(", "))
    }
}

/// The command's options that shape the settings.
#[derive(Debug, Default, Clone)]
pub struct Options {
    /// The Mattermost vhost's name, when more than one (or none) looks like Mattermost.
    pub vhost: Option<String>,
    /// Also the defaults the Kopano packages set.
    pub packager_defaults: bool,
}

/// The settings to bring Mattermost in line with, and notes about what was left alone and why.
#[derive(Debug)]
pub struct Desired {
    /// The vhost they were derived from.
    pub vhost: String,
    pub settings: Vec<Setting>,
    pub notes: Vec<String>,
}

/// Mattermost's `PushNotificationContents` values, poorest first: `id_loaded` sends ids only (the
/// app fetches the message), `generic_no_channel` the sender's name, `generic` also the channel's,
/// `full` the message text as well.
pub const CONTENTS_ORDER: &[&str] = &["id_loaded", "generic_no_channel", "generic", "full"];

/// Derive the settings from a loaded, valid configuration.
pub fn desired(cfg: &Config, opts: &Options) -> Result<Desired, MattermostError> {
    let vhost = pick_vhost(cfg, opts.vhost.as_deref())?;
    let mut settings = Vec::new();
    let mut notes = Vec::new();

    settings.push(Setting::exact(
        "ServiceSettings.SiteURL",
        json!(site_url(cfg, vhost)?),
        // Empty in a fresh config.json; the developer default only with EnableDeveloper.
        &[json!(""), json!("http://localhost:8065")],
    ));

    let local = local_upstream(cfg, vhost);
    match local {
        Some(addr) => settings.push(Setting::exact(
            "ServiceSettings.ListenAddress",
            json!(addr.to_string()),
            &[json!(":8065")],
        )),
        None => notes.push(format!(
            "ServiceSettings.ListenAddress left alone: vhost `{}` does not have exactly one upstream \
             server on this machine's loopback, so Mattermost must stay reachable where it listens",
            vhost.name
        )),
    }

    // vestibule always sets both headers and overwrites what a client sent, so Mattermost may trust
    // them; older versions had this very list as their default.
    settings.push(Setting::exact(
        "ServiceSettings.TrustedProxyIPHeader",
        json!(["X-Forwarded-For", "X-Real-IP"]),
        &[json!([])],
    ));

    mail_settings(cfg, local.is_some(), &mut settings, &mut notes);
    push_settings(cfg, local.is_some(), &mut settings, &mut notes);
    if opts.packager_defaults {
        settings.extend(packager_defaults());
    }
    Ok(Desired {
        vhost: vhost.name.clone(),
        settings,
        notes,
    })
}

pub(crate) fn is_mattermost(cfg: &Config, v: &VhostConfig) -> bool {
    let websocket = v.routes.iter().any(|r| r.path.is_match("/api/v4/websocket"));
    let ping =
        upstream(cfg, v).is_some_and(|u| u.health_check.path.as_deref() == Some("/api/v4/system/ping"));
    websocket || ping
}

pub(crate) fn upstream<'a>(
    cfg: &'a Config,
    v: &'a VhostConfig,
) -> Option<&'a crate::proxy::config::upstream::UpstreamConfig> {
    match v.upstream.as_ref()? {
        UpstreamRef::Inline(u) => Some(u),
        UpstreamRef::Named(n) => cfg.upstreams.iter().find(|u| u.name == n.name),
        UpstreamRef::Invalid => None,
    }
}

pub(crate) fn pick_vhost<'a>(
    cfg: &'a Config,
    name: Option<&str>,
) -> Result<&'a VhostConfig, MattermostError> {
    let names = || cfg.vhosts.iter().map(|v| v.name.clone()).collect();
    if let Some(name) = name {
        return cfg
            .vhosts
            .iter()
            .find(|v| v.name == name)
            .ok_or_else(|| MattermostError::UnknownVhost {
                name: name.to_string(),
                origin: cfg.origin.clone(),
                vhosts: names(),
            });
    }
    let found: Vec<&VhostConfig> = cfg.vhosts.iter().filter(|v| is_mattermost(cfg, v)).collect();
    match found[..] {
        [one] => Ok(one),
        [] => Err(MattermostError::NoVhost {
            origin: cfg.origin.clone(),
            vhosts: names(),
        }),
        _ => Err(MattermostError::SeveralVhosts {
            origin: cfg.origin.clone(),
            names: found.iter().map(|v| v.name.clone()).collect(),
        }),
    }
}

/// `https://name[:port]` for a TLS vhost (the first HTTPS listener's port), `http://` otherwise:
/// the address users type, which Mattermost puts in links, emails and push payloads.
pub(crate) fn site_url(cfg: &Config, v: &VhostConfig) -> Result<String, MattermostError> {
    let name = v
        .server_names
        .iter()
        .find_map(|(p, _)| match p {
            crate::host::HostPattern::Exact(n) => Some(n.clone()),
            crate::host::HostPattern::Wildcard(_) => None,
        })
        .ok_or_else(|| MattermostError::NoExactName(v.name.clone()))?;
    let (scheme, port, default) = if v.tls.is_some() {
        ("https", cfg.proxy.listen_tls.first().map(|l| l.addr.port()), 443)
    } else {
        ("http", cfg.proxy.listen.first().map(SocketAddr::port), 80)
    };
    let host = if name.contains(':') {
        format!("[{name}]")
    } else {
        name
    };
    Ok(match port {
        Some(p) if p != default => format!("{scheme}://{host}:{p}"),
        _ => format!("{scheme}://{host}"),
    })
}

/// The vhost's one upstream server when it is on loopback: then vestibule is Mattermost's only way
/// in, and Mattermost can listen on loopback only, which is also what makes trusting the forwarded
/// headers safe.
fn local_upstream(cfg: &Config, v: &VhostConfig) -> Option<SocketAddr> {
    let servers = &upstream(cfg, v)?.servers;
    let [server] = &servers[..] else { return None };
    let ip: IpAddr = match server.host.as_str() {
        "localhost" => IpAddr::V4(Ipv4Addr::LOCALHOST),
        h => h.trim_start_matches('[').trim_end_matches(']').parse().ok()?,
    };
    ip.is_loopback().then_some(SocketAddr::new(ip, server.port))
}

/// Where Mattermost reaches a vestibule listener: its own address, or loopback for a wildcard
/// listener when Mattermost runs on this machine.
fn reachable(addr: SocketAddr, local: bool) -> Option<SocketAddr> {
    if !addr.ip().is_unspecified() {
        return Some(addr);
    }
    local.then(|| {
        let lo = if addr.is_ipv4() {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        } else {
            IpAddr::V6(std::net::Ipv6Addr::LOCALHOST)
        };
        SocketAddr::new(lo, addr.port())
    })
}

fn mail_settings(cfg: &Config, local: bool, settings: &mut Vec<Setting>, notes: &mut Vec<String>) {
    let Some(mail) = &cfg.mail else {
        notes.push("EmailSettings left alone: there is no [mail] relay to send through".into());
        return;
    };
    let Some(addr) = mail.listen.first().and_then(|a| reachable(*a, local)) else {
        notes.push(
            "EmailSettings left alone: [mail] listen is empty or a wildcard address, and Mattermost \
             is not on this machine; give [mail] listen an address Mattermost can reach"
                .into(),
        );
        return;
    };
    // Relay clients in trusted_networks send without AUTH; the plain listener offers no TLS to
    // need (STARTTLS only with a certificate, and loopback needs none). A Mattermost on this
    // machine connects from the address it connects to; a remote one's address is not known here.
    if local && !mail.trusted_networks.iter().any(|n| n.contains(&addr.ip())) {
        notes.push(format!(
            "[mail] trusted_networks does not contain {}: the relay refuses Mattermost's mail without \
             AUTH; add Mattermost's address to trusted_networks",
            addr.ip()
        ));
    }
    settings.push(Setting::exact(
        "EmailSettings.SMTPServer",
        json!(addr.ip().to_string()),
        &[json!("localhost"), json!("")],
    ));
    // A string in Mattermost's configuration, not a number.
    settings.push(Setting::exact(
        "EmailSettings.SMTPPort",
        json!(addr.port().to_string()),
        &[json!("10025"), json!("")],
    ));
    settings.push(Setting::exact(
        "EmailSettings.ConnectionSecurity",
        json!(""),
        &[json!("")],
    ));
    settings.push(Setting::exact(
        "EmailSettings.EnableSMTPAuth",
        json!(false),
        &[json!(false)],
    ));
    // Mattermost's default is already true: false is an admin's choice, and only --force undoes it.
    settings.push(Setting::exact(
        "EmailSettings.SendEmailNotifications",
        json!(true),
        &[],
    ));
    let domain = mail
        .sender_domains
        .as_ref()
        .and_then(|d| d.value.entries().iter().find(|e| !e.starts_with('.')).cloned());
    match domain {
        Some(d) => settings.push(Setting::exact(
            "EmailSettings.FeedbackEmail",
            json!(format!("noreply@{d}")),
            &[json!("test@example.com"), json!("")],
        )),
        None => notes.push(
            "EmailSettings.FeedbackEmail left alone: [mail] sender_domains names no domain to send from"
                .into(),
        ),
    }
}

fn push_settings(cfg: &Config, local: bool, settings: &mut Vec<Setting>, notes: &mut Vec<String>) {
    let Some(push) = &cfg.push else {
        notes.push("push settings left alone: there is no [push] relay".into());
        return;
    };
    let Some(addr) = reachable(push.listen, local) else {
        notes.push(
            "push settings left alone: [push] listen is a wildcard address and Mattermost is not on \
             this machine; give it an address Mattermost can reach"
                .into(),
        );
        return;
    };
    // Default true for a fresh configuration, false in an upgraded one.
    settings.push(Setting::exact(
        "EmailSettings.SendPushNotifications",
        json!(true),
        &[json!(false)],
    ));
    // The test server is a fresh configuration's default, empty an upgraded one's.
    settings.push(Setting::exact(
        "EmailSettings.PushNotificationServer",
        json!(format!("http://{addr}")),
        &[json!("https://push-test.mattermost.com"), json!("")],
    ));
    // The relay strips what is above its ceiling anyway; Mattermost should not send it at all.
    // Mattermost sends `id_loaded` only with a licence that has the feature and falls back to
    // `generic` without one; the relay's `id_only` then still cuts that down to ids.
    let ceiling = match push.contents {
        Contents::Full => "full",
        Contents::Generic => "generic",
        Contents::IdOnly => "id_loaded",
    };
    settings.push(Setting {
        key: "EmailSettings.PushNotificationContents",
        want: Want::AtMost {
            order: CONTENTS_ORDER,
            ceiling,
        },
        defaults: vec![json!("full")],
        add_if_absent: true,
        if_absent: "",
    });
}

/// The defaults the Kopano packages set: no diagnostics sent to Mattermost, webhooks may post
/// under their own name and icon (bridges and bots rely on it), notification emails batched, and
/// only admins create teams.
fn packager_defaults() -> Vec<Setting> {
    vec![
        Setting::exact("LogSettings.EnableDiagnostics", json!(false), &[json!(true)]),
        Setting::exact(
            "ServiceSettings.EnablePostUsernameOverride",
            json!(true),
            &[json!(false)],
        ),
        Setting::exact(
            "ServiceSettings.EnablePostIconOverride",
            json!(true),
            &[json!(false)],
        ),
        Setting::exact("EmailSettings.EnableEmailBatching", json!(true), &[json!(false)]),
        Setting {
            key: "TeamSettings.EnableTeamCreation",
            want: Want::Exact(json!(false)),
            defaults: vec![json!(true)],
            // Gone from recent Mattermost: team creation is a permission there.
            add_if_absent: false,
            if_absent: "this Mattermost has no such setting: team creation is the \"Create Teams\" \
                        permission; take it from members in System Console > User Management > Permissions",
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{load, Location};

    const MATTERMOST_VHOST: &str = "server_names = [\"chat.example.org\"]\nupstream = [\"UP\"]\n\
        [[route]]\npath = \"^/api/v[0-9]+/(users/)?websocket$\"\n";

    /// Load a tree with `main` (after `state_dir`) and `vhosts` (name, upstream).
    fn config(main: &str, vhosts: &[(&str, &str)]) -> (tempfile::TempDir, Config) {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        std::fs::write(
            dir.path().join("vestibule.toml"),
            format!("state_dir = \"{}\"\n{main}", state.display()),
        )
        .unwrap();
        std::fs::create_dir(dir.path().join("vhosts")).unwrap();
        for (name, up) in vhosts {
            let text = MATTERMOST_VHOST.replace("chat.example.org", &format!("{name}.example.org"));
            std::fs::write(
                dir.path().join(format!("vhosts/{name}.toml")),
                text.replace("UP", up),
            )
            .unwrap();
        }
        let cfg = load(&Location::Explicit(dir.path().join("vestibule.toml"))).unwrap();
        (dir, cfg)
    }

    fn want<'a>(d: &'a Desired, key: &str) -> Option<&'a Want> {
        d.settings.iter().find(|s| s.key == key).map(|s| &s.want)
    }

    #[test]
    fn a_remote_mattermost_keeps_its_listen_address_and_needs_reachable_relays() {
        let (_dir, cfg) = config(
            "[proxy]\nlisten = [\"0.0.0.0:8080\"]\n[mail]\nlisten = [\"0.0.0.0:25\"]\nhostname = \"mx.example.org\"\n",
            &[("chat", "10.0.0.5:8065")],
        );
        let d = desired(&cfg, &Options::default()).unwrap();
        assert_eq!(
            want(&d, "ServiceSettings.SiteURL"),
            Some(&Want::Exact(json!("http://chat.example.org:8080")))
        );
        assert!(want(&d, "ServiceSettings.ListenAddress").is_none());
        assert!(want(&d, "EmailSettings.SMTPServer").is_none());
        assert!(d
            .notes
            .iter()
            .any(|n| n.starts_with("ServiceSettings.ListenAddress left alone")));
        assert!(d.notes.iter().any(|n| n.starts_with("EmailSettings left alone")));
        assert!(d.notes.iter().any(|n| n.starts_with("push settings left alone")));
    }

    #[test]
    fn a_local_mattermost_reaches_wildcard_relays_on_loopback() {
        let (_dir, cfg) = config(
            "[proxy]\nlisten = [\"127.0.0.1:80\"]\n[mail]\nlisten = [\"0.0.0.0:25\"]\nhostname = \"mx.example.org\"\n\
             [push]\nlisten = \"0.0.0.0:8066\"\ncontents = \"id_only\"\n\
             [[push.route]]\nplatforms = [\"apple_rn\"]\nupstream = \"https://push.mattermost.com\"\n",
            &[("chat", "localhost:8065")],
        );
        let d = desired(&cfg, &Options::default()).unwrap();
        assert_eq!(
            want(&d, "ServiceSettings.SiteURL"),
            Some(&Want::Exact(json!("http://chat.example.org")))
        );
        assert_eq!(
            want(&d, "ServiceSettings.ListenAddress"),
            Some(&Want::Exact(json!("127.0.0.1:8065")))
        );
        assert_eq!(
            want(&d, "EmailSettings.SMTPServer"),
            Some(&Want::Exact(json!("127.0.0.1")))
        );
        assert_eq!(
            want(&d, "EmailSettings.SMTPPort"),
            Some(&Want::Exact(json!("25")))
        );
        assert_eq!(
            want(&d, "EmailSettings.PushNotificationServer"),
            Some(&Want::Exact(json!("http://127.0.0.1:8066")))
        );
        assert!(matches!(
            want(&d, "EmailSettings.PushNotificationContents"),
            Some(Want::AtMost {
                ceiling: "id_loaded",
                ..
            })
        ));
    }

    #[test]
    fn a_relay_that_would_refuse_mattermost_is_named() {
        let (_dir, cfg) = config(
            "[mail]\nlisten = [\"127.0.0.1:2525\"]\nhostname = \"mx.example.org\"\ntrusted_networks = [\"10.0.0.0/8\"]\n",
            &[("chat", "127.0.0.1:8065")],
        );
        let d = desired(&cfg, &Options::default()).unwrap();
        assert!(
            d.notes
                .iter()
                .any(|n| n.starts_with("[mail] trusted_networks does not contain 127.0.0.1")),
            "{:?}",
            d.notes
        );
        let (_dir, cfg) = config(
            "[mail]\nlisten = [\"127.0.0.1:2525\"]\nhostname = \"mx.example.org\"\n",
            &[("chat", "127.0.0.1:8065")],
        );
        let d = desired(&cfg, &Options::default()).unwrap();
        assert!(
            !d.notes.iter().any(|n| n.contains("trusted_networks")),
            "{:?}",
            d.notes
        );
    }

    #[test]
    fn several_mattermost_vhosts_need_a_choice() {
        let (_dir, cfg) = config("", &[("a", "127.0.0.1:8065"), ("b", "127.0.0.1:8066")]);
        let e = desired(&cfg, &Options::default()).unwrap_err();
        assert!(matches!(e, MattermostError::SeveralVhosts { .. }), "{e}");
        let opts = Options {
            vhost: Some("b".into()),
            ..Options::default()
        };
        let d = desired(&cfg, &opts).unwrap();
        assert_eq!(d.vhost, "b");
        assert_eq!(
            want(&d, "ServiceSettings.ListenAddress"),
            Some(&Want::Exact(json!("127.0.0.1:8066")))
        );
        let opts = Options {
            vhost: Some("c".into()),
            ..Options::default()
        };
        assert!(matches!(
            desired(&cfg, &opts),
            Err(MattermostError::UnknownVhost { .. })
        ));
    }
}
