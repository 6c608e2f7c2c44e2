//! Route matching: host (exact, `*.suffix`, `*`), exact path vs prefix, methods, headers,
//! `strip_prefix`, first match in file order, and 404 `NO_ROUTE` when nothing matches.

mod common;

use common::*;
use testkit::{EchoServer, GatewayProcess};

struct Fixture {
    gw: GatewayProcess,
    _a: EchoServer,
    _b: EchoServer,
    _c: EchoServer,
}

/// Three echo upstreams `a`, `b`, `c` (server names equal upstream names) and a route
/// table exercising every kind of match.
async fn fixture() -> Fixture {
    let a = EchoServer::start("a").await.expect("echo a");
    let b = EchoServer::start("b").await.expect("echo b");
    let c = EchoServer::start("c").await.expect("echo c");
    let routes = [
        route(
            "host-exact",
            "host = \"api.example.com\", path_prefix = \"/h/\"",
            "a",
            "",
        ),
        route(
            "host-wild",
            "host = \"*.example.com\", path_prefix = \"/h/\"",
            "b",
            "",
        ),
        route("host-any", "host = \"*\", path_prefix = \"/h/\"", "c", ""),
        route("path-exact", "path = \"/p/exact\"", "a", ""),
        route("path-prefix", "path_prefix = \"/p/\"", "b", ""),
        route(
            "post-only",
            "path_prefix = \"/m/\", methods = [\"POST\", \"PUT\"]",
            "a",
            "",
        ),
        route("m-any", "path_prefix = \"/m/\"", "b", ""),
        route(
            "get-only",
            "path = \"/only-get\", methods = [\"GET\"]",
            "c",
            "",
        ),
        route(
            "canary",
            "path_prefix = \"/hdr/\", headers = { \"x-env\" = \"canary\" }",
            "a",
            "",
        ),
        route("hdr-any", "path_prefix = \"/hdr/\"", "b", ""),
        route(
            "strip",
            "path_prefix = \"/strip/\"",
            "c",
            "strip_prefix = true",
        ),
        route(
            "keep",
            "path_prefix = \"/keep/\"",
            "c",
            "strip_prefix = false",
        ),
        route("first", "path_prefix = \"/fm/\"", "a", ""),
        route("second", "path_prefix = \"/fm/deeper/\"", "b", ""),
    ];
    let gw = start_gateway(format!(
        "{}{}{}{}",
        upstream("a", &[a.addr()], ""),
        upstream("b", &[b.addr()], ""),
        upstream("c", &[c.addr()], ""),
        routes.concat()
    ))
    .await;
    Fixture {
        gw,
        _a: a,
        _b: b,
        _c: c,
    }
}

/// Sends the request and returns (status, upstream server name or the error code, path
/// the upstream saw).
async fn call(
    f: &Fixture,
    method: reqwest::Method,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, String, String) {
    let mut req = http_client().request(method, f.gw.http_url(path));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.expect("send");
    let status = resp.status().as_u16();
    let body: serde_json::Value = resp.json().await.expect("JSON body");
    if let Some(server) = body["server"].as_str() {
        (
            status,
            server.to_string(),
            body["path"].as_str().unwrap_or_default().to_string(),
        )
    } else {
        let code = body["error"]["code"].as_str().unwrap_or("?").to_string();
        (status, code, String::new())
    }
}

async fn routed_to(
    f: &Fixture,
    method: reqwest::Method,
    path: &str,
    headers: &[(&str, &str)],
) -> String {
    let (status, who, _) = call(f, method.clone(), path, headers).await;
    assert_eq!(status, 200, "{method} {path} {headers:?} -> {status} {who}");
    who
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_matrix() {
    use reqwest::Method;
    let f = fixture().await;
    let get = Method::GET;

    // Host: exact, wildcard suffix, any.
    assert_eq!(
        routed_to(&f, get.clone(), "/h/1", &[("host", "api.example.com")]).await,
        "a"
    );
    assert_eq!(
        routed_to(&f, get.clone(), "/h/1", &[("host", "www.example.com")]).await,
        "b"
    );
    assert_eq!(
        routed_to(&f, get.clone(), "/h/1", &[("host", "other.org")]).await,
        "c"
    );
    assert_eq!(
        routed_to(&f, get.clone(), "/h/1", &[("host", "example.org")]).await,
        "c"
    );

    // Exact path beats nothing; it does not match sub-paths, the prefix route does.
    assert_eq!(routed_to(&f, get.clone(), "/p/exact", &[]).await, "a");
    assert_eq!(routed_to(&f, get.clone(), "/p/exact/more", &[]).await, "b");
    assert_eq!(routed_to(&f, get.clone(), "/p/exactly", &[]).await, "b");
    assert_eq!(routed_to(&f, get.clone(), "/p/other", &[]).await, "b");

    // Methods.
    assert_eq!(routed_to(&f, Method::POST, "/m/x", &[]).await, "a");
    assert_eq!(routed_to(&f, Method::PUT, "/m/x", &[]).await, "a");
    assert_eq!(routed_to(&f, get.clone(), "/m/x", &[]).await, "b");
    assert_eq!(routed_to(&f, Method::DELETE, "/m/x", &[]).await, "b");
    assert_eq!(routed_to(&f, get.clone(), "/only-get", &[]).await, "c");
    let (status, code, _) = call(&f, Method::POST, "/only-get", &[]).await;
    assert_eq!((status, code.as_str()), (404, "NO_ROUTE"), "POST /only-get");

    // Headers.
    assert_eq!(
        routed_to(&f, get.clone(), "/hdr/x", &[("x-env", "canary")]).await,
        "a"
    );
    assert_eq!(
        routed_to(&f, get.clone(), "/hdr/x", &[("X-Env", "canary")]).await,
        "a"
    );
    assert_eq!(
        routed_to(&f, get.clone(), "/hdr/x", &[("x-env", "prod")]).await,
        "b"
    );
    assert_eq!(routed_to(&f, get.clone(), "/hdr/x", &[]).await, "b");

    // First match in file order wins, even over a longer prefix later.
    assert_eq!(routed_to(&f, get.clone(), "/fm/deeper/x", &[]).await, "a");

    // Nothing matches.
    let (status, code, _) = call(&f, get.clone(), "/nothing/here", &[]).await;
    assert_eq!((status, code.as_str()), (404, "NO_ROUTE"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strip_prefix_rewrites_the_forwarded_path() {
    let f = fixture().await;
    let get = reqwest::Method::GET;

    let (status, who, path) = call(&f, get.clone(), "/strip/foo/bar?q=1", &[]).await;
    assert_eq!((status, who.as_str()), (200, "c"));
    assert_eq!(path, "/foo/bar?q=1", "strip_prefix = true");

    let (status, _, path) = call(&f, get.clone(), "/strip/", &[]).await;
    assert_eq!(status, 200);
    assert_eq!(path, "/", "stripping the whole path must leave \"/\"");

    let (status, _, path) = call(&f, get.clone(), "/keep/foo?q=1", &[]).await;
    assert_eq!(status, 200);
    assert_eq!(path, "/keep/foo?q=1", "strip_prefix = false");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_match_ignores_the_port_in_the_host_header() {
    let f = fixture().await;
    let who = routed_to(
        &f,
        reqwest::Method::GET,
        "/h/1",
        &[("host", "api.example.com:8080")],
    )
    .await;
    assert_eq!(who, "a");
    let who = routed_to(
        &f,
        reqwest::Method::GET,
        "/h/1",
        &[("host", "API.Example.com")],
    )
    .await;
    assert_eq!(who, "a", "host names are case-insensitive");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_authority_is_used_for_host_matching() {
    let f = fixture().await;
    let mut h2 = testkit::client::H2Client::connect_h2c(f.gw.http_addr())
        .await
        .expect("h2c");
    let request = http::Request::builder()
        .uri("http://api.example.com/h/1")
        .version(http::Version::HTTP_2)
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .expect("request");
    let resp = h2.send_full(request).await.expect("send");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.json().expect("json")["server"], "a");
}
