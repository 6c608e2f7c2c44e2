//! WebSocket upgrades pass through the gateway in both directions.

mod common;

use common::*;
use futures::{SinkExt, StreamExt};
use testkit::upstream::ws::{CLOSE_CODE, CLOSE_REASON, CLOSE_TRIGGER};
use testkit::{GatewayProcess, WsEchoServer};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

async fn setup() -> (WsEchoServer, GatewayProcess) {
    let ws = WsEchoServer::start().await.expect("ws upstream");
    let gw = start_gateway(format!(
        "{}{}",
        upstream("realtime", &[ws.addr()], ""),
        route("ws", "path = \"/ws\"", "realtime", "")
    ))
    .await;
    (ws, gw)
}

async fn next_message<S>(socket: &mut S) -> Message
where
    S: futures::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    tokio::time::timeout(WAIT, socket.next())
        .await
        .expect("message in time")
        .expect("connection open")
        .expect("valid message")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_and_binary_frames_echo_through_the_gateway() {
    let (ws, gw) = setup().await;
    let mut request = format!("ws://{}/ws?room=1", gw.http_addr())
        .into_client_request()
        .expect("request");
    request
        .headers_mut()
        .insert("x-request-id", http::HeaderValue::from_static("ws-rid-1"));
    let (mut socket, response) = tokio_tungstenite::connect_async(request)
        .await
        .expect("WebSocket handshake through the gateway");
    assert_eq!(response.status(), 101);

    socket.send(Message::text("hello")).await.expect("send");
    assert_eq!(next_message(&mut socket).await, Message::text("hello"));

    let binary: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    socket
        .send(Message::binary(binary.clone()))
        .await
        .expect("send");
    assert_eq!(next_message(&mut socket).await, Message::binary(binary));

    for i in 0..20 {
        socket
            .send(Message::text(format!("m{i}")))
            .await
            .expect("send");
    }
    for i in 0..20 {
        assert_eq!(
            next_message(&mut socket).await,
            Message::text(format!("m{i}"))
        );
    }

    let handshake = ws.requests().last().expect("upstream saw the handshake");
    assert_eq!(handshake.path, "/ws?room=1");
    assert_eq!(handshake.header("x-request-id"), Some("ws-rid-1"));
    assert_eq!(ws.requests().count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_close_code_reaches_the_client() {
    let (_ws, gw) = setup().await;
    let (mut socket, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", gw.http_addr()))
        .await
        .expect("handshake");
    socket
        .send(Message::text(CLOSE_TRIGGER))
        .await
        .expect("send");
    match next_message(&mut socket).await {
        Message::Close(Some(frame)) => {
            assert_eq!(frame.code, CloseCode::from(CLOSE_CODE));
            assert_eq!(frame.reason.as_str(), CLOSE_REASON);
        }
        other => panic!("expected a close frame with 4001, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_close_is_acknowledged_through_the_gateway() {
    let (_ws, gw) = setup().await;
    let (mut socket, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", gw.http_addr()))
        .await
        .expect("handshake");
    socket
        .close(Some(tokio_tungstenite::tungstenite::protocol::CloseFrame {
            code: CloseCode::Normal,
            reason: "done".into(),
        }))
        .await
        .expect("send close");
    match next_message(&mut socket).await {
        Message::Close(Some(frame)) => assert_eq!(frame.code, CloseCode::Normal),
        other => panic!("expected the close echo, got {other:?}"),
    }
}
