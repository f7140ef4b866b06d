//! `[push]` and `[[push.route]]`: the push relay's section.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::config::diag::{Diagnostic, Diagnostics};
use crate::config::read::{self, TableReader};
use crate::config::source::{Loc, Node, Value};

/// `[push]`: the Mattermost push-notification relay.
#[derive(Debug, Clone)]
pub struct PushConfig {
    pub listen: SocketAddr,
    /// Client networks allowed to send (Mattermost servers).
    pub allow: Vec<ipnet::IpNet>,
    pub contents: crate::push::notification::Contents,
    pub rate_per_second: u32,
    pub rate_burst: u32,
    pub max_body: u64,
    pub attempt_timeout: Duration,
    pub total_timeout: Duration,
    pub routes: Vec<PushRoute>,
}

#[derive(Debug, Clone)]
pub struct PushRoute {
    pub loc: Loc,
    /// Platforms (`-vN` suffix stripped) this route serves.
    pub platforms: Vec<String>,
    pub dest: PushDest,
}

#[derive(Debug, Clone)]
pub enum PushDest {
    Upstream {
        url: String,
        ca_file: Option<PathBuf>,
    },
    Apns {
        key_file: PathBuf,
        key_id: String,
        team_id: String,
        topic: String,
        endpoint: String,
        ca_file: Option<PathBuf>,
    },
    Fcm {
        service_account_file: PathBuf,
        endpoint: String,
        ca_file: Option<PathBuf>,
    },
}

pub fn read_push(node: &Node, diags: &mut Diagnostics) -> Option<PushConfig> {
    use crate::push::notification::Contents;
    let mut t = TableReader::new(node, "[push]", diags)?;
    let listen = t.opt("listen", diags, read::socket_addr);
    let allow = t.opt("allow", diags, read::list(read::cidr));
    let contents = t.opt("contents", diags, read::one_of(&["full", "generic", "id_only"]));
    let rate = t.opt("rate_limit", diags, |n, name, d| {
        let mut r = TableReader::new(n, name.to_string(), d)?;
        let per = r.opt("per_second", d, read::int_in(1, 1_000_000));
        let burst = r.opt("burst", d, read::int_in(1, 1_000_000));
        r.finish(d);
        Some((per, burst))
    });
    let max_body = t.opt("max_body", diags, read::byte_size);
    let attempt = t.opt("attempt_timeout", diags, read::duration);
    let total = t.opt("total_timeout", diags, read::duration);
    let mut routes = Vec::new();
    if let Some(rn) = t.get("route") {
        let items: &[Node] = match &rn.value {
            Value::Array(items) => items,
            _ => std::slice::from_ref(rn),
        };
        for (i, item) in items.iter().enumerate() {
            if let Some(r) = read_push_route(item, &format!("[[push.route]] #{}", i + 1), diags) {
                routes.push(r);
            }
        }
    }
    t.finish(diags);
    let total = total.unwrap_or(Duration::from_secs(25));
    if total >= Duration::from_secs(30) {
        diags.push(
            Diagnostic::at(&node.loc, "[push] total_timeout must stay under 30s")
                .hint("Mattermost gives up after 30 s; an answer after that is lost"),
        );
    }
    if routes.is_empty() {
        diags.push(
            Diagnostic::at(&node.loc, "[push] has no [[push.route]]")
                .hint("add [[push.route]] platforms = [\"apple_rn\", \"android_rn\"] upstream = \"https://push.mattermost.com\""),
        );
    }
    let (per, burst) = rate.unwrap_or((None, None));
    Some(PushConfig {
        listen: listen.unwrap_or_else(|| "127.0.0.1:8066".parse().expect("constant")),
        allow: allow.unwrap_or_else(|| {
            vec![
                "127.0.0.0/8".parse().expect("constant"),
                "::1/128".parse().expect("constant"),
            ]
        }),
        contents: match contents {
            Some("generic") => Contents::Generic,
            Some("id_only") => Contents::IdOnly,
            _ => Contents::Full,
        },
        rate_per_second: per.unwrap_or(200) as u32,
        rate_burst: burst.unwrap_or(400) as u32,
        max_body: max_body.unwrap_or(64 << 10),
        attempt_timeout: attempt.unwrap_or(Duration::from_secs(8)),
        total_timeout: total,
        routes,
    })
}

fn read_push_route(node: &Node, what: &str, diags: &mut Diagnostics) -> Option<PushRoute> {
    let mut t = TableReader::new(node, what.to_string(), diags)?;
    let platforms = t.opt("platforms", diags, read::list(read::string));
    let upstream = t.opt("upstream", diags, read::string);
    let ca_file = t.opt("ca_file", diags, read::string).map(PathBuf::from);
    let apns = t.get("apns");
    let fcm = t.get("fcm");
    let mut dests = Vec::new();
    if let Some(url) = upstream {
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            diags.push(
                Diagnostic::at(
                    &node.loc,
                    format!("`upstream` in {what}: `{url}` is not an http(s) URL"),
                )
                .hint("write upstream = \"https://push.mattermost.com\""),
            );
        }
        dests.push(PushDest::Upstream {
            url,
            ca_file: ca_file.clone(),
        });
    }
    if let Some(n) = apns {
        let mut a = TableReader::new(n, format!("`apns` in {what}"), diags)?;
        let key_file = a.opt("key_file", diags, read::string);
        let key_id = a.opt("key_id", diags, read::string);
        let team_id = a.opt("team_id", diags, read::string);
        let topic = a.opt("topic", diags, read::string);
        let sandbox = a.opt("sandbox", diags, read::boolean).unwrap_or(false);
        let endpoint = a.opt("endpoint", diags, read::string);
        a.finish(diags);
        match (key_file, key_id, team_id, topic) {
            (Some(k), Some(kid), Some(team), Some(topic)) => dests.push(PushDest::Apns {
                key_file: k.into(),
                key_id: kid,
                team_id: team,
                topic,
                endpoint: endpoint.unwrap_or_else(|| {
                    if sandbox { crate::push::apns::SANDBOX } else { crate::push::apns::PRODUCTION }.to_string()
                }),
                ca_file: ca_file.clone(),
            }),
            _ => diags.push(
                Diagnostic::at(&n.loc, format!("`apns` in {what} needs key_file, key_id, team_id and topic"))
                    .hint("apns = { key_file = \"/etc/vestibule/secrets/AuthKey_ABC123.p8\", key_id = \"ABC123\", team_id = \"TEAM123\", topic = \"com.example.chat\" }"),
            ),
        }
    }
    if let Some(n) = fcm {
        let mut f = TableReader::new(n, format!("`fcm` in {what}"), diags)?;
        let sa = f.opt("service_account_file", diags, read::string);
        let endpoint = f.opt("endpoint", diags, read::string);
        f.finish(diags);
        match sa {
            Some(sa) => dests.push(PushDest::Fcm {
                service_account_file: sa.into(),
                endpoint: endpoint.unwrap_or_else(|| crate::push::fcm::ENDPOINT.to_string()),
                ca_file: ca_file.clone(),
            }),
            None => diags.push(Diagnostic::at(
                &n.loc,
                format!("`fcm` in {what} needs service_account_file"),
            )),
        }
    }
    t.finish(diags);
    let platforms = match platforms {
        Some(p) if !p.is_empty() => p,
        _ => {
            diags.push(
                Diagnostic::at(&node.loc, format!("{what} has no `platforms`"))
                    .hint("list the platforms it serves, e.g. platforms = [\"apple_rn\", \"android_rn\"]"),
            );
            return None;
        }
    };
    if dests.len() != 1 {
        diags.push(
            Diagnostic::at(&node.loc, format!("{what} needs exactly one of `upstream`, `apns`, `fcm`"))
                .hint("store apps: upstream = \"https://push.mattermost.com\"; self-built apps: apns = {...} or fcm = {...}"),
        );
        return None;
    }
    Some(PushRoute {
        loc: node.loc.clone(),
        platforms,
        dest: dests.remove(0),
    })
}
