//! The hub's persistence ([`orchestra_hub::Persist`]) over the gateway's backend client.
//!
//! Every agent upsert, task create/patch and task event the hub produces goes through the one
//! [`BackendClient`] the gateway runs (embedded SQLite by default, or `[backend] url`): writes
//! are queued and batched by the client, and their [`Durable`] resolves once the backend
//! committed them or the client's spool fsynced them — the hub acks an agent's output only then
//! (DELIVERY 3). Reads (`events_since`, `task`) go to the backend itself; while it is
//! unreachable they fail with [`PersistError::Unavailable`] and the hub serves what its ring
//! still holds.

use std::sync::Arc;

use orchestra_backend::client::{BackendClient, ClientError};
use orchestra_backend::model::{NewEvent, WriteOp};
use orchestra_hub::{Durable, Fetch, Persist, PersistError};

/// [`Persist`] over the gateway's [`BackendClient`].
#[derive(Clone)]
pub struct BackendPersist {
    client: BackendClient,
}

impl std::fmt::Debug for BackendPersist {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendPersist").finish_non_exhaustive()
    }
}

impl BackendPersist {
    /// Persists through `client` (a clone shares the client's single writer).
    pub fn new(client: BackendClient) -> Arc<BackendPersist> {
        Arc::new(BackendPersist { client })
    }
}

/// Maps a client error to the hub's: refusals are the backend's answer, everything else means
/// the write or read could not reach durable storage.
fn persist_error(e: ClientError) -> PersistError {
    match e {
        ClientError::Rejected { .. } => PersistError::Refused(e.to_string()),
        other => PersistError::Unavailable(other.to_string()),
    }
}

impl Persist for BackendPersist {
    fn write(&self, op: WriteOp) -> Durable {
        let durable = self.client.write(op);
        Box::pin(async move { durable.await.map(|_| ()).map_err(persist_error) })
    }

    fn append(&self, task_id: &str, events: Vec<NewEvent>) -> Durable {
        let durable = self.client.append_events(task_id, events);
        Box::pin(async move { durable.await.map(|_| ()).map_err(persist_error) })
    }

    fn events_since(
        &self,
        task_id: &str,
        since: u64,
        limit: usize,
    ) -> Fetch<Vec<orchestra_backend::model::Event>> {
        let client = self.client.clone();
        let task_id = task_id.to_owned();
        let limit = u32::try_from(limit).unwrap_or(u32::MAX).min(10_000);
        Box::pin(async move {
            client
                .task_events(&task_id, since, limit)
                .await
                .map_err(persist_error)
        })
    }

    fn task(&self, id: &str) -> Fetch<Option<orchestra_backend::model::Task>> {
        let client = self.client.clone();
        let id = id.to_owned();
        Box::pin(async move { client.task(&id).await.map_err(persist_error) })
    }
}
