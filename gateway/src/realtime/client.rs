//! One realtime client (a `/ws` connection or an SSE stream), whatever its wire: who it is,
//! what it is subscribed to, and what each client message does. The fronts' adapters
//! ([`super::ws`], [`super::sse`]) feed it parsed messages and drain its [`Outbox`].
//!
//! **Ownership.** A user sees and controls only their own sessions and tasks: a session is the
//! user's when the backend stores it with their `sub` as owner (sessions are created by
//! `session:join` without an id); a task is the user's when the hub's live task says so, or —
//! for a task the hub no longer holds — when its session is the user's. Anything else is
//! `AUTH_001`; an unknown id is `PARAM_001`. Checked ids are remembered for the connection.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;
use orchestra_backend::model::{NewSession, WriteOp};
use orchestra_hub::{AgentEvent, HubError, StartTask};
use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;

use super::fanout::{forward, Outbox};
use super::protocol::{self, Op, Reply, Request, SessionJoin, WorkerInput, WorkerStart};
use super::RealtimeService;

/// Tasks of a session read from the backend on `session:join`, at most.
pub const SESSION_TASKS: u32 = 1000;
/// New-task notices of joined sessions waiting for the client's loop.
const NOTICES: usize = 256;

/// A refusal: `error` with this code and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// `AUTH_001`, `PARAM_001`, `AGENT_001`, `SYS_001`.
    pub code: &'static str,
    /// For the client.
    pub message: String,
}

impl Refusal {
    fn new(code: &'static str, message: impl Into<String>) -> Refusal {
        Refusal {
            code,
            message: message.into(),
        }
    }

    fn reply(&self, id: Option<&Value>) -> Reply {
        protocol::error(self.code, &self.message, id, None)
    }
}

impl From<HubError> for Refusal {
    fn from(e: HubError) -> Refusal {
        Refusal::new(e.code(), e.to_string())
    }
}

struct TaskSub {
    session: Option<String>,
    handle: JoinHandle<()>,
}

/// One client's state. Dropping it ends its subscriptions.
pub struct Client {
    svc: Arc<RealtimeService>,
    user: Arc<str>,
    outbox: Outbox,
    max_message: usize,
    tasks: HashMap<String, TaskSub>,
    sessions: HashMap<String, JoinHandle<()>>,
    owned_sessions: HashSet<String>,
    owned_tasks: HashSet<String>,
    agent_watch: Option<JoinHandle<()>>,
    notices_tx: mpsc::Sender<(String, String)>,
    notices: mpsc::Receiver<(String, String)>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("user", &self.user)
            .field("tasks", &self.tasks.len())
            .finish()
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        for (_, t) in self.tasks.drain() {
            t.handle.abort();
        }
        for (_, h) in self.sessions.drain() {
            h.abort();
        }
        if let Some(h) = self.agent_watch.take() {
            h.abort();
        }
    }
}

impl Client {
    /// A client of `user` writing to `outbox`; messages above `max_message` bytes are refused.
    pub fn new(
        svc: Arc<RealtimeService>,
        user: Arc<str>,
        outbox: Outbox,
        max_message: usize,
    ) -> Client {
        let (notices_tx, notices) = mpsc::channel(NOTICES);
        Client {
            svc,
            user,
            outbox,
            max_message,
            tasks: HashMap::new(),
            sessions: HashMap::new(),
            owned_sessions: HashSet::new(),
            owned_tasks: HashSet::new(),
            agent_watch: None,
            notices_tx,
            notices,
        }
    }

    /// The user.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The queue this client's replies and events go to.
    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    /// The next task started in a joined session (by any connection of the user); pass it to
    /// [`Client::on_new_task`]. Pending forever when no session is joined.
    pub async fn next_notice(&mut self) -> (String, String) {
        match self.notices.recv().await {
            Some(n) => n,
            // The client holds a sender itself, so the channel never closes.
            None => std::future::pending().await,
        }
    }

    /// A task started in joined session `session`: subscribe to it from its start.
    pub async fn on_new_task(&mut self, session: String, task: String) {
        if self.tasks.contains_key(&task) || !self.sessions.contains_key(&session) {
            return;
        }
        self.owned_tasks.insert(task.clone());
        if let Err(r) = self.subscribe(&task, 0, Some(session)).await {
            self.outbox.message(r.reply(None));
        }
    }

    /// Handles one message (its text); replies and errors go to the outbox.
    pub async fn handle(&mut self, text: &[u8]) {
        let max = self.max_message;
        if text.len() > max {
            self.outbox.message(protocol::error(
                "PARAM_001",
                &format!(
                    "message of {} bytes exceeds {max} bytes ([realtime] max_message)",
                    text.len()
                ),
                None,
                None,
            ));
            return;
        }
        match protocol::parse(text) {
            Ok(req) => self.request(req).await,
            Err(bad) => {
                self.outbox.message(protocol::error(
                    "PARAM_001",
                    &bad.message,
                    bad.id.as_ref(),
                    None,
                ));
            }
        }
    }

    /// Serves a parsed message.
    pub async fn request(&mut self, req: Request) {
        let id = req.id;
        let result = match req.op {
            Op::SessionJoin(j) => self.join(j, id.as_ref()).await,
            Op::SessionLeave { session_id } => {
                self.leave(&session_id);
                Ok(None)
            }
            Op::AgentsList => {
                self.watch_agents();
                Ok(Some(agents_updated(&self.svc, id.as_ref())))
            }
            Op::WorkerStart(w) => self.start(w, id.as_ref()).await,
            Op::WorkerInput(i) => self.input(i).await,
            Op::WorkerStop { task_id } => self.stop(&task_id).await,
            Op::TaskSubscribe { task_id, since } => self.task_subscribe(&task_id, since).await,
        };
        let reply = match result {
            Ok(Some(reply)) => reply,
            Ok(None) => return,
            Err(r) => r.reply(id.as_ref()),
        };
        self.outbox.message(reply);
    }

    /// `session:join`: a new session (owned by the user) or an owned one; then its tasks.
    pub async fn join(
        &mut self,
        j: SessionJoin,
        id: Option<&Value>,
    ) -> Result<Option<Reply>, Refusal> {
        let session_id = match j.session_id {
            Some(s) => {
                self.check_session(&s).await?;
                s
            }
            None => self.create_session().await?,
        };
        if !self.sessions.contains_key(&session_id) {
            let rx = self.svc.session_notices(&session_id);
            let tx = self.notices_tx.clone();
            let handle = tokio::spawn(relay_notices(session_id.clone(), rx, tx));
            self.sessions.insert(session_id.clone(), handle);
        }
        self.outbox.message(Reply::new(
            "session:joined",
            id,
            json!({ "session_id": &session_id }),
        ));
        for task in self.session_tasks(&session_id).await? {
            if self.tasks.contains_key(&task) {
                continue;
            }
            self.owned_tasks.insert(task.clone());
            let since = j.since.get(&task).copied().unwrap_or(0);
            if let Err(r) = self.subscribe(&task, since, Some(session_id.clone())).await {
                self.outbox.message(r.reply(id));
            }
        }
        Ok(None)
    }

    async fn create_session(&mut self) -> Result<String, Refusal> {
        let id = orchestra_hub::new_id();
        let durable = self.svc.backend().write(WriteOp::CreateSession(NewSession {
            id: Some(id.clone()),
            owner: self.user.to_string(),
        }));
        durable
            .await
            .map_err(|e| Refusal::new("SYS_001", format!("cannot create a session: {e}")))?;
        self.owned_sessions.insert(id.clone());
        Ok(id)
    }

    /// The session's tasks, oldest first: live ones from the hub, ended ones from the backend.
    async fn session_tasks(&self, session_id: &str) -> Result<Vec<String>, Refusal> {
        let mut live: Vec<(u64, String)> = self
            .svc
            .hub()
            .tasks()
            .into_iter()
            .filter(|t| t.session_id == session_id)
            .map(|t| (t.created_at_ms, t.id))
            .collect();
        let stored = self
            .svc
            .backend()
            .session_tasks(session_id, SESSION_TASKS)
            .await
            .map_err(|e| {
                Refusal::new("SYS_001", format!("cannot list the session's tasks: {e}"))
            })?;
        for t in stored {
            if !live.iter().any(|(_, id)| *id == t.id) {
                live.push((t.created_at.max(0) as u64, t.id));
            }
        }
        // Task ids are UUID v7: their order is their creation order.
        live.sort_by(|a, b| a.1.cmp(&b.1));
        Ok(live.into_iter().map(|(_, id)| id).collect())
    }

    fn leave(&mut self, session_id: &str) {
        if let Some(h) = self.sessions.remove(session_id) {
            h.abort();
        }
        self.tasks.retain(|_, t| {
            let keep = t.session.as_deref() != Some(session_id);
            if !keep {
                t.handle.abort();
            }
            keep
        });
    }

    async fn start(
        &mut self,
        w: WorkerStart,
        id: Option<&Value>,
    ) -> Result<Option<Reply>, Refusal> {
        self.check_session(&w.session_id).await?;
        let session = w.session_id.clone();
        let started = self.svc.hub().start_task(StartTask {
            owner: self.user.to_string(),
            session_id: w.session_id,
            tool: w.tool,
            prompt: w.prompt,
            agent_id: w.agent_id,
            requires: w.requires,
            cwd: w.cwd,
            priority: w.priority,
        })?;
        self.owned_tasks.insert(started.task_id.clone());
        self.outbox.message(Reply::new(
            "worker:status",
            id,
            json!({
                "task_id": &started.task_id,
                "agent_id": &started.agent_id,
                "status": started.status.as_str(),
                "session_id": &session,
            }),
        ));
        self.subscribe(&started.task_id, 0, Some(session.clone()))
            .await?;
        self.svc.task_started(&session, &started.task_id);
        Ok(None)
    }

    async fn input(&mut self, i: WorkerInput) -> Result<Option<Reply>, Refusal> {
        self.check_task(&i.task_id).await?;
        self.svc
            .hub()
            .input(&i.task_id, Bytes::from(i.text), i.close)?;
        Ok(None)
    }

    async fn stop(&mut self, task_id: &str) -> Result<Option<Reply>, Refusal> {
        self.check_task(task_id).await?;
        self.svc.hub().stop(task_id)?;
        Ok(None)
    }

    /// `task:subscribe` (and SSE `?task_id=`): replaces an earlier subscription to the task.
    pub async fn task_subscribe(
        &mut self,
        task_id: &str,
        since: u64,
    ) -> Result<Option<Reply>, Refusal> {
        self.check_task(task_id).await?;
        if let Some(old) = self.tasks.remove(task_id) {
            old.handle.abort();
        }
        self.subscribe(task_id, since, None).await?;
        Ok(None)
    }

    async fn subscribe(
        &mut self,
        task_id: &str,
        since: u64,
        session: Option<String>,
    ) -> Result<(), Refusal> {
        let sub = self.svc.hub().subscribe(task_id, since).await?;
        let handle = tokio::spawn(forward(sub, self.outbox.clone()));
        self.tasks
            .insert(task_id.to_string(), TaskSub { session, handle });
        Ok(())
    }

    /// `AUTH_001` unless `session_id` belongs to the user; `PARAM_001` when unknown.
    pub async fn check_session(&mut self, session_id: &str) -> Result<(), Refusal> {
        if self.owned_sessions.contains(session_id) {
            return Ok(());
        }
        if session_id.is_empty() || session_id.len() > 256 {
            return Err(Refusal::new("PARAM_001", "session_id must be 1-256 bytes"));
        }
        match self.svc.backend().session(session_id).await {
            Ok(Some(s)) if *s.owner == *self.user => {
                self.owned_sessions.insert(session_id.to_string());
                Ok(())
            }
            Ok(Some(_)) => Err(Refusal::new(
                "AUTH_001",
                format!("session {session_id} belongs to another user"),
            )),
            Ok(None) => Err(Refusal::new(
                "PARAM_001",
                format!("unknown session {session_id}; join without session_id to create one"),
            )),
            Err(e) => Err(Refusal::new(
                "SYS_001",
                format!("cannot look up session {session_id}: {e}"),
            )),
        }
    }

    /// `AUTH_001` unless `task_id` belongs to the user; `PARAM_001` when unknown.
    pub async fn check_task(&mut self, task_id: &str) -> Result<(), Refusal> {
        if self.owned_tasks.contains(task_id) {
            return Ok(());
        }
        if task_id.is_empty() || task_id.len() > 256 {
            return Err(Refusal::new("PARAM_001", "task_id must be 1-256 bytes"));
        }
        let session = match self.svc.hub().task(task_id) {
            Some(t) if !t.owner.is_empty() => {
                if *t.owner != *self.user {
                    return Err(Refusal::new(
                        "AUTH_001",
                        format!("task {task_id} belongs to another user"),
                    ));
                }
                None
            }
            Some(t) => Some(t.session_id),
            None => match self.svc.backend().task(task_id).await {
                Ok(Some(t)) => Some(t.session_id),
                Ok(None) => {
                    return Err(Refusal::new("PARAM_001", format!("unknown task {task_id}")))
                }
                Err(e) => {
                    return Err(Refusal::new(
                        "SYS_001",
                        format!("cannot look up task {task_id}: {e}"),
                    ))
                }
            },
        };
        if let Some(session) = session {
            self.check_session(&session)
                .await
                .map_err(|r| match r.code {
                    "AUTH_001" => Refusal::new(
                        "AUTH_001",
                        format!("task {task_id} belongs to another user"),
                    ),
                    _ => r,
                })?;
        }
        self.owned_tasks.insert(task_id.to_string());
        Ok(())
    }

    /// After `agents:list`: agent connects, disconnects and updates from now on.
    fn watch_agents(&mut self) {
        if self.agent_watch.is_some() {
            return;
        }
        let rx = self.svc.hub().agent_events();
        let outbox = self.outbox.clone();
        let svc = Arc::clone(&self.svc);
        self.agent_watch = Some(tokio::spawn(relay_agents(svc, rx, outbox)));
    }
}

/// `agents:updated {"agents": [...]}`.
fn agents_updated(svc: &RealtimeService, id: Option<&Value>) -> Reply {
    let agents = serde_json::to_value(svc.hub().agents()).unwrap_or(Value::Null);
    Reply::new("agents:updated", id, json!({ "agents": agents }))
}

async fn relay_agents(
    svc: Arc<RealtimeService>,
    mut rx: broadcast::Receiver<AgentEvent>,
    outbox: Outbox,
) {
    loop {
        let reply = match rx.recv().await {
            Ok(AgentEvent::Connected(info)) => Reply::new(
                "agent:connected",
                None,
                json!({ "agent": serde_json::to_value(info).unwrap_or(Value::Null) }),
            ),
            Ok(AgentEvent::Disconnected { id, reason }) => Reply::new(
                "agent:disconnected",
                None,
                json!({ "agent_id": id, "reason": reason }),
            ),
            Ok(AgentEvent::Updated(_)) | Err(broadcast::error::RecvError::Lagged(_)) => {
                agents_updated(&svc, None)
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        if !outbox.message(reply) {
            return;
        }
    }
}

async fn relay_notices(
    session: String,
    mut rx: broadcast::Receiver<Arc<str>>,
    tx: mpsc::Sender<(String, String)>,
) {
    loop {
        match rx.recv().await {
            Ok(task) => {
                if tx.send((session.clone(), task.to_string())).await.is_err() {
                    return;
                }
            }
            Err(broadcast::error::RecvError::Lagged(_)) => continue,
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}
