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

/// Opens a WebSocket to `url` through the gateway (`101` expected, `what` names the attempt in a
/// failure), sends `text`, expects it echoed, and closes.
pub async fn echo_once(url: &str, text: &str, what: &str) {
    use futures::SinkExt;
    let (mut socket, response) = tokio_tungstenite::connect_async(url)
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(response.status(), 101, "{what}");
    socket.send(Message::text(text)).await.expect("send");
    assert_eq!(
        next_message(&mut socket).await,
        Message::text(text),
        "{what}"
    );
    socket.close(None).await.expect("close");
}

/// Expects the upgrade to `url` refused with the gateway's JSON 502 (with a request id); returns
/// the JSON body.
pub async fn refused_with_json_502(url: &str) -> serde_json::Value {
    let err = tokio_tungstenite::connect_async(url)
        .await
        .expect_err("the upgrade is refused");
    let Error::Http(resp) = err else {
        panic!("expected an HTTP answer, got {err:?}");
    };
    assert_eq!(resp.status(), 502);
    assert!(resp.headers().get("x-request-id").is_some());
    let body = resp.body().as_deref().expect("JSON body");
    serde_json::from_slice(body).expect("JSON")
}
