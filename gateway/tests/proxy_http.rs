//! Plain proxying on the http listener: HTTP/1.1 and h2c prior knowledge in front,
//! h1 and h2c toward the upstream, bodies and statuses passed through intact.

mod common;

use bytes::Bytes;
use common::*;
use http_body_util::Full;
use testkit::client::H2Client;
use testkit::upstream::http::pattern_bytes;
use testkit::EchoServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_request_reaches_upstream_with_method_path_and_body() {
    let echo = EchoServer::start("a").await.expect("echo");
    let gw = start_gateway(upstream_and_route("api", echo.addr(), "api", "/api/")).await;

    let resp = http_client()
        .post(gw.http_url("/api/items?x=1&y=two"))
        .header("x-custom", "value-1")
        .body("hello world")
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.version(), reqwest::Version::HTTP_11);
    assert_eq!(header(&resp, "x-echo-server").as_deref(), Some("a"));
    let body: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(body["server"], "a");
    assert_eq!(body["method"], "POST");
    assert_eq!(body["path"], "/api/items?x=1&y=two");
    assert_eq!(body["body_len"], 11);
    assert_eq!(body["headers"]["x-custom"], "value-1");
    assert_eq!(body["version"], "HTTP/1.1");
    assert_eq!(echo.count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_prior_knowledge_on_the_http_port() {
    let echo = EchoServer::start("a").await.expect("echo");
    let gw = start_catch_all(echo.addr()).await;

    let mut h2 = H2Client::connect_h2c(gw.http_addr())
        .await
        .expect("h2c handshake with the gateway");
    let resp = h2.get("/h2c/path?q=1").await.expect("GET over h2c");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.version, http::Version::HTTP_2);
    let body = resp.json().expect("json");
    assert_eq!(body["server"], "a");
    assert_eq!(body["path"], "/h2c/path?q=1");
    assert_eq!(body["method"], "GET");

    let request = h2
        .request(http::Method::PUT, "/h2c/put")
        .body(Full::new(Bytes::from_static(b"0123456789")))
        .expect("request");
    let resp = h2.send_full(request).await.expect("PUT over h2c");
    assert_eq!(resp.status, 200);
    let body = resp.json().expect("json");
    assert_eq!(body["method"], "PUT");
    assert_eq!(body["body_len"], 10);
    assert_eq!(echo.count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_upstream_protocol_speaks_http2_to_the_upstream() {
    let echo = EchoServer::start("h2c-up").await.expect("echo");
    let gw = start_gateway(format!(
        "{}{}",
        upstream("grpcish", &[echo.addr()], "protocol = \"h2c\""),
        route("all", "path_prefix = \"/\"", "grpcish", "")
    ))
    .await;

    let resp = http_client()
        .get(gw.http_url("/via-h2c"))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(body["version"], "HTTP/2.0", "upstream saw: {body}");
    assert_eq!(body["path"], "/via-h2c");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h1_upstream_protocol_speaks_http1_even_for_h2_clients() {
    let echo = EchoServer::start("h1-up").await.expect("echo");
    let gw = start_catch_all(echo.addr()).await;
    let mut h2 = H2Client::connect_h2c(gw.http_addr()).await.expect("h2c");
    let resp = h2.get("/x").await.expect("get");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.json().expect("json")["version"], "HTTP/1.1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_pass_intact_both_ways() {
    let echo = EchoServer::start("big").await.expect("echo");
    let gw = start_catch_all(echo.addr()).await;
    let client = http_client();

    let resp = client
        .get(gw.http_url("/bytes/1048577"))
        .send()
        .await
        .expect("download");
    assert_eq!(resp.status(), 200);
    let body = resp.bytes().await.expect("body");
    assert_eq!(body.len(), 1_048_577);
    assert!(
        body.as_ref() == pattern_bytes(1_048_577),
        "download corrupted"
    );

    let payload = pattern_bytes(2 * 1024 * 1024 + 3);
    let resp = client
        .post(gw.http_url("/echo"))
        .body(payload.clone())
        .send()
        .await
        .expect("upload");
    assert_eq!(resp.status(), 200);
    let body = resp.bytes().await.expect("body");
    assert_eq!(body.len(), payload.len());
    assert!(body.as_ref() == payload, "echoed upload corrupted");

    let mut h2 = H2Client::connect_h2c(gw.http_addr()).await.expect("h2c");
    let resp = h2.get("/bytes/300001").await.expect("h2c download");
    assert_eq!(resp.body.len(), 300_001);
    assert!(
        resp.body.as_ref() == pattern_bytes(300_001),
        "h2c download corrupted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_status_codes_and_bodies_pass_through() {
    let echo = EchoServer::start("st").await.expect("echo");
    let gw = start_catch_all(echo.addr()).await;
    let client = http_client();

    for code in [201u16, 404, 418, 500, 503] {
        let resp = client
            .get(gw.http_url(&format!("/status/{code}")))
            .send()
            .await
            .expect("send");
        assert_eq!(resp.status().as_u16(), code);
        let body: serde_json::Value = resp
            .json()
            .await
            .expect("upstream JSON, not a gateway error");
        assert_eq!(
            body["server"], "st",
            "status {code} body came from the gateway: {body}"
        );
    }
    assert_eq!(echo.count(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalive_connection_serves_many_requests() {
    let echo = EchoServer::start("ka").await.expect("echo");
    let gw = start_catch_all(echo.addr()).await;
    let client = http_client();
    for i in 0..50 {
        let resp = client
            .get(gw.http_url(&format!("/n/{i}")))
            .send()
            .await
            .expect("send");
        assert_eq!(resp.status(), 200);
        let body: serde_json::Value = resp.json().await.expect("json");
        assert_eq!(body["path"], format!("/n/{i}"));
    }
    assert_eq!(echo.count(), 50);
}
