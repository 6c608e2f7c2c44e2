//! Persistence for Orchestra Gateway (SPEC "Backend service").
//!
//! The gateway keeps only live state; agents, sessions, tasks and task events are stored by the
//! backend service. This crate holds both sides of that boundary:
//!
//! | module | what |
//! |---|---|
//! | [`model`] | the JSON shapes of the REST API, shared by server and client |
//! | [`store`] | the database: typed sqlx pools over SQLite or PostgreSQL, embedded migrations |
//! | [`server`] | the `orchestra-backend` service: axum routes over a store |
//! | [`client`] | the gateway's client: ordered writes, event batching, retries behind a circuit breaker, and an on-disk spool while the backend is unreachable |
//!
//! With no `[backend] url`, the gateway runs the server in-process on a SQLite file and talks to
//! it through the same client.

pub mod client;
pub mod model;
pub mod server;
pub mod store;

/// The log filter of the backend's binaries when `RUST_LOG` is unset: `info`, with sqlx's
/// per-statement lines at `warn` and above only.
pub const DEFAULT_LOG_FILTER: &str = "info,sqlx=warn";
