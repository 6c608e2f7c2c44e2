//! WebSocket upgrades pass through the gateway in both directions.

mod common;

use common::ws::{self, next_message};
use common::*;
use futures::SinkExt;
use testkit::upstream::ws::{CLOSE_CODE, CLOSE_REASON, CLOSE_TRIGGER};
use testkit::{GatewayProcess, WsEchoServer};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

async fn setup() -> (WsEchoServer, GatewayProcess) {
    ws::echo_gateway(gateway()).await
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

/// Upgrades run on the attempt engine like any request: with a dead target beside a live one
/// and `retries = { on = ["connect-failure"] }`, every handshake lands on the live target (the
/// connect failure is retried; nothing had been sent), and the echo works through it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_is_retried_past_a_dead_target() {
    let ws = WsEchoServer::start().await.expect("ws upstream");
    let dead = testkit::net::closed_addr().expect("closed addr");
    let gw = gateway()
        .config(format!(
            "{}{}",
            upstream(
                "realtime",
                &[dead, ws.addr()],
                "retries = { attempts = 2, on = [\"connect-failure\"], backoff_base = \"1ms\", \
                 backoff_max = \"5ms\" }"
            ),
            route("ws", "path = \"/ws\"", "realtime", "")
        ))
        .start()
        .await
        .expect("gateway");
    for i in 0..6 {
        let url = format!("ws://{}/ws?i={i}", gw.http_addr());
        ws::echo_once(
            &url,
            &format!("m{i}"),
            &format!("handshake {i} retried past the dead target"),
        )
        .await;
    }
}

/// Without a retry policy, an upgrade to a target that refuses connections is answered with the
/// gateway's JSON 502 `UPSTREAM_UNAVAILABLE` (the same classification as any front), not a
/// dropped connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_to_a_dead_target_is_a_json_502() {
    let dead = testkit::net::closed_addr().expect("closed addr");
    let gw = gateway()
        .config(format!(
            "{}{}",
            upstream("realtime", &[dead], ""),
            route("ws", "path = \"/ws\"", "realtime", "")
        ))
        .start()
        .await
        .expect("gateway");
    let json = ws::refused_with_json_502(&format!("ws://{}/ws", gw.http_addr())).await;
    assert_eq!(json["error"]["code"], "UPSTREAM_UNAVAILABLE", "{json}");
}
