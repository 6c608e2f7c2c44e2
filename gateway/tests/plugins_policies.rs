//! End-to-end tests of the `ip_filter` and `limits` plugins through the gateway binary (`cors` is
//! in `plugins_cors.rs`).

mod common;
mod plugin_support;

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;

use common::*;
use plugin_support::*;
use testkit::client::H2Client;
use testkit::upstream::http::pattern_bytes;
use testkit::{raw_http, EchoServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ip_filter_allows_and_denies_the_loopback_peer() {
    let echo = EchoServer::start("ipf").await.expect("echo");
    let body = body_with(
        &echo,
        &format!(
            "{}{}{}{}{}{}{}{}",
            plugin_route("deny", "/deny/", &["deny_local"]),
            plugin_route("ten", "/ten/", &["ten_only"]),
            plugin_route("ten_xff", "/ten-xff/", &["ten_via_proxy"]),
            plugin_route("loop", "/loop/", &["loopback_only"]),
            plugin("deny_local", "ip_filter", "deny = [\"127.0.0.1/32\"]"),
            plugin("ten_only", "ip_filter", "allow = [\"10.0.0.0/8\"]"),
            plugin(
                "ten_via_proxy",
                "ip_filter",
                "allow = [\"10.0.0.0/8\"]\ntrusted_proxies = [\"127.0.0.1/32\"]"
            ),
            plugin("loopback_only", "ip_filter", "allow = [\"127.0.0.0/8\"]"),
        ),
    );
    let gw = start_with(body).await;
    let client = http_client();
    let get = |path: &str, xff: Option<&str>| {
        let mut b = client.get(gw.http_url(path));
        if let Some(x) = xff {
            b = b.header("x-forwarded-for", x);
        }
        b.send()
    };

    let resp = get("/deny/x", None).await.expect("send");
    assert_json_error(resp, 403, "AUTH_001").await;
    let resp = get("/ten/x", None).await.expect("send");
    assert_json_error(resp, 403, "AUTH_001").await;
    // Untrusted peer: a forged X-Forwarded-For does not get it in.
    let resp = get("/ten/x", Some("10.1.2.3")).await.expect("send");
    assert_json_error(resp, 403, "AUTH_001").await;
    assert_eq!(echo.count(), 0, "a filtered request reached the upstream");

    let resp = get("/loop/x", None).await.expect("send");
    assert_eq!(resp.status(), 200);
    // Trusted peer: the forwarded client address is the one filtered.
    let resp = get("/ten-xff/x", Some("10.1.2.3")).await.expect("send");
    assert_eq!(resp.status(), 200, "forwarded 10.1.2.3 via a trusted proxy");
    let resp = get("/ten-xff/x", Some("192.0.2.1")).await.expect("send");
    assert_json_error(resp, 403, "AUTH_001").await;
    let resp = get("/ten-xff/x", None).await.expect("send");
    assert_json_error(resp, 403, "AUTH_001").await;
    assert_eq!(echo.count(), 2);
}

/// One catch-all route running `limits`: 1 KiB body, 2 KiB header block, 256-byte URI.
async fn limits_gateway(echo: &EchoServer) -> testkit::GatewayProcess {
    start_with(body_with(
        echo,
        &format!(
            "{}{}",
            plugin_route("all", "/", &["lim"]),
            plugin(
                "lim",
                "limits",
                "max_body = 1024\nmax_header_bytes = 2048\nmax_uri_length = 256"
            ),
        ),
    ))
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_content_length_over_max_body_is_413_before_the_upstream() {
    let echo = EchoServer::start("lim").await.expect("echo");
    let gw = limits_gateway(&echo).await;
    let resp = http_client()
        .post(gw.http_url("/echo"))
        .body(pattern_bytes(2000))
        .send()
        .await
        .expect("send");
    assert_json_error(resp, 413, "PARAM_001").await;
    assert_eq!(echo.count(), 0, "an oversized body was sent upstream");
}

/// Sends an 8 KiB chunked body in 512-byte chunks (10 ms apart) to `path`.
async fn chunked_upload(gw: &testkit::GatewayProcess, path: &str) -> raw_http::RawResponse {
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/octet-stream\r\n\
         Transfer-Encoding: chunked\r\n\r\n",
        gw.http_addr()
    );
    let pieces = raw_http::chunked_pieces(&pattern_bytes(8 * 1024), 512);
    raw_http::exchange(
        gw.http_addr(),
        head.as_bytes(),
        &pieces,
        Duration::from_millis(10),
        RAW_TIMEOUT,
    )
    .await
    .expect("exchange")
}

fn describe(resp: &raw_http::RawResponse) -> String {
    format!(
        "{:?} (complete {}, write error {:?}, read error {:?}, {} body bytes written)",
        String::from_utf8_lossy(&resp.raw),
        resp.complete,
        resp.write_error,
        resp.read_error,
        resp.body_bytes_written
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_chunked_body_over_max_body_is_413() {
    let echo = EchoServer::start("lim").await.expect("echo");
    let gw = limits_gateway(&echo).await;
    // The echo reads the whole body before it answers, so the gateway's 413 comes first.
    let resp = chunked_upload(&gw, "/upload").await;
    assert_eq!(resp.status, Some(413), "{}", describe(&resp));
    let json = resp
        .json()
        .unwrap_or_else(|e| panic!("413 body is not JSON ({e}): {}", describe(&resp)));
    assert_eq!(json["error"]["code"], "PARAM_001", "{json}");
    assert_eq!(
        json["error"]["request_id"].as_str(),
        resp.header("x-request-id"),
        "{json}"
    );
    assert!(
        resp.body_bytes_written < 8 * 1024,
        "the gateway read the whole over-limit body: {}",
        describe(&resp)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_chunked_body_over_max_body_after_the_upstream_answered_is_cut_off() {
    let echo = EchoServer::start("lim").await.expect("echo");
    let gw = limits_gateway(&echo).await;
    // `/echo` streams the body back as it arrives: its 200 head is already with the client
    // when the limit is crossed, so the gateway can only cut the response short. A client
    // can rely on the response not completing, and on the upstream never getting (and so
    // never echoing) more than max_body bytes.
    let resp = chunked_upload(&gw, "/echo").await;
    match resp.status {
        // The limit was crossed before the upstream's head was relayed.
        Some(413) => assert!(resp.complete, "{}", describe(&resp)),
        // The upstream's 200 was relayed: it must not complete.
        Some(200) | None => assert!(
            !resp.complete,
            "an over-limit upload completed normally: {}",
            describe(&resp)
        ),
        Some(_) => panic!("unexpected status: {}", describe(&resp)),
    }
    assert!(
        resp.body.len() <= 1024,
        "the upstream echoed {} bytes past max_body = 1024: {}",
        resp.body.len(),
        describe(&resp)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_bodies_under_the_limit_reach_the_upstream_intact() {
    let echo = EchoServer::start("lim").await.expect("echo");
    let gw = limits_gateway(&echo).await;
    let data = pattern_bytes(1000);
    let resp = http_client()
        .post(gw.http_url("/echo"))
        .body(data.clone())
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.bytes().await.expect("body").as_ref(), data.as_slice());

    // Exactly at the limit, chunked.
    let data = pattern_bytes(1024);
    let head = format!(
        "POST /echo HTTP/1.1\r\nHost: {}\r\nTransfer-Encoding: chunked\r\n\r\n",
        gw.http_addr()
    );
    let resp = raw_http::exchange(
        gw.http_addr(),
        head.as_bytes(),
        &raw_http::chunked_pieces(&data, 300),
        Duration::from_millis(5),
        RAW_TIMEOUT,
    )
    .await
    .expect("exchange");
    assert_eq!(
        resp.status,
        Some(200),
        "{:?}",
        String::from_utf8_lossy(&resp.raw)
    );
    assert_eq!(resp.body, data, "chunked body changed on the way");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_oversized_headers_are_431_and_long_uris_414() {
    let echo = EchoServer::start("lim").await.expect("echo");
    let gw = limits_gateway(&echo).await;
    let client = http_client();

    let resp = client
        .get(gw.http_url("/h"))
        .header("x-big", "v".repeat(3000))
        .send()
        .await
        .expect("send");
    assert_json_error(resp, 431, "PARAM_001").await;

    // Many small fields add up too.
    let mut b = client.get(gw.http_url("/h"));
    for i in 0..40 {
        b = b.header(format!("x-field-{i:02}"), "y".repeat(50));
    }
    assert_json_error(b.send().await.expect("send"), 431, "PARAM_001").await;

    let long = format!("/u/{}", "a".repeat(300));
    let resp = client.get(gw.http_url(&long)).send().await.expect("send");
    assert_json_error(resp, 414, "PARAM_001").await;
    // The query counts toward the URI length.
    let long_query = format!("/u?q={}", "b".repeat(300));
    let resp = client
        .get(gw.http_url(&long_query))
        .send()
        .await
        .expect("send");
    assert_json_error(resp, 414, "PARAM_001").await;
    assert_eq!(echo.count(), 0, "an oversized request reached the upstream");

    // Just under every limit passes.
    let resp = client
        .get(gw.http_url(&format!("/u/{}", "a".repeat(200))))
        .header("x-big", "v".repeat(1500))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
}

/// `GET {target}` with only `Host` and `x-pad` fields, sized so the header block counts
/// `block` bytes as `limits` counts it (`name + value + 4` per field).
fn head_with_block(
    gw: &testkit::GatewayProcess,
    method: &str,
    target: &str,
    block: usize,
    extra: &str,
) -> String {
    let host = gw.http_addr().to_string();
    let extra_bytes: usize = extra
        .split("\r\n")
        .filter(|l| !l.is_empty())
        .map(|l| l.len() + 2)
        .sum();
    let fixed = ("host".len() + host.len() + 4) + ("x-pad".len() + 4) + extra_bytes;
    let pad = block.checked_sub(fixed).expect("block too small");
    format!(
        "{method} {target} HTTP/1.1\r\nHost: {host}\r\n{extra}x-pad: {}\r\n\r\n",
        "p".repeat(pad)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_exactly_at_each_limit_pass_and_one_byte_more_is_refused() {
    let echo = EchoServer::start("lim").await.expect("echo");
    let gw = limits_gateway(&echo).await;
    let addr = gw.http_addr();
    let exchange = |head: String, body: Vec<u8>| async move {
        raw_http::send(addr, head.as_bytes(), &body, RAW_TIMEOUT)
            .await
            .expect("exchange")
    };

    // Header block: 2048 bytes pass, 2049 do not.
    let resp = exchange(head_with_block(&gw, "GET", "/h", 2048, ""), Vec::new()).await;
    assert_eq!(
        resp.status,
        Some(200),
        "2048-byte header block: {}",
        describe(&resp)
    );
    let resp = exchange(head_with_block(&gw, "GET", "/h", 2049, ""), Vec::new()).await;
    assert_eq!(
        resp.status,
        Some(431),
        "2049-byte header block: {}",
        describe(&resp)
    );

    // URI (path and query): 256 bytes pass, 257 do not.
    let at = format!("/u?q={}", "a".repeat(256 - 5));
    assert_eq!(at.len(), 256);
    let resp = exchange(head_with_block(&gw, "GET", &at, 100, ""), Vec::new()).await;
    assert_eq!(resp.status, Some(200), "256-byte URI: {}", describe(&resp));
    let over = format!("{at}b");
    let resp = exchange(head_with_block(&gw, "GET", &over, 100, ""), Vec::new()).await;
    assert_eq!(resp.status, Some(414), "257-byte URI: {}", describe(&resp));

    // Body with Content-Length: 1024 bytes pass (intact), 1025 do not.
    let cl = |n: usize| format!("Content-Length: {n}\r\n");
    let data = pattern_bytes(1024);
    let resp = exchange(
        head_with_block(&gw, "POST", "/echo", 200, &cl(1024)),
        data.clone(),
    )
    .await;
    assert_eq!(
        resp.status,
        Some(200),
        "1024-byte body: {}",
        describe(&resp)
    );
    assert_eq!(resp.body, data, "1024-byte body changed on the way");
    let resp = exchange(
        head_with_block(&gw, "POST", "/echo", 200, &cl(1025)),
        pattern_bytes(1025),
    )
    .await;
    assert_eq!(
        resp.status,
        Some(413),
        "1025-byte body: {}",
        describe(&resp)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_apply_over_h2c() {
    let echo = EchoServer::start("lim").await.expect("echo");
    let gw = limits_gateway(&echo).await;
    let mut h2 = H2Client::connect_h2c(gw.http_addr()).await.expect("h2c");
    let check = |resp: &testkit::client::FullResponse, status: u16, label: &str| {
        assert_eq!(resp.status.as_u16(), status, "{label}: {:?}", resp.body);
        if status >= 400 {
            let body = resp
                .json()
                .unwrap_or_else(|e| panic!("{label}: not JSON: {e}"));
            assert_eq!(body["error"]["code"], "PARAM_001", "{label}: {body}");
        }
    };

    let req = h2
        .request(http::Method::POST, "/echo")
        .body(Full::new(Bytes::from(pattern_bytes(2000))))
        .expect("request");
    let resp = h2.send_full(req).await.expect("send");
    check(&resp, 413, "h2c body over max_body");

    let req = h2
        .request(http::Method::GET, "/h")
        .header("x-big", "v".repeat(3000))
        .body(Full::new(Bytes::new()))
        .expect("request");
    let resp = h2.send_full(req).await.expect("send");
    check(&resp, 431, "h2c header block over max_header_bytes");

    let resp = h2
        .get(&format!("/u/{}", "a".repeat(300)))
        .await
        .expect("send");
    check(&resp, 414, "h2c URI over max_uri_length");
    assert_eq!(
        echo.count(),
        0,
        "an oversized h2c request reached the upstream"
    );

    let data = pattern_bytes(1000);
    let req = h2
        .request(http::Method::POST, "/echo")
        .body(Full::new(Bytes::from(data.clone())))
        .expect("request");
    let resp = h2.send_full(req).await.expect("send");
    check(&resp, 200, "h2c body under max_body");
    assert_eq!(
        resp.body.as_ref(),
        data.as_slice(),
        "h2c body changed on the way"
    );
}
