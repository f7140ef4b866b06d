//! `vestibule status`: ask the running daemon (its admin listener) what it sees right now.

use std::io::{Read, Write};
use std::time::Duration;

use crate::config::{self, Location};

pub fn status(location: Location) -> i32 {
    let addr = match config::load(&location) {
        Ok(cfg) => cfg.admin.listen,
        Err(diags) => {
            eprintln!("{diags}");
            return 1;
        }
    };
    match fetch(addr, "/status") {
        Ok(body) => {
            print!("{body}");
            0
        }
        Err(e) => {
            eprintln!("vestibule: cannot reach the daemon's admin listener at {addr}: {e}");
            eprintln!(
                "    hint: is vestibule running (systemctl status vestibule)? is [admin] listen the same?"
            );
            2
        }
    }
}

/// A plain HTTP/1.0 GET: the admin listener is on loopback and answers small bodies.
pub fn fetch(addr: std::net::SocketAddr, path: &str) -> std::io::Result<String> {
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(3))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        return Err(std::io::Error::other(
            head.lines().next().unwrap_or("no answer").to_string(),
        ));
    }
    Ok(body.to_string())
}
