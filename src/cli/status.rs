//! `vestibule status`: ask the running daemon (its admin listener) what it sees right now.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use super::out::{errln, fail, out};
use crate::config::{self, Config, Location};

pub fn status(location: Location) -> i32 {
    let addr = match config::load(&location) {
        Ok(cfg) => admin_addr(&cfg),
        Err(diags) => {
            super::out::invalid(&diags);
            return 1;
        }
    };
    match fetch(addr, "/status") {
        Ok(body) => {
            out!("{body}");
            0
        }
        Err(e) => {
            fail!("cannot reach the daemon's admin listener at {addr}: {e}");
            errln!(
                "    hint: is vestibule running (systemctl status vestibule)? is [admin] listen the same?"
            );
            2
        }
    }
}

/// The running daemon's admin listener: the address it published in `<state_dir>/listening` (the
/// port the kernel chose when `[admin] listen` has port 0, and the one it really serves on if the
/// file changed since it started), else the configured one.
pub fn admin_addr(cfg: &Config) -> SocketAddr {
    published(&cfg.state_dir, "admin").unwrap_or(cfg.admin.listen)
}

/// The first `kind` address in the daemon's `listening` file, if it runs and published one.
pub(super) fn published(state_dir: &Path, kind: &str) -> Option<SocketAddr> {
    let text = std::fs::read_to_string(state_dir.join(super::run::LISTENING)).ok()?;
    first_of(&text, kind)
}

/// The first `kind address` line's address (`kind` alone on its line is skipped).
fn first_of(listening: &str, kind: &str) -> Option<SocketAddr> {
    listening.lines().find_map(|line| {
        let (k, addr) = line.split_once(' ')?;
        (k == kind).then(|| addr.trim().parse().ok()).flatten()
    })
}

/// A plain HTTP/1.0 GET: the admin listener is on loopback and answers small bodies.
pub fn fetch(addr: std::net::SocketAddr, path: &str) -> std::io::Result<String> {
    match request(addr, "GET", path)? {
        (200, body) => Ok(body),
        (status, body) => Err(std::io::Error::other(format!("{status} {}", body.trim_end()))),
    }
}

/// One HTTP/1.0 request to the admin listener: (status, body).
pub fn request(addr: std::net::SocketAddr, method: &str, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(3))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: 0\r\n\r\n"
    )?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(head.lines().next().unwrap_or("no answer").to_string()))?;
    Ok((status, body.to_string()))
}

#[cfg(test)]
mod tests {
    use super::first_of;

    #[test]
    fn finds_the_published_admin_address() {
        let text = "http 127.0.0.1:41000\nadmin 127.0.0.1:41001\nsmtp [::1]:41002\n";
        assert_eq!(first_of(text, "admin"), Some("127.0.0.1:41001".parse().unwrap()));
        assert_eq!(first_of(text, "smtp"), Some("[::1]:41002".parse().unwrap()));
        assert_eq!(first_of(text, "push"), None);
        assert_eq!(first_of("admin\nadmin nonsense\n", "admin"), None);
    }
}
