//! WebSocket echo upstream.
//!
//! Accepts WebSocket handshakes on any path (plain TCP accept, tungstenite handshake) and
//! echoes every text and binary message back unchanged. A text message `"close:4001"` is
//! answered with a close frame carrying code `4001` and reason `"bye"`. The handshake
//! requests are recorded so tests can check headers such as `x-request-id`. Plain TCP
//! ([`WsEchoServer::start`]) or TLS with a self-signed `localhost` certificate
//! ([`WsEchoServer::start_tls`], ALPN `http/1.1`).

use std::net::SocketAddr;
use std::sync::Arc;

use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

use super::{bind_loopback, spawn_accept_loop, RecordedRequest, RequestLog, ServerTask};
use crate::tls::{self, BoxError, SelfSigned};

/// The text message that makes the server close with [`CLOSE_CODE`].
pub const CLOSE_TRIGGER: &str = "close:4001";
/// Close code sent in answer to [`CLOSE_TRIGGER`].
pub const CLOSE_CODE: u16 = 4001;
/// Close reason sent in answer to [`CLOSE_TRIGGER`].
pub const CLOSE_REASON: &str = "bye";

/// A running WebSocket echo server. Dropping it stops the server.
#[derive(Debug)]
pub struct WsEchoServer {
    addr: SocketAddr,
    log: RequestLog,
    _task: ServerTask,
}

impl WsEchoServer {
    /// Starts the server on `127.0.0.1:0`.
    pub async fn start() -> std::io::Result<Self> {
        let (listener, addr) = bind_loopback().await?;
        let log = RequestLog::default();
        let conn_log = log.clone();
        let task = spawn_accept_loop(listener, move |stream| serve(stream, conn_log.clone()));
        Ok(Self {
            addr,
            log,
            _task: task,
        })
    }

    /// Starts the server on `127.0.0.1:0` behind TLS (a self-signed `localhost` certificate):
    /// handshakes that fail TLS are dropped.
    pub async fn start_tls() -> Result<Self, BoxError> {
        let cert = SelfSigned::localhost()?;
        let config = tls::server_config(&cert, &[b"http/1.1"])?;
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let (listener, addr) = bind_loopback().await?;
        let log = RequestLog::default();
        let conn_log = log.clone();
        let task = spawn_accept_loop(listener, move |stream| {
            let acceptor = acceptor.clone();
            let log = conn_log.clone();
            async move {
                if let Ok(tls_stream) = acceptor.accept(stream).await {
                    serve(tls_stream, log).await;
                }
            }
        });
        Ok(Self {
            addr,
            log,
            _task: task,
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `ws://ADDR{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    /// Handshake requests received so far (awaitable).
    pub fn requests(&self) -> &RequestLog {
        &self.log
    }
}

// The handshake callback's error type is fixed by tungstenite's `Callback` trait.
#[allow(clippy::result_large_err)]
async fn serve<S: AsyncRead + AsyncWrite + Unpin>(stream: S, log: RequestLog) {
    let record = |req: &Request, resp: Response| {
        log.record(RecordedRequest::from_parts(
            req.method(),
            req.uri(),
            req.version(),
            req.headers(),
        ));
        Ok(resp)
    };
    let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(stream, record).await else {
        return;
    };
    while let Some(message) = ws.next().await {
        let Ok(message) = message else { return };
        let reply = match message {
            Message::Text(text) if text.as_str() == CLOSE_TRIGGER => {
                Message::Close(Some(CloseFrame {
                    code: CloseCode::from(CLOSE_CODE),
                    reason: CLOSE_REASON.into(),
                }))
            }
            Message::Text(_) | Message::Binary(_) => message,
            // Pings are answered by tungstenite itself. A close is acknowledged by it too,
            // but the reply is only flushed by reading on until the stream ends.
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) | Message::Close(_) => continue,
        };
        if ws.send(reply).await.is_err() {
            return;
        }
    }
}
