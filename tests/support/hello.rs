//! A stand-in for Mattermost's websocket endpoint, which speaks first: the 101 and a `hello` text
//! message leave in one write (as fast as an upstream can send after its answer), then every text
//! message is echoed as `echo:<message>`.

use std::net::SocketAddr;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The first message of every session.
pub const HELLO: &str = "{\"event\":\"hello\",\"data\":{\"server_version\":\"stand-in\"},\"seq\":0}";

/// Dropping it stops accepting (open sessions end with the runtime).
pub struct HelloUpstream {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for HelloUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl HelloUpstream {
    pub async fn start() -> HelloUpstream {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind hello upstream");
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            loop {
                if let Ok((s, _)) = listener.accept().await {
                    tokio::spawn(session(s));
                }
            }
        });
        HelloUpstream { addr, task }
    }
}

async fn session(mut s: TcpStream) {
    let _ = s.set_nodelay(true);
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
        if head.len() > 16 << 10 {
            return;
        }
    }
    let text = String::from_utf8_lossy(&head);
    let Some(key) = text.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("sec-websocket-key")
            .then(|| value.trim().to_string())
    }) else {
        let _ = s
            .write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            .await;
        return;
    };
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    let mut out = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
    )
    .into_bytes();
    // The hello frame: unmasked text, short length.
    out.push(0x81);
    out.push(HELLO.len() as u8);
    out.extend_from_slice(HELLO.as_bytes());
    if s.write_all(&out).await.is_err() {
        return;
    }
    let mut ws =
        tokio_tungstenite::WebSocketStream::from_raw_socket(s, tungstenite::protocol::Role::Server, None)
            .await;
    while let Some(Ok(msg)) = ws.next().await {
        let reply = match msg {
            tungstenite::Message::Text(t) => tungstenite::Message::text(format!("echo:{t}")),
            tungstenite::Message::Close(_) => break,
            _ => continue,
        };
        if ws.send(reply).await.is_err() {
            break;
        }
    }
}
