//! End-to-end tests of the `cors` plugin through the gateway binary: preflights answered at
//! the gateway (allowed 204, refused 403), actual requests with `Access-Control-Allow-Origin`
//! and `Vary: Origin`, over HTTP/1.1 and h2c.

mod common;
mod plugin_support;

use bytes::Bytes;
use http_body_util::Full;

use common::*;
use plugin_support::*;
use testkit::client::H2Client;
use testkit::EchoServer;

const APP: &str = "https://app.example";

/// `/api/` runs `["cors"]`, `/secure/` runs `["cors", "auth"]`.
fn cors_body(echo: &EchoServer) -> String {
    body_with(
        echo,
        &format!(
            "{}{}{}{}",
            plugin_route("secure", "/secure/", &["cors", "auth"]),
            plugin_route("api", "/api/", &["cors"]),
            plugin(
                "cors",
                "cors",
                &format!(
                    "origins = [\"{APP}\"]\nmethods = [\"GET\", \"POST\"]\n\
                     headers = [\"authorization\", \"content-type\"]\n\
                     expose_headers = [\"x-request-id\"]\ncredentials = true\nmax_age = \"10m\""
                )
            ),
            jwt_plugin("auth", ""),
        ),
    )
}

fn preflight(
    client: &reqwest::Client,
    url: String,
    origin: &str,
    method: &str,
    headers: Option<&str>,
) -> reqwest::RequestBuilder {
    let mut b = client
        .request(reqwest::Method::OPTIONS, url)
        .header("origin", origin)
        .header("access-control-request-method", method);
    if let Some(h) = headers {
        b = b.header("access-control-request-headers", h);
    }
    b
}

fn vary_has_origin(resp: &reqwest::Response) -> bool {
    resp.headers()
        .get_all("vary")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("origin"))
}

fn list_has(value: Option<String>, item: &str) -> bool {
    value.is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(item)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_preflight_allowed_is_204_with_headers_and_no_body() {
    let echo = EchoServer::start("cors").await.expect("echo");
    let gw = start_with(cors_body(&echo)).await;
    let client = http_client();
    for path in ["/api/items", "/secure/items"] {
        let resp = preflight(
            &client,
            gw.http_url(path),
            APP,
            "POST",
            Some("Content-Type, Authorization"),
        )
        .send()
        .await
        .expect("send");
        assert_eq!(resp.status(), 204, "{path}");
        assert_eq!(
            header(&resp, "access-control-allow-origin").as_deref(),
            Some(APP),
            "{path}"
        );
        assert!(
            list_has(header(&resp, "access-control-allow-methods"), "POST"),
            "{path}: {:?}",
            resp.headers()
        );
        let allow_headers = header(&resp, "access-control-allow-headers");
        assert!(
            list_has(allow_headers.clone(), "content-type")
                && list_has(allow_headers, "authorization"),
            "{path}: {:?}",
            resp.headers()
        );
        assert_eq!(
            header(&resp, "access-control-allow-credentials").as_deref(),
            Some("true")
        );
        assert_eq!(
            header(&resp, "access-control-max-age").as_deref(),
            Some("600")
        );
        assert!(vary_has_origin(&resp), "{path}: {:?}", resp.headers());
        let body = resp.bytes().await.expect("body");
        assert!(body.is_empty(), "{path}: 204 with a body: {body:?}");
    }
    assert_eq!(echo.count(), 0, "a preflight was proxied");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_preflight_refused_is_403_json_without_cors_headers() {
    let echo = EchoServer::start("cors").await.expect("echo");
    let gw = start_with(cors_body(&echo)).await;
    let client = http_client();
    let cases = [
        ("origin", "https://evil.example", "GET", None),
        ("method", APP, "DELETE", None),
        ("header", APP, "GET", Some("x-custom")),
    ];
    for (label, origin, method, headers) in cases {
        let resp = preflight(&client, gw.http_url("/api/items"), origin, method, headers)
            .send()
            .await
            .expect("send");
        assert_eq!(resp.status(), 403, "refused {label}");
        assert!(
            header(&resp, "access-control-allow-origin").is_none(),
            "refused {label} carries CORS headers: {:?}",
            resp.headers()
        );
        assert_json_error(resp, 403, "AUTH_001").await;
    }
    assert_eq!(echo.count(), 0, "a refused preflight was proxied");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_actual_requests_get_allow_origin_and_vary() {
    let echo = EchoServer::start("cors").await.expect("echo");
    let gw = start_with(cors_body(&echo)).await;
    let client = http_client();

    let resp = client
        .get(gw.http_url("/api/items"))
        .header("origin", APP)
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    assert_eq!(
        header(&resp, "access-control-allow-origin").as_deref(),
        Some(APP)
    );
    assert_eq!(
        header(&resp, "access-control-allow-credentials").as_deref(),
        Some("true")
    );
    assert!(list_has(
        header(&resp, "access-control-expose-headers"),
        "x-request-id"
    ));
    assert!(vary_has_origin(&resp), "{:?}", resp.headers());

    // Disallowed origin: proxied, but no CORS headers; still varies by origin.
    let resp = client
        .get(gw.http_url("/api/items"))
        .header("origin", "https://evil.example")
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    assert!(header(&resp, "access-control-allow-origin").is_none());
    assert!(vary_has_origin(&resp), "{:?}", resp.headers());

    // No Origin at all: cacheable response still says it varies by Origin.
    let resp = client
        .get(gw.http_url("/api/items"))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    assert!(vary_has_origin(&resp), "{:?}", resp.headers());

    // An error answer of a later plugin (401 from `auth`) is readable by the script.
    let resp = client
        .get(gw.http_url("/secure/items"))
        .header("origin", APP)
        .send()
        .await
        .expect("send");
    assert_eq!(
        header(&resp, "access-control-allow-origin").as_deref(),
        Some(APP),
        "401 after cors lacks CORS headers: {:?}",
        resp.headers()
    );
    assert!(vary_has_origin(&resp), "{:?}", resp.headers());
    assert_unauthorized(resp, "cors then auth, no token").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_preflight_over_h2c_is_answered_at_the_gateway() {
    let echo = EchoServer::start("cors").await.expect("echo");
    let gw = start_with(cors_body(&echo)).await;
    let mut h2 = H2Client::connect_h2c(gw.http_addr()).await.expect("h2c");
    let req = h2
        .request(http::Method::OPTIONS, "/api/items")
        .header("origin", APP)
        .header("access-control-request-method", "POST")
        .body(Full::new(Bytes::new()))
        .expect("request");
    let resp = h2.send_full(req).await.expect("send");
    assert_eq!(resp.status, 204);
    assert_eq!(resp.header("access-control-allow-origin"), Some(APP));
    assert!(resp.body.is_empty(), "{:?}", resp.body);
    let req = h2
        .request(http::Method::OPTIONS, "/api/items")
        .header("origin", "https://evil.example")
        .header("access-control-request-method", "POST")
        .body(Full::new(Bytes::new()))
        .expect("request");
    let resp = h2.send_full(req).await.expect("send");
    assert_eq!(resp.status, 403);
    assert_eq!(resp.json().expect("JSON")["error"]["code"], "AUTH_001");
    assert_eq!(echo.count(), 0);
}
