//! The agent hub: which agents are connected, which task runs where, and every task's events
//! on their way from the agent to the backend and to the browsers.
//!
//! The hub is transport-agnostic. The gateway authenticates an agent's connection (QUIC or
//! WebSocket), then calls [`Hub::connect`] with an [`AgentLink`] — the two operations the hub
//! needs from a connection: open a task stream, close. From then on the connection's handler
//! feeds the hub through the [`AgentSession`] (heartbeats, RTT, resumed streams) and each task
//! stream's [`TaskAttachment`] (accept, events, acks). Browsers reach the hub through the
//! realtime channel, which uses [`Hub::start_task`], [`Hub::input`], [`Hub::stop`],
//! [`Hub::subscribe`], [`Hub::agents`] and [`Hub::agent_events`].
//!
//! | module | what |
//! |---|---|
//! | [`hub`] | [`Hub`]: settings, the registries (sharded maps), listings, metrics |
//! | [`dispatch`] | capability filter, `orchestra-lb` pick (peak-EWMA or resource-based), the priority queue |
//! | [`session`] | an agent connection's life: register (replacing an older connection), heartbeats, resume, disconnect and the reconnect grace |
//! | [`attachment`] | the hub side of one task stream: accept, seq checks and dedup, fan-out, batches for the backend, acks |
//! | [`subscription`] | a subscriber's resume without a seam: backend history, then the ring, then live |
//! | [`task`] | one task's state (seq counters, ring, subscribers) and its request |
//! | [`agent`] | one connected agent: hello, system info, balancing state |
//! | [`event`] | the browser events (`worker:status`, `worker:output`, ...), serialized once |
//! | [`persist`] | [`Persist`], the hub's narrow view of the backend client, and an in-memory store |
//! | [`error`] | [`HubError`] for API callers, [`ProtocolError`] for misbehaving agents |
//!
//! The delivery invariants (`DELIVERY.md`) and where they hold: one seq per task
//! ([`task`], [`attachment`]); ack means durable ([`attachment::TaskAttachment::persist`] and
//! [`attachment::TaskAttachment::acked`]); dedup ([`attachment::TaskAttachment::ingest`]); hot
//! tail and history, resume without a seam ([`subscription`]); bounded subscriber queues
//! ([`task`]); reconnects ([`session`]).

#![warn(missing_docs)]

pub mod agent;
pub mod attachment;
pub mod dispatch;
pub mod error;
pub mod event;
pub mod hub;
pub mod persist;
pub mod session;
pub mod subscription;
pub mod task;

pub use agent::{AgentEvent, AgentHello, AgentInfo, AgentLink, SystemInfo, TaskStart, Transport};
pub use attachment::{Ingest, TaskAttachment};
pub use dispatch::Started;
pub use error::{HubError, ProtocolError};
pub use event::{Event, EventKind, Status};
pub use hub::{Hub, HubConfig, HubMetrics};
pub use persist::{Durable, Fetch, MemoryPersist, Persist, PersistError};
pub use session::{AgentSession, Resume};
pub use subscription::{Subscription, SubscriptionItem};
pub use task::{StartTask, TaskCommand, TaskInfo};

use std::time::{SystemTime, UNIX_EPOCH};

/// Unix time in milliseconds (0 before 1970).
pub(crate) fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A new task or connection id: a UUID v7 (time-ordered, so ids sort by creation).
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

#[cfg(test)]
mod tests;
