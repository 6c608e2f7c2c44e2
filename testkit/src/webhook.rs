//! A webhook receiver for alert tests: a real HTTP/1.1 server on `127.0.0.1:0` that records every
//! request (headers and JSON body) and answers 200, or the statuses queued with
//! [`WebhookReceiver::fail_next`] first (to exercise retries).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};

use crate::upstream::{bind_loopback, spawn_accept_loop, ServerTask};

/// One request the receiver got.
#[derive(Clone, Debug)]
pub struct Delivery {
    /// Path and query.
    pub path: String,
    /// Headers, names lowercased.
    pub headers: Vec<(String, String)>,
    /// The body as received.
    pub body: String,
    /// The body parsed as JSON (`Null` if it is not JSON).
    pub json: serde_json::Value,
    /// The status the receiver answered.
    pub answered: u16,
    /// When it arrived.
    pub at: Instant,
}

impl Delivery {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        crate::header_value(&self.headers, name)
    }
}

#[derive(Debug, Default)]
struct Shared {
    deliveries: Mutex<Vec<Delivery>>,
    plan: Mutex<VecDeque<u16>>,
}

/// A running webhook receiver; stops when dropped.
#[derive(Debug)]
pub struct WebhookReceiver {
    addr: SocketAddr,
    shared: Arc<Shared>,
    _task: ServerTask,
}

impl WebhookReceiver {
    /// Starts a receiver on `127.0.0.1:0`.
    pub async fn start() -> std::io::Result<Self> {
        let (listener, addr) = bind_loopback().await?;
        let shared = Arc::new(Shared::default());
        let s = Arc::clone(&shared);
        let task = spawn_accept_loop(listener, move |stream| {
            let s = Arc::clone(&s);
            async move {
                let svc = hyper::service::service_fn(move |req| {
                    let s = Arc::clone(&s);
                    async move { Ok::<_, Infallible>(handle(req, &s).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            }
        });
        Ok(WebhookReceiver {
            addr,
            shared,
            _task: task,
        })
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Answers the next requests with these statuses (in order), then 200 again.
    pub fn fail_next(&self, statuses: &[u16]) {
        self.shared
            .plan
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(statuses);
    }

    /// Every request received so far, in arrival order.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.shared
            .deliveries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Polls until a request matching `pred` arrived; `None` after `timeout`.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        pred: impl Fn(&Delivery) -> bool,
    ) -> Option<Delivery> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(d) = self.deliveries().into_iter().find(|d| pred(d)) {
                return Some(d);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn handle(req: Request<Incoming>, s: &Shared) -> Response<Full<Bytes>> {
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let headers = req
        .headers()
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body = match Limited::new(req.into_body(), 1 << 20).collect().await {
        Ok(b) => String::from_utf8_lossy(&b.to_bytes()).into_owned(),
        Err(_) => String::new(),
    };
    let answered = s
        .plan
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .pop_front()
        .unwrap_or(200);
    s.deliveries
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(Delivery {
            path,
            headers,
            json: serde_json::from_str(&body).unwrap_or(serde_json::Value::Null),
            body,
            answered,
            at: Instant::now(),
        });
    let mut r = Response::new(Full::new(Bytes::from_static(b"{}")));
    *r.status_mut() = StatusCode::from_u16(answered).unwrap_or(StatusCode::OK);
    r
}
