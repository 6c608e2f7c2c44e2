//! The hub's errors: what callers of the Rust API get ([`HubError`]) and what a connection's
//! protocol handler gets when an agent breaks the stream rules ([`ProtocolError`]). Both carry
//! the platform code (`AGENT_001`, `PARAM_001`, `SYS_001`) that goes on the wire.

use crate::persist::PersistError;

/// Why a hub call failed. [`HubError::code`] is the platform code for the browser.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HubError {
    /// No connected agent has the capabilities the task needs.
    #[error("no connected agent can run tool {tool:?} with capabilities {requires:?}; connect an agent that lists them in `capabilities`")]
    NoCapableAgent {
        /// The task's tool.
        tool: String,
        /// Extra capabilities asked for.
        requires: Vec<String>,
    },
    /// The task named an agent that is not connected (or lacks the capabilities).
    #[error("agent {0:?} is not connected or cannot run this tool")]
    AgentUnavailable(String),
    /// Every capable agent is busy and the queue holds `max_queued` tasks already.
    #[error("all capable agents are busy and {0} tasks are already queued ([agents] max_queued); retry later")]
    QueueFull(usize),
    /// No live or stored task has this id.
    #[error("unknown task {0:?}")]
    UnknownTask(String),
    /// The task has ended; input and stop no longer apply.
    #[error("task {0:?} has already ended")]
    TaskEnded(String),
    /// The task's input queue is full (the agent is not reading it).
    #[error("task {0:?} has too much input waiting; retry later")]
    InputBusy(String),
    /// The task's agent is disconnected (it has `reconnect_grace` to come back).
    #[error("the agent of task {0:?} is reconnecting; retry later")]
    Reconnecting(String),
    /// A request field is not acceptable.
    #[error("{field}: {reason}")]
    BadRequest {
        /// The field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The backend could not be read (history for a subscription, a task lookup).
    #[error("backend: {0}")]
    Backend(#[from] PersistError),
}

impl HubError {
    /// The platform error code.
    pub fn code(&self) -> &'static str {
        match self {
            HubError::NoCapableAgent { .. }
            | HubError::AgentUnavailable(_)
            | HubError::QueueFull(_)
            | HubError::Reconnecting(_) => "AGENT_001",
            HubError::UnknownTask(_)
            | HubError::TaskEnded(_)
            | HubError::InputBusy(_)
            | HubError::BadRequest { .. } => "PARAM_001",
            HubError::Backend(_) => "SYS_001",
        }
    }
}

/// An agent broke the rules of a task stream (see `agent.proto`). The handler answers with an
/// `Error` frame carrying [`ProtocolError::code`] and ends the stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// An event's seq skipped numbers.
    #[error("seq gap: expected {expected}, got {got}")]
    SeqGap {
        /// The next seq the gateway expects.
        expected: u64,
        /// What arrived.
        got: u64,
    },
    /// `TaskAccepted` arrived twice, too late, or with a seq other than `first_seq`.
    #[error("unexpected TaskAccepted (seq {got}, the assignment's first_seq is {first_seq})")]
    UnexpectedAccept {
        /// The seq the agent sent.
        got: u64,
        /// `TaskAssign.first_seq`.
        first_seq: u64,
    },
    /// A `TaskEvent` before `TaskAccepted`.
    #[error("TaskEvent before TaskAccepted")]
    EventBeforeAccept,
    /// A new event after the one carrying the result.
    #[error("event seq {0} after the task's result")]
    EventAfterResult(u64),
    /// A `TaskEvent` without a body.
    #[error("TaskEvent seq {0} has no output, progress or result")]
    EmptyEvent(u64),
    /// A frame that does not belong on a task stream in this direction or state.
    #[error("unexpected {0} frame on a task stream")]
    UnexpectedFrame(&'static str),
    /// A newer stream (after a reconnect) took over this task.
    #[error("superseded by a newer stream for the same task")]
    Superseded,
}

impl ProtocolError {
    /// The platform code sent in the `Error` frame.
    pub fn code(&self) -> &'static str {
        match self {
            ProtocolError::Superseded => "AGENT_001",
            _ => "PARAM_001",
        }
    }
}
