//! The gateway's client of the backend — the one path by which the gateway persists anything.
//!
//! ```text
//! BackendClient::start(ClientConfig) -> Result<BackendClient, ClientError>
//!     opens the spool, spawns the writer; never waits for the backend to be up
//! client.write(WriteOp) -> Durable            (WriteOp: model::WriteOp)
//!     ordered writes (create session, create task, patch task, upsert agent): queued at once;
//!     the Durable future resolves when the backend committed it or it is fsynced in the spool
//! client.append_events(task_id, Vec<NewEvent>) -> Durable
//!     same, for events; batched (50 events or 50 ms) into multi-row appends
//! client.task_events(task_id, since, limit).await -> Result<Vec<Event>, ClientError>
//! client.task(id).await -> Result<Option<Task>, ClientError>
//! client.session(id).await -> Result<Option<Session>, ClientError>
//! client.status() -> ClientStatus   (mode, reachable, breaker, spool bytes and records)
//! client.flush().await, client.shutdown().await
//! ```
//!
//! ## How a write travels
//! `write` and `append_events` put the write on one unbounded, ordered queue and return a
//! [`Durable`] at once: live traffic never waits on the backend. One writer task
//! ([`writer`]) takes writes in order:
//! - consecutive event appends (of any tasks) are sent together as one bulk append once they
//!   hold `batch_max_events` events, once the oldest has waited `batch_max_delay`, or at once
//!   when another kind of write follows them (order is kept);
//! - other writes are sent one by one;
//! - a failed request (connection error, timeout, 5xx) is retried with exponential backoff and
//!   jitter ([`breaker::backoff`]) until the circuit [`breaker::Breaker`] opens; then the
//!   write and everything queued after it go to the on-disk [`spool`], and so does every new
//!   write while the spool is not empty, so order holds. The spool is replayed, oldest first,
//!   when the breaker lets a probe through and it succeeds; replayed segments are deleted.
//! - a write the backend refuses for good (4xx: illegal transition, unknown task) resolves its
//!   `Durable` with [`ClientError::Rejected`] (a replayed one is logged and counted).
//!
//! A `Durable` resolves `Ok(Persisted::Committed)` once the backend committed the write, or
//! `Ok(Persisted::Spooled)` once its spool record is fsynced: either way it survives a crash of
//! the gateway (DELIVERY invariant 3, "ack means durable"). With the spool at its limit new
//! writes are refused ([`ClientError::SpoolFull`]), logged once per episode and counted.
//!
//! Reads (`task_events`, `task`, `session`) go straight to the backend with the request timeout;
//! they see what the backend committed, not what is still queued or spooled.

pub mod breaker;
pub mod spool;
mod status;
mod transport;
mod writer;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

pub use breaker::BreakerState;
pub use status::ClientStatus;

use crate::model::{Event, EventPage, NewEvent, Session, Task, WriteOp};
use status::Counters;
use transport::{segment, Outcome, Transport};
use writer::Item;

/// How the client talks to the backend and where it spools.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `http://HOST:PORT` of the backend.
    pub url: String,
    /// An event batch is sent once it holds this many events (default 50)...
    pub batch_max_events: usize,
    /// ... or once its oldest event has waited this long (default 50 ms).
    pub batch_max_delay: Duration,
    /// Timeout of one request (default 5 s).
    pub request_timeout: Duration,
    /// Spool directory.
    pub spool_dir: PathBuf,
    /// Spool size limit in bytes (default 1 GiB).
    pub spool_max_bytes: u64,
    /// A spool segment file is closed once it passes this size (default 16 MiB).
    pub spool_segment_bytes: u64,
    /// Attempts of one request before the writer gives up on it (default 3); the breaker
    /// may stop it earlier.
    pub attempts: u32,
    /// First retry waits about this long (default 25 ms), doubling per attempt...
    pub backoff_base: Duration,
    /// ... up to this (default 1 s).
    pub backoff_max: Duration,
    /// Consecutive failed requests that open the breaker (default 3).
    pub breaker_failures: u32,
    /// First open period of the breaker (default 250 ms), doubling while probes fail...
    pub breaker_min_open: Duration,
    /// ... up to this (default 5 s).
    pub breaker_max_open: Duration,
    /// An idle writer checks `GET /healthz` this often to keep `reachable` current (default 2 s).
    pub probe_interval: Duration,
}

impl ClientConfig {
    /// The defaults above for `url`, spooling into `spool_dir`.
    pub fn new(url: impl Into<String>, spool_dir: impl Into<PathBuf>) -> ClientConfig {
        ClientConfig {
            url: url.into(),
            batch_max_events: 50,
            batch_max_delay: Duration::from_millis(50),
            request_timeout: Duration::from_secs(5),
            spool_dir: spool_dir.into(),
            spool_max_bytes: 1 << 30,
            spool_segment_bytes: 16 << 20,
            attempts: 3,
            backoff_base: Duration::from_millis(25),
            backoff_max: Duration::from_secs(1),
            breaker_failures: 3,
            breaker_min_open: Duration::from_millis(250),
            breaker_max_open: Duration::from_secs(5),
            probe_interval: Duration::from_secs(2),
        }
    }
}

/// Why a client call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// The backend is unreachable and the spool is at its limit: the write was not stored.
    #[error(
        "backend unreachable and the spool in {dir} is full ({limit} bytes): write refused; \
         bring the backend back or raise backend.spool_max_bytes"
    )]
    SpoolFull {
        /// The spool directory.
        dir: String,
        /// `spool_max_bytes`.
        limit: u64,
    },
    /// The backend refused the write for good (it is not retried).
    #[error("backend refused the write ({status} {code}): {message}")]
    Rejected {
        /// HTTP status.
        status: u16,
        /// Platform error code.
        code: String,
        /// The backend's message.
        message: String,
    },
    /// A read could not reach the backend.
    #[error("backend {url} unavailable: {reason}")]
    Unavailable {
        /// The backend.
        url: String,
        /// Why.
        reason: String,
    },
    /// Writing the spool failed (disk full, permissions): the write was not stored.
    #[error("backend spool: {0}; check the disk and the permissions of backend.spool_dir")]
    Spool(String),
    /// The client could not start.
    #[error("backend client: {0}")]
    Start(String),
    /// The client was shut down before the write was stored.
    #[error("backend client is shut down; the write was not stored")]
    Closed,
}

/// Where a durable write is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persisted {
    /// Committed by the backend.
    Committed,
    /// Fsynced in the local spool; replayed to the backend later.
    Spooled,
}

/// Resolves once a write is durable (committed or fsynced in the spool), or with why not.
#[must_use = "a write is durable only once its Durable resolves Ok"]
pub struct Durable {
    rx: Option<oneshot::Receiver<Result<Persisted, ClientError>>>,
    ready: Option<Result<Persisted, ClientError>>,
}

impl Durable {
    fn failed(e: ClientError) -> Durable {
        Durable {
            rx: None,
            ready: Some(Err(e)),
        }
    }
}

impl Future for Durable {
    type Output = Result<Persisted, ClientError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Some(r) = self.ready.take() {
            return Poll::Ready(r);
        }
        match self.rx.as_mut() {
            Some(rx) => Pin::new(rx)
                .poll(cx)
                .map(|r| r.unwrap_or(Err(ClientError::Closed))),
            None => Poll::Ready(Err(ClientError::Closed)),
        }
    }
}

struct Inner {
    tx: mpsc::UnboundedSender<Item>,
    counters: Arc<Counters>,
    transport: Transport,
    runtime: tokio::runtime::Handle,
    writer: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// The backend client; cheap to clone (all clones share one writer).
#[derive(Clone)]
pub struct BackendClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for BackendClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendClient")
            .field("url", &self.inner.transport.base())
            .finish()
    }
}

impl BackendClient {
    /// Opens the spool and spawns the writer on the current tokio runtime; never waits for the
    /// backend. Reads also run on that runtime, whichever runtime awaits them.
    pub fn start(config: ClientConfig) -> Result<BackendClient, ClientError> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| ClientError::Start("must be started inside a tokio runtime".into()))?;
        let transport = Transport::new(&config.url, config.request_timeout)
            .map_err(|e| ClientError::Start(format!("HTTP client: {e}")))?;
        let spool = spool::Spool::open(
            &config.spool_dir,
            config.spool_max_bytes,
            config.spool_segment_bytes,
        )
        .map_err(|e| ClientError::Start(e.to_string()))?;
        let counters = Arc::new(Counters::default());
        // What an earlier run left is visible in `status()` before `start` returns.
        counters
            .spool_records
            .store(spool.records(), Ordering::Relaxed);
        counters.spool_bytes.store(spool.bytes(), Ordering::Relaxed);
        counters.corrupt.store(spool.corrupt(), Ordering::Relaxed);
        counters
            .spooling
            .store(!spool.is_empty(), Ordering::Relaxed);
        let (tx, rx) = mpsc::unbounded_channel();
        let handle = runtime.spawn(writer::run(
            config,
            transport.clone(),
            spool,
            rx,
            Arc::clone(&counters),
        ));
        Ok(BackendClient {
            inner: Arc::new(Inner {
                tx,
                counters,
                transport,
                runtime,
                writer: std::sync::Mutex::new(Some(handle)),
            }),
        })
    }

    /// Queues an ordered write; never waits.
    pub fn write(&self, op: WriteOp) -> Durable {
        let (done, rx) = oneshot::channel();
        self.inner.counters.queued.fetch_add(1, Ordering::Relaxed);
        match self.inner.tx.send(Item::Write { op, done }) {
            Ok(()) => Durable {
                rx: Some(rx),
                ready: None,
            },
            Err(_) => {
                self.inner.counters.queued.fetch_sub(1, Ordering::Relaxed);
                Durable::failed(ClientError::Closed)
            }
        }
    }

    /// Queues events of `task_id` (in seq order); batched with neighbouring appends.
    pub fn append_events(&self, task_id: impl Into<String>, events: Vec<NewEvent>) -> Durable {
        self.write(WriteOp::AppendEvents {
            task_id: task_id.into(),
            events,
        })
    }

    /// Events of `task_id` with `seq > since`, at most `limit` (the backend caps it at
    /// 10,000), in seq order; empty when the backend does not know the task (yet).
    pub async fn task_events(
        &self,
        task_id: &str,
        since: u64,
        limit: u32,
    ) -> Result<Vec<Event>, ClientError> {
        let path = format!(
            "/v1/tasks/{}/events?since={since}&limit={limit}",
            segment(task_id)
        );
        Ok(self
            .get::<EventPage>(path)
            .await?
            .map(|p| p.events)
            .unwrap_or_default())
    }

    /// Task `id`, `None` when the backend does not know it.
    pub async fn task(&self, id: &str) -> Result<Option<Task>, ClientError> {
        self.get(format!("/v1/tasks/{}", segment(id))).await
    }

    /// Tasks of session `session_id` (first page of at most `limit`, in id order).
    pub async fn session_tasks(
        &self,
        session_id: &str,
        limit: u32,
    ) -> Result<Vec<Task>, ClientError> {
        let path = format!("/v1/tasks?session_id={}&limit={limit}", segment(session_id));
        Ok(self
            .get::<crate::model::TaskList>(path)
            .await?
            .map(|p| p.tasks)
            .unwrap_or_default())
    }

    /// Session `id`, `None` when the backend does not know it.
    pub async fn session(&self, id: &str) -> Result<Option<Session>, ClientError> {
        self.get(format!("/v1/sessions/{}", segment(id))).await
    }

    async fn get<T: serde::de::DeserializeOwned + Send + 'static>(
        &self,
        path: String,
    ) -> Result<Option<T>, ClientError> {
        let transport = self.inner.transport.clone();
        let task = self
            .inner
            .runtime
            .spawn(async move { transport.get::<T>(&path).await });
        let url = self.inner.transport.base().to_string();
        match task.await {
            Ok(Outcome::Stored(v)) => Ok(v),
            Ok(Outcome::Rejected {
                status,
                code,
                message,
            }) => Err(ClientError::Rejected {
                status,
                code,
                message,
            }),
            Ok(Outcome::Failed(reason)) => Err(ClientError::Unavailable { url, reason }),
            Err(e) => Err(ClientError::Unavailable {
                url,
                reason: format!("client runtime: {e}"),
            }),
        }
    }

    /// Checks `GET /healthz` now and records the answer in `status().reachable`.
    pub async fn probe(&self) -> bool {
        let transport = self.inner.transport.clone();
        let ok = self
            .inner
            .runtime
            .spawn(async move { transport.healthy().await })
            .await
            .unwrap_or(false);
        self.inner.counters.reachable.store(ok, Ordering::Relaxed);
        ok
    }

    /// Counters and state, for `/metrics` and `/readyz`.
    pub fn status(&self) -> ClientStatus {
        self.inner.counters.snapshot(self.inner.transport.base())
    }

    /// Sends (or spools) everything queued so far without waiting for the batch delay; returns
    /// once it is durable or refused.
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.inner.tx.send(Item::Flush(tx)).is_ok() {
            let _ = rx.await;
        }
    }

    /// Flushes, then stops the writer; later writes fail with [`ClientError::Closed`].
    pub async fn shutdown(&self) {
        let (tx, rx) = oneshot::channel();
        if self.inner.tx.send(Item::Shutdown(tx)).is_ok() {
            let _ = rx.await;
        }
        let handle = self
            .inner
            .writer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(h) = handle {
            let _ = h.await;
        }
    }
}
