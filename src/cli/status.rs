//! `vestibule status`: ask the running daemon (its admin listener) what it sees right now.

use std::io::{Read, Write};
use std::time::Duration;

use super::out::{errln, fail, out};
use crate::config::{self, Location};

pub fn status(location: Location) -> i32 {
    let addr = match config::load(&location) {
        Ok(cfg) => cfg.admin.listen,
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
