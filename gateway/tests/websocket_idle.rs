//! Proxied WebSockets after the idle-cheap relay (`gateway/src/relay.rs`): the relay drops its
//! buffers whenever a connection goes quiet and allocates them again when bytes arrive, so these
//! tests send across that boundary: a 1 MB message each way after an idle period, and thousands
//! of small frames in one burst.

mod common;

use std::time::Duration;

use common::ws::{self, next_message};
use common::*;
use futures::{SinkExt, StreamExt};
use testkit::{GatewayProcess, WsEchoServer};
use tokio_tungstenite::tungstenite::Message;

/// How long a connection stays silent before the next message: longer than any burst.
const IDLE: Duration = Duration::from_millis(1500);

async fn setup() -> (WsEchoServer, GatewayProcess) {
    setup_with(&[]).await
}

/// [`setup`] with extra `[server]` lines.
async fn setup_with(server: &[&str]) -> (WsEchoServer, GatewayProcess) {
    ws::echo_gateway(server.iter().fold(gateway(), |b, line| b.server(*line))).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_megabyte_message_after_an_idle_period_arrives_intact_both_ways() {
    let (_ws, gw) = setup().await;
    let (mut socket, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", gw.http_addr()))
        .await
        .expect("WebSocket handshake through the gateway");
    socket.send(Message::text("warm")).await.expect("send");
    assert_eq!(next_message(&mut socket).await, Message::text("warm"));

    // The scenario itself: both directions go quiet, so the relay releases its buffers.
    tokio::time::sleep(IDLE).await;

    let big: Vec<u8> = (0..1_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    socket
        .send(Message::binary(big.clone()))
        .await
        .expect("send 1 MB");
    match next_message(&mut socket).await {
        Message::Binary(echo) => {
            assert_eq!(echo.len(), big.len(), "echo length");
            assert!(
                echo[..] == big[..],
                "the 1 MB echo differs from what was sent"
            );
        }
        other => panic!("expected the binary echo, got {other:?}"),
    }

    // Idle again, then a large text message: the buffers come back a second time.
    tokio::time::sleep(IDLE).await;
    let text: String = (0..1_000_000)
        .map(|i| (b'a' + (i % 26) as u8) as char)
        .collect();
    socket
        .send(Message::text(text.clone()))
        .await
        .expect("send 1 MB text");
    assert_eq!(next_message(&mut socket).await, Message::text(text));
    socket.close(None).await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_small_frames_in_one_burst_arrive_in_order() {
    const FRAMES: usize = 5_000;
    let (_ws, gw) = setup().await;
    let (socket, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", gw.http_addr()))
        .await
        .expect("WebSocket handshake through the gateway");
    let (mut sink, mut stream) = socket.split();
    // Written as one burst (no flush between frames) while the echoes are read concurrently.
    let writer = tokio::spawn(async move {
        for i in 0..FRAMES {
            sink.feed(Message::text(format!("f{i}")))
                .await
                .expect("feed");
        }
        sink.flush().await.expect("flush");
        sink
    });
    for i in 0..FRAMES {
        assert_eq!(
            next_message(&mut stream).await,
            Message::text(format!("f{i}")),
            "frame {i}"
        );
    }
    let mut sink = writer.await.expect("writer");

    // After an idle period a second burst still flows.
    tokio::time::sleep(IDLE).await;
    for i in 0..100 {
        sink.feed(Message::binary(vec![i as u8; 3]))
            .await
            .expect("feed");
    }
    sink.flush().await.expect("flush");
    for i in 0..100 {
        assert_eq!(
            next_message(&mut stream).await,
            Message::binary(vec![i as u8; 3])
        );
    }
}

/// `server.body_read_timeout` bounds request bodies, not an upgraded connection: a client that
/// stays silent for longer keeps its proxied WebSocket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_client_outlives_body_read_timeout() {
    let (_ws, gw) = setup_with(&["body_read_timeout = \"1s\""]).await;
    let (mut socket, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", gw.http_addr()))
        .await
        .expect("WebSocket handshake through the gateway");
    socket.send(Message::text("before")).await.expect("send");
    assert_eq!(next_message(&mut socket).await, Message::text("before"));
    tokio::time::sleep(Duration::from_millis(2500)).await;
    socket
        .send(Message::text("after"))
        .await
        .expect("send after silence");
    assert_eq!(next_message(&mut socket).await, Message::text("after"));
}
