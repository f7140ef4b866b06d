//! Access lines for requests the proxy never sees.
//!
//! pingora answers a malformed HTTP/1 request head with `400` (and `CONNECT` with `405`) before any
//! `ProxyHttp` hook runs, and [`super::conn`] closes heads that are too large (`431`) or too slow;
//! the proxy's `logging` hook sees none of them, yet they are what scanners send and what fail2ban's
//! `nginx-bad-request` filter looks for. [`Seen`] rides along with a connection's stream in
//! `conn::HeadLimited`: it keeps the first line the client sent and the status of the last response
//! head written, so that a request answered without the proxy can still be logged as nginx would,
//! with `"-"` for the headers it never parsed.
//!
//! Per connection: one line kept (at most [`MAX_LINE`] bytes). Per write: a prefix comparison.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::OnceLock;
use std::time::SystemTime;

use super::snapshot::Snapshot;

/// The longest request line kept for the log (scanners' garbage need not be kept whole).
const MAX_LINE: usize = 256;

/// What one connection showed of its requests and answers.
#[derive(Debug, Default)]
pub struct Seen {
    /// The status of the response head written since the last request ended (0: none).
    status: AtomicU16,
    /// The first line the client sent on this connection.
    first_line: OnceLock<Box<[u8]>>,
    /// A request was done with already: `first_line` is not the current request's.
    served: AtomicBool,
}

impl Seen {
    /// Bytes just read from the client.
    pub fn on_read(&self, new: &[u8]) {
        if self.first_line.get().is_none() && !new.is_empty() {
            let end = new
                .iter()
                .position(|&b| b == b'\r' || b == b'\n')
                .unwrap_or(new.len())
                .min(MAX_LINE);
            let _ = self.first_line.set(new[..end].into());
        }
    }

    /// Bytes about to be written to the client.
    pub fn on_write(&self, buf: &[u8]) {
        if let Some(status) = head_status(buf) {
            self.status.store(status, Ordering::Relaxed);
        }
    }

    /// One request on the connection is over; `proxied`: the proxy got it (and logged it).
    pub fn request_done(&self, proxied: bool, snap: &Snapshot, client: Option<IpAddr>) {
        let status = self.status.swap(0, Ordering::Relaxed);
        if status != 0 && !proxied {
            self.log(status, snap, client);
        }
        self.served.store(true, Ordering::Relaxed);
    }

    /// Log the current request as answered (or closed) with `status` without the proxy.
    pub fn log(&self, status: u16, snap: &Snapshot, client: Option<IpAddr>) {
        snap.unknown_metrics.by_class[usize::from(status / 100).min(5)].inc();
        if !snap.access_log {
            return;
        }
        let line = match self.first_line.get() {
            Some(l) if !self.served.load(Ordering::Relaxed) => &l[..],
            _ => &b"-"[..],
        };
        crate::access_log::write(super::access::refused_line(
            snap.log_format,
            client,
            line,
            status,
            SystemTime::now(),
        ));
    }
}

/// The status of `buf` if it starts an HTTP/1 response head.
fn head_status(buf: &[u8]) -> Option<u16> {
    let rest = buf
        .strip_prefix(b"HTTP/1.1 ")
        .or_else(|| buf.strip_prefix(b"HTTP/1.0 "))?;
    match rest {
        [a @ b'1'..=b'5', b @ b'0'..=b'9', c @ b'0'..=b'9', b' ', ..] => {
            Some(u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0'))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_heads_are_recognised() {
        assert_eq!(head_status(b"HTTP/1.1 400 Bad Request\r\n"), Some(400));
        assert_eq!(head_status(b"HTTP/1.0 405 Method Not Allowed\r\n"), Some(405));
        assert_eq!(head_status(b"HTTP/1.1 40"), None);
        assert_eq!(head_status(b"{\"json\": 1}"), None);
        assert_eq!(head_status(b"HTTP/2 200 "), None);
    }

    #[test]
    fn first_line_is_kept_once_and_bounded() {
        let seen = Seen::default();
        seen.on_read(b"GET /x HTTP/1.1\r\nHost: a\r\n");
        seen.on_read(b"POST /y HTTP/1.1\r\n");
        assert_eq!(
            seen.first_line.get().map(|l| &l[..]),
            Some(&b"GET /x HTTP/1.1"[..])
        );
        let long = Seen::default();
        long.on_read(&[b'a'; 1000]);
        assert_eq!(long.first_line.get().map(|l| l.len()), Some(MAX_LINE));
    }
}
