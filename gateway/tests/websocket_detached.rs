//! Proxied WebSockets leave pingora after their `101` (`gateway/src/relay/detach.rs`): the
//! client's socket is relayed on a task of its own and pingora's request state is freed. These
//! tests cover what that hand-off must carry over: bytes the client sent in the same packet as
//! its handshake, and the connection's slot under `server.max_connections`.

mod common;

use std::time::Duration;

use common::ws::{self, next_message};
use common::*;
use futures::SinkExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

/// A masked client text frame (RFC 6455 §5.2) carrying `text` (at most 125 bytes).
fn masked_text_frame(text: &[u8]) -> Vec<u8> {
    assert!(text.len() <= 125);
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut frame = vec![0x81, 0x80 | text.len() as u8];
    frame.extend_from_slice(&mask);
    frame.extend(text.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

/// Reads from `socket` until `buf` holds at least `n` bytes (within [`WAIT`]).
async fn read_at_least(socket: &mut TcpStream, buf: &mut Vec<u8>, n: usize) {
    let mut chunk = [0u8; 4096];
    while buf.len() < n {
        let got = tokio::time::timeout(WAIT, socket.read(&mut chunk))
            .await
            .expect("bytes in time")
            .expect("read");
        assert!(
            got > 0,
            "connection closed after {} bytes: {buf:?}",
            buf.len()
        );
        buf.extend_from_slice(&chunk[..got]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_sent_with_the_handshake_is_relayed() {
    let (_ws, gw) = ws::echo_gateway(gateway()).await;
    let mut socket = TcpStream::connect(gw.http_addr()).await.expect("connect");
    // The handshake and the first frame in one write: the frame reaches the gateway with the
    // request head, before the `101`.
    let mut bytes =
        b"GET /ws HTTP/1.1\r\nHost: gw.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
        Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
            .to_vec();
    bytes.extend_from_slice(&masked_text_frame(b"early bird"));
    socket.write_all(&bytes).await.expect("write");

    let mut got = Vec::new();
    let head_end = loop {
        let want = got.len() + 1;
        read_at_least(&mut socket, &mut got, want).await;
        if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&got[..head_end]).to_string();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    // The echo: an unmasked text frame with the same payload.
    read_at_least(&mut socket, &mut got, head_end + 2 + 10).await;
    assert_eq!(&got[head_end..head_end + 2], &[0x81, 10], "{got:?}");
    assert_eq!(&got[head_end + 2..head_end + 12], b"early bird");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relayed_websocket_keeps_its_connection_slot() {
    let (_ws, gw) = ws::echo_gateway(gateway().server("max_connections = 2")).await;
    let url = format!("ws://{}/ws", gw.http_addr());
    let mut held = Vec::new();
    for i in 0..2 {
        let (mut socket, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(&url))
            .await
            .expect("handshake in time")
            .expect("handshake");
        socket
            .send(Message::text(format!("hi {i}")))
            .await
            .expect("send");
        assert_eq!(
            next_message(&mut socket).await,
            Message::text(format!("hi {i}"))
        );
        held.push(socket);
    }
    // Both slots are held by the relayed WebSockets: a third connection is not served.
    let mut third = TcpStream::connect(gw.http_addr())
        .await
        .expect("the kernel completes the handshake");
    third
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: gw.test\r\n\r\n")
        .await
        .expect("write");
    let mut buf = vec![0u8; 4096];
    let early = tokio::time::timeout(Duration::from_millis(800), third.read(&mut buf)).await;
    assert!(early.is_err(), "answered beyond max_connections: {early:?}");

    // Closing one WebSocket frees its slot.
    let mut first = held.remove(0);
    first.close(None).await.expect("close");
    drop(first);
    let n = tokio::time::timeout(WAIT, third.read(&mut buf))
        .await
        .expect("served once a slot is free")
        .expect("read");
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
    // The other WebSocket still works.
    let mut second = held.remove(0);
    second.send(Message::text("still")).await.expect("send");
    assert_eq!(next_message(&mut second).await, Message::text("still"));
}
