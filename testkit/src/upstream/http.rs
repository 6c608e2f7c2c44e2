//! HTTP echo upstream: HTTP/1.1 and h2c prior knowledge on one port, or TLS with ALPN
//! `h2` + `http/1.1`.
//!
//! Every request is answered with `200` and a JSON description of what arrived:
//!
//! ```json
//! {"server": "a", "method": "GET", "path": "/x?y=1", "headers": {"host": "..."},
//!  "body_len": 0, "version": "HTTP/1.1", "tls": false}
//! ```
//!
//! (`headers` maps lowercased names to values; repeated headers are joined with `", "`.)
//! Responses also carry `server: testkit-echo` and `x-echo-server: <name>` so tests can
//! check response-header rewriting.
//!
//! Special paths:
//! - `/slow?ms=N`: sleeps `N` ms (after reading the body) before answering the JSON.
//! - `/status/NNN`: answers the JSON with status `NNN`.
//! - `/bytes/N`: answers `N` bytes of [`pattern_bytes`], streamed in 16 KiB chunks.
//! - `/echo`: streams the request body back as the response body.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::stream;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use tokio_rustls::TlsAcceptor;

use super::{
    bind_loopback, serve_http_connection, spawn_accept_loop, version_str, Body, RecordedRequest,
    RequestLog, ServerTask,
};
use crate::tls::{self, BoxError, SelfSigned};

/// Largest body `/bytes/N` will produce (64 MiB).
pub const MAX_BYTES: usize = 64 * 1024 * 1024;
/// Longest sleep `/slow?ms=N` will do (10 minutes).
pub const MAX_SLOW_MS: u64 = 600_000;
const CHUNK: usize = 16 * 1024;

/// The deterministic body served by `/bytes/N`: byte `i` is `b'a' + i % 26`.
pub fn pattern_bytes(n: usize) -> Vec<u8> {
    (0..n).map(|i| b'a' + (i % 26) as u8).collect()
}

/// A running echo server. Dropping it stops the server.
#[derive(Debug)]
pub struct EchoServer {
    addr: SocketAddr,
    name: String,
    log: RequestLog,
    cert: Option<SelfSigned>,
    connections: Arc<AtomicU64>,
    _task: ServerTask,
}

/// What the echo handler needs to answer: shared with [`super::controlled`].
pub(crate) struct EchoCtx {
    pub(crate) name: String,
    pub(crate) tls: bool,
    pub(crate) log: RequestLog,
}

impl EchoServer {
    /// Starts a cleartext echo server (HTTP/1.1 and h2c) named `name` on `127.0.0.1:0`.
    pub async fn start(name: &str) -> std::io::Result<Self> {
        let (listener, addr) = bind_loopback().await?;
        let log = RequestLog::default();
        let ctx = Arc::new(EchoCtx {
            name: name.to_string(),
            tls: false,
            log: log.clone(),
        });
        let connections = Arc::new(AtomicU64::new(0));
        let accepted = Arc::clone(&connections);
        let task = spawn_accept_loop(listener, move |stream| {
            accepted.fetch_add(1, Ordering::Relaxed);
            let ctx = ctx.clone();
            async move {
                serve_http_connection(stream, move |req| handle(req, ctx.clone())).await;
            }
        });
        Ok(Self {
            addr,
            name: name.to_string(),
            log,
            cert: None,
            connections,
            _task: task,
        })
    }

    /// Starts a TLS echo server named `name` with a fresh self-signed certificate for
    /// `localhost`, `127.0.0.1` and `::1`, offering ALPN `h2` and `http/1.1`.
    pub async fn start_tls(name: &str) -> Result<Self, BoxError> {
        let cert = SelfSigned::localhost()?;
        let acceptor = TlsAcceptor::from(Arc::new(tls::server_config(&cert, tls::ALPN_H2_H1)?));
        let (listener, addr) = bind_loopback().await?;
        let log = RequestLog::default();
        let ctx = Arc::new(EchoCtx {
            name: name.to_string(),
            tls: true,
            log: log.clone(),
        });
        let connections = Arc::new(AtomicU64::new(0));
        let accepted = Arc::clone(&connections);
        let task = spawn_accept_loop(listener, move |stream| {
            accepted.fetch_add(1, Ordering::Relaxed);
            let ctx = ctx.clone();
            let acceptor = acceptor.clone();
            async move {
                let Ok(tls_stream) = acceptor.accept(stream).await else {
                    return;
                };
                serve_http_connection(tls_stream, move |req| handle(req, ctx.clone())).await;
            }
        });
        Ok(Self {
            addr,
            name: name.to_string(),
            log,
            cert: Some(cert),
            connections,
            _task: task,
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The name given at start (reported as `"server"` in every answer).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `http://ADDR{path}` (or `https://` for the TLS variant).
    pub fn url(&self, path: &str) -> String {
        let scheme = if self.cert.is_some() { "https" } else { "http" };
        format!("{scheme}://{}{path}", self.addr)
    }

    /// Number of requests received so far.
    pub fn count(&self) -> u64 {
        self.log.count()
    }

    /// Number of TCP connections accepted so far (a pooled keep-alive connection counts once).
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }

    /// The request log (awaitable counter and recorded requests).
    pub fn requests(&self) -> &RequestLog {
        &self.log
    }

    /// The PEM certificate of the TLS variant; `None` for the cleartext server.
    pub fn cert_pem(&self) -> Option<&str> {
        self.cert.as_ref().map(|c| c.cert_pem.as_str())
    }
}

pub(crate) async fn handle(
    req: Request<Incoming>,
    ctx: Arc<EchoCtx>,
) -> Result<Response<Body>, Infallible> {
    let recorded =
        RecordedRequest::from_parts(req.method(), req.uri(), req.version(), req.headers());
    ctx.log.record(recorded);

    let path = req.uri().path().to_string();
    if path == "/echo" {
        return Ok(echo_body(req, &ctx));
    }
    if let Some(n) = path.strip_prefix("/bytes/") {
        return Ok(match n.parse::<usize>() {
            Ok(n) if n <= MAX_BYTES => bytes_body(n, &ctx),
            _ => plain(StatusCode::BAD_REQUEST, "bad byte count\n"),
        });
    }

    let (parts, body) = req.into_parts();
    let body_len = match body.collect().await {
        Ok(collected) => collected.to_bytes().len(),
        Err(_) => return Ok(plain(StatusCode::BAD_REQUEST, "body read error\n")),
    };

    let mut status = StatusCode::OK;
    if path == "/slow" {
        let ms = query_param(parts.uri.query(), "ms")
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(1000)
            .min(MAX_SLOW_MS);
        tokio::time::sleep(Duration::from_millis(ms)).await;
    } else if let Some(code) = path.strip_prefix("/status/") {
        match code
            .parse::<u16>()
            .ok()
            .and_then(|c| StatusCode::from_u16(c).ok())
        {
            Some(code) => status = code,
            None => return Ok(plain(StatusCode::BAD_REQUEST, "bad status code\n")),
        }
    }

    let description = describe(&parts, body_len, &ctx);
    let mut response = Response::new(full(description.to_string()));
    *response.status_mut() = status;
    set_common_headers(&mut response, &ctx, "application/json");
    Ok(response)
}

/// The JSON description of a request.
fn describe(parts: &http::request::Parts, body_len: usize, ctx: &EchoCtx) -> serde_json::Value {
    let mut headers = serde_json::Map::new();
    for (name, value) in &parts.headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        match headers.get_mut(name.as_str()) {
            Some(serde_json::Value::String(existing)) => {
                existing.push_str(", ");
                existing.push_str(&value);
            }
            _ => {
                headers.insert(name.as_str().to_string(), serde_json::Value::String(value));
            }
        }
    }
    let path = parts
        .uri
        .path_and_query()
        .map(|pq| pq.as_str().to_string())
        .unwrap_or_else(|| parts.uri.path().to_string());
    serde_json::json!({
        "server": ctx.name,
        "method": parts.method.as_str(),
        "path": path,
        "headers": headers,
        "body_len": body_len,
        "version": version_str(parts.version),
        "tls": ctx.tls,
    })
}

fn echo_body(req: Request<Incoming>, ctx: &EchoCtx) -> Response<Body> {
    let content_type = req
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/octet-stream")
        .to_string();
    let body = req.into_body().map_err(BoxError::from).boxed_unsync();
    let mut response = Response::new(body);
    set_common_headers(&mut response, ctx, &content_type);
    response
}

fn bytes_body(n: usize, ctx: &EchoCtx) -> Response<Body> {
    let data = Bytes::from(pattern_bytes(n));
    let chunks: Vec<Result<Frame<Bytes>, BoxError>> = (0..n)
        .step_by(CHUNK)
        .map(|start| Ok(Frame::data(data.slice(start..(start + CHUNK).min(n)))))
        .collect();
    let body = StreamBody::new(stream::iter(chunks)).boxed_unsync();
    let mut response = Response::new(body);
    set_common_headers(&mut response, ctx, "application/octet-stream");
    response
}

fn set_common_headers(response: &mut Response<Body>, ctx: &EchoCtx, content_type: &str) {
    let headers = response.headers_mut();
    if let Ok(v) = http::HeaderValue::from_str(content_type) {
        headers.insert(http::header::CONTENT_TYPE, v);
    }
    headers.insert(
        http::header::SERVER,
        http::HeaderValue::from_static("testkit-echo"),
    );
    if let Ok(v) = http::HeaderValue::from_str(&ctx.name) {
        headers.insert("x-echo-server", v);
    }
}

/// A complete in-memory body.
pub(crate) fn full(data: impl Into<Bytes>) -> Body {
    Full::new(data.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A `text/plain` response with the given status.
pub(crate) fn plain(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut response = Response::new(full(text));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain"),
    );
    response
}

/// The value of `key` in a query string (no percent-decoding).
fn query_param<'a>(query: Option<&'a str>, key: &str) -> Option<&'a str> {
    query?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_param_finds_value() {
        assert_eq!(query_param(Some("a=1&ms=250"), "ms"), Some("250"));
        assert_eq!(query_param(Some("a=1"), "ms"), None);
        assert_eq!(query_param(None, "ms"), None);
    }

    #[test]
    fn pattern_is_deterministic() {
        assert_eq!(&pattern_bytes(28), b"abcdefghijklmnopqrstuvwxyzab");
    }
}
