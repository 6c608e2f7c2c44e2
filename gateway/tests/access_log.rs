//! One JSON access-log line per request on stderr, with the documented fields.

mod common;

use common::*;
use futures::{SinkExt, StreamExt};
use serde_json::Value;
use testkit::client::H2Client;
use testkit::{EchoServer, WsEchoServer};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

fn by_id(id: &'static str) -> impl Fn(&Value) -> bool {
    move |line| line["request_id"] == id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxied_http1_request_is_logged_with_all_fields() {
    let echo = EchoServer::start("a").await.expect("echo");
    let gw = start_gateway(upstream_and_route("backend", echo.addr(), "api", "/api/")).await;

    let resp = http_client()
        .get(gw.http_url("/api/logged"))
        .header("x-request-id", "log-h1")
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    let body_len = resp.bytes().await.expect("body").len();

    let line = gw
        .wait_for_access_log(WAIT, by_id("log-h1"))
        .await
        .unwrap_or_else(|| panic!("no access log line for log-h1; stderr:\n{}", gw.stderr()));
    assert_eq!(line["log"], "access");
    assert_eq!(line["route"], "api", "{line}");
    assert_eq!(line["upstream"], "backend", "{line}");
    assert_eq!(line["target"], echo.addr().to_string(), "{line}");
    assert_eq!(line["protocol"], "h1", "{line}");
    assert_eq!(line["status"], 200, "{line}");
    assert_eq!(line["bytes"], body_len as u64, "{line}");
    assert!(
        line["duration_us"].is_u64(),
        "duration_us not an integer: {line}"
    );

    // A second request's line appears, and the first request still has exactly one.
    http_client()
        .get(gw.http_url("/api/again"))
        .header("x-request-id", "log-h1-second")
        .send()
        .await
        .expect("send");
    gw.wait_for_access_log(WAIT, by_id("log-h1-second"))
        .await
        .expect("second line");
    let count = gw
        .access_logs()
        .iter()
        .filter(|l| by_id("log-h1")(l))
        .count();
    assert_eq!(count, 1, "log-h1 logged {count} times");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_request_is_logged_as_h2_and_404_is_logged() {
    let echo = EchoServer::start("a").await.expect("echo");
    let gw = start_gateway(upstream_and_route("backend", echo.addr(), "api", "/api/")).await;

    let mut h2 = H2Client::connect_h2c(gw.http_addr()).await.expect("h2c");
    let request = h2
        .request(http::Method::GET, "/api/h2")
        .header("x-request-id", "log-h2")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .expect("request");
    assert_eq!(h2.send_full(request).await.expect("send").status, 200);
    let line = gw
        .wait_for_access_log(WAIT, by_id("log-h2"))
        .await
        .unwrap_or_else(|| panic!("no access log for log-h2; stderr:\n{}", gw.stderr()));
    assert_eq!(line["protocol"], "h2", "{line}");
    assert_eq!(line["status"], 200, "{line}");

    let resp = http_client()
        .get(gw.http_url("/nowhere"))
        .header("x-request-id", "log-404")
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 404);
    let line = gw
        .wait_for_access_log(WAIT, by_id("log-404"))
        .await
        .unwrap_or_else(|| panic!("no access log for log-404; stderr:\n{}", gw.stderr()));
    assert_eq!(line["status"], 404, "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_session_is_logged_as_ws() {
    let ws = WsEchoServer::start().await.expect("ws");
    let gw = start_gateway(format!(
        "{}{}",
        upstream("ws", &[ws.addr()], ""),
        route("ws", "path = \"/ws\"", "ws", "")
    ))
    .await;

    let mut request = format!("ws://{}/ws", gw.http_addr())
        .into_client_request()
        .expect("request");
    request
        .headers_mut()
        .insert("x-request-id", http::HeaderValue::from_static("log-ws"));
    let (mut socket, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("connect");
    socket.send(Message::text("x")).await.expect("send");
    assert_eq!(
        socket.next().await.expect("reply").expect("ok"),
        Message::text("x")
    );
    socket.close(None).await.expect("close");
    // Drain until the server's close arrives.
    while let Some(Ok(_)) = socket.next().await {}

    let line = gw
        .wait_for_access_log(WAIT, by_id("log-ws"))
        .await
        .unwrap_or_else(|| panic!("no access log for log-ws; stderr:\n{}", gw.stderr()));
    assert_eq!(line["protocol"], "ws", "{line}");
    assert_eq!(line["status"], 101, "{line}");
}
