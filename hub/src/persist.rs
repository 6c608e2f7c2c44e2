//! The hub's narrow view of persistence: the [`Persist`] trait.
//!
//! The hub keeps only live state; agents, tasks and task events are stored by the backend
//! (SPEC "Backend service"). The gateway implements [`Persist`] over the backend client; the hub
//! never knows whether the backend is embedded, remote, or temporarily replaced by the client's
//! on-disk spool. Writes return a [`Durable`] future that resolves once the write is durable
//! (committed by the backend, or fsynced in the spool): the hub acks an agent's output only then
//! (DELIVERY 3). Dropping a `Durable` does not cancel the write.
//!
//! [`MemoryPersist`] is an in-memory implementation with the same semantics (ordered writes,
//! idempotent appends on `(task, seq)`, a switch that holds durability back) for tests and
//! benchmarks of the hub alone.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use orchestra_backend::model::{Event, NewEvent, Task, TaskState, WriteOp};
use parking_lot::Mutex;
use tokio::sync::watch;

/// Resolves once a write is durable.
pub type Durable = Pin<Box<dyn Future<Output = Result<(), PersistError>> + Send + 'static>>;

/// A read from the backend.
pub type Fetch<T> = Pin<Box<dyn Future<Output = Result<T, PersistError>> + Send + 'static>>;

/// Why a write or read did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PersistError {
    /// The backend cannot be reached and the write could not be spooled (or a read needs the
    /// backend itself).
    #[error("backend unavailable: {0}")]
    Unavailable(String),
    /// The backend refused the write or read.
    #[error("backend refused: {0}")]
    Refused(String),
}

/// Where the hub stores agents, tasks and events.
pub trait Persist: Send + Sync + 'static {
    /// Queues an ordered write (agent upsert, task create, task patch). Writes are applied in
    /// call order, events included.
    fn write(&self, op: WriteOp) -> Durable;

    /// Queues events of one task (seq order); idempotent on `(task, seq)`.
    fn append(&self, task_id: &str, events: Vec<NewEvent>) -> Durable;

    /// Stored events of `task_id` with `seq > since`, in seq order, at most `limit`.
    fn events_since(&self, task_id: &str, since: u64, limit: usize) -> Fetch<Vec<Event>>;

    /// The stored task, if any.
    fn task(&self, id: &str) -> Fetch<Option<Task>>;
}

/// In-memory [`Persist`] (tests, benchmarks). Appends and writes become durable at once unless
/// [`MemoryPersist::hold`] is on; held writes resolve, in order, when it is turned off.
#[derive(Debug)]
pub struct MemoryPersist {
    state: Mutex<MemoryState>,
    held: watch::Sender<bool>,
    appended: AtomicU64,
    duplicates: AtomicU64,
}

#[derive(Debug, Default)]
struct MemoryState {
    tasks: HashMap<String, Task>,
    events: HashMap<String, BTreeMap<u64, Event>>,
    agents: HashMap<String, orchestra_backend::model::AgentUpsert>,
    ops: u64,
}

impl Default for MemoryPersist {
    fn default() -> Self {
        MemoryPersist {
            state: Mutex::new(MemoryState::default()),
            held: watch::channel(false).0,
            appended: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
        }
    }
}

impl MemoryPersist {
    /// An empty store.
    pub fn new() -> Arc<Self> {
        Arc::new(MemoryPersist::default())
    }

    /// Holds durability back (`true`) or releases it (`false`).
    pub fn hold(&self, on: bool) {
        self.held.send_replace(on);
    }

    /// Events stored for `task_id`, in seq order.
    pub fn events(&self, task_id: &str) -> Vec<Event> {
        self.state
            .lock()
            .events
            .get(task_id)
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    /// The stored task.
    pub fn stored_task(&self, id: &str) -> Option<Task> {
        self.state.lock().tasks.get(id).cloned()
    }

    /// The stored agent's status (`online` / `offline`).
    pub fn agent_status(&self, id: &str) -> Option<String> {
        self.state.lock().agents.get(id).map(|a| a.status.clone())
    }

    /// Events inserted, and appends that were duplicates of a stored `(task, seq)`.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.appended.load(Ordering::Relaxed),
            self.duplicates.load(Ordering::Relaxed),
        )
    }

    fn apply(&self, op: WriteOp) {
        let mut s = self.state.lock();
        s.ops += 1;
        let now = s.ops as i64;
        match op {
            WriteOp::UpsertAgent { id, agent } => {
                s.agents.insert(id, agent);
            }
            WriteOp::CreateSession(_) => {}
            WriteOp::CreateTask(t) => {
                let id = t.id.clone().unwrap_or_default();
                s.tasks.entry(id.clone()).or_insert(Task {
                    id,
                    session_id: t.session_id,
                    tool: t.tool,
                    prompt: t.prompt,
                    cwd: t.cwd,
                    requires: t.requires,
                    priority: t.priority,
                    agent_id: t.agent_id,
                    state: TaskState::Pending,
                    result: None,
                    version: 1,
                    created_at: now,
                    updated_at: now,
                });
            }
            WriteOp::PatchTask { id, patch } => {
                if let Some(t) = s.tasks.get_mut(&id) {
                    if !t.state.is_terminal() {
                        t.state = patch.state;
                        if patch.agent_id.is_some() {
                            t.agent_id = patch.agent_id;
                        }
                        if patch.result.is_some() {
                            t.result = patch.result;
                        }
                        t.version += 1;
                        t.updated_at = now;
                    }
                }
            }
            WriteOp::AppendEvents { task_id, events } => {
                let (mut ins, mut dup) = (0, 0);
                let stored = s.events.entry(task_id).or_default();
                for e in events {
                    if stored.contains_key(&e.seq) {
                        dup += 1;
                        continue;
                    }
                    ins += 1;
                    stored.insert(
                        e.seq,
                        Event {
                            seq: e.seq,
                            kind: e.kind,
                            data: e.data,
                            at: now,
                        },
                    );
                }
                self.appended.fetch_add(ins, Ordering::Relaxed);
                self.duplicates.fetch_add(dup, Ordering::Relaxed);
            }
        }
    }

    fn durable_after_hold(&self) -> Durable {
        let mut rx = self.held.subscribe();
        Box::pin(async move {
            let _ = rx.wait_for(|held| !*held).await;
            Ok(())
        })
    }
}

impl Persist for MemoryPersist {
    fn write(&self, op: WriteOp) -> Durable {
        self.apply(op);
        self.durable_after_hold()
    }

    fn append(&self, task_id: &str, events: Vec<NewEvent>) -> Durable {
        self.apply(WriteOp::AppendEvents {
            task_id: task_id.to_string(),
            events,
        });
        self.durable_after_hold()
    }

    fn events_since(&self, task_id: &str, since: u64, limit: usize) -> Fetch<Vec<Event>> {
        let page: Vec<Event> = self
            .state
            .lock()
            .events
            .get(task_id)
            .map(|m| {
                m.range(since.saturating_add(1)..)
                    .take(limit)
                    .map(|(_, e)| e.clone())
                    .collect()
            })
            .unwrap_or_default();
        Box::pin(async move { Ok(page) })
    }

    fn task(&self, id: &str) -> Fetch<Option<Task>> {
        let t = self.stored_task(id);
        Box::pin(async move { Ok(t) })
    }
}
