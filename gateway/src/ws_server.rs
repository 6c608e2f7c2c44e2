//! WebSocket endpoints the gateway serves itself (`/agent/ws`; the realtime `/ws` reuses it):
//! accept an HTTP/1.1 upgrade on a pingora [`Session`] and hand a
//! [`WebSocketStream`](tokio_tungstenite::WebSocketStream) to a handler.
//!
//! pingora has no server-side WebSocket API, and its `Session` is not an `AsyncRead` /
//! `AsyncWrite`. So, as the upstream tunnel does ([`crate::ws_tunnel`]), the request's future
//! drives the session itself after the `101`:
//!
//! 1. [`check`] the upgrade request (RFC 6455 §4.2.1): `GET`, `Upgrade: websocket`,
//!    `Connection: upgrade`, `Sec-WebSocket-Version: 13`, a 16-byte base64 `Sec-WebSocket-Key`;
//!    anything else is a `400 PARAM_001` the caller sends (426 with `Sec-WebSocket-Version: 13`
//!    for another version);
//! 2. [`serve`] writes the `101` (through the pipeline's response phase, so `x-request-id` and
//!    the route's plugins apply), joins the session to one end of an in-memory duplex pipe, runs
//!    `handler` on a task of its own with a `WebSocketStream` over the other end, and relays
//!    bytes between the client and the pipe until either side closes — out of pingora, like a
//!    proxied WebSocket ([`crate::relay::detach::hand_off`]: no pingora request state, no body
//!    or copy buffer held while idle; the access log line is written when the WebSocket ends).
//!
//! The handler owns the WebSocket (tungstenite does framing, masking checks, ping/pong and
//! close); its task ends the connection by dropping the stream.

use std::future::Future;

use http::{HeaderValue, StatusCode};
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use tokio::io::DuplexStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::WebSocketStream;

use crate::error::GatewayError;
use crate::front::PingoraResponseHeaders;
use crate::pipeline::{Pipeline, RequestCtx};
use crate::relay::StreamPeer;

/// Bytes buffered in the pipe between the client's relay and the WebSocket, each way.
pub const PIPE_BUFFER: usize = 64 * 1024;

/// Why an upgrade request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpgradeError {
    /// Not a WebSocket upgrade, or malformed.
    #[error("not a valid WebSocket upgrade request: {0}")]
    Invalid(&'static str),
    /// A `Sec-WebSocket-Version` other than 13.
    #[error("unsupported Sec-WebSocket-Version (this endpoint speaks 13)")]
    Version,
}

impl UpgradeError {
    /// The gateway error to answer with (`400 PARAM_001`).
    pub fn into_gateway_error(self) -> GatewayError {
        GatewayError::BadRequest(self.to_string())
    }
}

fn has_token(req: &pingora::http::RequestHeader, name: http::HeaderName, token: &str) -> bool {
    req.headers.get_all(name).iter().any(|v| {
        v.to_str()
            .map(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
            .unwrap_or(false)
    })
}

/// Checks an upgrade request; returns the `Sec-WebSocket-Accept` value.
pub fn check(req: &pingora::http::RequestHeader) -> Result<String, UpgradeError> {
    if req.method != http::Method::GET {
        return Err(UpgradeError::Invalid("method must be GET"));
    }
    if !has_token(req, http::header::UPGRADE, "websocket") {
        return Err(UpgradeError::Invalid("Upgrade: websocket missing"));
    }
    if !has_token(req, http::header::CONNECTION, "upgrade") {
        return Err(UpgradeError::Invalid("Connection: upgrade missing"));
    }
    match req.headers.get(http::header::SEC_WEBSOCKET_VERSION) {
        Some(v) if v.as_bytes() == b"13" => {}
        Some(_) => return Err(UpgradeError::Version),
        None => return Err(UpgradeError::Invalid("Sec-WebSocket-Version missing")),
    }
    let key = req
        .headers
        .get(http::header::SEC_WEBSOCKET_KEY)
        .ok_or(UpgradeError::Invalid("Sec-WebSocket-Key missing"))?;
    let k = key.as_bytes();
    // 16 random bytes in base64: 24 characters ending in "==".
    if k.len() != 24 || !k.ends_with(b"==") {
        return Err(UpgradeError::Invalid(
            "Sec-WebSocket-Key is not 16 bytes of base64",
        ));
    }
    Ok(derive_accept_key(k))
}

/// Answers the upgrade with `101` and serves the WebSocket with `handler` until either side
/// closes. `protocol`: the `Sec-WebSocket-Protocol` to confirm, if the endpoint negotiated one.
/// `Err` only when the request was refused (nothing written yet: the caller answers).
pub async fn serve<F, Fut>(
    session: &mut Session,
    pipeline: &Pipeline,
    ctx: &mut RequestCtx,
    protocol: Option<&str>,
    config: WebSocketConfig,
    handler: F,
) -> Result<(), UpgradeError>
where
    F: FnOnce(WebSocketStream<DuplexStream>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let accept = check(session.req_header())?;
    let mut resp = ResponseHeader::build(StatusCode::SWITCHING_PROTOCOLS, Some(4))
        .map_err(|_| UpgradeError::Invalid("response"))?;
    let headers: [(http::HeaderName, Option<HeaderValue>); 4] = [
        (
            http::header::UPGRADE,
            Some(HeaderValue::from_static("websocket")),
        ),
        (
            http::header::CONNECTION,
            Some(HeaderValue::from_static("Upgrade")),
        ),
        (
            http::header::SEC_WEBSOCKET_ACCEPT,
            HeaderValue::from_str(&accept).ok(),
        ),
        (
            http::header::SEC_WEBSOCKET_PROTOCOL,
            protocol.and_then(|p| HeaderValue::from_str(p).ok()),
        ),
    ];
    for (name, value) in headers {
        if let Some(v) = value {
            let _ = resp.insert_header(name, v);
        }
    }
    pipeline.on_response(
        ctx,
        StatusCode::SWITCHING_PROTOCOLS,
        &mut PingoraResponseHeaders(&mut resp),
    );
    if let Err(e) = session.write_response_header(Box::new(resp), false).await {
        tracing::debug!(error = %e, "client went away during the WebSocket upgrade");
        return Ok(());
    }
    let (ours, theirs) = tokio::io::duplex(PIPE_BUFFER);
    let ws = WebSocketStream::from_raw_socket(theirs, Role::Server, Some(config)).await;
    // The handler ends on its own when its WebSocket does (the relay closes the pipe).
    tokio::spawn(handler(ws));
    crate::relay::detach::hand_off(session, pipeline, ctx, StreamPeer::new(ours, None)).await;
    Ok(())
}
