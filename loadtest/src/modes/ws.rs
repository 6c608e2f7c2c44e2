//! `ws`: WebSocket echo round trips. One request = one binary message of `--msg-size` bytes
//! sent, and the same number of bytes received back in one message.
//!
//! [`open`] (TCP/TLS connect plus the WebSocket handshake) is shared with `ws-hold`.

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http::HeaderMap;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

use crate::engine::{Driver, Outcome};
use crate::net::{classify_io, Connector, Stream};
use crate::stats::{note_error, ErrorKind};

/// An open WebSocket client connection.
pub type WsConn = WebSocketStream<Stream>;

/// Opens a WebSocket to `url` through `connector`, with extra handshake `headers`.
pub async fn open(
    connector: &Connector,
    url: &str,
    headers: &HeaderMap,
) -> Result<WsConn, ErrorKind> {
    let stream = connector.connect().await?;
    let mut req = url.into_client_request().map_err(|_| ErrorKind::Protocol)?;
    for (name, value) in headers {
        req.headers_mut().append(name.clone(), value.clone());
    }
    // Small buffers: ws-hold opens thousands of these (the 128 KiB defaults would make the
    // load generator, not the target, the memory hog).
    let config = WebSocketConfig::default()
        .read_buffer_size(8 * 1024)
        .write_buffer_size(0);
    let (ws, _resp) = tokio_tungstenite::client_async_with_config(req, stream, Some(config))
        .await
        .map_err(|e| classify(&e))?;
    Ok(ws)
}

/// Maps a WebSocket error to an [`ErrorKind`]; an HTTP error answer to the handshake counts by
/// its status.
pub fn classify(e: &WsError) -> ErrorKind {
    let kind = match e {
        WsError::Io(io) => classify_io(io, ErrorKind::Reset),
        WsError::ConnectionClosed | WsError::AlreadyClosed => ErrorKind::Reset,
        WsError::Http(resp) if resp.status().is_server_error() => ErrorKind::Status5xx,
        WsError::Http(resp) if resp.status().is_client_error() => ErrorKind::Status4xx,
        _ => ErrorKind::Protocol,
    };
    note_error(kind, e)
}

/// The WebSocket echo driver.
#[derive(Debug)]
pub struct Ws {
    connector: Connector,
    url: String,
    headers: HeaderMap,
    payload: Bytes,
}

impl Ws {
    /// A driver sending `msg_size`-byte binary messages to `url`.
    pub fn new(connector: Connector, url: String, headers: HeaderMap, msg_size: usize) -> Self {
        Self {
            connector,
            url,
            headers,
            payload: Bytes::from(vec![b'x'; msg_size]),
        }
    }
}

impl Driver for Ws {
    type Conn = WsConn;

    async fn connect(&self, _worker: usize) -> Result<WsConn, ErrorKind> {
        open(&self.connector, &self.url, &self.headers).await
    }

    async fn request(&self, ws: &mut WsConn) -> Result<Outcome, ErrorKind> {
        ws.send(Message::Binary(self.payload.clone()))
            .await
            .map_err(|e| classify(&e))?;
        loop {
            match ws.next().await {
                Some(Ok(Message::Binary(b))) => return echoed(b.len(), self.payload.len()),
                Some(Ok(Message::Text(t))) => return echoed(t.len(), self.payload.len()),
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
                Some(Ok(Message::Close(_))) | None => {
                    return Err(note_error(ErrorKind::Reset, &"server closed the WebSocket"))
                }
                Some(Err(e)) => return Err(classify(&e)),
            }
        }
    }
}

fn echoed(got: usize, sent: usize) -> Result<Outcome, ErrorKind> {
    if got == sent {
        Ok(Outcome {
            status: None,
            bytes: got as u64,
        })
    } else {
        Err(note_error(
            ErrorKind::Protocol,
            &format_args!("echo of {got} bytes for a {sent}-byte message"),
        ))
    }
}
