//! The gateway's client of the backend — the one path by which the gateway persists anything.
//!
//! API (being implemented; signatures are the contract the hub and the realtime channel use):
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
//! ```
