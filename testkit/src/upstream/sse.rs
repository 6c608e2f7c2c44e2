//! Server-Sent Events upstream with a test-controlled gate between its two events.
//!
//! `GET` on any path answers `200`, `content-type: text/event-stream`, writes
//! [`EVENT_1`] at once, then waits until the test calls [`SseServer::release`] before
//! writing [`EVENT_2`] and ending the stream. A client that has read [`EVENT_1`] while
//! the gate is still closed proves the path between them did not buffer the stream.
//! Any other method gets `405`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use tokio::sync::{mpsc, watch, Semaphore};

use super::http::plain;
use super::{bind_loopback, spawn_http_server, Body, RecordedRequest, RequestLog, ServerTask};
use crate::tls::BoxError;

/// The first event, sent as soon as the response starts.
pub const EVENT_1: &str = "id: 1\nevent: tick\ndata: one\n\n";
/// The second event, sent only after [`SseServer::release`].
pub const EVENT_2: &str = "id: 2\nevent: tick\ndata: two\n\n";

/// A running SSE server. Dropping it stops the server.
#[derive(Debug)]
pub struct SseServer {
    addr: SocketAddr,
    state: Arc<SseState>,
    _task: ServerTask,
}

#[derive(Debug)]
struct SseState {
    log: RequestLog,
    gate: Semaphore,
    second_sent: watch::Sender<u64>,
}

impl SseServer {
    /// Starts the SSE server on `127.0.0.1:0` (HTTP/1.1 and h2c).
    pub async fn start() -> std::io::Result<Self> {
        let (listener, addr) = bind_loopback().await?;
        let state = Arc::new(SseState {
            log: RequestLog::default(),
            gate: Semaphore::new(0),
            second_sent: watch::Sender::new(0),
        });
        let task = spawn_http_server(listener, state.clone(), handle);
        Ok(Self {
            addr,
            state,
            _task: task,
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Opens the gate for one stream: the oldest waiting (or next) stream sends
    /// [`EVENT_2`] and ends.
    pub fn release(&self) {
        self.state.gate.add_permits(1);
    }

    /// Requests received so far (awaitable).
    pub fn requests(&self) -> &RequestLog {
        &self.state.log
    }

    /// How many streams have written [`EVENT_2`] so far.
    pub fn second_events_sent(&self) -> u64 {
        *self.state.second_sent.borrow()
    }
}

async fn handle(
    req: Request<Incoming>,
    state: Arc<SseState>,
) -> Result<Response<Body>, Infallible> {
    state.log.record(RecordedRequest::from_parts(
        req.method(),
        req.uri(),
        req.version(),
        req.headers(),
    ));
    if req.method() != Method::GET {
        return Ok(plain(StatusCode::METHOD_NOT_ALLOWED, "GET only\n"));
    }

    let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, BoxError>>(2);
    tokio::spawn(async move {
        if tx
            .send(Ok(Frame::data(Bytes::from_static(EVENT_1.as_bytes()))))
            .await
            .is_err()
        {
            return;
        }
        // Wait for the test, but give up if the client went away meanwhile.
        let permit = tokio::select! {
            permit = state.gate.acquire() => permit,
            _ = tx.closed() => return,
        };
        let Ok(permit) = permit else { return };
        permit.forget();
        if tx
            .send(Ok(Frame::data(Bytes::from_static(EVENT_2.as_bytes()))))
            .await
            .is_ok()
        {
            state.second_sent.send_modify(|n| *n += 1);
        }
    });

    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|frame| (frame, rx))
    });
    let mut response = Response::new(StreamBody::new(stream).boxed_unsync());
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-cache"),
    );
    Ok(response)
}
