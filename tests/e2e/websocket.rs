//! Covered: a websocket upgrade on Mattermost's path passes through the proxy (Host unchanged), echoes
//! both ways, counts in the websocket gauge while open, and is answered by the route's upstream.

use futures_util::{SinkExt, StreamExt};
use tungstenite::client::IntoClientRequest;

use crate::support::*;

/// Open a websocket to `path` through vestibule with the given Host.
pub async fn connect(
    v: &Vestibule,
    host: &str,
    path: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let mut req = format!("ws://127.0.0.1:{}{path}", v.cfg.http_port)
        .into_client_request()
        .unwrap();
    req.headers_mut().insert("host", host.parse().unwrap());
    let (ws, resp) = tokio_tungstenite::connect_async(req)
        .await
        .unwrap_or_else(|e| panic!("websocket connect: {e}\n{}", v.log()));
    assert_eq!(resp.status(), 101);
    ws
}

pub async fn roundtrip(
    ws: &mut tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    msg: &str,
) -> String {
    ws.send(tungstenite::Message::text(msg)).await.unwrap();
    loop {
        match ws.next().await.expect("websocket open").unwrap() {
            tungstenite::Message::Text(t) => return t.to_string(),
            _ => continue,
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn websocket_passthrough() {
    let a = Upstream::start("a").await;
    let ws_up = Upstream::start("ws").await;
    let cfg = ConfigDir::new(
        "",
        "",
        &[(
            "chat",
            format!(
                "server_names = [\"chat.example.org\"]\nupstream = [\"{}\"]\n\n[[route]]\npath = \"^/api/v[0-9]+/(users/)?websocket$\"\nupstream = [\"{}\"]\nread_timeout = \"600s\"\n",
                a.addr, ws_up.addr
            ),
        )],
    );
    let v = Vestibule::start(cfg).await;
    let mut ws = established(|| connect(&v, "chat.example.org", "/api/v4/websocket")).await;
    assert_eq!(roundtrip(&mut ws, "hello").await, "ws:hello");
    assert_eq!(roundtrip(&mut ws, "again").await, "ws:again");
    let m = v.metrics().await;
    assert_eq!(
        metric(&m, "vestibule_websocket_connections_active", &[]),
        Some(1.0),
        "{m}"
    );
    ws.close(None).await.unwrap();
    eventually("websocket gauge back to 0", || async {
        (metric(&v.metrics().await, "vestibule_websocket_connections_active", &[]) == Some(0.0)).then_some(())
    })
    .await;
}
