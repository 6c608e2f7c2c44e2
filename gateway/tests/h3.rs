//! The HTTP/3 front end to end: requests over QUIC (testkit's quinn/h3 client and the Python
//! `aioquic` client) go through the same pipeline as HTTP/2: routing, plugins, JSON errors,
//! histograms; HTTP/2 over TLS advertises HTTP/3 with `Alt-Svc`.

mod common;
mod plugin_support;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use common::admin::Admin;
use common::*;
use http::Method;
use plugin_support::*;
use testkit::h3::{H3Client, H3Response};
use testkit::{EchoServer, GatewayProcess};

/// A config with `http`, `https` and `h3` (UDP, same port number as `https`), and an admin API
/// when `admin`.
fn template(body: &str, admin: bool) -> String {
    let admin = if admin { "admin = \"@ADMIN@\"\n" } else { "" };
    format!(
        "[listeners]\nhttp = \"@HTTP@\"\nhttps = \"@HTTPS@\"\nh3 = \"@HTTPS@\"\n{admin}\n\
         [server]\nthreads = 1\ngrace_period = \"5s\"\ndata_dir = \"@DATA_DIR@\"\n\n{body}\n"
    )
}

async fn start_h3_with(body: String, admin: bool) -> GatewayProcess {
    gateway()
        .https(true)
        .env(JWT_SECRET_ENV, JWT_SECRET)
        .raw_config(template(&body, admin))
        .start()
        .await
        .unwrap_or_else(|e| panic!("gateway starts: {e}"))
}

async fn start_h3(body: String) -> GatewayProcess {
    start_h3_with(body, false).await
}

fn h3_addr(gw: &GatewayProcess) -> SocketAddr {
    gw.https_addr().expect("https (and h3) enabled")
}

async fn connect(gw: &GatewayProcess) -> H3Client {
    h3_client(gw).await
}

fn catch_all(echo: &EchoServer) -> String {
    catch_all_echo(echo.addr())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_post_10mb_echo_and_concurrent_streams() {
    let echo = EchoServer::start("e1").await.expect("echo");
    let gw = start_h3(catch_all(&echo)).await;
    let client = connect(&gw).await;

    let resp = client.get("/hello?x=1").await.expect("GET");
    assert_eq!(resp.status, 200, "{resp:?}");
    assert!(!resp.header("x-request-id").is_empty(), "x-request-id");
    let body = resp.json().expect("json");
    assert_eq!(body["path"], "/hello?x=1");
    assert_eq!(body["method"], "GET");
    assert!(body["headers"]["x-request-id"].is_string(), "{body}");
    assert!(body["headers"]["traceparent"].is_string(), "{body}");
    assert!(body["headers"]["host"].is_string(), "{body}");

    // 10 MB, streamed both ways (the echo answers while it still reads).
    let payload: Bytes = (0..10 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect::<Vec<u8>>()
        .into();
    let resp = client
        .request(Method::POST, "/echo", &[], payload.clone())
        .await
        .expect("POST /echo");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body.len(), payload.len(), "echoed length");
    assert!(resp.body == payload, "echoed body differs");

    // Many concurrent streams on the one connection.
    let results = futures::future::join_all((0..64).map(|i| {
        let client = &client;
        async move { client.get(&format!("/c/{i}")).await }
    }))
    .await;
    for (i, r) in results.into_iter().enumerate() {
        let r = r.unwrap_or_else(|e| panic!("stream {i}: {e}"));
        assert_eq!(r.status, 200, "stream {i}");
        assert_eq!(r.json().expect("json")["path"], format!("/c/{i}"));
    }
    client.close().await;
}

async fn h3_error(resp: &H3Response, status: u16, code: &str) -> serde_json::Value {
    assert_eq!(resp.status.as_u16(), status, "{resp:?}");
    assert!(resp.header("content-type").starts_with("application/json"));
    let body = resp.json().expect("JSON error body");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert_eq!(body["error"]["request_id"], resp.header("x-request-id"));
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_the_same_json_as_http2() {
    let echo = EchoServer::start("e2").await.expect("echo");
    let dead = testkit::net::closed_addr().expect("closed addr");
    let body = format!(
        "{}{}{}{}",
        upstream("echo", &[echo.addr()], ""),
        upstream("dead", &[dead], ""),
        route("api", "path_prefix = \"/api/\"", "echo", ""),
        route("down", "path_prefix = \"/down/\"", "dead", ""),
    );
    let gw = start_h3(body).await;
    let client = connect(&gw).await;
    let h2 = tls_client(&gw, false);
    for (path, status, code) in [
        ("/nope", 404, "NO_ROUTE"),
        ("/down/x", 502, "UPSTREAM_UNAVAILABLE"),
    ] {
        let over_h3 = client.get(path).await.expect("h3");
        let b3 = h3_error(&over_h3, status, code).await;
        let over_h2 = h2
            .get(format!("https://localhost:{}{path}", h3_addr(&gw).port()))
            .send()
            .await
            .expect("h2");
        assert_eq!(over_h2.version(), reqwest::Version::HTTP_2);
        let b2 = assert_json_error(over_h2, status, code).await;
        assert_eq!(b3["error"]["message"], b2["error"]["message"], "{path}");
        let keys = |v: &serde_json::Value| {
            v["error"]
                .as_object()
                .map(|o| o.keys().cloned().collect::<Vec<_>>())
        };
        assert_eq!(keys(&b3), keys(&b2), "{path}: same JSON shape");
    }
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_and_jwt_behave_as_over_http2() {
    let echo = EchoServer::start("e3").await.expect("echo");
    let rest = [
        plugin_route("a3", "/h3/", &["auth", "rl3"]),
        plugin_route("a2", "/h2/", &["auth", "rl2"]),
        jwt_plugin("auth", ""),
        rate_limit_plugin("rl3", "client_ip", "3/min", ""),
        rate_limit_plugin("rl2", "client_ip", "3/min", ""),
    ]
    .concat();
    let gw = start_h3(body_with(&echo, &rest)).await;
    let client = connect(&gw).await;
    let h2 = tls_client(&gw, false);
    let port = h3_addr(&gw).port();
    let token = format!("Bearer {}", token_for("alice"));

    // No token: 401 with the same challenge on both.
    let r3 = client.get("/h3/x").await.expect("h3");
    h3_error(&r3, 401, "AUTH_001").await;
    let r2 = h2
        .get(format!("https://localhost:{port}/h2/x"))
        .send()
        .await
        .expect("h2");
    assert_eq!(
        header(&r2, "www-authenticate").unwrap_or_default(),
        r3.header("www-authenticate")
    );
    assert_unauthorized(r2, "h2 without token").await;

    // With a token: 3 admitted (identity forwarded), then 429, on both protocols.
    let mut seq3 = Vec::new();
    let mut seq2 = Vec::new();
    for _ in 0..4 {
        let r = client
            .request(
                Method::GET,
                "/h3/x",
                &[("authorization", &token)],
                Bytes::new(),
            )
            .await
            .expect("h3");
        if r.status == 200 {
            assert_eq!(r.json().expect("json")["headers"]["x-user-id"], "alice");
        }
        seq3.push((
            r.status.as_u16(),
            r.header("ratelimit-policy").replace("rl3", "rl"),
        ));
        let r = h2
            .get(format!("https://localhost:{port}/h2/x"))
            .header("authorization", &token)
            .send()
            .await
            .expect("h2");
        let policy = header(&r, "ratelimit-policy").unwrap_or_default();
        seq2.push((r.status().as_u16(), policy.replace("rl2", "rl")));
    }
    assert_eq!(seq3, seq2, "h3 vs h2 status and RateLimit-Policy sequence");
    assert_eq!(
        seq3.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        vec![200, 200, 200, 429]
    );
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alt_svc_on_tls_and_h3_histogram_counts() {
    let echo = EchoServer::start("e4").await.expect("echo");
    let gw = start_h3_with(catch_all(&echo), true).await;
    let port = h3_addr(&gw).port();
    let resp = tls_client(&gw, false)
        .get(format!("https://localhost:{port}/a"))
        .send()
        .await
        .expect("h2 over TLS");
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(
        header(&resp, "alt-svc").as_deref(),
        Some(format!("h3=\":{port}\"; ma=86400").as_str())
    );
    let plain = http_client()
        .get(gw.http_url("/a"))
        .send()
        .await
        .expect("cleartext");
    assert_eq!(header(&plain, "alt-svc"), None, "no Alt-Svc over cleartext");

    let admin = Admin::new(&gw);
    let before = admin.series_count("protocol:h3:total").await;
    let client = connect(&gw).await;
    const N: u64 = 7;
    for i in 0..N {
        assert_eq!(
            client.get(&format!("/n/{i}")).await.expect("h3").status,
            200
        );
    }
    let n = admin
        .wait_series_count("protocol:h3:total", before + N)
        .await;
    assert_eq!(n - before, N, "protocol:h3:total");
    client.close().await;
}

/// `Alt-Svc` is one rule for proxied and gateway-local answers: a TLS answer of the pingora
/// front carries it whether the upstream or the gateway wrote it (`/healthz`, a 404 error), and
/// the HTTP/3 front does not advertise itself on either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alt_svc_is_one_rule_for_local_and_proxied_answers() {
    let echo = EchoServer::start("e5").await.expect("echo");
    let gw = start_h3_with(
        format!(
            "{}{}",
            upstream("echo", &[echo.addr()], ""),
            route("api", "path_prefix = \"/api/\"", "echo", "")
        ),
        true,
    )
    .await;
    let port = h3_addr(&gw).port();
    let expected = format!("h3=\":{port}\"; ma=86400");
    let tls = tls_client(&gw, false);
    for path in ["/api/x", "/healthz", "/no-route"] {
        let resp = tls
            .get(format!("https://localhost:{port}{path}"))
            .send()
            .await
            .expect("h2 over TLS");
        assert_eq!(
            header(&resp, "alt-svc").as_deref(),
            Some(expected.as_str()),
            "{path} over TLS ({})",
            resp.status()
        );
    }
    let client = connect(&gw).await;
    for (path, status) in [("/api/x", 200), ("/healthz", 200), ("/no-route", 404)] {
        let resp = client.get(path).await.expect("h3");
        assert_eq!(resp.status, status, "{path} over HTTP/3");
        assert!(
            resp.headers.get("alt-svc").is_none(),
            "{path}: HTTP/3 does not advertise itself: {:?}",
            resp.headers
        );
    }
    client.close().await;
}

/// A local answer that does not need the request body stops the upload with `H3_NO_ERROR`
/// (RFC 9114 section 4.1), not quinn's drop code 0, which clients read as a failed request:
/// a 4 MiB body to `/healthz` cannot all be sent before the answer, so the stop always comes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_before_the_body_ends_stops_the_upload_with_h3_no_error() {
    let echo = EchoServer::start("e6").await.expect("echo");
    let gw = start_h3(catch_all(&echo)).await;
    let client = connect(&gw).await;
    for _ in 0..3 {
        let body = Bytes::from(vec![b'x'; 4 * 1024 * 1024]);
        let resp = client
            .request(Method::GET, "/healthz", &[], body)
            .await
            .expect("a complete 200 with its upload stopped without error");
        assert_eq!(resp.status, 200, "{resp:?}");
    }
    // The connection is still good for a proxied request.
    let resp = client.get("/after").await.expect("h3 after the stops");
    assert_eq!(resp.status, 200, "{resp:?}");
    client.close().await;
}

/// Every front shares one set of upstream pools: a keep-alive connection the pingora front
/// opened for an HTTP/1.1 request is reused by the HTTP/3 front's next request to the same
/// target (the upstream accepts one connection, not one per front). Five targets, each tried
/// once: the pingora front returns its connection to the pool just after the client has its
/// answer, so one try may still race it under load; separate pools could never stay at one
/// connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_and_http3_fronts_share_the_upstream_pools() {
    let mut echoes = Vec::new();
    let mut body = String::new();
    for i in 0..5 {
        let echo = EchoServer::start(&format!("pool{i}")).await.expect("echo");
        body.push_str(&upstream(&format!("u{i}"), &[echo.addr()], ""));
        body.push_str(&route(
            &format!("r{i}"),
            &format!("path_prefix = \"/p{i}/\""),
            &format!("u{i}"),
            "",
        ));
        echoes.push(echo);
    }
    let gw = start_h3(body).await;
    let h1 = http_client();
    let h3 = connect(&gw).await;
    let mut shared = 0;
    for (i, echo) in echoes.iter().enumerate() {
        let resp = h1
            .get(gw.http_url(&format!("/p{i}/over-h1")))
            .send()
            .await
            .expect("h1 request");
        assert_eq!(resp.status(), 200);
        assert_eq!(
            resp.bytes().await.map(|_| ()).ok(),
            Some(()),
            "h1 body read"
        );
        assert_eq!(
            echo.connections(),
            1,
            "target {i}: the first request opens one"
        );
        // pingora returns the upstream connection to the pool after the last byte went to the
        // client; on a loaded machine that can come after the next request asked the pool. A
        // pause (not a measured time: nothing is asserted about it) lets it land first.
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let resp = h3.get(&format!("/p{i}/over-h3")).await.expect("h3 request");
        assert_eq!(resp.status, 200, "{resp:?}");
        assert_eq!(echo.count(), 2, "target {i}: both requests reached it");
        if echo.connections() == 1 {
            shared += 1;
        }
    }
    assert!(
        shared > 0,
        "no HTTP/3 request reused the connection of the HTTP/1.1 request before it: {:?}",
        echoes.iter().map(|e| e.connections()).collect::<Vec<_>>()
    );
    h3.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aioquic_client_fetches_through_the_gateway() {
    let echo = EchoServer::start("e5").await.expect("echo");
    let gw = start_h3(catch_all(&echo)).await;
    let ca = gw.self_signed_cert_path();
    let port = h3_addr(&gw).port();
    let v = aioquic_fetch(port, "/interop?q=1", &ca, &[]).await;
    assert_eq!(v["status"], 200, "{v}");
    assert!(v["headers"]["x-request-id"].is_string(), "{v}");
    let echoed: serde_json::Value =
        serde_json::from_str(v["body"].as_str().unwrap_or("")).expect("echo JSON");
    assert_eq!(echoed["path"], "/interop?q=1");

    let v = aioquic_fetch(port, "/echo", &ca, &["POST", "hello over aioquic"]).await;
    assert_eq!(v["body"], "hello over aioquic", "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declared_body_over_the_limit_is_413() {
    let echo = EchoServer::start("e6").await.expect("echo");
    let gw = start_h3(catch_all(&echo)).await;
    let client = connect(&gw).await;
    let resp = client
        .request(
            Method::POST,
            "/echo",
            &[("content-length", "999999999999")],
            Bytes::from_static(b"abc"),
        )
        .await
        .expect("h3");
    h3_error(&resp, 413, "PARAM_001").await;
    assert_eq!(echo.count(), 0, "rejected before the upstream");
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_h3_streams_then_exits() {
    let echo = EchoServer::start("e7").await.expect("echo");
    let mut gw = start_h3(catch_all(&echo)).await;
    let client = connect(&gw).await;
    let slow = client.get("/slow?ms=800");
    let term = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        gw.signal(libc::SIGTERM).expect("SIGTERM");
    };
    let (resp, ()) = tokio::join!(slow, term);
    let resp = resp.expect("the in-flight stream completes during the drain");
    assert_eq!(resp.status, 200);
    let status = gw
        .wait_exit(Duration::from_secs(10))
        .await
        .expect("wait")
        .expect("exited after the drain");
    assert!(status.success(), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_over_h3_streams_messages_and_trailers_from_an_h2c_upstream() {
    use testkit::grpc::{self, EchoReply, EchoRequest};
    let server = testkit::GrpcServer::start("grpc-h3").await.expect("grpc");
    let body = format!(
        "{}{}",
        upstream("grpc", &[server.addr()], "protocol = \"h2c\""),
        route("grpc", "path_prefix = \"/testkit.Echo/\"", "grpc", "")
    );
    let gw = start_h3(body).await;
    let client = connect(&gw).await;
    let grpc_headers = [("content-type", "application/grpc"), ("te", "trailers")];
    let request = EchoRequest {
        message: "hi".into(),
        count: 3,
        fail_after: None,
    };
    let resp = client
        .request(
            Method::POST,
            grpc::SERVER_STREAM,
            &grpc_headers,
            grpc::encode_frame(&request).into(),
        )
        .await
        .expect("h3");
    assert_eq!(resp.status, 200, "{resp:?}");
    let replies: Vec<EchoReply> = grpc::decode_frames(&resp.body).expect("frames");
    let texts: Vec<&str> = replies.iter().map(|r| r.message.as_str()).collect();
    assert_eq!(texts, vec!["hi-0", "hi-1", "hi-2"]);
    assert!(
        !replies[0].request_id.is_empty(),
        "x-request-id reached the upstream"
    );
    let trailers = resp.trailers.expect("response trailers over HTTP/3");
    assert_eq!(
        trailers.get("grpc-status").map(|v| v.as_bytes()),
        Some(&b"0"[..])
    );

    // An error status arrives in the trailers, after the messages.
    let failing = EchoRequest {
        message: "f".into(),
        count: 3,
        fail_after: Some(1),
    };
    let resp = client
        .request(
            Method::POST,
            grpc::SERVER_STREAM,
            &grpc_headers,
            grpc::encode_frame(&failing).into(),
        )
        .await
        .expect("h3");
    let trailers = resp.trailers.expect("trailers");
    assert_eq!(
        trailers.get("grpc-status").map(|v| v.as_bytes()),
        Some(&b"5"[..])
    );
    client.close().await;
}
