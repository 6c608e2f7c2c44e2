//! The realtime messages (SPEC "Browser realtime"): what a client may send, parsed and checked
//! into [`Request`], and the JSON the gateway sends back that is not a task event (replies,
//! `error`, agent events). Task events come from the hub already serialized
//! ([`orchestra_hub::Event`]).
//!
//! A message is `{"type": "...", "id"?: ..., "data"?: {...}}`. Anything else — not JSON, not an
//! object, an unknown `type`, a missing or mistyped field — is a [`BadMessage`], answered with
//! `error` `PARAM_001` (echoing the `id` when one could be read); the connection stays usable.

use std::collections::HashMap;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Value};

/// Longest client `id` echoed back, bytes (a longer one is refused).
pub const MAX_ID: usize = 256;

/// One parsed client message.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// The client's `id`, echoed on the direct reply.
    pub id: Option<Value>,
    /// What it asks for.
    pub op: Op,
}

/// The client → gateway messages.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// `session:join`.
    SessionJoin(SessionJoin),
    /// `session:leave`.
    SessionLeave {
        /// The session.
        session_id: String,
    },
    /// `agents:list`.
    AgentsList,
    /// `worker:start`.
    WorkerStart(WorkerStart),
    /// `worker:input`.
    WorkerInput(WorkerInput),
    /// `worker:stop`.
    WorkerStop {
        /// The task.
        task_id: String,
    },
    /// `task:subscribe`.
    TaskSubscribe {
        /// The task.
        task_id: String,
        /// Deliver events with a seq above this (0 = all).
        since: u64,
    },
}

/// `session:join` data.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct SessionJoin {
    /// The session to join; absent = a new one.
    #[serde(default)]
    pub session_id: Option<String>,
    /// Per task: the last seq the client has.
    #[serde(default)]
    pub since: HashMap<String, u64>,
}

/// `worker:start` data.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct WorkerStart {
    /// The session the task belongs to.
    pub session_id: String,
    /// The tool (`custom`, `claude`, ...).
    pub tool: String,
    /// The prompt.
    pub prompt: String,
    /// Run on this agent only.
    #[serde(default)]
    pub agent_id: Option<String>,
    /// Capabilities the agent must have besides `tool`.
    #[serde(default)]
    pub requires: Vec<String>,
    /// Working directory on the agent.
    #[serde(default)]
    pub cwd: Option<String>,
    /// Higher starts first when agents are busy.
    #[serde(default)]
    pub priority: i32,
}

/// `worker:input` data.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct WorkerInput {
    /// The task.
    pub task_id: String,
    /// Bytes for its stdin.
    pub text: String,
    /// Extension: close the task's stdin after `text`.
    #[serde(default)]
    pub close: bool,
}

#[derive(Deserialize)]
struct TaskOnly {
    task_id: String,
}

#[derive(Deserialize)]
struct SessionOnly {
    session_id: String,
}

#[derive(Deserialize)]
struct Subscribe {
    task_id: String,
    #[serde(default)]
    since: u64,
}

/// A message that cannot be served: `error` `PARAM_001` with this message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct BadMessage {
    /// The client's `id`, when it could be read.
    pub id: Option<Value>,
    /// What is wrong, for the client.
    pub message: String,
}

fn bad(id: &Option<Value>, message: impl Into<String>) -> BadMessage {
    BadMessage {
        id: id.clone(),
        message: message.into(),
    }
}

fn data<T: serde::de::DeserializeOwned>(
    id: &Option<Value>,
    kind: &str,
    data: Value,
) -> Result<T, BadMessage> {
    serde_json::from_value(data).map_err(|e| bad(id, format!("{kind}: bad data: {e}")))
}

/// Parses one client message.
pub fn parse(text: &[u8]) -> Result<Request, BadMessage> {
    let value: Value = serde_json::from_slice(text)
        .map_err(|e| bad(&None, format!("message is not valid JSON: {e}")))?;
    let Value::Object(mut obj) = value else {
        return Err(bad(&None, "message must be a JSON object"));
    };
    let id = match obj.remove("id") {
        None | Some(Value::Null) => None,
        Some(v @ (Value::String(_) | Value::Number(_))) => {
            if v.to_string().len() > MAX_ID {
                return Err(bad(&None, format!("id longer than {MAX_ID} bytes")));
            }
            Some(v)
        }
        Some(_) => return Err(bad(&None, "id must be a string or a number")),
    };
    let kind = match obj.remove("type") {
        Some(Value::String(s)) => s,
        Some(_) => return Err(bad(&id, "type must be a string")),
        None => return Err(bad(&id, "type is missing")),
    };
    let body = match obj.remove("data") {
        None | Some(Value::Null) => Value::Object(Default::default()),
        Some(v @ Value::Object(_)) => v,
        Some(_) => return Err(bad(&id, "data must be an object")),
    };
    let op = match kind.as_str() {
        "session:join" => Op::SessionJoin(data(&id, &kind, body)?),
        "session:leave" => {
            let s: SessionOnly = data(&id, &kind, body)?;
            Op::SessionLeave {
                session_id: s.session_id,
            }
        }
        "agents:list" => Op::AgentsList,
        "worker:start" => Op::WorkerStart(data(&id, &kind, body)?),
        "worker:input" => Op::WorkerInput(data(&id, &kind, body)?),
        "worker:stop" => {
            let t: TaskOnly = data(&id, &kind, body)?;
            Op::WorkerStop { task_id: t.task_id }
        }
        "task:subscribe" => {
            let s: Subscribe = data(&id, &kind, body)?;
            Op::TaskSubscribe {
                task_id: s.task_id,
                since: s.since,
            }
        }
        other => {
            let shown: String = other.chars().take(64).collect();
            return Err(bad(&id, format!("unknown message type {shown:?}")));
        }
    };
    Ok(Request { id, op })
}

/// A message of the gateway that is not a task event: a reply, `error`, an agent event.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// The message type.
    pub kind: &'static str,
    /// The client's `id` (direct replies only).
    pub id: Option<Value>,
    /// The `data` object.
    pub data: Value,
}

impl Reply {
    /// A message of `kind` with `data`.
    pub fn new(kind: &'static str, id: Option<&Value>, data: Value) -> Reply {
        Reply {
            kind,
            id: id.cloned(),
            data,
        }
    }

    /// `{"type": KIND, "id"?: ID, "data": DATA}` (WebSocket).
    pub fn to_message(&self) -> Bytes {
        let mut obj = serde_json::Map::with_capacity(3);
        obj.insert("type".into(), Value::from(self.kind));
        if let Some(id) = &self.id {
            obj.insert("id".into(), id.clone());
        }
        obj.insert("data".into(), self.data.clone());
        Bytes::from(Value::Object(obj).to_string())
    }

    /// The `data` object alone (SSE puts the type in `event:`).
    pub fn data_bytes(&self) -> Bytes {
        Bytes::from(self.data.to_string())
    }
}

/// `error {"code", "message"}` (plus `extra` keys).
pub fn error(code: &str, message: &str, id: Option<&Value>, extra: Option<Value>) -> Reply {
    let mut data = json!({"code": code, "message": message});
    if let (Some(Value::Object(extra)), Value::Object(d)) = (extra, &mut data) {
        d.extend(extra);
    }
    Reply::new("error", id, data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_type_and_rejects_the_rest() {
        let r = parse(br#"{"type":"worker:start","id":"1","data":{"session_id":"s","tool":"custom","prompt":"echo"}}"#)
            .expect("start");
        assert_eq!(r.id, Some(Value::from("1")));
        assert!(matches!(r.op, Op::WorkerStart(ref w) if w.tool == "custom" && w.priority == 0));
        let r = parse(br#"{"type":"session:join","data":{"since":{"t":4}}}"#).expect("join");
        assert!(
            matches!(r.op, Op::SessionJoin(ref j) if j.since["t"] == 4 && j.session_id.is_none())
        );
        assert_eq!(
            parse(br#"{"type":"agents:list"}"#).expect("list").op,
            Op::AgentsList
        );
        for (text, part) in [
            (&b"not json"[..], "not valid JSON"),
            (b"[1]", "JSON object"),
            (br#"{"id":7}"#, "type is missing"),
            (br#"{"type":"nope","id":7}"#, "unknown message type"),
            (br#"{"type":"worker:stop","data":{}}"#, "task_id"),
            (
                br#"{"type":"task:subscribe","data":{"task_id":1}}"#,
                "bad data",
            ),
            (
                br#"{"type":"worker:input","data":"x"}"#,
                "data must be an object",
            ),
        ] {
            let e = parse(text).expect_err("bad");
            assert!(
                e.message.contains(part),
                "{} -> {}",
                String::from_utf8_lossy(text),
                e.message
            );
        }
        assert_eq!(
            parse(br#"{"type":"nope","id":7}"#).expect_err("bad").id,
            Some(Value::from(7))
        );
    }

    #[test]
    fn error_messages_carry_code_and_id() {
        let b = error(
            "PARAM_001",
            "x",
            Some(&Value::from("a")),
            Some(json!({"last_seq": {"t": 3}})),
        )
        .to_message();
        let v: Value = serde_json::from_slice(&b).expect("json");
        assert_eq!(v["type"], "error");
        assert_eq!(v["id"], "a");
        assert_eq!(v["data"]["code"], "PARAM_001");
        assert_eq!(v["data"]["last_seq"]["t"], 3);
    }
}
