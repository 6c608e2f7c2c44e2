//! Real upstream servers for integration tests.
//!
//! Each server binds `127.0.0.1:0`, serves every accepted connection on its own task and
//! stops (listener and connections) when its handle is dropped. Servers never panic on
//! what a peer sends: malformed input closes that connection or yields an error status.

pub mod controlled;
pub mod firehose;
pub mod grpc;
pub mod http;
pub mod raw;
pub mod sse;
pub mod ws;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use crate::tls::BoxError;

/// Response body type shared by the HTTP-based servers.
pub(crate) type Body = UnsyncBoxBody<Bytes, BoxError>;

/// A running accept loop; aborting it drops the listener and every connection task.
#[derive(Debug)]
pub(crate) struct ServerTask(JoinHandle<()>);

impl Drop for ServerTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Binds `127.0.0.1:0`.
pub(crate) async fn bind_loopback() -> std::io::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    Ok((listener, addr))
}

/// Spawns the accept loop: every accepted connection is handed to `on_conn` and run on a
/// task owned by the loop, so aborting the loop ends the connections too.
pub(crate) fn spawn_accept_loop<F, Fut>(listener: TcpListener, mut on_conn: F) -> ServerTask
where
    F: FnMut(TcpStream) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    ServerTask(tokio::spawn(async move {
        let mut conns = JoinSet::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _peer)) => {
                        let _ = stream.set_nodelay(true);
                        conns.spawn(on_conn(stream));
                    }
                    // Out of file descriptors or similar: back off instead of spinning.
                    Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                },
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
            }
        }
    }))
}

/// Spawns an accept loop serving every connection with [`serve_http_connection`], each request
/// answered by `handler(request, state.clone())`.
pub(crate) fn spawn_http_server<S, H, Fut>(
    listener: TcpListener,
    state: S,
    handler: H,
) -> ServerTask
where
    S: Clone + Send + Sync + 'static,
    H: Fn(Request<Incoming>, S) -> Fut + Copy + Send + Sync + 'static,
    Fut: Future<Output = Result<Response<Body>, Infallible>> + Send + 'static,
{
    spawn_accept_loop(listener, move |stream| {
        let state = state.clone();
        async move {
            serve_http_connection(stream, move |req| handler(req, state.clone())).await;
        }
    })
}

/// Serves one connection with HTTP/1.1 or HTTP/2 (prior knowledge or ALPN), whichever the
/// client speaks. Connection errors end the connection silently.
pub(crate) async fn serve_http_connection<I, H, Fut>(io: I, handler: H)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Response<Body>, Infallible>> + Send + 'static,
{
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    let _ = builder
        .serve_connection(TokioIo::new(io), service_fn(handler))
        .await;
}

/// One request as an upstream server saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedRequest {
    /// Request method, e.g. `GET`.
    pub method: String,
    /// Path and query as received.
    pub path: String,
    /// HTTP version as `HTTP/1.1` or `HTTP/2.0`.
    pub version: String,
    /// Headers with lowercased names, in the order received.
    pub headers: Vec<(String, String)>,
}

impl RecordedRequest {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        crate::header_value(&self.headers, name)
    }

    pub(crate) fn from_parts(
        method: &::http::Method,
        uri: &::http::Uri,
        version: ::http::Version,
        headers: &::http::HeaderMap,
    ) -> Self {
        Self {
            method: method.to_string(),
            path: uri
                .path_and_query()
                .map(|pq| pq.as_str().to_string())
                .unwrap_or_else(|| uri.path().to_string()),
            version: version_str(version).to_string(),
            headers: headers
                .iter()
                .map(|(n, v)| {
                    (
                        n.as_str().to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect(),
        }
    }
}

/// `HTTP/1.1`-style name of an HTTP version.
pub(crate) fn version_str(version: ::http::Version) -> &'static str {
    match version {
        ::http::Version::HTTP_09 => "HTTP/0.9",
        ::http::Version::HTTP_10 => "HTTP/1.0",
        ::http::Version::HTTP_11 => "HTTP/1.1",
        ::http::Version::HTTP_2 => "HTTP/2.0",
        ::http::Version::HTTP_3 => "HTTP/3.0",
        _ => "unknown",
    }
}

/// Requests an upstream received: a counter that tests can await, and the requests
/// themselves.
#[derive(Clone, Debug)]
pub struct RequestLog {
    inner: Arc<RequestLogInner>,
}

#[derive(Debug)]
struct RequestLogInner {
    count: watch::Sender<u64>,
    requests: Mutex<Vec<RecordedRequest>>,
}

impl Default for RequestLog {
    fn default() -> Self {
        Self {
            inner: Arc::new(RequestLogInner {
                count: watch::Sender::new(0),
                requests: Mutex::new(Vec::new()),
            }),
        }
    }
}

impl RequestLog {
    /// Number of requests received so far (counted when the request head arrives).
    pub fn count(&self) -> u64 {
        *self.inner.count.borrow()
    }

    /// A copy of every request received so far, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        match self.inner.requests.lock() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The most recent request, if any.
    pub fn last(&self) -> Option<RecordedRequest> {
        self.requests().pop()
    }

    /// Resolves once at least `n` requests have arrived. Never times out by itself:
    /// wrap it in `tokio::time::timeout`.
    pub async fn wait_for(&self, n: u64) {
        let mut rx = self.inner.count.subscribe();
        let _ = rx.wait_for(|count| *count >= n).await;
    }

    pub(crate) fn record(&self, request: RecordedRequest) {
        match self.inner.requests.lock() {
            Ok(mut guard) => guard.push(request),
            Err(poisoned) => poisoned.into_inner().push(request),
        }
        self.inner.count.send_modify(|count| *count += 1);
    }
}
