//! `GET /ws`: WebSocket echo. The HTTP/1.1 upgrade is answered by hyper; the upgraded stream is
//! handed to tokio-tungstenite, and every text or binary message is sent back unchanged.

use futures::{SinkExt, StreamExt};
use http::{header, HeaderValue, Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::routes::{full, Body};

/// Answers a WebSocket upgrade request with `101 Switching Protocols` and spawns the echo loop;
/// anything else gets `400`.
pub fn upgrade(mut req: Request<Incoming>) -> Response<Body> {
    let headers = req.headers();
    let is_upgrade = req.version() == Version::HTTP_11
        && header_has_token(headers.get(header::UPGRADE), "websocket")
        && header_has_token(headers.get(header::CONNECTION), "upgrade");
    let key = match headers.get(header::SEC_WEBSOCKET_KEY) {
        Some(key) if is_upgrade => key.as_bytes().to_vec(),
        _ => {
            return full(
                StatusCode::BAD_REQUEST,
                bytes::Bytes::from_static(b"expected a WebSocket upgrade (HTTP/1.1)\n"),
                "text/plain",
            )
        }
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        if let Ok(upgraded) = on_upgrade.await {
            // Small buffers keep idle connections cheap (the defaults are 128 KiB each way).
            let config = WebSocketConfig::default()
                .read_buffer_size(8 * 1024)
                .write_buffer_size(0);
            let ws = WebSocketStream::from_raw_socket(
                TokioIo::new(upgraded),
                Role::Server,
                Some(config),
            )
            .await;
            echo(ws).await;
        }
    });
    let mut resp = full(
        StatusCode::SWITCHING_PROTOCOLS,
        bytes::Bytes::new(),
        "text/plain",
    );
    resp.headers_mut().remove(header::CONTENT_TYPE);
    let h = resp.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(accept) = HeaderValue::from_str(&derive_accept_key(&key)) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    }
    resp
}

async fn echo<S>(mut ws: WebSocketStream<S>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    while let Some(Ok(msg)) = ws.next().await {
        match msg {
            Message::Text(_) | Message::Binary(_) => {
                if ws.send(msg).await.is_err() {
                    return;
                }
            }
            Message::Close(_) => break,
            // Pings are answered by tungstenite itself on the next read or write.
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
        }
    }
    let _ = ws.close(None).await;
}

fn header_has_token(value: Option<&HeaderValue>, token: &str) -> bool {
    value
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
}
