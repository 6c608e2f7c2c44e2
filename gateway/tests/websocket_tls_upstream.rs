//! WebSocket upgrades to an upstream reached over TLS run through the same tunnel, attempt loop
//! and relay as cleartext ones: frames echo both ways, a 5xx the retry policy names is retried on
//! another target (an upgrade has no body, so it is replayable), and a certificate the gateway
//! cannot verify is a JSON 502, never a dropped connection.

mod common;

use common::ws::{self, next_message};
use common::*;
use futures::SinkExt;
use testkit::upstream::ws::{CLOSE_CODE, CLOSE_TRIGGER};
use testkit::{EchoServer, GatewayProcess, WsEchoServer};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

/// The upstream settings of a TLS target with a self-signed `localhost` certificate.
const TLS_UNVERIFIED: &str = "tls = true\nsni = \"localhost\"\nverify = false";

async fn start(config: String) -> GatewayProcess {
    gateway()
        .config(config)
        .start()
        .await
        .unwrap_or_else(|e| panic!("gateway starts: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_echo_through_a_tls_upstream() {
    let ws = WsEchoServer::start_tls().await.expect("TLS ws upstream");
    let gw = start(format!(
        "{}{}",
        upstream("secure", &[ws.addr()], TLS_UNVERIFIED),
        route("ws", "path = \"/ws\"", "secure", "")
    ))
    .await;
    let (mut socket, response) =
        tokio_tungstenite::connect_async(format!("ws://{}/ws", gw.http_addr()))
            .await
            .expect("handshake through the gateway");
    assert_eq!(response.status(), 101);
    let id = response
        .headers()
        .get("x-request-id")
        .expect("request id on the 101")
        .clone();
    socket.send(Message::text("hello")).await.expect("send");
    assert_eq!(next_message(&mut socket).await, Message::text("hello"));
    // A burst larger than the relay's read chunk, both ways.
    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    socket
        .send(Message::binary(big.clone()))
        .await
        .expect("send");
    assert_eq!(next_message(&mut socket).await, Message::binary(big));
    socket
        .send(Message::text(CLOSE_TRIGGER))
        .await
        .expect("send");
    match next_message(&mut socket).await {
        Message::Close(Some(frame)) => assert_eq!(frame.code, CloseCode::from(CLOSE_CODE)),
        other => panic!("expected the upstream's close, got {other:?}"),
    }
    ws.requests().wait_for(1).await;
    let seen = ws.requests().last().expect("the handshake was recorded");
    assert_eq!(seen.header("x-request-id"), id.to_str().ok());
}

/// A TLS target that answers the upgrade with `503` beside one that upgrades: with
/// `retries = { on = ["503"] }` every handshake succeeds, on the second target when the first
/// refused (pingora's own upgrade path, used for TLS upstreams before, relayed the 503).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_refused_with_503_by_a_tls_target_is_retried() {
    let refusing = EchoServer::start_tls("refusing").await.expect("TLS echo");
    let ws = WsEchoServer::start_tls().await.expect("TLS ws upstream");
    let gw = start(format!(
        "{}{}",
        upstream(
            "secure",
            &[refusing.addr(), ws.addr()],
            &format!(
                "{TLS_UNVERIFIED}\nretries = {{ attempts = 2, on = \
                 [\"503\"], backoff_base = \"1ms\", backoff_max = \"5ms\" }}"
            )
        ),
        // The echo server answers `/status/503` with a 503; the WebSocket server upgrades any path.
        route("ws", "path = \"/status/503\"", "secure", "")
    ))
    .await;
    for i in 0..4 {
        let url = format!("ws://{}/status/503", gw.http_addr());
        ws::echo_once(
            &url,
            &format!("m{i}"),
            &format!("handshake {i} retried past the 503"),
        )
        .await;
    }
    assert!(
        refusing.count() >= 1,
        "round robin sent no handshake to the refusing target: the retry was not exercised"
    );
}

/// `verify = true` (the default) against a self-signed certificate: the TLS handshake fails,
/// and the client gets the gateway's JSON 502 with a request id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unverifiable_tls_target_is_a_json_502() {
    let ws = WsEchoServer::start_tls().await.expect("TLS ws upstream");
    let gw = start(format!(
        "{}{}",
        upstream("secure", &[ws.addr()], "tls = true\nsni = \"localhost\""),
        route("ws", "path = \"/ws\"", "secure", "")
    ))
    .await;
    let json = ws::refused_with_json_502(&format!("ws://{}/ws", gw.http_addr())).await;
    assert!(
        json["error"]["code"].as_str().is_some(),
        "a platform error code: {json}"
    );
    assert_eq!(ws.requests().count(), 0, "no request reached the upstream");
}

/// A TLS target that accepts TCP but never answers the handshake: the attempt ends at the
/// upstream's connect timeout (pingora bounds the TLS handshake by it) and the client gets the
/// JSON 502 of a connect failure, not a hung upgrade.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_target_that_never_handshakes_is_a_json_502_after_the_connect_timeout() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    // Accepts and holds every connection without a byte.
    let held = tokio::spawn(async move {
        let mut sockets = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            sockets.push(s);
        }
    });
    let gw = start(format!(
        "{}{}",
        upstream(
            "silent",
            &[addr],
            &format!("{TLS_UNVERIFIED}\ntimeouts = {{ connect = \"300ms\" }}")
        ),
        route("ws", "path = \"/ws\"", "silent", "")
    ))
    .await;
    let answer = tokio::time::timeout(
        WAIT,
        ws::refused_with_json_502(&format!("ws://{}/ws", gw.http_addr())),
    )
    .await
    .expect("an answer, not a hung upgrade");
    assert_eq!(answer["error"]["code"], "UPSTREAM_UNAVAILABLE", "{answer}");
    held.abort();
}
