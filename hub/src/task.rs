//! One live task: its request, its phase, and the state behind DELIVERY 1, 4, 5 and 7.
//!
//! | field | invariant |
//! |---|---|
//! | `next_seq` | the next number the *gateway* may give an event (before the assignment, and after the result) |
//! | `first_seq` | `TaskAssign.first_seq`: the agent numbers its events from here (DELIVERY 1) |
//! | `accepted` | highest agent seq taken in on the current stream; an event at or below it is a duplicate (DELIVERY 4). Reset to `durable` when a stream resumes, so items in flight when a connection broke are stored again (the backend ignores repeats) |
//! | `durable` | highest agent seq the backend holds durably = the last `OutputAck` (DELIVERY 3) |
//! | `published` | highest seq put in the ring and sent to subscribers; never goes down, so a resent item is stored again but never shown twice |
//! | `ring` | the most recent events, at most `ring_capacity` (DELIVERY 5) |
//! | `subs` | live subscribers, each with a bounded queue; a full queue drops the subscriber, which then ends with "lagged" (DELIVERY 7) |
//!
//! Everything sits behind one `parking_lot` mutex per task: the one producer (the task's stream)
//! takes it once per event for a few hundred nanoseconds, subscribers once when they register.
//! There is no lock shared between tasks on the event path.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use orchestra_backend::model::TaskState;
use orchestra_lb::InFlightGuard;
use parking_lot::{Mutex, MutexGuard};
use tokio::sync::{mpsc, Notify};

use crate::event::Event;

/// What a task asks for (`worker:start`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartTask {
    /// The JWT `sub` of the user who started it (stored for ownership checks).
    pub owner: String,
    /// The session it belongs to.
    pub session_id: String,
    /// The tool (a key of the agent's tool table: `claude`, `qwcoder`, `custom`, ...).
    pub tool: String,
    /// The prompt.
    pub prompt: String,
    /// Run on this agent only.
    pub agent_id: Option<String>,
    /// Capabilities the agent must have besides `tool`.
    pub requires: Vec<String>,
    /// Working directory on the agent (`None`: `{workdir}/{task_id}`).
    pub cwd: Option<String>,
    /// Higher starts first when agents are busy.
    pub priority: i32,
}

/// Where a task is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Waiting in the queue for a free capable agent.
    Queued,
    /// Sent to an agent, not yet accepted.
    Starting,
    /// Accepted; output flowing.
    Running,
    /// Its agent's connection is gone; waiting `reconnect_grace` for it to resume.
    Orphaned,
    /// Over, in this backend state.
    Finished(TaskState),
}

impl Phase {
    /// Name for the admin API.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Queued => "queued",
            Phase::Starting => "starting",
            Phase::Running => "running",
            Phase::Orphaned => "orphaned",
            Phase::Finished(s) => s.as_str(),
        }
    }
}

/// Sent down a task's stream to its agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskCommand {
    /// Bytes for the task's stdin (`close`: then close stdin).
    Input {
        /// The bytes.
        data: Bytes,
        /// Close stdin afterwards.
        close: bool,
    },
    /// Kill the task (its process group).
    Stop {
        /// Why, for the agent's log.
        reason: String,
    },
}

/// A live subscriber's sending side.
#[derive(Debug)]
pub(crate) struct Subscriber {
    pub tx: mpsc::Sender<Arc<Event>>,
    pub lagged: Arc<AtomicBool>,
}

#[derive(Debug)]
pub(crate) struct TaskInner {
    pub phase: Phase,
    /// The agent it was assigned to.
    pub agent: Option<Arc<str>>,
    /// Connection generation of the agent connection whose stream carries the task.
    pub conn_gen: u64,
    /// Attachment generation: a stream whose generation is older is superseded.
    pub attach_gen: u64,
    pub next_seq: u64,
    pub first_seq: u64,
    pub accepted: u64,
    pub durable: u64,
    pub published: u64,
    /// Seq of the event carrying the result.
    pub result_seq: Option<u64>,
    /// Adopted after a gateway restart: the first event sets `accepted`.
    pub resync: bool,
    pub ring: VecDeque<Arc<Event>>,
    pub subs: Vec<Subscriber>,
    pub commands: Option<mpsc::Sender<TaskCommand>>,
    /// The agent slot this task occupies (released on drop).
    pub slot: Option<InFlightGuard>,
    pub stop_requested: Option<String>,
    /// Bumped when the task is orphaned; a grace timer acts only on its own orphaning.
    pub orphan_no: u64,
    pub pid: u32,
}

/// A task known to the hub.
#[derive(Debug)]
pub struct TaskEntry {
    pub(crate) id: Arc<str>,
    pub(crate) spec: StartTask,
    pub(crate) created_at: SystemTime,
    pub(crate) inner: Mutex<TaskInner>,
    /// Woken when a stop is requested (the stream handler sends `TaskStop`).
    pub(crate) stop: Notify,
}

impl TaskEntry {
    pub(crate) fn new(id: Arc<str>, spec: StartTask) -> TaskEntry {
        TaskEntry {
            id,
            spec,
            created_at: SystemTime::now(),
            inner: Mutex::new(TaskInner {
                phase: Phase::Queued,
                agent: None,
                conn_gen: 0,
                attach_gen: 0,
                next_seq: 1,
                first_seq: 0,
                accepted: 0,
                durable: 0,
                published: 0,
                result_seq: None,
                resync: false,
                ring: VecDeque::new(),
                subs: Vec::new(),
                commands: None,
                slot: None,
                stop_requested: None,
                orphan_no: 0,
                pid: 0,
            }),
            stop: Notify::new(),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, TaskInner> {
        self.inner.lock()
    }
}

impl TaskInner {
    /// Puts `event` in the ring and sends it to every subscriber, unless an event with that seq
    /// was published already. A subscriber whose queue is full is dropped and flagged lagged.
    pub fn publish(&mut self, event: Arc<Event>, ring_capacity: usize) -> bool {
        if event.seq <= self.published {
            return false;
        }
        self.published = event.seq;
        if self.ring.len() >= ring_capacity.max(1) {
            self.ring.pop_front();
        }
        self.ring.push_back(Arc::clone(&event));
        self.subs
            .retain(|s| match s.tx.try_send(Arc::clone(&event)) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    s.lagged.store(true, Ordering::Release);
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            });
        true
    }

    /// The highest seq given to any event so far.
    pub fn last_seq(&self) -> u64 {
        self.published
            .max(self.accepted)
            .max(self.next_seq.saturating_sub(1))
    }

    /// Takes the next gateway seq (after everything seen so far).
    pub fn take_gateway_seq(&mut self) -> u64 {
        let seq = self.last_seq() + 1;
        self.next_seq = seq + 1;
        seq
    }

    /// True once the phase is terminal.
    pub fn is_finished(&self) -> bool {
        matches!(self.phase, Phase::Finished(_))
    }
}

/// A task as listed by the admin API and the realtime channel.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TaskInfo {
    /// Task id.
    pub id: String,
    /// Owner (JWT `sub`), empty for a task adopted from the backend after a gateway restart.
    pub owner: String,
    /// Session.
    pub session_id: String,
    /// Tool.
    pub tool: String,
    /// The agent it runs on (once assigned).
    pub agent_id: Option<String>,
    /// `queued`, `starting`, `running`, `orphaned`, or a terminal backend state.
    pub state: &'static str,
    /// Highest seq given to an event.
    pub seq: u64,
    /// Highest seq stored durably (acked to the agent).
    pub durable_seq: u64,
    /// Live subscribers.
    pub subscribers: usize,
    /// Priority.
    pub priority: i32,
    /// Creation time, Unix milliseconds.
    pub created_at_ms: u64,
}

impl TaskEntry {
    /// The admin / realtime view.
    pub fn info(&self) -> TaskInfo {
        let inner = self.lock();
        TaskInfo {
            id: self.id.to_string(),
            owner: self.spec.owner.clone(),
            session_id: self.spec.session_id.clone(),
            tool: self.spec.tool.clone(),
            agent_id: inner.agent.as_deref().map(str::to_string),
            state: inner.phase.as_str(),
            seq: inner.last_seq(),
            durable_seq: inner.durable,
            subscribers: inner.subs.len(),
            priority: self.spec.priority,
            created_at_ms: crate::unix_ms(self.created_at),
        }
    }
}
