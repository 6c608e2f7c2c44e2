//! Tasks: the table of tasks this agent holds, and what one task is made of.
//!
//! A task lives from its `TaskAssign` until the gateway acked its result — across
//! connections: its process keeps running and its output keeps being held while the agent
//! reconnects. Each task is one actor (`actor.rs`) owning its process's events, its held
//! output (`outbox.rs`, `spill.rs`) and, while connected, its stream. The [`TaskTable`] starts
//! tasks (checks, working directory, spawn), hands each task its new stream after a reconnect,
//! and answers what the session needs: which tasks to re-announce, how many run.
//!
//! | module | concern |
//! |---|---|
//! | `actor` | one task's loop: output → numbered events → stream, acks, input, stop, result |
//! | `outbox`, `spill` | events held until acked, in memory then on disk |
//! | `process` | spawn in a process group, stdout/stderr readers, stdin writer, signals |
//! | `lines`, `stream_json` | output lines → items; Claude Code's stream-json mapping |

mod actor;
pub mod lines;
pub mod outbox;
pub mod process;
pub mod spill;
pub mod stream_json;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use nix::sys::signal::Signal;
use orchestra_proto::v1::{frame, Frame, TaskAccepted, TaskAssign, TaskRejected};
use tokio::sync::{mpsc, Notify};

use crate::config::{AgentConfig, TaskVars};
use crate::transport::{Link, Stream};
use actor::{Control, TaskActor};
use outbox::Outbox;

/// Platform code of a rejection by the agent (busy, unknown tool, cannot start).
pub const AGENT_001: &str = "AGENT_001";
/// Platform code of a malformed assignment.
pub const PARAM_001: &str = "PARAM_001";

/// The directory of spill files under the work directory.
pub const SPILL_DIR: &str = ".spill";

/// What the table knows of one task.
#[derive(Debug)]
struct Entry {
    control: mpsc::Sender<Control>,
    /// Process group id; 0 until spawned.
    pgid: u32,
}

#[derive(Debug, Default)]
struct State {
    tasks: HashMap<String, Entry>,
    /// Tasks whose process has not exited (what `max_tasks` bounds).
    running: u32,
}

#[derive(Debug)]
struct Inner {
    cfg: Arc<AgentConfig>,
    state: Mutex<State>,
    changed: Notify,
}

/// The tasks this agent holds. Cheap to clone.
#[derive(Debug, Clone)]
pub struct TaskTable {
    inner: Arc<Inner>,
}

/// Why an assignment was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rejection {
    code: &'static str,
    reason: String,
}

fn reject(code: &'static str, reason: impl Into<String>) -> Rejection {
    Rejection {
        code,
        reason: reason.into(),
    }
}

impl TaskTable {
    /// An empty table.
    pub fn new(cfg: Arc<AgentConfig>) -> Self {
        TaskTable {
            inner: Arc::new(Inner {
                cfg,
                state: Mutex::new(State::default()),
                changed: Notify::new(),
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the table inconsistent (each critical
        // section is a single insert/remove/counter update), so a poisoned lock is used as is.
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Ids of every task held (running, or holding unacked events), for `Register`.
    pub fn ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.state().tasks.keys().cloned().collect();
        ids.sort();
        ids
    }

    /// Tasks whose process is running.
    pub fn running(&self) -> u32 {
        self.state().running
    }

    /// Tasks held.
    pub fn len(&self) -> usize {
        self.state().tasks.len()
    }

    /// True when no task is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits until no task is held.
    pub async fn wait_empty(&self) {
        loop {
            let changed = self.inner.changed.notified();
            if self.is_empty() {
                return;
            }
            changed.await;
        }
    }

    /// Handles a `TaskAssign` that opened `stream`: starts the task, or answers
    /// `TaskRejected` and ends the stream.
    pub async fn assign(&self, assign: TaskAssign, stream: Stream) {
        let task_id = assign.task_id.clone();
        match self.start(assign, stream).await {
            Ok(()) => {}
            Err((rejection, stream)) => {
                tracing::info!(task_id, code = rejection.code, reason = %rejection.reason, "task rejected");
                let frame = Frame {
                    msg: Some(frame::Msg::Rejected(TaskRejected {
                        code: rejection.code.into(),
                        reason: rejection.reason,
                    })),
                };
                let _ = stream.tx.finish(Some(&frame)).await;
            }
        }
    }

    async fn start(&self, assign: TaskAssign, stream: Stream) -> Result<(), (Rejection, Stream)> {
        let cfg = &self.inner.cfg;
        if let Err(r) = check_assignment(cfg, &assign) {
            return Err((r, stream));
        }
        let Some(tool) = cfg.tools.get(&assign.tool) else {
            return Err((unknown_tool(cfg, &assign.tool), stream));
        };
        // Reserve the id and a slot before anything slow happens.
        let (control_tx, control_rx) = mpsc::channel(8);
        {
            let mut state = self.state();
            if state.tasks.contains_key(&assign.task_id) {
                return Err((
                    reject(
                        AGENT_001,
                        format!("task {} is already on this agent", assign.task_id),
                    ),
                    stream,
                ));
            }
            if state.running >= cfg.max_tasks {
                return Err((
                    reject(
                        AGENT_001,
                        format!(
                            "busy: {} of max_tasks = {} running",
                            state.running, cfg.max_tasks
                        ),
                    ),
                    stream,
                ));
            }
            state.running += 1;
            state.tasks.insert(
                assign.task_id.clone(),
                Entry {
                    control: control_tx,
                    pgid: 0,
                },
            );
        }
        let cwd = task_dir(cfg, &assign);
        if let Err(e) = tokio::fs::create_dir_all(&cwd).await {
            self.release(&assign.task_id, true);
            return Err((
                reject(
                    AGENT_001,
                    format!("cannot create the working directory {}: {e}", cwd.display()),
                ),
                stream,
            ));
        }
        let cwd_text = cwd.to_string_lossy();
        let argv = tool.command(&TaskVars {
            prompt: &assign.prompt,
            cwd: &cwd_text,
            task_id: &assign.task_id,
            session_id: &assign.resume_session_id,
        });
        let mut env: Vec<(String, String)> = assign
            .env
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        env.push(("ORCHESTRA_TASK_ID".into(), assign.task_id.clone()));
        let launch = process::Launch {
            argv: &argv,
            cwd: &cwd,
            env: &env,
            format: tool.format,
            stdin: tool.stdin,
        };
        let spawned = match process::spawn(&launch) {
            Ok(s) => s,
            Err(e) => {
                self.release(&assign.task_id, true);
                return Err((
                    reject(AGENT_001, format!("cannot start {:?}: {e}", argv[0])),
                    stream,
                ));
            }
        };
        if let Some(entry) = self.state().tasks.get_mut(&assign.task_id) {
            entry.pgid = spawned.pid;
        }
        tracing::info!(
            task_id = assign.task_id,
            tool = assign.tool,
            pid = spawned.pid,
            cwd = %cwd.display(),
            first_seq = assign.first_seq,
            "task started"
        );
        let spill_path = cfg.workdir.join(SPILL_DIR).join(&assign.task_id);
        let mut outbox = Outbox::new(assign.first_seq, cfg.output, spill_path);
        let pid = spawned.pid;
        // The first event: `running` (TaskAccepted), seq = first_seq.
        let accepted = outbox
            .push(|seq| Frame {
                msg: Some(frame::Msg::Accepted(TaskAccepted { seq, pid })),
            })
            .await;
        if let Err(e) = accepted {
            process::signal_group(pid, Signal::SIGKILL);
            self.release(&assign.task_id, true);
            return Err((
                reject(AGENT_001, format!("cannot hold the task's output: {e}")),
                stream,
            ));
        }
        let actor = TaskActor::new(actor::Setup {
            task_id: assign.task_id,
            table: self.clone(),
            outbox,
            spawned,
            control: control_rx,
            stream,
            stop_grace: cfg.stop_grace,
        });
        tokio::spawn(actor.run());
        Ok(())
    }

    /// After a reconnect: opens one stream per held task and hands it to the task, which sends
    /// `TaskResume`.
    pub async fn resume_all(&self, link: &Link) {
        let tasks: Vec<(String, mpsc::Sender<Control>)> = self
            .state()
            .tasks
            .iter()
            .map(|(id, e)| (id.clone(), e.control.clone()))
            .collect();
        for (id, control) in tasks {
            match link.open(&id).await {
                Ok(stream) => {
                    let _ = control.send(Control::Resume(stream)).await;
                }
                Err(_) => return,
            }
        }
    }

    /// Stops every task (SIGTERM to its group, SIGKILL after the grace period).
    pub async fn stop_all(&self, reason: &str) {
        let controls: Vec<_> = self
            .state()
            .tasks
            .values()
            .map(|e| e.control.clone())
            .collect();
        for c in controls {
            let _ = c.send(Control::Stop(reason.to_string())).await;
        }
    }

    /// SIGKILL to every task's process group (the agent is exiting).
    pub fn kill_all(&self) {
        for entry in self.state().tasks.values() {
            if entry.pgid != 0 {
                process::signal_group(entry.pgid, Signal::SIGKILL);
            }
        }
    }

    /// The task's process exited: its slot is free.
    fn process_ended(&self) {
        let mut state = self.state();
        state.running = state.running.saturating_sub(1);
    }

    /// Forgets a task; `running` when its process had not exited.
    fn release(&self, task_id: &str, running: bool) {
        {
            let mut state = self.state();
            state.tasks.remove(task_id);
            if running {
                state.running = state.running.saturating_sub(1);
            }
        }
        self.inner.changed.notify_waiters();
    }
}

/// Checks what the gateway sent, before anything is reserved.
fn check_assignment(cfg: &AgentConfig, a: &TaskAssign) -> Result<(), Rejection> {
    let id = a.task_id.as_str();
    let id_ok = !id.is_empty()
        && id.len() <= 128
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'/' && b != b'\\');
    if !id_ok {
        return Err(reject(
            PARAM_001,
            format!("task id {id:?}: 1-128 visible ASCII characters, no '/' or '\\', not starting with '.'"),
        ));
    }
    if a.first_seq == 0 {
        return Err(reject(PARAM_001, "first_seq must be at least 1"));
    }
    if let Some((k, _)) = a
        .env
        .iter()
        .find(|(k, v)| k.is_empty() || k.contains(['=', '\0']) || v.contains('\0'))
    {
        return Err(reject(
            PARAM_001,
            format!("environment variable {k:?} is not valid"),
        ));
    }
    if a.prompt.contains('\0') || a.cwd.contains('\0') {
        return Err(reject(
            PARAM_001,
            "prompt and cwd must not contain NUL bytes",
        ));
    }
    if !cfg.capabilities.iter().any(|c| c == &a.tool) {
        return Err(unknown_tool(cfg, &a.tool));
    }
    if let Some(tool) = cfg.tools.get(&a.tool) {
        if !a.resume_session_id.is_empty() && !tool.can_resume() {
            return Err(reject(
                PARAM_001,
                format!("tool {:?} has no `resume` arguments in this agent's [tools]; it cannot resume a session", a.tool),
            ));
        }
    }
    Ok(())
}

fn unknown_tool(cfg: &AgentConfig, tool: &str) -> Rejection {
    reject(
        AGENT_001,
        format!(
            "unknown tool {tool:?}; this agent runs: {}",
            cfg.capabilities.join(", ")
        ),
    )
}

/// The task's working directory: its own `cwd` (relative to the work directory), or
/// `{workdir}/{task_id}`.
fn task_dir(cfg: &AgentConfig, a: &TaskAssign) -> PathBuf {
    if a.cwd.is_empty() {
        cfg.workdir.join(&a.task_id)
    } else {
        let p = Path::new(&a.cwd);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            cfg.workdir.join(p)
        }
    }
}

/// Creates the work directory and empties its spill directory (held events do not outlive the
/// agent process that held them).
pub fn prepare_workdir(workdir: &Path) -> std::io::Result<()> {
    let spill = workdir.join(SPILL_DIR);
    std::fs::create_dir_all(&spill)?;
    for entry in std::fs::read_dir(&spill)? {
        let path = entry?.path();
        if path.is_file() {
            std::fs::remove_file(&path)?;
        }
    }
    Ok(())
}
