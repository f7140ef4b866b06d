//! The upstream side of a websocket handshake vestibule serves itself: connect, send the request
//! head, read the answer's head, and (when the upstream refuses the upgrade) its body. Errors are
//! pingora `Error`s from the upstream, so the proxy's error pages and failure counts apply as on
//! pingora's own path.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use pingora_error::{Error, ErrorType, OrErr, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

/// A response head larger than this is refused (pingora's own limit for upstream heads is 1 MiB;
/// an answer to a websocket handshake is a few hundred bytes).
const MAX_HEAD: usize = 64 << 10;
/// A refusal's body is relayed up to this size (Mattermost's are small JSON documents).
const MAX_BODY: usize = 1 << 20;
/// Headers of one response head.
const MAX_HEADERS: usize = 128;

fn up(etype: ErrorType, why: &'static str) -> Box<Error> {
    Error::explain(etype, why).into_up()
}

/// A TCP connection to `addr` within `limit`.
pub async fn connect(addr: SocketAddr, limit: Duration) -> Result<TcpStream> {
    match timeout(limit, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => {
            let _ = s.set_nodelay(true);
            Ok(s)
        }
        Ok(Err(e)) => {
            let etype = if e.kind() == std::io::ErrorKind::ConnectionRefused {
                ErrorType::ConnectRefused
            } else {
                ErrorType::ConnectError
            };
            Err(Error::because(etype, format!("connecting to {addr}"), e).into_up())
        }
        Err(_) => Err(up(ErrorType::ConnectTimedout, "websocket upstream connect")),
    }
}

/// Send `req`'s head within `limit`.
pub async fn send_head(s: &mut TcpStream, req: &RequestHeader, limit: Duration) -> Result<()> {
    let wire = pingora_core::protocols::http::v1::client::http_req_header_to_wire(req)
        .ok_or_else(|| Error::explain(ErrorType::InvalidHTTPHeader, "request target not sendable"))?;
    match timeout(limit, s.write_all(&wire)).await {
        Ok(r) => r
            .or_err(ErrorType::WriteError, "sending the websocket handshake upstream")
            .map_err(Error::into_up),
        Err(_) => Err(up(
            ErrorType::WriteTimedout,
            "sending the websocket handshake upstream",
        )),
    }
}

/// The upstream's answer head, and what came after it in the same reads (a hello-first upstream's
/// first frame, or the start of a refusal's body).
pub struct Answer {
    pub head: ResponseHeader,
    pub rest: Vec<u8>,
}

/// Read the answer head within `limit`.
pub async fn read_head(s: &mut TcpStream, limit: Duration) -> Result<Answer> {
    let read = async {
        let mut buf = Vec::with_capacity(1024);
        loop {
            if buf.len() >= MAX_HEAD {
                return Err(up(
                    ErrorType::InvalidHTTPHeader,
                    "upstream response head too large",
                ));
            }
            buf.reserve(1024);
            let n = s
                .read_buf(&mut buf)
                .await
                .or_err(ErrorType::ReadError, "reading the websocket handshake answer")
                .map_err(Error::into_up)?;
            if n == 0 {
                return Err(up(
                    ErrorType::ConnectionClosed,
                    "upstream closed before answering",
                ));
            }
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut resp = httparse::Response::new(&mut headers);
            match resp.parse(&buf) {
                Ok(httparse::Status::Partial) => continue,
                Ok(httparse::Status::Complete(len)) => {
                    let code = resp.code.unwrap_or(502);
                    let mut head = ResponseHeader::build(code, Some(resp.headers.len()))?;
                    for h in resp.headers.iter() {
                        head.append_header(h.name.to_string(), h.value)?;
                    }
                    return Ok(Answer {
                        head,
                        rest: buf.split_off(len),
                    });
                }
                Err(_) => {
                    return Err(up(
                        ErrorType::InvalidHTTPHeader,
                        "malformed upstream response head",
                    ))
                }
            }
        }
    };
    match timeout(limit, read).await {
        Ok(r) => r,
        Err(_) => Err(up(
            ErrorType::ReadTimedout,
            "waiting for the websocket handshake answer",
        )),
    }
}

/// The body of a refusal (any answer but 101), de-chunked, within `limit`.
pub async fn read_body(
    s: &mut TcpStream,
    head: &ResponseHeader,
    rest: Vec<u8>,
    limit: Duration,
) -> Result<Bytes> {
    let chunked = head
        .headers
        .get_all(http::header::TRANSFER_ENCODING)
        .iter()
        .any(|v| v.as_bytes().eq_ignore_ascii_case(b"chunked"));
    let length = head.headers.get(http::header::CONTENT_LENGTH).and_then(|v| {
        std::str::from_utf8(v.as_bytes())
            .ok()?
            .trim()
            .parse::<usize>()
            .ok()
    });
    let no_body = head.status.is_informational() || head.status == 204 || head.status == 304;
    let read = async {
        let mut buf = rest;
        let mut out = Vec::new();
        loop {
            if chunked {
                if let Some(done) = dechunk(&mut buf, &mut out)? {
                    if done {
                        return Ok(Bytes::from(out));
                    }
                }
            } else if no_body {
                return Ok(Bytes::new());
            } else if let Some(n) = length {
                if buf.len() >= n {
                    buf.truncate(n);
                    return Ok(Bytes::from(buf));
                }
            }
            if buf.len() + out.len() > MAX_BODY {
                return Err(up(
                    ErrorType::InvalidHTTPHeader,
                    "upstream refusal body too large",
                ));
            }
            buf.reserve(4096);
            let n = s
                .read_buf(&mut buf)
                .await
                .or_err(ErrorType::ReadError, "reading the upstream's answer")
                .map_err(Error::into_up)?;
            if n == 0 {
                // Close-delimited (no length, not chunked): the body is what came.
                if !chunked && length.is_none() {
                    return Ok(Bytes::from(buf));
                }
                return Err(up(
                    ErrorType::ConnectionClosed,
                    "upstream closed in the middle of its answer",
                ));
            }
        }
    };
    match timeout(limit, read).await {
        Ok(r) => r,
        Err(_) => Err(up(ErrorType::ReadTimedout, "waiting for the upstream's answer")),
    }
}

/// Move the complete chunks at the start of `buf` into `out`: `Some(true)` once the last chunk
/// (and the trailer section) is in, `None`/`Some(false)` when more bytes are needed.
fn dechunk(buf: &mut Vec<u8>, out: &mut Vec<u8>) -> Result<Option<bool>> {
    loop {
        let (start, size) = match httparse::parse_chunk_size(buf) {
            Ok(httparse::Status::Complete(c)) => c,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(_) => {
                return Err(up(
                    ErrorType::InvalidHTTPHeader,
                    "malformed chunk in the upstream's answer",
                ))
            }
        };
        let size = usize::try_from(size).unwrap_or(usize::MAX);
        if size == 0 {
            // The trailer section ends with an empty line.
            let tail = &buf[start..];
            let done = tail.starts_with(b"\r\n") || tail.windows(4).any(|w| w == b"\r\n\r\n");
            return Ok(Some(done));
        }
        let end = start.saturating_add(size).saturating_add(2);
        if buf.len() < end {
            return Ok(Some(false));
        }
        out.extend_from_slice(&buf[start..start + size]);
        buf.drain(..end);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dechunks_across_reads() {
        let mut out = Vec::new();
        let mut buf = b"5\r\nhello\r\n3\r\nab".to_vec();
        assert_eq!(dechunk(&mut buf, &mut out).unwrap(), Some(false));
        assert_eq!(out, b"hello");
        buf.extend_from_slice(b"c\r\n0\r\n\r\n");
        assert_eq!(dechunk(&mut buf, &mut out).unwrap(), Some(true));
        assert_eq!(out, b"helloabc");
    }
}
