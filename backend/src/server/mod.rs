//! The `orchestra-backend` HTTP service (SPEC "Backend service"): axum routes over a [`Store`].
//!
//! | path | handler |
//! |---|---|
//! | `GET /healthz` | 200 when the database answers a query, else 503 |
//! | `/v1/agents...`, `/v1/sessions...`, `/v1/tasks...` | [`routes`] |
//! | `POST /v1/events` | bulk append of several tasks' events (extension, used by the client) |
//!
//! Limits: bodies up to [`extract::MAX_BODY`] (8 MiB); ids up to [`extract::MAX_ID`] bytes;
//! lists `?limit=` default [`routes::LIST_DEFAULT`], at most [`routes::LIST_MAX`]; event reads
//! `?limit=` default [`routes::EVENTS_DEFAULT`], at most [`routes::EVENTS_MAX`].

pub mod error;
pub mod extract;
pub mod routes;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::routing::{get, patch, post, put};
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::store::Store;

/// What every handler sees.
#[derive(Clone)]
pub struct AppState {
    /// The database.
    pub store: Store,
    /// Current time in Unix milliseconds (injectable for tests).
    pub now: fn() -> i64,
}

/// Unix milliseconds from the system clock.
pub fn system_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The service's routes over `store`.
pub fn router(store: Store) -> Router {
    let state = Arc::new(AppState {
        store,
        now: system_now,
    });
    Router::new()
        .route("/healthz", get(routes::healthz))
        .route("/v1/agents", get(routes::list_agents))
        .route(
            "/v1/agents/{id}",
            put(routes::upsert_agent).get(routes::get_agent),
        )
        .route(
            "/v1/sessions",
            post(routes::create_session).get(routes::list_sessions),
        )
        .route("/v1/sessions/{id}", get(routes::get_session))
        .route(
            "/v1/tasks",
            post(routes::create_task).get(routes::list_tasks),
        )
        .route(
            "/v1/tasks/{id}",
            get(routes::get_task).merge(patch(routes::patch_task)),
        )
        .route(
            "/v1/tasks/{id}/events",
            post(routes::append_events).get(routes::read_events),
        )
        .route("/v1/events", post(routes::append_bulk))
        .fallback(routes::no_route)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .with_state(state)
}

/// Serves `store` on `listener` until `shutdown` resolves (in-flight requests finish first).
pub async fn serve(
    listener: TcpListener,
    store: Store,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(store))
        .with_graceful_shutdown(shutdown)
        .await
}

/// A server running on the current tokio runtime (the gateway's embedded backend, tests).
#[derive(Debug)]
pub struct RunningServer {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
    store: Store,
}

impl RunningServer {
    /// Binds `addr` (port 0 = any free port) and serves `store` on it.
    pub async fn start(addr: SocketAddr, store: Store) -> std::io::Result<RunningServer> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(serve(listener, store.clone(), async move {
            let _ = rx.await;
        }));
        Ok(RunningServer {
            addr,
            stop: Some(tx),
            task,
            store,
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`, the URL the client uses.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting, lets in-flight requests finish, closes the database.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        let task = std::mem::replace(&mut self.task, tokio::spawn(async { Ok(()) }));
        if let Ok(Err(e)) = task.await {
            tracing::warn!(error = %e, "backend server ended with an error");
        }
        self.store.close().await;
    }
}
