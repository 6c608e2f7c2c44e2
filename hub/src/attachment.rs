//! [`TaskAttachment`]: the hub side of one task stream (QUIC stream or WebSocket channel).
//!
//! The connection handler owns the stream and calls, in the order frames arrive:
//!
//! ```text
//! TaskAccepted  → accepted(seq, pid, &mut batch)  → the `running` event, ack through first_seq
//! TaskRejected  → rejected(code, reason)          → the task fails (`worker:status error`)
//! TaskEvent     → ingest(&event, &mut batch)      → Accepted { ack } or Duplicate { ack }
//! (batch full or no frame waiting) → persist(batch) → a Durable future
//! Durable resolved                 → acked(seq) → send OutputAck { seq }
//! ```
//!
//! Fan-out to subscribers happens inside `ingest`, at once; the backend write is the batch, and
//! the ack waits for it (DELIVERY 3). The handler bounds the events it holds un-durable per stream
//! ([`MAX_UNDURABLE`]) and stops reading the stream beyond that, so QUIC flow control slows only
//! this task's sender.
//!
//! Dedup (DELIVERY 4): an event at or below `accepted` is a duplicate — dropped, and answered
//! with an ack of what is durable. An event above `accepted + 1` is a gap: a protocol error.
//! After a resume `accepted` restarts from `durable`, so events that were received but not yet
//! durable when the old connection broke are stored again (the backend keeps one copy of each
//! `(task, seq)`), while `published` keeps subscribers from seeing them twice.
//!
//! An attachment that is dropped without [`TaskAttachment::finish`] (the stream broke) orphans
//! the task: it waits `reconnect_grace` for the agent to resume it.

use std::sync::Arc;

use orchestra_backend::model::{NewEvent, TaskPatch, TaskState, WriteOp};
use orchestra_proto::v1::{self, task_event::Body};
use tokio::sync::mpsc;

use crate::error::ProtocolError;
use crate::event::{self, Built, Status};
use crate::hub::{HubInner, HubMetrics};
use crate::persist::Durable;
use crate::task::{Phase, TaskCommand, TaskEntry, TaskInner};

/// Events a stream may hold received but not yet durable; beyond it the handler stops reading
/// the stream until the backend catches up. Smaller than the ring, so an event that leaves the
/// ring is always in the backend already.
pub const MAX_UNDURABLE: usize = 512;

/// Events persisted in one backend append at most.
pub const MAX_BATCH: usize = 128;

/// What [`TaskAttachment::ingest`] made of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ingest {
    /// Taken in (added to the batch); ack through `ack` once the batch is durable.
    Accepted {
        /// The seq to ack when the batch is durable.
        ack: u64,
    },
    /// Already accepted: send `OutputAck { seq: ack }` now (what is durable).
    Duplicate {
        /// The durable seq.
        ack: u64,
    },
}

/// The hub side of one task stream.
pub struct TaskAttachment {
    hub: Arc<HubInner>,
    task: Arc<TaskEntry>,
    gen: u64,
    commands: mpsc::Receiver<TaskCommand>,
    commands_open: bool,
    stop_sent: bool,
    finished: bool,
}

impl std::fmt::Debug for TaskAttachment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskAttachment")
            .field("task", &self.task.id)
            .field("gen", &self.gen)
            .finish()
    }
}

impl TaskAttachment {
    pub(crate) fn new(
        hub: Arc<HubInner>,
        task: Arc<TaskEntry>,
        gen: u64,
        commands: mpsc::Receiver<TaskCommand>,
        stop_sent: bool,
    ) -> TaskAttachment {
        TaskAttachment {
            hub,
            task,
            gen,
            commands,
            commands_open: true,
            stop_sent,
            finished: false,
        }
    }

    /// The task id.
    pub fn task_id(&self) -> &str {
        &self.task.id
    }

    /// `TaskAssign.first_seq`.
    pub fn first_seq(&self) -> u64 {
        self.task.lock().first_seq
    }

    fn current(&self, inner: &TaskInner) -> Result<(), ProtocolError> {
        if inner.attach_gen != self.gen {
            return Err(ProtocolError::Superseded);
        }
        Ok(())
    }

    /// `TaskAccepted { seq, pid }`: the task runs; its `running` event (seq `first_seq`) goes
    /// into `batch`. Returns the seq to ack once the batch is durable.
    pub fn accepted(
        &mut self,
        seq: u64,
        pid: u32,
        batch: &mut Vec<NewEvent>,
    ) -> Result<u64, ProtocolError> {
        let ring = self.hub.config.load().ring_capacity;
        let mut inner = self.task.lock();
        self.current(&inner)?;
        if inner.phase != Phase::Starting || seq != inner.first_seq {
            return Err(ProtocolError::UnexpectedAccept {
                got: seq,
                first_seq: inner.first_seq,
            });
        }
        inner.phase = Phase::Running;
        inner.pid = pid;
        inner.accepted = seq;
        let agent = inner.agent.clone();
        let built = event::status(&self.task.id, seq, Status::Running, agent.as_deref(), None);
        inner.publish(Arc::clone(&built.event), ring);
        drop(inner);
        batch.push(built.stored);
        self.hub.fire(
            self.hub.persist.write(WriteOp::PatchTask {
                id: self.task.id.to_string(),
                patch: TaskPatch {
                    state: TaskState::Running,
                    agent_id: agent.as_deref().map(str::to_string),
                    result: None,
                    version: None,
                },
            }),
            "task running",
        );
        Ok(seq)
    }

    /// `TaskRejected`: the task fails with the agent's reason; its slot is released.
    pub fn rejected(&mut self, code: &str, reason: &str) {
        let agent = {
            let inner = self.task.lock();
            if inner.attach_gen != self.gen || inner.phase != Phase::Starting {
                return;
            }
            inner.agent.clone()
        };
        let who = agent.as_deref().unwrap_or("?");
        let reason = format!("agent {who} rejected the task ({code}): {reason}");
        self.finished = true;
        self.hub
            .end_task(&self.task, TaskState::Failed, Status::Error, &reason);
    }

    /// One `TaskEvent`. New events are published to subscribers at once and added to `batch`
    /// (the result also adds the gateway's final `worker:status`).
    pub fn ingest(
        &mut self,
        ev: &v1::TaskEvent,
        batch: &mut Vec<NewEvent>,
    ) -> Result<Ingest, ProtocolError> {
        HubMetrics::inc(&self.hub.metrics.events_received);
        let ring = self.hub.config.load().ring_capacity;
        let mut inner = self.task.lock();
        self.current(&inner)?;
        if inner.phase == Phase::Starting {
            return Err(ProtocolError::EventBeforeAccept);
        }
        if inner.resync {
            inner.resync = false;
            inner.accepted = ev.seq.saturating_sub(1);
            inner.durable = inner.durable.min(inner.accepted);
        }
        if ev.seq <= inner.accepted {
            HubMetrics::inc(&self.hub.metrics.events_duplicate);
            return Ok(Ingest::Duplicate { ack: inner.durable });
        }
        if ev.seq != inner.accepted + 1 {
            return Err(ProtocolError::SeqGap {
                expected: inner.accepted + 1,
                got: ev.seq,
            });
        }
        let Some(body) = &ev.body else {
            return Err(ProtocolError::EmptyEvent(ev.seq));
        };
        if inner.result_seq.is_some_and(|r| ev.seq > r) {
            return Err(ProtocolError::EventAfterResult(ev.seq));
        }
        // A replay (after a resume) of an event already published: store it again, show it
        // once. New events change state.
        let fresh = ev.seq > inner.published;
        inner.accepted = ev.seq;
        let task_id = Arc::clone(&self.task.id);
        match body {
            Body::Output(item) => {
                let built = event::output(&task_id, ev.seq, item);
                inner.publish(Arc::clone(&built.event), ring);
                batch.push(built.stored);
            }
            Body::Progress(p) => {
                let built = event::progress(&task_id, ev.seq, p);
                inner.publish(Arc::clone(&built.event), ring);
                batch.push(built.stored);
            }
            Body::Result(r) => {
                let (state, status) = event::result_outcome(r, inner.stop_requested.is_some());
                let built = event::result(&task_id, ev.seq, r);
                let agent = inner.agent.clone();
                let end = event::status(&task_id, ev.seq + 1, status, agent.as_deref(), None);
                inner.result_seq = Some(ev.seq);
                inner.publish(Arc::clone(&built.event), ring);
                inner.publish(Arc::clone(&end.event), ring);
                batch.push(built.stored);
                batch.push(end.stored);
                if fresh {
                    self.result_fresh(inner, state, r);
                }
                return Ok(Ingest::Accepted { ack: ev.seq });
            }
        }
        Ok(Ingest::Accepted { ack: ev.seq })
    }

    /// The first time a result arrives: the task ends, its slot frees, its subscribers end
    /// after this event.
    fn result_fresh(
        &self,
        mut inner: parking_lot::MutexGuard<'_, TaskInner>,
        state: TaskState,
        r: &v1::TaskResult,
    ) {
        inner.phase = Phase::Finished(state);
        inner.next_seq = inner.next_seq.max(inner.published + 1);
        inner.subs.clear();
        inner.commands = None;
        let slot = inner.slot.take();
        let agent = inner.agent.clone();
        let seq = inner.result_seq.unwrap_or(0);
        drop(inner);
        drop(slot);
        self.hub.metrics.finished(state);
        let result = serde_json::Value::Object(event::result_data(&self.task.id, seq, r));
        self.hub.fire(
            self.hub.persist.write(WriteOp::PatchTask {
                id: self.task.id.to_string(),
                patch: TaskPatch {
                    state,
                    agent_id: None,
                    result: Some(result),
                    version: None,
                },
            }),
            "task result",
        );
        self.hub.slot_freed(agent.as_deref());
    }

    /// True once the event carrying the result was taken in.
    pub fn has_result(&self) -> bool {
        self.task.lock().result_seq.is_some()
    }

    /// Ends the task as failed with `reason` (the agent broke the protocol); the handler sends
    /// `Error` and `TaskStop` to the agent.
    pub fn fail(&mut self, reason: &str) {
        self.finished = true;
        let current = self.task.lock().attach_gen == self.gen;
        if current {
            self.hub
                .end_task(&self.task, TaskState::Failed, Status::Error, reason);
        }
    }

    /// Stores `batch` (events of this task in seq order). Resolves once durable.
    pub fn persist(&self, batch: Vec<NewEvent>) -> Durable {
        self.hub.persist.append(&self.task.id, batch)
    }

    /// A batch acked through `seq` is durable; returns true when the task is over and
    /// everything up to its result is durable (the handler may end the stream).
    pub fn acked(&mut self, seq: u64, events: u64) -> Result<bool, ProtocolError> {
        self.hub
            .metrics
            .events_acked
            .fetch_add(events, std::sync::atomic::Ordering::Relaxed);
        let mut inner = self.task.lock();
        inner.durable = inner.durable.max(seq);
        self.current(&inner)?;
        Ok(inner.result_seq.is_some_and(|r| inner.durable >= r))
    }

    /// The next command for the agent: a stop (once), then input in order. `None` when the
    /// task will send no more (it ended or was handed to another stream); stop polling then.
    pub async fn command(&mut self) -> Option<TaskCommand> {
        loop {
            if !self.stop_sent {
                let stop = self.task.lock().stop_requested.clone();
                if let Some(reason) = stop {
                    self.stop_sent = true;
                    return Some(TaskCommand::Stop { reason });
                }
            }
            if !self.commands_open {
                if self.stop_sent {
                    return std::future::pending().await;
                }
                self.task.stop.notified().await;
                continue;
            }
            tokio::select! {
                c = self.commands.recv() => match c {
                    Some(c) => return Some(c),
                    None => {
                        self.commands_open = false;
                        if self.stop_sent || self.task.lock().is_finished() {
                            return None;
                        }
                    }
                },
                () = self.task.stop.notified(), if !self.stop_sent => {}
            }
        }
    }

    /// The stream ended cleanly (result durable, both sides finished).
    pub fn finish(mut self) {
        self.finished = true;
        let over = {
            let inner = self.task.lock();
            inner.attach_gen == self.gen
                && inner.is_finished()
                && inner.result_seq.is_none_or(|r| inner.durable >= r)
        };
        if over {
            self.hub
                .tasks
                .remove_if(&self.task.id, |_, v| Arc::ptr_eq(v, &self.task));
        }
    }

    /// Counts a protocol error (the handler sends the `Error` frame and drops the attachment,
    /// which orphans the task).
    pub fn protocol_error(&self, e: &ProtocolError) {
        HubMetrics::inc(&self.hub.metrics.protocol_errors);
        tracing::warn!(task = %self.task.id, error = %e, "agent broke the task stream protocol");
    }
}

impl Drop for TaskAttachment {
    fn drop(&mut self) {
        if !self.finished {
            self.hub.stream_lost(&self.task, self.gen);
        }
    }
}

/// Rebuilds the `running` event of a task (a resume before its first ack).
pub(crate) fn running_event(task: &TaskEntry, inner: &TaskInner) -> Built {
    event::status(
        &task.id,
        inner.first_seq,
        Status::Running,
        inner.agent.as_deref(),
        None,
    )
}
