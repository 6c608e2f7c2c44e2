//! [`Hub`]: the settings, the two registries and the read side (listings, metrics).
//!
//! Agents and tasks live in sharded maps (`DashMap`): a read takes one shard's read lock for the
//! time of a clone of an `Arc`, and nothing on the event path touches them (a task stream holds
//! its task's `Arc` directly). Decisions about *where* tasks run — start, queue, slot freed,
//! agent connected — are serialized by the dispatch lock (one per hub, taken per task life
//! event, never per output event). Lock order: dispatch lock, then a task's lock; the maps are
//! never touched while a task's lock is held.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use dashmap::DashMap;
use orchestra_lb::{EwmaConfig, Params, Strategy};
use parking_lot::Mutex;
use tokio::sync::broadcast;

use crate::agent::{AgentEntry, AgentEvent, AgentInfo};
use crate::dispatch::Queue;
use crate::persist::Persist;
use crate::task::{Phase, TaskEntry, TaskInfo};

/// The hub's settings (`[agents]`); replaced as a whole on reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubConfig {
    /// How a task picks among capable agents with a free slot: `PeakEwma` (RTT × running
    /// tasks, power of two choices) or `ResourceBased` (reported CPU and memory).
    pub dispatch: Strategy,
    /// How long a task waits for its disconnected agent before it fails.
    pub reconnect_grace: Duration,
    /// Tasks waiting for a free agent, at most.
    pub max_queued: usize,
    /// Recent events kept in memory per live task.
    pub ring_capacity: usize,
    /// Events buffered per subscriber before it is cut off as lagged.
    pub subscriber_queue: usize,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            dispatch: Strategy::PeakEwma,
            reconnect_grace: Duration::from_secs(300),
            max_queued: 10_000,
            ring_capacity: 1024,
            subscriber_queue: 1024,
        }
    }
}

/// Counters for `/metrics` (monotonic unless noted).
#[derive(Debug, Default)]
pub struct HubMetrics {
    /// Agent registrations.
    pub connects: AtomicU64,
    /// Agent connections that ended.
    pub disconnects: AtomicU64,
    /// Connections replaced by a newer one with the same id.
    pub replaced: AtomicU64,
    /// Tasks created.
    pub tasks_started: AtomicU64,
    /// Tasks ended, by state: completed, failed, cancelled.
    pub tasks_finished: [AtomicU64; 3],
    /// Events received from agents (duplicates included).
    pub events_received: AtomicU64,
    /// Duplicates dropped (seq already accepted).
    pub events_duplicate: AtomicU64,
    /// Events acked to agents (durable).
    pub events_acked: AtomicU64,
    /// Subscribers cut off because their queue was full.
    pub subscribers_lagged: AtomicU64,
    /// Task streams ended for breaking the protocol.
    pub protocol_errors: AtomicU64,
    /// Tasks failed because their agent did not come back in time.
    pub grace_expired: AtomicU64,
}

impl HubMetrics {
    pub(crate) fn inc(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn finished(&self, state: orchestra_backend::model::TaskState) {
        use orchestra_backend::model::TaskState;
        let i = match state {
            TaskState::Completed => 0,
            TaskState::Cancelled => 2,
            _ => 1,
        };
        Self::inc(&self.tasks_finished[i]);
    }
}

/// Shared state behind [`Hub`].
pub(crate) struct HubInner {
    pub config: ArcSwap<HubConfig>,
    pub persist: Arc<dyn Persist>,
    pub agents: DashMap<Arc<str>, Arc<AgentEntry>>,
    pub tasks: DashMap<Arc<str>, Arc<TaskEntry>>,
    pub queue: Mutex<Queue>,
    pub agent_events: broadcast::Sender<AgentEvent>,
    pub metrics: HubMetrics,
    pub lb_params: Params,
    pub next_conn_gen: AtomicU64,
}

/// The agent hub. Cheap to clone (an `Arc`).
#[derive(Clone)]
pub struct Hub {
    pub(crate) inner: Arc<HubInner>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("agents", &self.inner.agents.len())
            .field("tasks", &self.inner.tasks.len())
            .finish()
    }
}

/// Capacity of the agent event broadcast; a receiver that falls further behind gets `Lagged`
/// and should re-read [`Hub::agents`].
pub const AGENT_EVENTS_CAPACITY: usize = 1024;

impl Hub {
    /// A hub storing through `persist`.
    pub fn new(config: HubConfig, persist: Arc<dyn Persist>) -> Hub {
        let lb_params = Params {
            peak_ewma: EwmaConfig {
                decay: Duration::from_secs(10),
                default_rtt: crate::agent::RTT_FLOOR,
            },
            ..Params::default()
        };
        Hub {
            inner: Arc::new(HubInner {
                config: ArcSwap::from_pointee(config),
                persist,
                agents: DashMap::new(),
                tasks: DashMap::new(),
                queue: Mutex::new(Queue::default()),
                agent_events: broadcast::channel(AGENT_EVENTS_CAPACITY).0,
                metrics: HubMetrics::default(),
                lb_params,
                next_conn_gen: AtomicU64::new(1),
            }),
        }
    }

    /// Replaces the settings (a reload). Queued tasks beyond a lower `max_queued` stay queued.
    pub fn set_config(&self, config: HubConfig) {
        self.inner.config.store(Arc::new(config));
    }

    /// The current settings.
    pub fn config(&self) -> Arc<HubConfig> {
        self.inner.config.load_full()
    }

    /// Connected agents (for `agents:list` and `GET /admin/agents`), sorted by id.
    pub fn agents(&self) -> Vec<AgentInfo> {
        let mut list: Vec<AgentInfo> = self.inner.agents.iter().map(|a| a.info()).collect();
        list.sort_by(|a, b| a.id.cmp(&b.id));
        list
    }

    /// One connected agent.
    pub fn agent(&self, id: &str) -> Option<AgentInfo> {
        self.inner.agents.get(id).map(|a| a.info())
    }

    /// Number of connected agents.
    pub fn agents_connected(&self) -> usize {
        self.inner.agents.len()
    }

    /// Connected agents by transport: (QUIC, WebSocket).
    pub fn agents_by_transport(&self) -> (usize, usize) {
        let mut c = (0, 0);
        for a in self.inner.agents.iter() {
            match a.hello.transport {
                crate::Transport::Quic => c.0 += 1,
                crate::Transport::Ws => c.1 += 1,
            }
        }
        c
    }

    /// Agent connects, disconnects and updates, from now on.
    pub fn agent_events(&self) -> broadcast::Receiver<AgentEvent> {
        self.inner.agent_events.subscribe()
    }

    /// A live task (queued, starting, running, orphaned, or ended but not yet fully stored).
    /// Tasks that ended are in the backend only.
    pub fn task(&self, id: &str) -> Option<TaskInfo> {
        let t = self.inner.tasks.get(id).map(|t| Arc::clone(t.value()))?;
        Some(t.info())
    }

    /// The live tasks' entries, copied out of the map so that no shard lock is held while each
    /// task's own lock is taken.
    fn task_entries(&self) -> Vec<Arc<TaskEntry>> {
        self.inner
            .tasks
            .iter()
            .map(|t| Arc::clone(t.value()))
            .collect()
    }

    /// Live tasks (for `GET /admin/tasks`), oldest first.
    pub fn tasks(&self) -> Vec<TaskInfo> {
        let entries = self.task_entries();
        let mut list: Vec<TaskInfo> = entries.iter().map(|t| t.info()).collect();
        list.sort_by(|a, b| a.created_at_ms.cmp(&b.created_at_ms).then(a.id.cmp(&b.id)));
        list
    }

    /// Live tasks by phase: (queued, starting, running, orphaned).
    pub fn task_counts(&self) -> (usize, usize, usize, usize) {
        let entries = self.task_entries();
        let mut c = (0, 0, 0, 0);
        for t in entries {
            match t.lock().phase {
                Phase::Queued => c.0 += 1,
                Phase::Starting => c.1 += 1,
                Phase::Running => c.2 += 1,
                Phase::Orphaned => c.3 += 1,
                Phase::Finished(_) => {}
            }
        }
        c
    }

    /// The counters.
    pub fn metrics(&self) -> &HubMetrics {
        &self.inner.metrics
    }

    /// The store.
    pub fn persist(&self) -> &Arc<dyn Persist> {
        &self.inner.persist
    }
}

impl HubInner {
    pub(crate) fn emit(&self, event: AgentEvent) {
        // No receiver is fine.
        let _ = self.agent_events.send(event);
    }

    /// Logs a write that failed to become durable (nobody waits on it).
    pub(crate) fn fire(&self, durable: crate::persist::Durable, what: &'static str) {
        if tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        tokio::spawn(async move {
            if let Err(e) = durable.await {
                tracing::warn!(error = %e, what, "backend write not durable");
            }
        });
    }

    /// Removes `task` from the live map once `durable` resolved (so that a subscriber never
    /// misses an event that is neither in memory nor stored yet).
    pub(crate) fn remove_when_durable(
        self: &Arc<Self>,
        task: Arc<TaskEntry>,
        durable: crate::persist::Durable,
    ) {
        let hub = Arc::downgrade(self);
        let remove = move || {
            if let Some(hub) = hub.upgrade() {
                hub.tasks.remove_if(&task.id, |_, v| Arc::ptr_eq(v, &task));
            }
        };
        if tokio::runtime::Handle::try_current().is_err() {
            remove();
            return;
        }
        tokio::spawn(async move {
            if let Err(e) = durable.await {
                tracing::warn!(error = %e, "final task events not durable");
            }
            remove();
        });
    }
}
