//! The fast upstream: HTTP/1.1 and h2c on one port (hyper-util's auto builder), optionally the
//! same service over TLS (ALPN `h2`, `http/1.1`).
//!
//! Routes (see [`routes`]):
//! - `GET /` — 13 bytes, `hello, world\n`
//! - `GET /bytes/N` — N bytes sliced from one preallocated buffer (no per-request allocation)
//! - `GET /ws` — WebSocket echo
//! - `GET /sse` — an event stream, one event per `sse_interval` (or `?interval_ms=N`)
//! - `GET /slow?ms=N` — the small body after N ms
//! - `GET /healthz` — `ok`
//!
//! Every connection is one task; request bodies are drained (counted, not stored) so keep-alive
//! survives `POST`s from `--body-size` load tests.

pub mod routes;
pub mod sse;
pub mod tls;
pub mod ws;

use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::accept::ServeConn;

/// The fixed body of `GET /`.
pub const HELLO: &[u8] = b"hello, world\n";

/// Settings of the upstream service.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// Time between two events on `/sse` unless the request asks otherwise.
    pub sse_interval: Duration,
    /// Largest N served by `/bytes/N`; this many bytes are allocated once at start.
    pub max_bytes: usize,
    /// Added before every answer (to simulate a slow instance); zero by default.
    pub delay: Duration,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        Self {
            sse_interval: Duration::from_millis(100),
            max_bytes: 4 * 1024 * 1024,
            delay: Duration::ZERO,
        }
    }
}

/// Shared, immutable state of the service: preallocated bodies and settings.
#[derive(Debug)]
pub struct State {
    hello: Bytes,
    big: Bytes,
    sse_interval: Duration,
    delay: Duration,
}

impl State {
    /// Allocates the bodies once.
    pub fn new(cfg: &UpstreamConfig) -> Self {
        Self {
            hello: Bytes::from_static(HELLO),
            big: Bytes::from(vec![b'x'; cfg.max_bytes]),
            sse_interval: cfg.sse_interval,
            delay: cfg.delay,
        }
    }
}

/// Accepts connections on `listener` forever, serving HTTP/1.1 and h2c (and, when `tls` is given,
/// TLS first). Per-connection errors are dropped; only a broken listener is returned.
pub async fn serve(
    listener: TcpListener,
    state: Arc<State>,
    tls: Option<TlsAcceptor>,
) -> io::Result<()> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http2()
        .max_concurrent_streams(4096)
        .initial_stream_window_size(1 << 20)
        .initial_connection_window_size(8 << 20);
    let server = UpstreamConn {
        builder: Arc::new(builder),
        state,
    };
    crate::accept::accept_loop(listener, tls, server).await
}

/// One connection of the upstream: the shared builder and state.
#[derive(Clone)]
struct UpstreamConn {
    builder: Arc<auto::Builder<TokioExecutor>>,
    state: Arc<State>,
}

impl ServeConn for UpstreamConn {
    async fn serve<S>(self, io: S)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let state = self.state;
        let svc = service_fn(move |req| routes::handle(req, state.clone()));
        // Errors here are the client's business (resets, protocol errors): nothing to report.
        let _ = self
            .builder
            .serve_connection_with_upgrades(TokioIo::new(io), svc)
            .await;
    }
}
