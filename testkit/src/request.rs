//! Request helpers over `reqwest`: send a request, read the whole answer, and hand back its
//! status, headers and body in one value, so a test asserts on what the client received without
//! repeating `send().await.expect(..)` / `json().await.expect(..)`.
//!
//! Failures panic with the request's method and URL: these are test helpers, and a transport
//! error is the test's failure.

use bytes::Bytes;
use reqwest::header::HeaderMap;
use reqwest::{RequestBuilder, Version};

/// A whole response as a client received it.
#[derive(Debug, Clone)]
pub struct Received {
    /// `METHOD URL` of the request, for assertion messages.
    pub request: String,
    /// The status code.
    pub status: u16,
    /// The HTTP version the exchange used.
    pub version: Version,
    /// The response headers.
    pub headers: HeaderMap,
    /// The body, read to its end.
    pub body: Bytes,
}

impl Received {
    /// The first value of header `name` as text (`None` when absent or not visible ASCII).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body as UTF-8 text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON; panics with the request and the body when it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "{}: body is not JSON ({e}): {:?}",
                self.request,
                self.text()
            )
        })
    }

    /// The request headers an echo upstream reports having seen (`headers` of its JSON answer).
    pub fn echoed_headers(&self) -> serde_json::Value {
        self.json()["headers"].clone()
    }
}

/// Sends `request` and reads the whole answer; panics naming the request when the request
/// cannot be built, sent, or its body read.
pub async fn fetch(request: RequestBuilder) -> Received {
    let (client, request) = request.build_split();
    let request = request.unwrap_or_else(|e| panic!("request cannot be built: {e}"));
    let what = format!("{} {}", request.method(), request.url());
    let response = client
        .execute(request)
        .await
        .unwrap_or_else(|e| panic!("{what}: no answer: {e:?}"));
    let status = response.status().as_u16();
    let version = response.version();
    let headers = response.headers().clone();
    let body = response
        .bytes()
        .await
        .unwrap_or_else(|e| panic!("{what}: body not read to its end: {e:?}"));
    Received {
        request: what,
        status,
        version,
        headers,
        body,
    }
}

/// `GET url` with `client`, read whole (see [`fetch`]).
pub async fn get(client: &reqwest::Client, url: &str) -> Received {
    fetch(client.get(url)).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EchoServer;

    #[tokio::test]
    async fn fetch_reads_status_headers_and_the_whole_body() {
        let echo = EchoServer::start("e").await.expect("echo");
        let client = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("client");
        let got = fetch(client.get(echo.url("/hello")).header("x-probe", "1")).await;
        assert_eq!(got.status, 200, "{got:?}");
        assert_eq!(got.header("x-echo-server"), Some("e"));
        assert_eq!(got.echoed_headers()["x-probe"], "1");
        assert_eq!(got.json()["path"], "/hello");
        let bytes = get(&client, &echo.url("/bytes/3000")).await;
        assert_eq!(bytes.body.len(), 3000);
        assert!(
            bytes.request.starts_with("GET http://"),
            "{}",
            bytes.request
        );
    }

    #[tokio::test]
    #[should_panic(expected = "no answer")]
    async fn a_refused_connection_panics_naming_the_request() {
        let addr = crate::net::closed_addr().expect("closed addr");
        let client = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("client");
        get(&client, &format!("http://{addr}/")).await;
    }
}
