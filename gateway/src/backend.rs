//! The gateway's persistence: the backend client every persisting part of the gateway uses, and,
//! with no `[backend] url`, the embedded backend it talks to.
//!
//! [`Backend::start`] runs at process start (a `[backend]` change on reload is reported as
//! `restart_needed`). It builds a small runtime of its own (two threads, `orchestra-backend`)
//! that hosts the client's writer and, in embedded mode, the backend service itself: the
//! SQLite file at `sqlite_path` (parent directories created) served on `127.0.0.1:0`, reached
//! over HTTP by the same client code as a remote backend (SPEC "Binaries"). The client lives
//! in [`GatewayState`] so the agent hub and the realtime channel reach it with
//! `state.backend()`.
//!
//! `/readyz` ([`readyz`]) says which backend and whether it is reachable or spooling; `/metrics`
//! gets the client's counters ([`prometheus`]). On SIGTERM, [`Backend::stop`] flushes the
//! writer (sent, or fsynced into the spool) before the embedded server closes.

use std::fmt::Write as _;
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use orchestra_backend::client::{BackendClient, ClientConfig, ClientStatus};
use orchestra_backend::server::RunningServer;
use orchestra_backend::store::Store;
use orchestra_config::BackendSettings;

use crate::pipeline::LocalResponse;
use crate::state::GatewayState;

/// How long a graceful stop waits for queued writes to be sent or spooled.
const STOP_FLUSH: Duration = Duration::from_secs(5);
/// How long start-up waits for the first health check of a remote backend.
const FIRST_PROBE: Duration = Duration::from_secs(1);

/// Why the backend could not be started.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The backend's runtime could not be built.
    #[error("cannot start the backend runtime: {0}")]
    Runtime(std::io::Error),
    /// The embedded SQLite database could not be opened.
    #[error("embedded backend: cannot open {path} (backend.sqlite_path): {reason}")]
    Database {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The embedded server could not bind its loopback port.
    #[error("embedded backend: cannot listen on 127.0.0.1: {0}")]
    Listen(std::io::Error),
    /// The client could not start (e.g. the spool directory is not writable).
    #[error("backend client: {0} (backend.spool_dir)")]
    Client(orchestra_backend::client::ClientError),
}

/// The running backend client (and embedded server).
pub struct Backend {
    client: BackendClient,
    target: String,
    embedded: bool,
    server: std::sync::Mutex<Option<RunningServer>>,
    runtime: tokio::runtime::Runtime,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend")
            .field("target", &self.target)
            .finish()
    }
}

impl Backend {
    /// Starts the client (and the embedded backend when `settings.url` is absent).
    pub fn start(settings: &BackendSettings) -> Result<Backend, BackendError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("orchestra-backend")
            .enable_all()
            .build()
            .map_err(BackendError::Runtime)?;
        let (url, server, target) = match &settings.url {
            Some(url) => (url.clone(), None, url.clone()),
            None => {
                let path = settings.sqlite_path.display().to_string();
                let server = runtime.block_on(async {
                    let store = Store::Sqlite(
                        orchestra_backend::store::SqliteStore::open(&settings.sqlite_path)
                            .await
                            .map_err(|e| BackendError::Database {
                                path: path.clone(),
                                reason: e.to_string(),
                            })?,
                    );
                    RunningServer::start(([127, 0, 0, 1], 0).into(), store)
                        .await
                        .map_err(BackendError::Listen)
                })?;
                (
                    server.url(),
                    Some(server),
                    format!("embedded sqlite {path}"),
                )
            }
        };
        let mut config = ClientConfig::new(url, &settings.spool_dir);
        config.batch_max_events = settings.batch_max_events;
        config.batch_max_delay = settings.batch_max_delay;
        config.request_timeout = settings.request_timeout;
        config.spool_max_bytes = settings.spool_max_bytes;
        let client = runtime.block_on(async {
            let client = BackendClient::start(config).map_err(BackendError::Client)?;
            let _ = tokio::time::timeout(FIRST_PROBE, client.probe()).await;
            Ok::<_, BackendError>(client)
        })?;
        let status = client.status();
        tracing::info!(
            backend = %target,
            reachable = status.reachable,
            spool = %settings.spool_dir.display(),
            spooled = status.spool_records,
            "backend client started"
        );
        Ok(Backend {
            client,
            embedded: server.is_some(),
            target,
            server: std::sync::Mutex::new(server),
            runtime,
        })
    }

    /// The client: `write`, `append_events`, `task_events`, `task`, `session`, `status`.
    pub fn client(&self) -> &BackendClient {
        &self.client
    }

    /// `embedded sqlite PATH` or the backend URL.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// True for the in-process backend.
    pub fn is_embedded(&self) -> bool {
        self.embedded
    }

    /// Flushes the writer (at most 5 s), then stops the embedded server. Runs on the backend's
    /// own runtime; await it from any runtime (the control plane does on SIGTERM).
    pub async fn stop(&self) {
        let server = self.server.lock().unwrap_or_else(|e| e.into_inner()).take();
        let client = self.client.clone();
        let work = self.runtime.spawn(async move {
            if tokio::time::timeout(STOP_FLUSH, client.shutdown())
                .await
                .is_err()
            {
                tracing::warn!("backend client did not flush within 5s; unacknowledged writes stay with their senders");
            }
            if let Some(server) = server {
                server.stop().await;
            }
        });
        let _ = work.await;
        tracing::info!(backend = %self.target, "backend stopped");
    }
}

/// `GET /readyz`: 200 when the config is loaded, the listeners are up and the backend is
/// reachable; the body says which backend and whether writes are being spooled.
pub fn readyz(state: &GatewayState) -> LocalResponse {
    let ready = state.is_ready();
    let Some(backend) = state.backend() else {
        let (status, body): (_, &'static [u8]) = if ready {
            (StatusCode::OK, br#"{"status":"ready"}"#)
        } else {
            (StatusCode::SERVICE_UNAVAILABLE, br#"{"status":"starting"}"#)
        };
        return LocalResponse {
            status,
            body: Bytes::from_static(body),
        };
    };
    let s = backend.client().status();
    let (status, word) = match (ready, s.reachable) {
        (true, true) => (StatusCode::OK, "ready"),
        (true, false) => (StatusCode::SERVICE_UNAVAILABLE, "backend_unreachable"),
        (false, _) => (StatusCode::SERVICE_UNAVAILABLE, "starting"),
    };
    let body = serde_json::json!({
        "status": word,
        "backend": {
            "target": backend.target(),
            "embedded": backend.is_embedded(),
            "reachable": s.reachable,
            "spooling": s.spooling,
            "spool_bytes": s.spool_bytes,
            "spool_records": s.spool_records,
            "breaker": s.breaker.as_str(),
        }
    });
    LocalResponse {
        status,
        body: Bytes::from(body.to_string()),
    }
}

/// The client's counters in Prometheus text format (appended to `/metrics`).
pub fn prometheus(state: &GatewayState, out: &mut String) {
    let Some(backend) = state.backend() else {
        return;
    };
    let s: ClientStatus = backend.client().status();
    let target = backend.target().replace('\\', "\\\\").replace('"', "\\\"");
    let gauge = |out: &mut String, name: &str, help: &str, v: u64| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
    };
    let counter = |out: &mut String, name: &str, help: &str, v: u64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
        );
    };
    let _ = writeln!(
        out,
        "# HELP orchestra_backend_up 1 when the last request or health probe reached the backend\n\
         # TYPE orchestra_backend_up gauge\norchestra_backend_up{{backend=\"{target}\"}} {}",
        u8::from(s.reachable)
    );
    gauge(
        out,
        "orchestra_backend_spooling",
        "1 while writes go to the on-disk spool",
        u64::from(s.spooling),
    );
    gauge(
        out,
        "orchestra_backend_breaker_state",
        "circuit breaker toward the backend: 0 closed, 1 open, 2 half-open",
        u64::from(s.breaker as u8),
    );
    gauge(
        out,
        "orchestra_backend_queued_writes",
        "writes queued in memory, not yet sent or spooled",
        s.queued,
    );
    counter(
        out,
        "orchestra_backend_writes_total",
        "writes committed by the backend",
        s.writes,
    );
    counter(
        out,
        "orchestra_backend_events_total",
        "task events committed by the backend",
        s.events,
    );
    counter(
        out,
        "orchestra_backend_batches_total",
        "requests that carried writes",
        s.batches,
    );
    counter(
        out,
        "orchestra_backend_requests_failed_total",
        "requests to the backend that failed (retried or spooled)",
        s.requests_failed,
    );
    counter(
        out,
        "orchestra_backend_rejected_total",
        "writes the backend refused for good",
        s.rejected,
    );
    counter(
        out,
        "orchestra_backend_spooled_records_total",
        "writes appended to the spool",
        s.spooled_records,
    );
    gauge(
        out,
        "orchestra_backend_spool_bytes",
        "spool size on disk",
        s.spool_bytes,
    );
    gauge(
        out,
        "orchestra_backend_spool_records",
        "spooled writes not yet replayed",
        s.spool_records,
    );
    counter(
        out,
        "orchestra_backend_replayed_total",
        "spooled writes replayed to the backend",
        s.replayed,
    );
    counter(
        out,
        "orchestra_backend_spool_refused_total",
        "writes refused because the spool was full",
        s.refused,
    );
    counter(
        out,
        "orchestra_backend_spool_corrupt_records_total",
        "corrupt spool records skipped",
        s.corrupt_records,
    );
}
