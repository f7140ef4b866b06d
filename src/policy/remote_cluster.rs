//! Remote-cluster guard: Mattermost's server-to-server routes (connected workspaces / shared channels,
//! spec/mattermost-proxy.md) accepted only from configured peer networks, and each peer's pings
//! observed so an admin can see which connections are alive.
//!
//! Only the five peer routes are guarded: every other route under `/api/v4/remotecluster` needs a user
//! session, which Mattermost checks itself. Never records anything a foreign network sent: pings count
//! only when they come from an allowed network and Mattermost answered 200.

pub(crate) mod config;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

/// The peer routes: ping, msg, confirm_invite, upload/<id>, <user_id>/image.
pub const PEER_ROUTES: &str =
    r"^/api/v4/remotecluster/(?:ping|msg|confirm_invite|upload/[A-Za-z0-9]+|[A-Za-z0-9]+/image)$";
pub const PING_PATH: &str = "/api/v4/remotecluster/ping";
/// Mattermost pings every 60 s; five minutes of silence means the connection is down.
pub const OFFLINE_AFTER: Duration = Duration::from_secs(300);
/// Bound on remembered peers (ids come from allowed networks only, but stay bounded anyway).
const MAX_PEERS: usize = 256;

#[derive(Debug)]
pub struct Guard {
    pub allow: Vec<ipnet::IpNet>,
    pub routes: regex::Regex,
}

impl Guard {
    pub fn new(allow: Vec<ipnet::IpNet>) -> Guard {
        Guard {
            allow,
            routes: regex::Regex::new(PEER_ROUTES).expect("constant regex"),
        }
    }

    pub fn is_peer_route(&self, path: &str) -> bool {
        self.routes.is_match(path)
    }

    pub fn allows(&self, ip: Option<IpAddr>) -> bool {
        ip.is_some_and(|ip| self.allow.iter().any(|n| n.contains(&ip)))
    }
}

/// What vestibule knows about one peer connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub id: String,
    pub source: IpAddr,
    pub last_ping: SystemTime,
}

impl Peer {
    pub fn online(&self, now: SystemTime) -> bool {
        now.duration_since(self.last_ping)
            .map_or(true, |d| d < OFFLINE_AFTER)
    }
}

/// Peers seen across all vhosts. Written once per peer ping (every 60 s), read by /metrics and
/// `vestibule status`: a mutex is cheaper here than any lock-free structure would be.
#[derive(Debug, Default)]
pub struct Peers {
    inner: Mutex<HashMap<String, Peer>>,
}

impl Peers {
    /// Record a successful ping. Ids are limited to a sane charset and length.
    pub fn ping(&self, id: &str, source: IpAddr, at: SystemTime) {
        if id.is_empty()
            || id.len() > 64
            || !id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return;
        }
        let Ok(mut map) = self.inner.lock() else { return };
        if map.len() >= MAX_PEERS && !map.contains_key(id) {
            return;
        }
        map.insert(
            id.to_string(),
            Peer {
                id: id.to_string(),
                source,
                last_ping: at,
            },
        );
    }

    pub fn list(&self) -> Vec<Peer> {
        let mut v: Vec<Peer> = self
            .inner
            .lock()
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_routes() {
        let g = Guard::new(vec!["203.0.113.0/24".parse().unwrap()]);
        for p in [
            "/api/v4/remotecluster/ping",
            "/api/v4/remotecluster/msg",
            "/api/v4/remotecluster/confirm_invite",
            "/api/v4/remotecluster/upload/abc123",
            "/api/v4/remotecluster/u1x2/image",
        ] {
            assert!(g.is_peer_route(p), "{p}");
        }
        for p in [
            "/api/v4/remotecluster",
            "/api/v4/remotecluster/abc",
            "/api/v4/sharedchannels/x",
            "/api/v4/remotecluster/ping/x",
        ] {
            assert!(!g.is_peer_route(p), "{p}");
        }
        assert!(g.allows(Some("203.0.113.9".parse().unwrap())));
        assert!(!g.allows(Some("198.51.100.1".parse().unwrap())));
        assert!(!g.allows(None));
    }

    #[test]
    fn online_state_and_bounds() {
        let peers = Peers::default();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        peers.ping("abc", "127.0.0.1".parse().unwrap(), t0);
        peers.ping("bad id!", "127.0.0.1".parse().unwrap(), t0);
        let l = peers.list();
        assert_eq!(l.len(), 1);
        assert!(l[0].online(t0 + Duration::from_secs(299)));
        assert!(!l[0].online(t0 + Duration::from_secs(301)));
    }
}
