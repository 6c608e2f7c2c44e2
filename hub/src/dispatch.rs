//! Where a task runs: capability filter, balancing among the capable agents with a free slot,
//! and the priority queue for when there is none.
//!
//! 1. **Capability**: an agent can run a task when its `capabilities` list the task's `tool`
//!    and every entry of `requires` (and, when the task names an agent, it is that agent). No
//!    connected capable agent at all → `AGENT_001` at once.
//! 2. **Balancing** among capable agents with a free slot (running tasks < `max_tasks`), with
//!    the `orchestra-lb` strategy of `[agents] dispatch` over the agents' own one-target pools'
//!    statistics: `peak_ewma` compares two random candidates by RTT estimate × (running + 1)
//!    (RTTs below [`RTT_FLOOR`](crate::agent::RTT_FLOOR) count as the floor, so on a LAN the
//!    load decides); `resource_based` draws by spare CPU and memory from heartbeats. At most
//!    [`MAX_CANDIDATES`] randomly drawn candidates are handed to the strategy, so a pick stays
//!    cheap with thousands of agents.
//! 3. **Queue**: capable agents exist but none has a free slot → the task waits, highest
//!    `priority` first, FIFO within a priority, at most `max_queued`. Whenever an agent gains
//!    a free slot (a task ended, an agent connected) the queue is scanned in that order for the
//!    tasks this agent can run.
//!
//! Every decision happens under the hub's dispatch lock, so a slot is never promised twice and
//! a queued task never loses its place to a later one.

use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::sync::Arc;

use orchestra_backend::model::{NewTask, TaskPatch, TaskState, WriteOp};
use orchestra_lb::{build_on, PickContext, Pool, Target};
use orchestra_proto::v1;

use crate::agent::{command_channel, AgentEntry, TaskStart};
use crate::attachment::TaskAttachment;
use crate::error::HubError;
use crate::event::{self, Status};
use crate::hub::{Hub, HubInner, HubMetrics};
use crate::task::{Phase, StartTask, TaskEntry};

/// Most candidates a pick considers (drawn at random when there are more).
pub const MAX_CANDIDATES: usize = 64;
/// Longest accepted prompt, bytes.
pub const MAX_PROMPT: usize = 1024 * 1024;
/// Longest accepted tool, capability, session or owner string, bytes.
pub const MAX_NAME: usize = 256;

/// The answer to [`Hub::start_task`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Started {
    /// The new task's id.
    pub task_id: String,
    /// The agent it was sent to (`None` while queued).
    pub agent_id: Option<String>,
    /// `Starting` or `Queued`.
    pub status: Status,
}

/// Tasks waiting for a slot, in start order: highest priority first, then arrival.
#[derive(Debug, Default)]
pub(crate) struct Queue {
    waiting: BTreeMap<(Reverse<i32>, u64), Arc<TaskEntry>>,
    next_no: u64,
}

impl Queue {
    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    fn push(&mut self, task: Arc<TaskEntry>) {
        self.next_no += 1;
        self.waiting
            .insert((Reverse(task.spec.priority), self.next_no), task);
    }

    /// Removes `task` (a stop while queued); true when it was queued.
    pub fn remove(&mut self, task: &Arc<TaskEntry>) -> bool {
        let key = self
            .waiting
            .iter()
            .find(|(_, t)| Arc::ptr_eq(t, task))
            .map(|(k, _)| *k);
        key.is_some_and(|k| self.waiting.remove(&k).is_some())
    }
}

enum Choice {
    NoCapable,
    Busy,
    Agent(Arc<AgentEntry>),
}

fn validate(req: &StartTask) -> Result<(), HubError> {
    let bad = |field, reason: &str| {
        Err(HubError::BadRequest {
            field,
            reason: reason.to_string(),
        })
    };
    if req.tool.is_empty() || req.tool.len() > MAX_NAME {
        return bad("tool", "must be 1-256 bytes");
    }
    if req.prompt.len() > MAX_PROMPT {
        return bad("prompt", "longer than 1 MiB");
    }
    if req.session_id.len() > MAX_NAME || req.owner.len() > MAX_NAME {
        return bad("session_id", "longer than 256 bytes");
    }
    if req.requires.len() > 64 || req.requires.iter().any(|r| r.len() > MAX_NAME) {
        return bad("requires", "at most 64 capabilities of at most 256 bytes");
    }
    if req.cwd.as_ref().is_some_and(|c| c.len() > 4096) {
        return bad("cwd", "longer than 4096 bytes");
    }
    if req.agent_id.as_ref().is_some_and(|a| a.len() > MAX_NAME) {
        return bad("agent_id", "longer than 256 bytes");
    }
    Ok(())
}

impl Hub {
    /// Starts a task: sends it to a capable agent with a free slot, or queues it.
    ///
    /// Never waits on the backend: the task is created there (and its `worker:status` event
    /// appended) through ordered writes. Errors: `AGENT_001` when no connected agent can run
    /// it (or the named agent is not connected), or when the queue is full; `PARAM_001` for a
    /// malformed request.
    pub fn start_task(&self, req: StartTask) -> Result<Started, HubError> {
        validate(&req)?;
        let hub = &self.inner;
        let mut queue = hub.queue.lock();
        let choice = hub.choose(&req);
        if let Choice::NoCapable = choice {
            return Err(match req.agent_id {
                Some(id) => HubError::AgentUnavailable(id),
                None => HubError::NoCapableAgent {
                    tool: req.tool,
                    requires: req.requires,
                },
            });
        }
        let max_queued = hub.config.load().max_queued;
        if matches!(choice, Choice::Busy) && queue.len() >= max_queued {
            return Err(HubError::QueueFull(queue.len()));
        }
        let id: Arc<str> = Arc::from(crate::new_id());
        let task = Arc::new(TaskEntry::new(Arc::clone(&id), req));
        hub.fire(
            hub.persist.write(WriteOp::CreateTask(NewTask {
                id: Some(id.to_string()),
                session_id: task.spec.session_id.clone(),
                tool: task.spec.tool.clone(),
                prompt: task.spec.prompt.clone(),
                cwd: task.spec.cwd.clone(),
                requires: task.spec.requires.clone(),
                priority: task.spec.priority,
                agent_id: task.spec.agent_id.clone(),
            })),
            "create task",
        );
        hub.tasks.insert(Arc::clone(&id), Arc::clone(&task));
        HubMetrics::inc(&hub.metrics.tasks_started);
        let started = match choice {
            Choice::Agent(agent) => {
                hub.assign(&task, &agent);
                Started {
                    task_id: id.to_string(),
                    agent_id: Some(agent.id().to_string()),
                    status: Status::Starting,
                }
            }
            _ => {
                let built = {
                    let mut inner = task.lock();
                    let seq = inner.take_gateway_seq();
                    let built = event::status(&task.id, seq, Status::Queued, None, None);
                    inner.publish(Arc::clone(&built.event), hub.config.load().ring_capacity);
                    built
                };
                hub.fire(hub.persist.append(&id, vec![built.stored]), "queued event");
                queue.push(Arc::clone(&task));
                Started {
                    task_id: id.to_string(),
                    agent_id: None,
                    status: Status::Queued,
                }
            }
        };
        Ok(started)
    }
}

impl HubInner {
    fn choose(&self, req: &StartTask) -> Choice {
        let mut capable = false;
        let mut free: Vec<Arc<AgentEntry>> = Vec::new();
        match &req.agent_id {
            Some(id) => {
                if let Some(a) = self.agents.get(id.as_str()) {
                    if a.can_run(&req.tool, &req.requires) {
                        capable = true;
                        if a.has_free_slot() {
                            free.push(Arc::clone(a.value()));
                        }
                    }
                }
            }
            None => {
                for a in self.agents.iter() {
                    if a.can_run(&req.tool, &req.requires) {
                        capable = true;
                        if a.has_free_slot() {
                            free.push(Arc::clone(a.value()));
                        }
                    }
                }
            }
        }
        if free.is_empty() {
            return if capable {
                Choice::Busy
            } else {
                Choice::NoCapable
            };
        }
        Choice::Agent(self.pick(free))
    }

    /// Picks among `free` (non-empty) with the configured strategy.
    fn pick(&self, mut free: Vec<Arc<AgentEntry>>) -> Arc<AgentEntry> {
        if free.len() > MAX_CANDIDATES {
            // Partial Fisher-Yates: a uniform random subset in the first MAX_CANDIDATES.
            for i in 0..MAX_CANDIDATES {
                let j = fastrand::usize(i..free.len());
                free.swap(i, j);
            }
            free.truncate(MAX_CANDIDATES);
        }
        if free.len() == 1 {
            return Arc::clone(&free[0]);
        }
        let targets: Vec<Target> = free
            .iter()
            .map(|a| Target {
                addr: a.hello.peer,
                weight: 1,
                stats: Arc::clone(a.stats()),
            })
            .collect();
        let pool = Pool::new(
            targets,
            Arc::clone(&self.lb_params.clock),
            self.lb_params.peak_ewma,
            self.lb_params.outlier,
        );
        let strategy = self.config.load().dispatch;
        let idx = build_on(strategy, pool)
            .pick(&PickContext::default())
            .unwrap_or(0);
        Arc::clone(&free[idx.min(free.len() - 1)])
    }

    /// Sends `task` to `agent` (dispatch lock held): takes a slot, numbers the `starting`
    /// event, and hands the assignment to the agent's link.
    pub(crate) fn assign(self: &Arc<Self>, task: &Arc<TaskEntry>, agent: &Arc<AgentEntry>) {
        let (tx, rx) = command_channel();
        let slot = agent.take_slot();
        let ring = self.config.load().ring_capacity;
        let (built, first_seq, gen) = {
            let mut inner = task.lock();
            let seq = inner.take_gateway_seq();
            let built = event::status(&task.id, seq, Status::Starting, Some(agent.id()), None);
            inner.publish(Arc::clone(&built.event), ring);
            inner.first_seq = inner.next_seq;
            inner.accepted = inner.first_seq - 1;
            inner.durable = inner.first_seq - 1;
            inner.phase = Phase::Starting;
            inner.agent = Some(Arc::from(agent.id()));
            inner.conn_gen = agent.conn_gen;
            inner.attach_gen += 1;
            inner.commands = Some(tx);
            inner.slot = slot;
            (built, inner.first_seq, inner.attach_gen)
        };
        self.fire(
            self.persist.write(WriteOp::PatchTask {
                id: task.id.to_string(),
                patch: TaskPatch {
                    state: TaskState::Assigned,
                    agent_id: Some(agent.id().to_string()),
                    result: None,
                    version: None,
                },
            }),
            "assign task",
        );
        self.fire(
            self.persist.append(&task.id, vec![built.stored]),
            "starting event",
        );
        let assign = v1::TaskAssign {
            task_id: task.id.to_string(),
            tool: task.spec.tool.clone(),
            prompt: task.spec.prompt.clone(),
            cwd: task.spec.cwd.clone().unwrap_or_default(),
            resume_session_id: String::new(),
            first_seq,
            env: Default::default(),
        };
        let attachment = TaskAttachment::new(Arc::clone(self), Arc::clone(task), gen, rx, false);
        agent.link.assign(TaskStart { assign, attachment });
        self.emit(crate::agent::AgentEvent::Updated(agent.info()));
    }

    /// Starts queued tasks `agent` can run while it has free slots.
    pub(crate) fn drain_for(self: &Arc<Self>, agent: &Arc<AgentEntry>) {
        let mut queue = self.queue.lock();
        if queue.waiting.is_empty() {
            return;
        }
        // The entry may have been replaced or removed meanwhile.
        let current = self
            .agents
            .get(agent.id())
            .is_some_and(|a| Arc::ptr_eq(a.value(), agent));
        if !current {
            return;
        }
        let mut started = Vec::new();
        for (key, task) in queue.waiting.iter() {
            if !agent.has_free_slot() {
                break;
            }
            let named_other = task
                .spec
                .agent_id
                .as_ref()
                .is_some_and(|id| id != agent.id());
            if named_other || !agent.can_run(&task.spec.tool, &task.spec.requires) {
                continue;
            }
            self.assign(task, agent);
            started.push(*key);
        }
        for key in started {
            queue.waiting.remove(&key);
        }
    }

    /// After a slot freed on `agent_id`'s current connection.
    pub(crate) fn slot_freed(self: &Arc<Self>, agent_id: Option<&str>) {
        let Some(id) = agent_id else { return };
        let agent = self.agents.get(id).map(|a| Arc::clone(a.value()));
        if let Some(agent) = agent {
            self.emit(crate::agent::AgentEvent::Updated(agent.info()));
            self.drain_for(&agent);
        }
    }
}
