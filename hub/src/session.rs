//! An agent connection's life in the hub, and what happens to tasks when connections come and go
//! (DELIVERY 8).
//!
//! - [`Hub::connect`] registers an authenticated agent. An older connection with the same id is
//!   closed (`AGENT_001`, "replaced"). Tasks the hub has on that agent are kept for resumption
//!   when the agent lists them in `Register.running_tasks`, and fail at once otherwise (the agent
//!   restarted without them). Then queued tasks it can run start on it.
//! - [`AgentSession::resume`] answers a `TaskResume` stream: the task is attached to the new
//!   stream and the agent is told the highest seq stored durably, so it resends the rest; or it
//!   is told to stop (the task is over, or not its own). A task unknown in memory (the gateway
//!   restarted) is adopted from the backend when it is still running there on this agent.
//! - When a task's stream or its connection breaks, the task is *orphaned*: it stays `running`
//!   in the backend and waits `reconnect_grace` for a resume, then fails with a reason that names
//!   the agent and the grace period.

use std::sync::Arc;
use std::time::Duration;

use orchestra_backend::model::{AgentUpsert, TaskPatch, TaskState, WriteOp};
use orchestra_proto::v1;

use crate::agent::{command_channel, AgentEntry, AgentEvent, AgentHello, AgentLink};
use crate::attachment::{running_event, TaskAttachment};
use crate::error::HubError;
use crate::event::{self, Status};
use crate::hub::{Hub, HubInner, HubMetrics};
use crate::task::{Phase, StartTask, TaskCommand, TaskEntry};

/// An agent's registered connection. Dropping it (or [`AgentSession::close`]) unregisters the
/// agent, unless a newer connection replaced it already.
pub struct AgentSession {
    hub: Arc<HubInner>,
    entry: Arc<AgentEntry>,
    closed: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for AgentSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentSession")
            .field("agent", &self.entry)
            .finish()
    }
}

/// The answer to a `TaskResume`.
#[derive(Debug)]
pub enum Resume {
    /// Send `OutputAck { seq: ack }`, then run the stream with `attachment`.
    Attached {
        /// Highest seq stored durably (the agent resends everything above).
        ack: u64,
        /// The hub side of the stream.
        attachment: TaskAttachment,
    },
    /// Send `TaskStop { reason }` and end the stream.
    Stop {
        /// Why (the task is over, unknown, or another agent's).
        reason: String,
    },
}

impl Hub {
    /// Registers an authenticated agent connection (see the module doc).
    pub fn connect(&self, hello: AgentHello, link: Arc<dyn AgentLink>) -> AgentSession {
        let hub = &self.inner;
        let gen = hub
            .next_conn_gen
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let entry = Arc::new(AgentEntry::new(hello, gen, link, &hub.lb_params));
        let id: Arc<str> = Arc::from(entry.id());
        if let Some(old) = hub.agents.insert(Arc::clone(&id), Arc::clone(&entry)) {
            HubMetrics::inc(&hub.metrics.replaced);
            old.link.close(
                "AGENT_001",
                &format!(
                    "replaced by a newer connection of agent {} from {}",
                    entry.id(),
                    entry.hello.peer
                ),
            );
        }
        HubMetrics::inc(&hub.metrics.connects);
        hub.adopt_running(&entry);
        hub.fire(
            hub.persist.write(agent_upsert(&entry, "online")),
            "agent online",
        );
        tracing::info!(
            agent = entry.id(),
            peer = %entry.hello.peer,
            transport = entry.hello.transport.as_str(),
            connection = entry.connection_id(),
            "agent connected"
        );
        hub.emit(AgentEvent::Connected(entry.info()));
        hub.drain_for(&entry);
        AgentSession {
            hub: Arc::clone(hub),
            entry,
            closed: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Closes the connection of `agent_id`, if connected (its key was removed on reload).
    pub fn disconnect_agent(&self, agent_id: &str, code: &'static str, reason: &str) -> bool {
        let entry = self
            .inner
            .agents
            .get(agent_id)
            .map(|e| Arc::clone(e.value()));
        match entry {
            Some(e) => {
                e.link.close(code, reason);
                true
            }
            None => false,
        }
    }

    /// Sends `data` to the task's stdin (`close`: then close stdin).
    pub fn input(&self, task_id: &str, data: bytes::Bytes, close: bool) -> Result<(), HubError> {
        let task = self.inner.live_task(task_id)?;
        let inner = task.lock();
        match inner.phase {
            Phase::Finished(_) => Err(HubError::TaskEnded(task_id.to_string())),
            Phase::Queued => Err(HubError::BadRequest {
                field: "task_id",
                reason: "the task is queued; input can be sent once it runs".into(),
            }),
            Phase::Orphaned => Err(HubError::Reconnecting(task_id.to_string())),
            _ => match &inner.commands {
                Some(tx) => tx
                    .try_send(TaskCommand::Input { data, close })
                    .map_err(|_| HubError::InputBusy(task_id.to_string())),
                None => Err(HubError::Reconnecting(task_id.to_string())),
            },
        }
    }

    /// Stops a task: a queued task is removed from the queue, an orphaned one ends at once, a
    /// running one gets `TaskStop` (its result then says stopped).
    pub fn stop(&self, task_id: &str) -> Result<(), HubError> {
        let hub = &self.inner;
        let task = hub.live_task(task_id)?;
        let reason = "stopped by its user";
        let mut queue = hub.queue.lock();
        let phase = task.lock().phase;
        match phase {
            Phase::Finished(_) => Err(HubError::TaskEnded(task_id.to_string())),
            Phase::Queued => {
                queue.remove(&task);
                drop(queue);
                hub.end_task(&task, TaskState::Cancelled, Status::Stopped, reason);
                Ok(())
            }
            Phase::Orphaned => {
                drop(queue);
                {
                    task.lock().stop_requested = Some(reason.to_string());
                }
                hub.end_task(&task, TaskState::Cancelled, Status::Stopped, reason);
                Ok(())
            }
            Phase::Starting | Phase::Running => {
                drop(queue);
                task.lock().stop_requested = Some(reason.to_string());
                task.stop.notify_one();
                Ok(())
            }
        }
    }
}

impl AgentSession {
    /// The agent id.
    pub fn agent_id(&self) -> &str {
        self.entry.id()
    }

    /// The id of this connection (sent in `Registered`).
    pub fn connection_id(&self) -> &str {
        self.entry.connection_id()
    }

    /// A heartbeat arrived.
    pub fn heartbeat(&self, hb: &v1::Heartbeat) {
        self.entry.heartbeat(hb);
        if !self.entry.set_healthy(true) {
            self.hub.emit(AgentEvent::Updated(self.entry.info()));
        }
    }

    /// A heartbeat is overdue: dispatch avoids the agent until the next one.
    pub fn late(&self) {
        if self.entry.set_healthy(false) {
            self.hub.emit(AgentEvent::Updated(self.entry.info()));
        }
    }

    /// A ping round trip.
    pub fn rtt(&self, rtt: Duration) {
        self.entry.rtt(rtt);
    }

    /// Answers a `TaskResume { task_id, last_seq }` on this connection.
    pub async fn resume(&self, task_id: &str, last_seq: u64) -> Resume {
        let existing = self.hub.tasks.get(task_id).map(|t| Arc::clone(t.value()));
        let task = match existing {
            Some(t) => t,
            None => match self.adopt(task_id).await {
                Ok(t) => t,
                Err(reason) => return Resume::Stop { reason },
            },
        };
        let hub = &self.hub;
        let ring = hub.config.load().ring_capacity;
        let (tx, rx) = command_channel();
        let mut replay = None;
        let (ack, gen, stop_sent) = {
            let mut inner = task.lock();
            if inner.agent.as_deref() != Some(self.entry.id()) {
                return Resume::Stop {
                    reason: format!("task {task_id} is not assigned to this agent"),
                };
            }
            let durable_result = inner.result_seq.is_none_or(|r| inner.durable >= r);
            match inner.phase {
                Phase::Finished(state) if durable_result => {
                    return Resume::Stop {
                        reason: format!("task {task_id} is over ({})", state.as_str()),
                    };
                }
                Phase::Queued => {
                    return Resume::Stop {
                        reason: format!("task {task_id} was never started"),
                    };
                }
                Phase::Starting => {
                    // Accepted by the agent, but its TaskAccepted never arrived: the running
                    // event is the gateway's to make.
                    inner.accepted = inner.first_seq;
                    let built = running_event(&task, &inner);
                    inner.publish(Arc::clone(&built.event), ring);
                    replay = Some(built.stored);
                    inner.phase = Phase::Running;
                }
                Phase::Orphaned | Phase::Running => {
                    if inner.durable < inner.first_seq {
                        replay = Some(running_event(&task, &inner).stored);
                    }
                    inner.phase = Phase::Running;
                }
                Phase::Finished(_) => {}
            }
            if !inner.resync {
                inner.accepted = inner.durable.max(inner.first_seq);
            }
            inner.conn_gen = self.entry.conn_gen;
            inner.attach_gen += 1;
            if !inner.is_finished() {
                inner.commands = Some(tx);
                if inner.slot.is_none() {
                    inner.slot = self.entry.take_slot();
                }
            }
            (inner.accepted, inner.attach_gen, false)
        };
        if let Some(stored) = replay {
            hub.fire(hub.persist.append(&task.id, vec![stored]), "running event");
        }
        tracing::info!(
            agent = self.entry.id(),
            task = task_id,
            last_seq,
            ack,
            "task resumed"
        );
        Resume::Attached {
            ack,
            attachment: TaskAttachment::new(Arc::clone(hub), task, gen, rx, stop_sent),
        }
    }

    /// A task this hub does not hold: adopt it from the backend if it still runs there on
    /// this agent (the gateway restarted), else tell the agent to stop it.
    async fn adopt(&self, task_id: &str) -> Result<Arc<TaskEntry>, String> {
        let stored = match self.hub.persist.task(task_id).await {
            Ok(Some(t)) => t,
            Ok(None) => return Err(format!("unknown task {task_id}")),
            Err(e) => return Err(format!("task {task_id} cannot be looked up: {e}")),
        };
        if stored.state.is_terminal() {
            return Err(format!(
                "task {task_id} is over ({})",
                stored.state.as_str()
            ));
        }
        if stored.agent_id.as_deref() != Some(self.entry.id()) {
            return Err(format!("task {task_id} is not assigned to this agent"));
        }
        let id: Arc<str> = Arc::from(task_id);
        let entry = Arc::new(TaskEntry::new(
            Arc::clone(&id),
            StartTask {
                owner: String::new(),
                session_id: stored.session_id,
                tool: stored.tool,
                prompt: stored.prompt,
                agent_id: stored.agent_id,
                requires: stored.requires,
                cwd: stored.cwd,
                priority: stored.priority,
            },
        ));
        {
            let mut inner = entry.lock();
            inner.phase = Phase::Orphaned;
            inner.agent = Some(Arc::from(self.entry.id()));
            inner.first_seq = 1;
            inner.resync = true;
        }
        let task = self
            .hub
            .tasks
            .entry(id)
            .or_insert_with(|| Arc::clone(&entry))
            .clone();
        tracing::info!(
            task = task_id,
            agent = self.entry.id(),
            "task adopted from the backend"
        );
        Ok(task)
    }

    /// Ends the session now, logging `reason` (later calls and the drop do nothing).
    pub fn close(&self, reason: &str) {
        if !self.closed.swap(true, std::sync::atomic::Ordering::AcqRel) {
            self.hub.disconnect(&self.entry, reason);
        }
    }
}

impl Drop for AgentSession {
    fn drop(&mut self) {
        self.close("connection ended");
    }
}

fn agent_upsert(entry: &AgentEntry, status: &str) -> WriteOp {
    let info = entry.info();
    WriteOp::UpsertAgent {
        id: entry.id().to_string(),
        agent: AgentUpsert {
            name: info.name.clone(),
            capabilities: info.capabilities.clone(),
            metadata: serde_json::json!({
                "version": info.version,
                "metadata": info.metadata,
                "system": info.system,
                "max_tasks": info.max_tasks,
                "transport": info.transport,
                "peer": info.peer,
            }),
            status: status.to_string(),
            last_seen: crate::unix_ms(std::time::SystemTime::now()) as i64,
        },
    }
}

impl HubInner {
    pub(crate) fn live_task(&self, id: &str) -> Result<Arc<TaskEntry>, HubError> {
        self.tasks
            .get(id)
            .map(|t| Arc::clone(t.value()))
            .ok_or_else(|| HubError::UnknownTask(id.to_string()))
    }

    /// Tasks of `entry`'s agent: keep those it re-announced (their slots move to this
    /// connection), fail the others.
    fn adopt_running(self: &Arc<Self>, entry: &Arc<AgentEntry>) {
        let mine: Vec<Arc<TaskEntry>> = self
            .tasks
            .iter()
            .filter(|t| t.lock().agent.as_deref() == Some(entry.id()))
            .map(|t| Arc::clone(t.value()))
            .collect();
        for task in mine {
            let listed = entry.hello.running_tasks.iter().any(|t| *t == *task.id);
            let mut inner = task.lock();
            match inner.phase {
                Phase::Starting | Phase::Running | Phase::Orphaned if listed => {
                    inner.slot = entry.take_slot();
                }
                Phase::Starting | Phase::Running | Phase::Orphaned => {
                    drop(inner);
                    let reason = format!(
                        "agent {} reconnected without the task (it was restarted?)",
                        entry.id()
                    );
                    self.end_task(&task, TaskState::Failed, Status::Error, &reason);
                }
                _ => {}
            }
        }
    }

    /// The connection of `entry` ended.
    pub(crate) fn disconnect(self: &Arc<Self>, entry: &Arc<AgentEntry>, reason: &str) {
        let removed = self
            .agents
            .remove_if(entry.id(), |_, v| Arc::ptr_eq(v, entry))
            .is_some();
        let mine: Vec<Arc<TaskEntry>> = self
            .tasks
            .iter()
            .filter(|t| t.lock().conn_gen == entry.conn_gen)
            .map(|t| Arc::clone(t.value()))
            .collect();
        for task in mine {
            let gen = task.lock().attach_gen;
            self.stream_lost(&task, gen);
        }
        HubMetrics::inc(&self.metrics.disconnects);
        if removed {
            self.fire(
                self.persist.write(agent_upsert(entry, "offline")),
                "agent offline",
            );
            self.emit(AgentEvent::Disconnected {
                id: entry.id().to_string(),
                reason: reason.to_string(),
            });
        }
        tracing::info!(
            agent = entry.id(),
            connection = entry.connection_id(),
            reason,
            "agent disconnected"
        );
    }

    /// The stream of generation `gen` of `task` is gone: orphan the task (grace timer).
    pub(crate) fn stream_lost(self: &Arc<Self>, task: &Arc<TaskEntry>, gen: u64) {
        let (orphan_no, agent) = {
            let mut inner = task.lock();
            if inner.attach_gen != gen {
                return;
            }
            match inner.phase {
                Phase::Starting | Phase::Running => inner.phase = Phase::Orphaned,
                Phase::Finished(_) if inner.result_seq.is_some_and(|r| inner.durable < r) => {}
                _ => return,
            }
            inner.attach_gen += 1;
            inner.commands = None;
            inner.orphan_no += 1;
            (inner.orphan_no, inner.agent.clone())
        };
        let grace = self.config.load().reconnect_grace;
        let hub = Arc::downgrade(self);
        let task = Arc::clone(task);
        if tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            if let Some(hub) = hub.upgrade() {
                hub.grace_over(&task, orphan_no, agent.as_deref().unwrap_or("?"), grace);
            }
        });
    }

    fn grace_over(
        self: &Arc<Self>,
        task: &Arc<TaskEntry>,
        orphan_no: u64,
        agent: &str,
        grace: Duration,
    ) {
        let phase = {
            let inner = task.lock();
            if inner.orphan_no != orphan_no {
                return;
            }
            inner.phase
        };
        match phase {
            Phase::Orphaned => {
                HubMetrics::inc(&self.metrics.grace_expired);
                let reason = format!(
                    "agent {agent} did not come back within {} s ([agents] reconnect_grace)",
                    grace.as_secs()
                );
                self.end_task(task, TaskState::Failed, Status::Error, &reason);
            }
            Phase::Finished(_) => {
                // The result was never durably stored and the agent never resent it.
                tracing::warn!(task = %task.id, agent, "task ended but its result was not stored: the agent did not come back");
                self.tasks.remove_if(&task.id, |_, v| Arc::ptr_eq(v, task));
            }
            _ => {}
        }
    }

    /// Ends `task` with a gateway-made final `worker:status` (rejected, stopped while queued or
    /// orphaned, agent gone for good).
    pub(crate) fn end_task(
        self: &Arc<Self>,
        task: &Arc<TaskEntry>,
        state: TaskState,
        status: Status,
        reason: &str,
    ) {
        let ring = self.config.load().ring_capacity;
        let (built, agent, slot) = {
            let mut inner = task.lock();
            if inner.is_finished() {
                return;
            }
            let seq = inner.take_gateway_seq();
            let built = event::status(&task.id, seq, status, inner.agent.as_deref(), Some(reason));
            inner.publish(Arc::clone(&built.event), ring);
            inner.phase = Phase::Finished(state);
            inner.result_seq = None;
            inner.subs.clear();
            inner.commands = None;
            inner.attach_gen += 1;
            (built, inner.agent.clone(), inner.slot.take())
        };
        drop(slot);
        self.metrics.finished(state);
        tracing::info!(task = %task.id, state = state.as_str(), reason, "task ended by the gateway");
        self.fire(
            self.persist.write(WriteOp::PatchTask {
                id: task.id.to_string(),
                patch: TaskPatch {
                    state,
                    agent_id: None,
                    result: Some(serde_json::json!({"status": status.as_str(), "error": reason})),
                    version: None,
                },
            }),
            "task ended",
        );
        let durable = self.persist.append(&task.id, vec![built.stored]);
        self.remove_when_durable(Arc::clone(task), durable);
        self.slot_freed(agent.as_deref());
    }
}
