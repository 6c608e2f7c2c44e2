//! SPEC "Hardening defaults", end to end through real sockets: path normalization on every front
//! (HTTP/1.1, h2c, HTTP/2 over TLS, HTTP/3), `X-Forwarded-*` and trusted proxies, and non-WebSocket
//! upgrades that must not tunnel.

mod common;

use std::net::SocketAddr;

use bytes::Bytes;
use common::*;
use http_body_util::Full;
use testkit::client::H2Client;
use testkit::raw_http;
use testkit::{EchoServer, GatewayProcess};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `/private/` is protected by an `ip_filter` that denies everyone; everything else goes to the
/// `public` echo. A bypass would reach the public echo with a path the upstream reads as
/// `/private/...`.
fn protected(private: &EchoServer, public: &EchoServer) -> String {
    format!(
        "{}{}[plugins.deny_all]\nkind = \"ip_filter\"\ndeny = [\"0.0.0.0/0\", \"::/0\"]\n\n{}{}",
        upstream("private", &[private.addr()], ""),
        upstream("public", &[public.addr()], ""),
        route(
            "private",
            "path_prefix = \"/private/\"",
            "private",
            "plugins = [\"deny_all\"]"
        ),
        route("public", "path_prefix = \"/\"", "public", ""),
    )
}

/// Spellings of `/private/x` and what the gateway must answer: 403 (the protected route, its
/// plugin refuses) or 400 `PARAM_001` (refused before routing).
const BYPASSES: &[(&str, u16)] = &[
    ("/private/x", 403),
    ("/%70rivate/x", 403),
    ("/%70RIVATE/x", 200),
    ("/public/../private/x", 403),
    ("/public/%2e%2e/private/x", 403),
    ("/public/%2E%2e/private/x", 403),
    ("/public/.%2E/private/x", 403),
    ("/./private/./x", 403),
    ("//private/x", 403),
    ("/private//x", 403),
    ("/%2e/private/x", 403),
    ("/private%2Fx", 400),
    ("/private%2fx", 400),
    ("/public/..%2Fprivate/x", 400),
    ("/public/..%5Cprivate/x", 400),
    ("/..", 400),
    ("/public/../../private/x", 400),
    ("/%2E%2E/private/x", 400),
];

/// A path that is not canonical but is allowed: the upstream must receive its canonical form,
/// with the query untouched.
const REWRITTEN: (&str, &str) = (
    "/pub%6Cic/a/./b//c/%7e%3f?q=%2e%2E//",
    "/public/a/b/c/~%3F?q=%2e%2E//",
);

/// Checks one answer: the status, a JSON `PARAM_001` body for 400, and that nothing reached the
/// public upstream with a path under `/private/` (200 only for the case-changed spelling, which
/// is a different path).
fn check(label: &str, path: &str, want: u16, status: u16, body: &[u8]) {
    assert_eq!(
        status,
        want,
        "{label} {path}: body {}",
        String::from_utf8_lossy(body)
    );
    let json: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    match want {
        400 => assert_eq!(json["error"]["code"], "PARAM_001", "{label} {path}: {json}"),
        403 => assert_eq!(json["error"]["code"], "AUTH_001", "{label} {path}: {json}"),
        _ => {
            let seen = json["path"].as_str().unwrap_or_default();
            assert!(
                !seen.starts_with("/private"),
                "{label} {path}: the public upstream saw {seen:?}"
            );
            assert_eq!(json["server"], "public", "{label} {path}: {json}");
        }
    }
}

fn assert_no_private_path_reached(label: &str, public: &EchoServer, private: &EchoServer) {
    for r in public.requests().requests() {
        assert!(
            !r.path.starts_with("/private"),
            "{label}: the public upstream received {:?}",
            r.path
        );
    }
    assert_eq!(
        private.count(),
        0,
        "{label}: the protected upstream was reached"
    );
}

async fn start_protected(h3: bool) -> (EchoServer, EchoServer, GatewayProcess) {
    let private = EchoServer::start("private").await.expect("echo");
    let public = EchoServer::start("public").await.expect("echo");
    let gw = gateway()
        .h3(h3)
        .https(true)
        .config(protected(&private, &public))
        .start()
        .await
        .unwrap_or_else(|e| panic!("gateway starts: {e}"));
    (private, public, gw)
}

async fn raw_get(addr: SocketAddr, path: &str, extra: &str) -> raw_http::RawResponse {
    let head = format!("GET {path} HTTP/1.1\r\nHost: gw.test\r\n{extra}Connection: close\r\n\r\n");
    raw_http::send(addr, head.as_bytes(), b"", WAIT)
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bypass_spellings_over_http1_h2c_and_tls_h2() {
    let (private, public, gw) = start_protected(false).await;

    // HTTP/1.1, bytes exactly as written (reqwest would normalize some of them itself).
    for (path, want) in BYPASSES {
        let r = raw_get(gw.http_addr(), path, "").await;
        check("h1", path, *want, r.status.unwrap_or(0), &r.body);
    }
    // A raw backslash: refused (by pingora's request-line parser or by the gateway).
    for path in ["/public\\..\\private\\x", "/private\\x"] {
        let r = raw_get(gw.http_addr(), path, "").await;
        assert_eq!(r.status, Some(400), "h1 {path}: {r:?}");
    }
    let r = raw_get(gw.http_addr(), REWRITTEN.0, "").await;
    assert_eq!(r.status, Some(200), "{r:?}");
    assert_eq!(r.json().expect("json")["path"], REWRITTEN.1);

    // h2c (prior knowledge) and HTTP/2 over TLS: the same spellings in `:path`.
    let pem = gw.self_signed_cert_pem().expect("cert");
    let https = gw.https_addr().expect("https");
    for (label, mut client) in [
        (
            "h2c",
            H2Client::connect_h2c(gw.http_addr()).await.expect("h2c"),
        ),
        (
            "h2",
            H2Client::connect_tls(https, &pem, "localhost")
                .await
                .expect("h2"),
        ),
    ] {
        for (path, want) in BYPASSES {
            let resp = client
                .get(path)
                .await
                .unwrap_or_else(|e| panic!("{label} {path}: {e}"));
            check(label, path, *want, resp.status.as_u16(), &resp.body);
        }
        let resp = client.get(REWRITTEN.0).await.expect("rewritten");
        assert_eq!(resp.json().expect("json")["path"], REWRITTEN.1, "{label}");
        assert_eq!(resp.json().expect("json")["version"], "HTTP/1.1", "{label}");
    }
    assert_no_private_path_reached("h1/h2c/h2", &public, &private);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bypass_spellings_over_http3() {
    let (private, public, gw) = start_protected(true).await;
    let client = h3_client(&gw).await;
    for (path, want) in BYPASSES {
        let resp = client
            .get(path)
            .await
            .unwrap_or_else(|e| panic!("h3 {path}: {e}"));
        check("h3", path, *want, resp.status.as_u16(), &resp.body);
    }
    let resp = client.get(REWRITTEN.0).await.expect("rewritten");
    assert_eq!(resp.json().expect("json")["path"], REWRITTEN.1);
    client.close().await;
    assert_no_private_path_reached("h3", &public, &private);
}

/// Without trusted proxies a client's `X-Forwarded-*` are replaced; behind a trusted proxy they
/// are kept and the proxy is appended, and plugins (here `ip_filter`, with no trust list of its
/// own) judge the forwarded client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_headers_and_trusted_proxies() {
    let echo = EchoServer::start("e").await.expect("echo");
    let body = format!(
        "{}[plugins.no_six]\nkind = \"ip_filter\"\ndeny = [\"6.6.6.6\"]\n\n{}{}",
        upstream("echo", &[echo.addr()], ""),
        route(
            "filtered",
            "path_prefix = \"/filtered/\"",
            "echo",
            "plugins = [\"no_six\"]"
        ),
        route("all", "path_prefix = \"/\"", "echo", ""),
    );
    let spoof =
        "X-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: evil.test\r\n";

    let untrusted = gateway()
        .config(body.clone())
        .start()
        .await
        .expect("gateway");
    let r = raw_get(untrusted.http_addr(), "/x", spoof).await;
    let seen = r.json().expect("json");
    assert_eq!(seen["headers"]["x-forwarded-for"], "127.0.0.1", "{seen}");
    assert_eq!(seen["headers"]["x-forwarded-proto"], "http", "{seen}");
    assert_eq!(seen["headers"]["x-forwarded-host"], "gw.test", "{seen}");
    // The spoofed address is not the client: the filter lets it through.
    let r = raw_get(untrusted.http_addr(), "/filtered/x", spoof).await;
    assert_eq!(r.status, Some(200), "{r:?}");

    let trusted = gateway()
        .server("trusted_proxies = [\"127.0.0.1\"]")
        .config(body)
        .start()
        .await
        .expect("gateway");
    let r = raw_get(trusted.http_addr(), "/x", spoof).await;
    let seen = r.json().expect("json");
    assert_eq!(
        seen["headers"]["x-forwarded-for"], "6.6.6.6, 127.0.0.1",
        "{seen}"
    );
    assert_eq!(seen["headers"]["x-forwarded-proto"], "https", "{seen}");
    assert_eq!(seen["headers"]["x-forwarded-host"], "evil.test", "{seen}");
    let r = raw_get(trusted.http_addr(), "/filtered/x", spoof).await;
    assert_eq!(
        r.status,
        Some(403),
        "forwarded client 6.6.6.6 is filtered: {r:?}"
    );
    let r = raw_get(trusted.http_addr(), "/filtered/x", "").await;
    assert_eq!(r.status, Some(200), "{r:?}");
    // Without a client copy, the trusted peer's own view: XFF = peer, proto/host of this hop.
    let seen = r.json().expect("json");
    assert_eq!(seen["headers"]["x-forwarded-for"], "127.0.0.1", "{seen}");
    assert_eq!(seen["headers"]["x-forwarded-proto"], "http", "{seen}");
}

/// `Upgrade: h2c` is not a WebSocket upgrade: it is proxied as a plain request without the
/// upgrade, and the next request on the same connection is routed like any other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_upgrade_does_not_tunnel() {
    let (private, public, gw) = start_protected(false).await;
    let mut conn = tokio::net::TcpStream::connect(gw.http_addr())
        .await
        .expect("connect");
    let first = "GET /up HTTP/1.1\r\nHost: gw.test\r\nUpgrade: h2c\r\n\
                 Connection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n";
    conn.write_all(first.as_bytes()).await.expect("write");
    let (status, body) = read_one_response(&mut conn).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let seen: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert!(
        seen["headers"]["upgrade"].is_null(),
        "upgrade reached the upstream: {seen}"
    );
    let connection = seen["headers"]["connection"]
        .as_str()
        .unwrap_or("")
        .to_ascii_lowercase();
    assert!(!connection.contains("upgrade"), "{seen}");
    // Same connection, next request: routed (the protected route answers 403).
    conn.write_all(b"GET /private/x HTTP/1.1\r\nHost: gw.test\r\n\r\n")
        .await
        .expect("write");
    let (status, _) = read_one_response(&mut conn).await;
    assert_eq!(status, 403);
    assert_eq!(private.count(), 0);
    assert_eq!(public.count(), 1);
    let log = gw
        .wait_for_access_log(WAIT, |l| l["path"] == "/up")
        .await
        .expect("access log line");
    assert_eq!(log["protocol"], "h1", "{log}");
}

/// Reads one HTTP/1.1 response with a `content-length` body from a kept-alive connection.
async fn read_one_response(conn: &mut tokio::net::TcpStream) -> (u16, Vec<u8>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let status: u16 = head
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .expect("status");
            let len: usize = head
                .lines()
                .find_map(|l| {
                    let (n, v) = l.split_once(':')?;
                    n.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .expect("content-length");
            if buf.len() >= end + 4 + len {
                let body = buf[end + 4..end + 4 + len].to_vec();
                buf.drain(..end + 4 + len);
                return (status, body);
            }
        }
        let n = tokio::time::timeout_at(deadline, conn.read(&mut chunk))
            .await
            .expect("response in time")
            .expect("read");
        assert!(n > 0, "connection closed before a whole response");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// HTTP/2 requests carry `X-Forwarded-Proto: https` over TLS and the request body limit holds
/// over h2c too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_proto_over_tls_and_body_limit_over_h2c() {
    let echo = EchoServer::start("e").await.expect("echo");
    let gw = gateway()
        .https(true)
        .server("max_request_body = \"1KiB\"")
        .config(catch_all_echo(echo.addr()))
        .start()
        .await
        .expect("gateway");
    let pem = gw.self_signed_cert_pem().expect("cert");
    let mut h2 = H2Client::connect_tls(gw.https_addr().expect("https"), &pem, "localhost")
        .await
        .expect("h2");
    let resp = h2.get("/x").await.expect("get");
    let seen = resp.json().expect("json");
    assert_eq!(seen["headers"]["x-forwarded-proto"], "https", "{seen}");
    assert_eq!(
        seen["headers"]["x-forwarded-host"],
        format!("localhost:{}", gw.https_addr().expect("https").port())
    );

    let mut h2c = H2Client::connect_h2c(gw.http_addr()).await.expect("h2c");
    let req = h2c
        .request(http::Method::POST, "/echo")
        .body(Full::new(Bytes::from(vec![b'a'; 4096])))
        .expect("request");
    let resp = h2c.send_full(req).await.expect("post");
    assert_eq!(resp.status.as_u16(), 413, "{:?}", resp.body);
    assert_eq!(resp.json().expect("json")["error"]["code"], "PARAM_001");
    let req = h2c
        .request(http::Method::POST, "/echo")
        .body(Full::new(Bytes::from(vec![b'a'; 512])))
        .expect("request");
    let resp = h2c.send_full(req).await.expect("post");
    assert_eq!(resp.status.as_u16(), 200);
    assert_eq!(resp.body.len(), 512);
}

/// HTTP/3 takes the same `[server]` limits and forwarded headers: a body over
/// `max_request_body` is 413, `X-Forwarded-Proto` is `https`, a client's `X-Forwarded-For` is
/// replaced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http3_body_limit_and_forwarded_headers() {
    let echo = EchoServer::start("e").await.expect("echo");
    let gw = gateway()
        .h3(true)
        .server("max_request_body = \"1KiB\"")
        .config(catch_all_echo(echo.addr()))
        .start()
        .await
        .expect("gateway");
    let client = h3_client(&gw).await;
    let resp = client
        .request(
            http::Method::GET,
            "/x",
            &[("x-forwarded-for", "6.6.6.6")],
            Bytes::new(),
        )
        .await
        .expect("get");
    let seen = resp.json().expect("json");
    assert_eq!(seen["headers"]["x-forwarded-proto"], "https", "{seen}");
    assert_eq!(seen["headers"]["x-forwarded-for"], "127.0.0.1", "{seen}");
    let resp = client
        .request(
            http::Method::POST,
            "/echo",
            &[],
            Bytes::from(vec![b'a'; 64 * 1024]),
        )
        .await
        .expect("post");
    assert_eq!(resp.status.as_u16(), 413, "{resp:?}");
    assert_eq!(resp.json().expect("json")["error"]["code"], "PARAM_001");
    let resp = client
        .request(
            http::Method::POST,
            "/echo",
            &[],
            Bytes::from(vec![b'a'; 512]),
        )
        .await
        .expect("post");
    assert_eq!(resp.status.as_u16(), 200);
    assert_eq!(resp.body.len(), 512);
    client.close().await;
}

/// Gateway service routes (`serve = "..."`) are matched on the normalized path too: a spelling
/// of `/ws` reaches the realtime route (503 until that service runs), not the catch-all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_routes_match_the_normalized_path() {
    let echo = EchoServer::start("e").await.expect("echo");
    let gw = start_gateway(format!(
        "{}[[routes]]\nname = \"rt\"\nmatch = {{ path = \"/ws\" }}\nserve = \"realtime\"\n\n{}",
        upstream("echo", &[echo.addr()], ""),
        route("all", "path_prefix = \"/\"", "echo", "")
    ))
    .await;
    for path in ["/ws", "/%77s", "/./ws", "//ws", "/x/../ws", "/%2e/%77%73"] {
        let r = raw_get(gw.http_addr(), path, "").await;
        assert_eq!(r.status, Some(503), "{path}: {r:?}");
        assert_eq!(
            r.json().expect("json")["error"]["code"],
            "SYS_001",
            "{path}"
        );
    }
    assert_eq!(echo.count(), 0, "a spelling of /ws reached the catch-all");
}
