//! One task's loop: the only owner of its held output, its process's events and its stream.
//!
//! ```text
//!  process ──events──► actor ──numbered events──► stream (while connected)
//!  (readers, waiter)     │  ◄──── ack / input / stop ──┘
//!                        ├─► outbox (memory → spill file)
//!                        └─► stdin writer, signals to the process group
//! ```
//!
//! The loop waits on whichever comes first, in this order of preference: a control message
//! from the table (a new stream after a reconnect, a stop at shutdown), a frame from the
//! gateway, room on stdin for queued input, room on the stream for the next unsent event, the
//! next process event (only while the outbox has room — back-pressure), and the kill and
//! drain timers. Preferring sends over new output keeps latency low and memory small while the
//! gateway keeps up.
//!
//! Lifecycle: the first event is `TaskAccepted` (seq = `first_seq`); output items follow; when
//! the process has exited **and** its stdout and stderr reached end of file (or
//! [`DRAIN_AFTER_EXIT`] passed — a process outside the group may hold the pipes), whatever is
//! left of its process group is killed and the `TaskResult` event is held like any other.
//! Once the gateway acks the result, the agent finishes its side of the stream and forgets the
//! task. After a reconnect, the table hands the task a new stream; the task sends
//! `TaskResume { last_seq }` and waits for the gateway's answer: `OutputAck { seq }` → it
//! resends everything above `seq`; `TaskStop` → the task is over for the gateway: its process
//! group is killed and the task dropped.

use std::collections::VecDeque;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::Duration;

use nix::sys::signal::Signal;
use orchestra_proto::v1::{
    frame, task_event::Body, Error as ErrorFrame, Frame, ResultStatus, TaskEvent, TaskResult,
    TaskResume,
};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::outbox::Outbox;
use super::process::{self, ProcEvent, Spawned, StdinChunk};
use super::stream_json::ToolReport;
use super::TaskTable;
use crate::transport::{Closed, Stream, StreamPermit};

/// How long the output pipes may stay open after the process exited before the result is sent
/// without them.
pub const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(2);

/// Input bytes queued for stdin beyond which the task stops reading its stream (the gateway is
/// then held back by flow control).
const MAX_PENDING_INPUT: usize = 1 << 20;

/// Messages from the table to a task.
#[derive(Debug)]
pub(crate) enum Control {
    /// A new stream after a reconnect: send `TaskResume` on it.
    Resume(Stream),
    /// Stop the task (agent shutdown).
    Stop(String),
}

/// What a task starts with.
pub(crate) struct Setup {
    pub task_id: String,
    pub table: TaskTable,
    pub outbox: Outbox,
    pub spawned: Spawned,
    pub control: mpsc::Receiver<Control>,
    pub stream: Stream,
    pub stop_grace: Duration,
}

/// Why the loop ends early.
enum Exit {
    /// The gateway answered a resume with `TaskStop`.
    Dropped,
    /// The spill file failed.
    Spill(std::io::Error),
}

impl From<std::io::Error> for Exit {
    fn from(e: std::io::Error) -> Self {
        Exit::Spill(e)
    }
}

enum Wake {
    Control(Option<Control>),
    Frame(Option<Frame>),
    StdinRoom(Option<mpsc::OwnedPermit<StdinChunk>>),
    Send(Result<StreamPermit, Closed>),
    Proc(Option<ProcEvent>),
    KillTimer,
    DrainTimer,
}

/// One task.
pub(crate) struct TaskActor {
    id: String,
    table: TaskTable,
    outbox: Outbox,
    events: mpsc::Receiver<ProcEvent>,
    events_open: bool,
    control: mpsc::Receiver<Control>,
    control_open: bool,
    link: Option<Stream>,
    /// `TaskResume` sent, answer pending: nothing is sent until it comes.
    awaiting_resume: bool,
    /// Highest seq handed to the current stream.
    sent: u64,
    pgid: u32,
    stdin: Option<mpsc::Sender<StdinChunk>>,
    pending_input: VecDeque<StdinChunk>,
    pending_input_bytes: usize,
    exit: Option<std::io::Result<ExitStatus>>,
    stdout_open: bool,
    stderr_open: bool,
    drain_at: Option<Instant>,
    drain_expired: bool,
    kill_at: Option<Instant>,
    stop_reason: Option<String>,
    report: ToolReport,
    result_seq: Option<u64>,
    started: Instant,
    stop_grace: Duration,
}

async fn at(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

fn event(seq: u64, body: Body) -> Frame {
    Frame {
        msg: Some(frame::Msg::Event(TaskEvent {
            seq,
            body: Some(body),
        })),
    }
}

impl TaskActor {
    pub(crate) fn new(s: Setup) -> Self {
        let sent = s.outbox.acked();
        TaskActor {
            id: s.task_id,
            table: s.table,
            outbox: s.outbox,
            events: s.spawned.events,
            events_open: true,
            control: s.control,
            control_open: true,
            link: Some(s.stream),
            awaiting_resume: false,
            sent,
            pgid: s.spawned.pid,
            stdin: s.spawned.stdin,
            pending_input: VecDeque::new(),
            pending_input_bytes: 0,
            exit: None,
            stdout_open: true,
            stderr_open: true,
            drain_at: None,
            drain_expired: false,
            kill_at: None,
            stop_reason: None,
            report: ToolReport::default(),
            result_seq: None,
            started: Instant::now(),
            stop_grace: s.stop_grace,
        }
    }

    /// Runs the task until its result is acked (or it is dropped).
    pub(crate) async fn run(mut self) {
        loop {
            if self.result_seq.is_some_and(|s| self.outbox.acked() >= s) {
                return self.finish().await;
            }
            let wake = self.next_wake().await;
            let handled = match wake {
                Wake::Control(c) => self.on_control(c).await,
                Wake::Frame(f) => self.on_frame(f).await,
                Wake::StdinRoom(p) => {
                    self.on_stdin_room(p);
                    Ok(())
                }
                Wake::Send(p) => {
                    self.on_send(p);
                    Ok(())
                }
                Wake::Proc(e) => self.on_proc(e).await,
                Wake::KillTimer => {
                    tracing::info!(
                        task_id = self.id,
                        "stop grace period over: SIGKILL to the task's process group"
                    );
                    process::signal_group(self.pgid, Signal::SIGKILL);
                    self.kill_at = None;
                    Ok(())
                }
                Wake::DrainTimer => self.on_drain_timer().await,
            };
            match handled {
                Ok(()) => {}
                Err(Exit::Dropped) => return self.drop_task().await,
                Err(Exit::Spill(e)) => return self.spill_failed(e).await,
            }
        }
    }

    async fn next_wake(&mut self) -> Wake {
        let live = self.link.is_some() && !self.awaiting_resume;
        let want_send = live && self.outbox.get(self.sent + 1).is_some();
        let read_link = self.link.is_some() && self.pending_input_bytes <= MAX_PENDING_INPUT;
        let want_stdin = !self.pending_input.is_empty() && self.stdin.is_some();
        let take_events = self.events_open && self.outbox.has_room();
        let stdin = if want_stdin { self.stdin.clone() } else { None };
        let (tx, rx) = match self.link.as_mut() {
            Some(Stream { tx, rx }) => (Some(&*tx), Some(rx)),
            None => (None, None),
        };
        tokio::select! {
            biased;
            c = self.control.recv(), if self.control_open => Wake::Control(c),
            f = async { rx?.recv().await }, if read_link => Wake::Frame(f),
            p = async { stdin?.reserve_owned().await.ok() }, if want_stdin => Wake::StdinRoom(p),
            p = async { tx.ok_or(Closed)?.reserve().await }, if want_send => Wake::Send(p),
            e = self.events.recv(), if take_events => Wake::Proc(e),
            _ = at(self.kill_at), if self.kill_at.is_some() => Wake::KillTimer,
            _ = at(self.drain_at), if self.drain_at.is_some() => Wake::DrainTimer,
        }
    }

    async fn on_control(&mut self, c: Option<Control>) -> Result<(), Exit> {
        match c {
            None => self.control_open = false,
            Some(Control::Stop(reason)) => self.begin_stop(reason),
            Some(Control::Resume(stream)) => {
                let resume = Frame {
                    msg: Some(frame::Msg::Resume(TaskResume {
                        task_id: self.id.clone(),
                        last_seq: self.outbox.last_seq(),
                    })),
                };
                if stream.tx.send(&resume).await.is_ok() {
                    tracing::debug!(
                        task_id = self.id,
                        last_seq = self.outbox.last_seq(),
                        acked = self.outbox.acked(),
                        "resuming task"
                    );
                    self.link = Some(stream);
                    self.awaiting_resume = true;
                    self.sent = self.outbox.acked();
                } else {
                    self.link = None;
                }
            }
        }
        Ok(())
    }

    async fn on_frame(&mut self, f: Option<Frame>) -> Result<(), Exit> {
        let Some(frame) = f else {
            tracing::debug!(
                task_id = self.id,
                "task stream ended; output is held until the next connection"
            );
            self.link = None;
            self.awaiting_resume = false;
            return Ok(());
        };
        match frame.msg {
            Some(frame::Msg::Ack(ack)) => {
                if self.awaiting_resume {
                    self.awaiting_resume = false;
                    if ack.seq < self.outbox.acked() {
                        tracing::warn!(task_id = self.id, gateway_holds = ack.seq, acked = self.outbox.acked(), "the gateway holds less than it acked before; events in between were already released");
                    }
                    tracing::info!(
                        task_id = self.id,
                        gateway_holds = ack.seq,
                        last_seq = self.outbox.last_seq(),
                        "task resumed; resending what the gateway does not hold"
                    );
                }
                if !self.outbox.ack(ack.seq).await? {
                    tracing::warn!(
                        task_id = self.id,
                        ack = ack.seq,
                        last_seq = self.outbox.last_seq(),
                        "ack beyond the last event; clamped"
                    );
                }
                self.sent = self.sent.max(self.outbox.acked());
            }
            Some(frame::Msg::Stop(stop)) if self.awaiting_resume => {
                tracing::info!(
                    task_id = self.id,
                    reason = stop.reason,
                    "the gateway answered the resume with TaskStop; dropping the task"
                );
                return Err(Exit::Dropped);
            }
            Some(frame::Msg::Stop(stop)) => self.begin_stop(stop.reason),
            Some(frame::Msg::Input(input)) => {
                if self.stdin.is_none() {
                    tracing::debug!(
                        task_id = self.id,
                        bytes = input.data.len(),
                        "input for a task without stdin; dropped"
                    );
                } else {
                    self.pending_input_bytes += input.data.len();
                    self.pending_input.push_back(StdinChunk {
                        data: input.data.into(),
                        close: input.close,
                    });
                }
            }
            Some(frame::Msg::Error(e)) => {
                tracing::warn!(
                    task_id = self.id,
                    code = e.code,
                    reason = e.message,
                    "the gateway reported an error on the task stream"
                );
                self.link = None;
                self.awaiting_resume = false;
            }
            other => {
                tracing::warn!(task_id = self.id, frame = ?other.map(|m| std::mem::discriminant(&m)), "unexpected frame on a task stream; ignored");
            }
        }
        Ok(())
    }

    fn on_stdin_room(&mut self, permit: Option<mpsc::OwnedPermit<StdinChunk>>) {
        let Some(permit) = permit else {
            // The writer ended (the process closed its stdin or exited).
            self.stdin = None;
            self.pending_input.clear();
            self.pending_input_bytes = 0;
            return;
        };
        if let Some(chunk) = self.pending_input.pop_front() {
            self.pending_input_bytes -= chunk.data.len();
            let close = chunk.close;
            permit.send(chunk);
            if close {
                self.stdin = None;
                self.pending_input.clear();
                self.pending_input_bytes = 0;
            }
        }
    }

    fn on_send(&mut self, permit: Result<StreamPermit, Closed>) {
        let Ok(permit) = permit else {
            self.link = None;
            return;
        };
        if let Some(body) = self.outbox.get(self.sent + 1) {
            permit.send(body.clone());
            self.sent += 1;
        }
    }

    async fn on_proc(&mut self, e: Option<ProcEvent>) -> Result<(), Exit> {
        match e {
            None => {
                self.events_open = false;
                self.stdout_open = false;
                self.stderr_open = false;
            }
            Some(ProcEvent::Item(item)) => {
                self.outbox
                    .push(|seq| event(seq, Body::Output(item)))
                    .await?;
            }
            Some(ProcEvent::Session(id)) => self.report.session_id = Some(id),
            Some(ProcEvent::Report(r)) => {
                self.report.usage = r.usage.or(self.report.usage.take());
                self.report.is_error = r.is_error;
                self.report.message = r.message;
                if r.session_id.is_some() {
                    self.report.session_id = r.session_id;
                }
            }
            Some(ProcEvent::StdoutClosed) => self.stdout_open = false,
            Some(ProcEvent::StderrClosed) => self.stderr_open = false,
            Some(ProcEvent::Exited(status)) => {
                self.table.process_ended();
                // Whatever the process left running in its group goes with it: no orphans.
                process::signal_group(self.pgid, Signal::SIGKILL);
                self.kill_at = None;
                self.stdin = None;
                self.pending_input.clear();
                self.pending_input_bytes = 0;
                self.drain_at = Some(Instant::now() + DRAIN_AFTER_EXIT);
                self.exit = Some(status);
            }
        }
        self.maybe_result().await
    }

    async fn on_drain_timer(&mut self) -> Result<(), Exit> {
        if !self.outbox.has_room() {
            // Output is not being read for lack of room, not because the pipes are held open.
            self.drain_at = Some(Instant::now() + DRAIN_AFTER_EXIT);
            return Ok(());
        }
        self.drain_at = None;
        if self.stdout_open || self.stderr_open {
            tracing::warn!(
                task_id = self.id,
                "the task's output pipes stay open after its process exited (held by a process \
                 outside its group?); sending the result without waiting for them"
            );
            self.drain_expired = true;
        }
        self.maybe_result().await
    }

    async fn maybe_result(&mut self) -> Result<(), Exit> {
        if self.result_seq.is_some() || self.exit.is_none() {
            return Ok(());
        }
        if (self.stdout_open || self.stderr_open) && !self.drain_expired {
            return Ok(());
        }
        let result = self.result();
        self.events.close();
        self.events_open = false;
        self.drain_at = None;
        tracing::info!(
            task_id = self.id,
            status = ?result.status(),
            exit_code = result.exit_code,
            duration_ms = result.duration_ms,
            unacked_events = self.outbox.last_seq() - self.outbox.acked(),
            "task finished"
        );
        let seq = self
            .outbox
            .push(|seq| event(seq, Body::Result(result)))
            .await?;
        self.result_seq = Some(seq);
        Ok(())
    }

    fn result(&self) -> TaskResult {
        let (exit_code, failure) = match &self.exit {
            Some(Ok(status)) => match (status.code(), status.signal()) {
                (Some(code), _) => (code, format!("exited with code {code}")),
                (None, Some(sig)) => {
                    let name = Signal::try_from(sig)
                        .map(Signal::as_str)
                        .unwrap_or("unknown signal");
                    (-1, format!("killed by signal {sig} ({name})"))
                }
                (None, None) => (-1, "ended without an exit code".to_string()),
            },
            Some(Err(e)) => (-1, format!("could not wait for the process: {e}")),
            None => (-1, "the process did not exit".to_string()),
        };
        let status = if self.stop_reason.is_some() {
            ResultStatus::Stopped
        } else if exit_code == 0 && !self.report.is_error {
            ResultStatus::Success
        } else {
            ResultStatus::Error
        };
        let error = match status {
            ResultStatus::Success | ResultStatus::Unspecified => String::new(),
            ResultStatus::Stopped => {
                format!("stopped: {}", self.stop_reason.as_deref().unwrap_or(""))
            }
            ResultStatus::Error if self.report.is_error && exit_code == 0 => {
                self.report.message.clone()
            }
            ResultStatus::Error => failure,
        };
        TaskResult {
            status: status as i32,
            exit_code,
            duration_ms: self.started.elapsed().as_millis() as u64,
            usage: self.report.usage,
            error,
            session_id: self.report.session_id.clone().unwrap_or_default(),
        }
    }

    fn begin_stop(&mut self, reason: String) {
        if self.exit.is_some() || self.stop_reason.is_some() {
            return;
        }
        tracing::info!(
            task_id = self.id,
            reason,
            grace_ms = self.stop_grace.as_millis() as u64,
            "stopping the task: SIGTERM to its process group"
        );
        self.stop_reason = Some(reason);
        if self.stop_grace.is_zero() {
            process::signal_group(self.pgid, Signal::SIGKILL);
        } else {
            process::signal_group(self.pgid, Signal::SIGTERM);
            self.kill_at = Some(Instant::now() + self.stop_grace);
        }
    }

    /// The result was acked: end the stream and forget the task.
    async fn finish(mut self) {
        if let Some(link) = self.link.take() {
            let _ = link.tx.finish(None).await;
        }
        self.outbox.discard().await;
        self.table.release(&self.id, false);
        tracing::debug!(task_id = self.id, "task result acked; task forgotten");
    }

    /// The gateway no longer wants the task: kill what runs, forget the rest.
    async fn drop_task(mut self) {
        let running = self.exit.is_none();
        if running {
            process::signal_group(self.pgid, Signal::SIGKILL);
        }
        if let Some(link) = self.link.take() {
            let _ = link.tx.finish(None).await;
        }
        self.outbox.discard().await;
        self.table.release(&self.id, running);
    }

    async fn spill_failed(mut self, e: std::io::Error) {
        tracing::error!(
            task_id = self.id,
            error = %e,
            "the task's spill file failed; its unacked output cannot be kept: killing the task"
        );
        let running = self.exit.is_none();
        if running {
            process::signal_group(self.pgid, Signal::SIGKILL);
        }
        if let Some(link) = self.link.take() {
            let frame = Frame {
                msg: Some(frame::Msg::Error(ErrorFrame {
                    code: "SYS_001".into(),
                    message: format!("the agent could not hold the task's output: {e}"),
                })),
            };
            let _ = link.tx.finish(Some(&frame)).await;
        }
        self.outbox.discard().await;
        self.table.release(&self.id, running);
    }
}
