//! Request ids, W3C trace context, and the `headers` plugin.

mod common;

use common::*;
use testkit::request::{fetch, get};
use testkit::EchoServer;

const CLIENT_TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_request_id_is_kept_and_forwarded() {
    let echo = EchoServer::start("a").await.expect("echo");
    let gw = start_catch_all(echo.addr()).await;
    let resp = fetch(
        http_client()
            .get(gw.http_url("/rid"))
            .header("x-request-id", "client-rid-42"),
    )
    .await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("x-request-id"), Some("client-rid-42"));
    assert_eq!(resp.echoed_headers()["x-request-id"], "client-rid-42");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_id_is_generated_when_absent_and_equal_at_upstream() {
    let echo = EchoServer::start("a").await.expect("echo");
    let gw = start_catch_all(echo.addr()).await;
    let client = http_client();
    let mut ids = Vec::new();
    for _ in 0..2 {
        let resp = get(&client, &gw.http_url("/gen")).await;
        assert_eq!(resp.status, 200);
        let rid = resp
            .header("x-request-id")
            .expect("generated x-request-id on the response");
        assert!(!rid.trim().is_empty());
        let seen = resp.echoed_headers();
        assert_eq!(
            seen["x-request-id"], rid,
            "upstream saw a different id: {seen}"
        );
        ids.push(rid.to_string());
    }
    assert_ne!(ids[0], ids[1], "two requests got the same generated id");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_traceparent_keeps_its_trace_id() {
    let echo = EchoServer::start("a").await.expect("echo");
    let gw = start_catch_all(echo.addr()).await;
    let headers = fetch(
        http_client()
            .get(gw.http_url("/trace"))
            .header("traceparent", CLIENT_TRACEPARENT),
    )
    .await
    .echoed_headers();
    let seen = headers["traceparent"]
        .as_str()
        .unwrap_or_else(|| panic!("upstream got no traceparent: {headers}"));
    assert!(is_valid_traceparent(seen), "invalid traceparent {seen:?}");
    assert_eq!(
        seen.split('-').nth(1),
        Some("4bf92f3577b34da6a3ce929d0e0e4736"),
        "trace id changed: {seen}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traceparent_is_generated_when_absent() {
    let echo = EchoServer::start("a").await.expect("echo");
    let gw = start_catch_all(echo.addr()).await;
    let client = http_client();
    let mut trace_ids = Vec::new();
    for _ in 0..2 {
        let headers = get(&client, &gw.http_url("/trace")).await.echoed_headers();
        let seen = headers["traceparent"]
            .as_str()
            .unwrap_or_else(|| panic!("upstream got no traceparent: {headers}"))
            .to_string();
        assert!(is_valid_traceparent(&seen), "invalid traceparent {seen:?}");
        assert!(
            seen.ends_with("-01"),
            "generated traceparent not sampled: {seen}"
        );
        trace_ids.push(seen.split('-').nth(1).map(str::to_string));
    }
    assert_ne!(
        trace_ids[0], trace_ids[1],
        "two requests share a generated trace id"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_plugin_edits_request_and_response() {
    let echo = EchoServer::start("hp").await.expect("echo");
    let gw = start_gateway(format!(
            "{}{}{}",
            upstream("echo", &[echo.addr()], ""),
            route("edited", "path_prefix = \"/\"", "echo", "plugins = [\"hdrs\"]"),
            r#"
[plugins.hdrs]
kind = "headers"
request = { set = { "x-added" = "1", "x-overwritten" = "gateway" }, add = { "x-appended" = "two" }, remove = ["x-drop"] }
response = { set = { "x-resp" = "yes" }, remove = ["server", "x-echo-server"] }
"#
        )).await;

    let resp = fetch(
        http_client()
            .get(gw.http_url("/plugin"))
            .header("x-drop", "secret")
            .header("x-overwritten", "client")
            .header("x-appended", "one")
            .header("x-untouched", "same"),
    )
    .await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("x-resp"), Some("yes"));
    assert_eq!(
        resp.header("x-echo-server"),
        None,
        "response remove ignored"
    );
    assert_ne!(
        resp.header("server"),
        Some("testkit-echo"),
        "upstream server header not removed"
    );
    let seen = &resp.echoed_headers();
    assert_eq!(seen["x-added"], "1", "request set: {seen}");
    assert_eq!(
        seen["x-overwritten"], "gateway",
        "request set must replace: {seen}"
    );
    assert!(
        seen.get("x-drop").is_none(),
        "request remove ignored: {seen}"
    );
    assert_eq!(seen["x-untouched"], "same");
    let appended = seen["x-appended"].as_str().unwrap_or_default();
    assert!(
        appended.contains("one") && appended.contains("two"),
        "add must keep the client's value and append: {appended:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_apply_in_the_listed_order() {
    let echo = EchoServer::start("ord").await.expect("echo");
    let gw = start_gateway(format!(
        "{}{}{}{}",
        upstream("echo", &[echo.addr()], ""),
        route(
            "ab",
            "path_prefix = \"/ab/\"",
            "echo",
            "plugins = [\"first\", \"second\"]"
        ),
        route(
            "ba",
            "path_prefix = \"/ba/\"",
            "echo",
            "plugins = [\"second\", \"first\"]"
        ),
        r#"
[plugins.first]
kind = "headers"
request = { set = { "x-order" = "first" } }

[plugins.second]
kind = "headers"
request = { set = { "x-order" = "second" } }
"#
    ))
    .await;
    let client = http_client();

    let seen = get(&client, &gw.http_url("/ab/x")).await.echoed_headers();
    assert_eq!(seen["x-order"], "second", "[first, second]: {seen}");
    let seen = get(&client, &gw.http_url("/ba/x")).await.echoed_headers();
    assert_eq!(seen["x-order"], "first", "[second, first]: {seen}");
}

/// Hop-by-hop request fields (RFC 9110 §7.6.1: `Connection` and the fields it names,
/// `Keep-Alive`, `Proxy-Connection`, `TE`, `Trailer`, `Upgrade` other than a WebSocket's,
/// `HTTP2-Settings`, `Proxy-Authorization`, `Proxy-Authenticate`) never reach the upstream; end-to-end fields do, with
/// and without hop-by-hop fields beside them. (The vendored pingora-proxy skips the removals when
/// a scan of the names finds none: this holds that scan to the full list.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_request_fields_are_not_forwarded() {
    let echo = EchoServer::start("hop").await.expect("echo");
    let gw = start_catch_all(echo.addr()).await;
    let hop_by_hop = [
        (
            "Connection",
            "keep-alive, X-Nominated, Upgrade, HTTP2-Settings",
        ),
        ("X-Nominated", "secret"),
        ("Keep-Alive", "timeout=5"),
        ("Proxy-Connection", "keep-alive"),
        ("TE", "trailers"),
        ("Trailer", "X-Checksum"),
        ("Upgrade", "h2c"),
        ("HTTP2-Settings", "AAMAAABkAAQAAP__"),
        ("Proxy-Authorization", "Basic dXNlcjpwYXNz"),
        ("Proxy-Authenticate", "Basic realm=\"upstream\""),
    ];
    // Each field alone (so that no other one triggers the removals; `X-Nominated` is hop-by-hop
    // only with the `Connection` field naming it), then all together.
    let mut cases: Vec<Vec<(&str, &str)>> = vec![hop_by_hop[..2].to_vec()];
    cases.extend(hop_by_hop[2..].iter().map(|f| vec![*f]));
    cases.push(hop_by_hop.to_vec());
    for fields in cases {
        let mut head = String::from("GET /hop HTTP/1.1\r\nHost: gw\r\nX-End-To-End: kept\r\n");
        for (name, value) in &fields {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        // No `Connection: close`: it would itself be a hop-by-hop field in every case.
        head.push_str("\r\n");
        let resp = testkit::raw_http::send(gw.http_addr(), head.as_bytes(), b"", WAIT)
            .await
            .expect("request sent");
        assert_eq!(
            resp.status,
            Some(200),
            "{fields:?}: {}",
            String::from_utf8_lossy(&resp.raw)
        );
        let seen = resp.json().expect("echo JSON")["headers"].clone();
        assert_eq!(seen["x-end-to-end"], "kept", "{fields:?}: {seen}");
        for (name, _) in &fields {
            let name = name.to_ascii_lowercase();
            assert!(
                seen.get(&name).is_none(),
                "{fields:?}: `{name}` reached the upstream: {seen}"
            );
        }
    }
}
