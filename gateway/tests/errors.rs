//! Gateway-generated answers: JSON errors (404 `NO_ROUTE`, 502 `UPSTREAM_UNAVAILABLE`,
//! 504 `UPSTREAM_TIMEOUT`) and the built-in `/healthz` and `/readyz`.

mod common;

use common::*;
use testkit::client::H2Client;
use testkit::net::closed_addr;
use testkit::{EchoServer, GatewayProcess};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_route_is_404_json_with_request_id() {
    let echo = EchoServer::start("a").await.expect("echo");
    let gw = start_gateway(upstream_and_route("api", echo.addr(), "api", "/api/")).await;
    let client = http_client();

    let resp = client
        .get(gw.http_url("/not-api"))
        .send()
        .await
        .expect("send");
    assert_json_error(resp, 404, "NO_ROUTE").await;

    let resp = client
        .get(gw.http_url("/not-api"))
        .header("x-request-id", "rid-404")
        .send()
        .await
        .expect("send");
    let body = assert_json_error(resp, 404, "NO_ROUTE").await;
    assert_eq!(body["error"]["request_id"], "rid-404");
    assert_eq!(echo.count(), 0, "a 404 must not reach any upstream");

    // Same over h2c.
    let mut h2 = H2Client::connect_h2c(gw.http_addr()).await.expect("h2c");
    let resp = h2.get("/not-api").await.expect("get");
    assert_eq!(resp.status, 404);
    assert_eq!(resp.json().expect("json")["error"]["code"], "NO_ROUTE");
    assert!(resp.header("x-request-id").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_down_is_502_json() {
    let dead = closed_addr().expect("closed addr");
    let gw = start_gateway(format!(
        "{}{}",
        upstream(
            "down",
            &[dead],
            "timeouts = { connect = \"1s\", read = \"5s\" }"
        ),
        route("down", "path_prefix = \"/\"", "down", "")
    ))
    .await;

    let resp = http_client()
        .get(gw.http_url("/anything"))
        .header("x-request-id", "rid-502")
        .send()
        .await
        .expect("send");
    assert_eq!(header(&resp, "x-request-id").as_deref(), Some("rid-502"));
    let body = assert_json_error(resp, 502, "UPSTREAM_UNAVAILABLE").await;
    assert_eq!(body["error"]["request_id"], "rid-502");
}

/// A gateway whose one route goes to `echo` with a 300 ms upstream read timeout.
async fn slow_upstream_gateway(echo: &EchoServer) -> GatewayProcess {
    start_gateway(format!(
        "{}{}",
        upstream(
            "slow",
            &[echo.addr()],
            "timeouts = { connect = \"1s\", read = \"300ms\" }"
        ),
        route("slow", "path_prefix = \"/\"", "slow", "")
    ))
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_upstream_is_504_json_after_read_timeout() {
    let echo = EchoServer::start("slow").await.expect("echo");
    let gw = slow_upstream_gateway(&echo).await;

    let resp = http_client()
        .get(gw.http_url("/slow?ms=10000"))
        .send()
        .await
        .expect("send");
    assert_json_error(resp, 504, "UPSTREAM_TIMEOUT").await;
    assert_eq!(echo.count(), 1, "the request did reach the upstream");

    // A fast request on the same upstream is still fine.
    let resp = http_client()
        .get(gw.http_url("/fast"))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
}

/// The same over h2c, which the stream front serves: the upstream's `timeouts.read` applies to
/// the sessions it takes from the pool (it did not, on HTTP/2 and HTTP/3, until the HTTP/1.1
/// tests above went through the same front).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_upstream_is_504_over_h2c_too() {
    let echo = EchoServer::start("slow").await.expect("echo");
    let gw = slow_upstream_gateway(&echo).await;
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .expect("h2c client");
    let resp = tokio::time::timeout(WAIT, h2.get(gw.http_url("/slow?ms=10000")).send())
        .await
        .expect("answered within WAIT, not after the upstream's 10 s")
        .expect("send");
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_json_error(resp, 504, "UPSTREAM_TIMEOUT").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_and_readyz_are_answered_before_routing() {
    let echo = EchoServer::start("a").await.expect("echo");
    let gw = start_catch_all(echo.addr()).await;
    let client = http_client();

    let resp = client
        .get(gw.http_url("/healthz"))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    assert!(header(&resp, "x-request-id").is_some());
    let body: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(body["status"], "ok");

    wait_ready(&gw).await;

    assert_eq!(
        echo.count(),
        0,
        "built-ins must not be proxied by a catch-all route"
    );
}
