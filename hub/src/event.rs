//! A task's events as the browser sees them (SPEC "Browser realtime"), built once per event.
//!
//! Every event of a task has a `kind` (`worker:status`, `worker:output`, `task:progress`,
//! `task:result`) and a JSON `data` object that carries the task id and the event's `seq`. The
//! hub serializes `data` once into [`Event::data`] (`Bytes`, shared by every subscriber) and
//! stores the same object in the backend ([`NewEvent`]), so a replay from history and a live
//! event are the same bytes: the objects are built with their keys in sorted order, which is
//! also how `serde_json` writes them back after a round trip through the backend.

use std::sync::Arc;

use bytes::Bytes;
use orchestra_backend::model::NewEvent;
use orchestra_proto::v1::{self, OutputKind, ResultStatus};
use serde_json::{Map, Value};

/// The type of a task event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// `worker:status`: queued / starting / running / completed / error / stopped.
    WorkerStatus,
    /// `worker:output`: one output item.
    WorkerOutput,
    /// `task:progress`.
    TaskProgress,
    /// `task:result`: the agent's final report.
    TaskResult,
}

impl EventKind {
    /// The message type on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::WorkerStatus => "worker:status",
            EventKind::WorkerOutput => "worker:output",
            EventKind::TaskProgress => "task:progress",
            EventKind::TaskResult => "task:result",
        }
    }

    /// Parses a stored kind.
    pub fn parse(s: &str) -> Option<EventKind> {
        Some(match s {
            "worker:status" => EventKind::WorkerStatus,
            "worker:output" => EventKind::WorkerOutput,
            "task:progress" => EventKind::TaskProgress,
            "task:result" => EventKind::TaskResult,
            _ => return None,
        })
    }
}

/// One event of a task, shared (`Arc`) by the ring and every subscriber.
#[derive(Debug, Clone)]
pub struct Event {
    /// The task.
    pub task_id: Arc<str>,
    /// The task's sequence number (DELIVERY 1).
    pub seq: u64,
    /// The message type.
    pub kind: EventKind,
    /// The `data` object, serialized (`{"seq": .., "task_id": .., ...}`).
    pub data: Bytes,
    /// [`Event::message_bytes`], built on first use and shared by every subscriber.
    message: std::sync::OnceLock<Bytes>,
}

/// Equal when task, seq, kind and data are (the cached message does not count).
impl PartialEq for Event {
    fn eq(&self, other: &Event) -> bool {
        self.task_id == other.task_id
            && self.seq == other.seq
            && self.kind == other.kind
            && self.data == other.data
    }
}

impl Event {
    /// An event of `task_id`.
    pub fn new(task_id: Arc<str>, seq: u64, kind: EventKind, data: Bytes) -> Event {
        Event {
            task_id,
            seq,
            kind,
            data,
            message: std::sync::OnceLock::new(),
        }
    }

    /// [`Event::to_message`] built once per event and shared (a realtime WebSocket sends the
    /// same bytes to every subscriber).
    pub fn message_bytes(&self) -> Bytes {
        self.message
            .get_or_init(|| Bytes::from(self.to_message()))
            .clone()
    }

    /// The realtime message `{"type": KIND, "data": DATA}` (no client `id`: events are not
    /// replies).
    pub fn to_message(&self) -> Vec<u8> {
        let kind = self.kind.as_str();
        let mut out = Vec::with_capacity(self.data.len() + kind.len() + 20);
        out.extend_from_slice(b"{\"type\":\"");
        out.extend_from_slice(kind.as_bytes());
        out.extend_from_slice(b"\",\"data\":");
        out.extend_from_slice(&self.data);
        out.push(b'}');
        out
    }

    /// An event read back from the backend; `None` when its kind is not a task event kind.
    pub fn from_stored(
        task_id: &Arc<str>,
        stored: &orchestra_backend::model::Event,
    ) -> Option<Event> {
        Some(Event::new(
            Arc::clone(task_id),
            stored.seq,
            EventKind::parse(&stored.kind)?,
            Bytes::from(serde_json::to_vec(&stored.data).ok()?),
        ))
    }
}

/// A task's status as shown in `worker:status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Waiting for a free capable agent.
    Queued,
    /// Sent to an agent, not yet accepted.
    Starting,
    /// Accepted by its agent.
    Running,
    /// Ended with success.
    Completed,
    /// Ended with an error (including a rejected assignment or an agent that never came back).
    Error,
    /// Stopped by its user.
    Stopped,
}

impl Status {
    /// The `status` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Starting => "starting",
            Status::Running => "running",
            Status::Completed => "completed",
            Status::Error => "error",
            Status::Stopped => "stopped",
        }
    }
}

/// An event built twice over: shared bytes for subscribers, a JSON value for the backend.
#[derive(Debug)]
pub(crate) struct Built {
    pub event: Arc<Event>,
    pub stored: NewEvent,
}

fn build(task_id: &Arc<str>, seq: u64, kind: EventKind, data: Map<String, Value>) -> Built {
    let value = Value::Object(data);
    // Serializing a `Value` cannot fail (its keys are strings).
    let bytes = serde_json::to_vec(&value).unwrap_or_default();
    Built {
        event: Arc::new(Event::new(
            Arc::clone(task_id),
            seq,
            kind,
            Bytes::from(bytes),
        )),
        stored: NewEvent {
            seq,
            kind: kind.as_str().to_string(),
            data: value,
        },
    }
}

/// Inserts in sorted key order (see the module doc).
struct Sorted(Vec<(&'static str, Value)>);

impl Sorted {
    fn new(task_id: &str, seq: u64) -> Sorted {
        Sorted(vec![
            ("seq", Value::from(seq)),
            ("task_id", Value::from(task_id)),
        ])
    }

    fn with(mut self, key: &'static str, value: impl Into<Value>) -> Sorted {
        self.0.push((key, value.into()));
        self
    }

    fn into_map(mut self) -> Map<String, Value> {
        self.0.sort_by_key(|(k, _)| *k);
        self.0
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect()
    }
}

/// `worker:status {"agent_id", "reason"?, "seq", "status", "task_id"}`.
pub(crate) fn status(
    task_id: &Arc<str>,
    seq: u64,
    status: Status,
    agent_id: Option<&str>,
    reason: Option<&str>,
) -> Built {
    let mut d = Sorted::new(task_id, seq)
        .with("status", status.as_str())
        .with("agent_id", agent_id.map_or(Value::Null, Value::from));
    if let Some(r) = reason {
        d = d.with("reason", r);
    }
    build(task_id, seq, EventKind::WorkerStatus, d.into_map())
}

/// The `kind` of an output item.
pub fn output_kind(kind: i32) -> &'static str {
    match OutputKind::try_from(kind).unwrap_or(OutputKind::Unspecified) {
        OutputKind::Stdout | OutputKind::Unspecified => "stdout",
        OutputKind::Stderr => "stderr",
        OutputKind::User => "user",
        OutputKind::Assistant => "assistant",
        OutputKind::Tool => "tool",
        OutputKind::ToolResult => "tool-result",
        OutputKind::System => "system",
    }
}

/// `worker:output {"json"?, "kind", "seq", "task_id", "text"}`.
pub(crate) fn output(task_id: &Arc<str>, seq: u64, item: &v1::OutputItem) -> Built {
    let mut d = Sorted::new(task_id, seq)
        .with("kind", output_kind(item.kind))
        .with("text", item.text.as_str());
    if !item.json.is_empty() {
        d = d.with("json", item.json.as_str());
    }
    build(task_id, seq, EventKind::WorkerOutput, d.into_map())
}

/// `task:progress {"message", "percent", "seq", "task_id"}` (`percent` null when unknown).
pub(crate) fn progress(task_id: &Arc<str>, seq: u64, p: &v1::Progress) -> Built {
    let percent = if p.percent.is_finite() && p.percent >= 0.0 {
        Value::from(f64::from(p.percent.min(100.0)))
    } else {
        Value::Null
    };
    let d = Sorted::new(task_id, seq)
        .with("message", p.message.as_str())
        .with("percent", percent);
    build(task_id, seq, EventKind::TaskProgress, d.into_map())
}

/// The terminal state and `worker:status` a result leads to.
pub(crate) fn result_outcome(
    r: &v1::TaskResult,
    stop_requested: bool,
) -> (orchestra_backend::model::TaskState, Status) {
    use orchestra_backend::model::TaskState;
    match ResultStatus::try_from(r.status).unwrap_or(ResultStatus::Unspecified) {
        ResultStatus::Success => (TaskState::Completed, Status::Completed),
        ResultStatus::Stopped => (TaskState::Cancelled, Status::Stopped),
        _ if stop_requested => (TaskState::Cancelled, Status::Stopped),
        _ => (TaskState::Failed, Status::Error),
    }
}

/// The `task:result` data object (also stored as the task's `result`).
pub(crate) fn result_data(task_id: &str, seq: u64, r: &v1::TaskResult) -> Map<String, Value> {
    let status = match ResultStatus::try_from(r.status).unwrap_or(ResultStatus::Unspecified) {
        ResultStatus::Success => "success",
        _ => "error",
    };
    let mut d = Sorted::new(task_id, seq)
        .with("status", status)
        .with("exit_code", r.exit_code)
        .with("duration_ms", r.duration_ms);
    if ResultStatus::try_from(r.status) == Ok(ResultStatus::Stopped) {
        d = d.with("stopped", true);
    }
    if !r.error.is_empty() {
        d = d.with("error", r.error.as_str());
    }
    if !r.session_id.is_empty() {
        d = d.with("session_id", r.session_id.as_str());
    }
    if let Some(u) = &r.usage {
        let usage: Map<String, Value> = [
            ("cache_read_tokens", u.cache_read_tokens),
            ("cache_write_tokens", u.cache_write_tokens),
            ("input_tokens", u.input_tokens),
            ("output_tokens", u.output_tokens),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), Value::from(v)))
        .collect();
        d = d.with("usage", Value::Object(usage));
    }
    d.into_map()
}

/// `task:result {"duration_ms", "error"?, "exit_code", "seq", "session_id"?, "status",
/// "stopped"?, "task_id", "usage"?}`.
pub(crate) fn result(task_id: &Arc<str>, seq: u64, r: &v1::TaskResult) -> Built {
    build(
        task_id,
        seq,
        EventKind::TaskResult,
        result_data(task_id, seq, r),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_bytes_equal_a_backend_round_trip() {
        let id: Arc<str> = Arc::from("t-1");
        let item = v1::OutputItem {
            kind: OutputKind::Stderr as i32,
            text: "line \"1\" é".into(),
            json: String::new(),
        };
        let built = output(&id, 7, &item);
        assert_eq!(
            std::str::from_utf8(&built.event.data).expect("utf8"),
            r#"{"kind":"stderr","seq":7,"task_id":"t-1","text":"line \"1\" é"}"#
        );
        let stored = orchestra_backend::model::Event {
            seq: 7,
            kind: built.stored.kind.clone(),
            data: serde_json::from_slice(&serde_json::to_vec(&built.stored.data).expect("json"))
                .expect("json"),
            at: 0,
        };
        let back = Event::from_stored(&id, &stored).expect("kind");
        assert_eq!(back, *built.event);
        let r = v1::TaskResult {
            status: ResultStatus::Error as i32,
            exit_code: 3,
            duration_ms: 12,
            usage: Some(v1::TokenUsage {
                input_tokens: 1,
                ..Default::default()
            }),
            error: "boom".into(),
            session_id: String::new(),
        };
        let built = result(&id, 9, &r);
        let v: Value = serde_json::from_slice(&built.event.data).expect("json");
        assert_eq!(v["status"], "error");
        assert_eq!(v["exit_code"], 3);
        assert_eq!(v["usage"]["input_tokens"], 1);
        assert_eq!(
            serde_json::to_vec(&v).expect("json"),
            built.event.data.to_vec()
        );
        let msg = String::from_utf8(built.event.to_message()).expect("utf8");
        assert!(
            msg.starts_with(r#"{"type":"task:result","data":{"#),
            "{msg}"
        );
        let st = status(&id, 1, Status::Queued, None, None);
        assert_eq!(
            std::str::from_utf8(&st.event.data).expect("utf8"),
            r#"{"agent_id":null,"seq":1,"status":"queued","task_id":"t-1"}"#
        );
    }
}
