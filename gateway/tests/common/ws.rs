//! WebSocket helpers shared by `websocket.rs`, `websocket_idle.rs` and `websocket_memory.rs`: a
//! gateway with one `/ws` route to a WebSocket echo upstream, and the next message a client
//! socket receives.

use futures::StreamExt;
use testkit::{GatewayBuilder, GatewayProcess, WsEchoServer};
use tokio_tungstenite::tungstenite::{Error, Message};

use super::{route, upstream, WAIT};

/// Starts a WebSocket echo upstream and `builder`'s gateway with the route `ws` (`/ws`) to it
/// (upstream `echo`).
pub async fn echo_gateway(builder: GatewayBuilder) -> (WsEchoServer, GatewayProcess) {
    let ws = WsEchoServer::start().await.expect("ws upstream");
    let gw = builder
        .config(format!(
            "{}{}",
            upstream("echo", &[ws.addr()], ""),
            route("ws", "path = \"/ws\"", "echo", "")
        ))
        .start()
        .await
        .unwrap_or_else(|e| panic!("gateway starts: {e}"));
    (ws, gw)
}

/// The next message on `socket`, within [`WAIT`]; panics on a timeout, a closed connection or an
/// invalid frame.
pub async fn next_message<S>(socket: &mut S) -> Message
where
    S: futures::Stream<Item = Result<Message, Error>> + Unpin,
{
    tokio::time::timeout(WAIT, socket.next())
        .await
        .expect("message in time")
        .expect("connection open")
        .expect("valid message")
}
