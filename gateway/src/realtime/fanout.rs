//! One client's outgoing side: a bounded queue ([`Outbox`]) filled by the client's
//! subscriptions and replies, drained by the front's writer, and the cut-off rule for clients
//! that do not keep up (DELIVERY 7).
//!
//! Every task event reaches a client as the hub's shared `Arc<Event>` (its JSON `data` was
//! serialized once, for all subscribers); the writer only frames it for its wire.
//!
//! Two bounded queues stand between a task and a client, both of `[realtime] send_queue`
//! items: the hub's queue of each subscription (filled by the task's producer with a
//! non-blocking push) and the client's [`Outbox`] (filled by [`forward`], which waits while it
//! is full — so history read from the backend is paced by the client). When a subscription's
//! hub queue overflows, or a reply finds the outbox full, the client is *cut*: its writer sends
//! `error` `SYS_001` with the last seq it wrote per task, then closes, and the client resumes
//! with `since` / `Last-Event-ID`. So a slow client never slows the agent, the hub or the
//! other clients, and it never loses an event silently.
//!
//! The writer also drops an event whose seq it already wrote for that task ([`Delivered`]), so
//! overlapping subscriptions of one connection (a `task:subscribe` after a `session:join`)
//! never show an event twice.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use orchestra_hub::{Event, Subscription, SubscriptionItem};
use serde_json::Value;
use tokio::sync::{mpsc, Notify};

use super::protocol;

/// What the writer sends.
#[derive(Debug)]
pub enum Out {
    /// A reply or a non-task event.
    Message(protocol::Reply),
    /// A task event.
    Event(Arc<Event>),
    /// A task's events are all delivered (SSE task streams end then).
    TaskDone(Arc<str>),
}

#[derive(Debug, Default)]
struct Cut {
    cut: AtomicBool,
    notify: Notify,
}

/// The sending side of a client's queue (cheap to clone into subscription tasks).
#[derive(Debug, Clone)]
pub struct Outbox {
    tx: mpsc::Sender<Out>,
    cut: Arc<Cut>,
}

/// The writer's side.
#[derive(Debug)]
pub struct Inbox {
    rx: mpsc::Receiver<Out>,
    cut: Arc<Cut>,
}

/// Creates a client's queue of `capacity` items.
pub fn outbox(capacity: usize) -> (Outbox, Inbox) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    let cut = Arc::new(Cut::default());
    (
        Outbox {
            tx,
            cut: Arc::clone(&cut),
        },
        Inbox { rx, cut },
    )
}

impl Outbox {
    /// Queues `out`; `false` when the client is gone or was cut (a full queue cuts it).
    pub fn push(&self, out: Out) -> bool {
        if self.cut.cut.load(Ordering::Acquire) {
            return false;
        }
        match self.tx.try_send(out) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.cut_off();
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// Queues a reply or a non-task event.
    pub fn message(&self, reply: protocol::Reply) -> bool {
        self.push(Out::Message(reply))
    }

    /// Cuts the client off (it fell behind).
    pub fn cut_off(&self) {
        if !self.cut.cut.swap(true, Ordering::AcqRel) {
            self.cut.notify.notify_one();
        }
    }

    /// True once the writer is gone.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

/// What the writer should do next.
#[derive(Debug)]
pub enum Next {
    /// Send this.
    Send(Out),
    /// The client was cut: send the `SYS_001` error (from [`Delivered::lagged_error`]), close.
    Cut,
    /// Every sender is gone.
    End,
}

impl Inbox {
    /// The next item, or the cut.
    pub async fn next(&mut self) -> Next {
        if self.cut.cut.load(Ordering::Acquire) {
            return Next::Cut;
        }
        tokio::select! {
            biased;
            _ = self.cut.notify.notified() => Next::Cut,
            item = self.rx.recv() => match item {
                Some(out) => Next::Send(out),
                None => Next::End,
            },
        }
    }
}

impl Inbox {
    /// The next item if one is queued now (`None`: nothing queued).
    pub fn try_next(&mut self) -> Option<Next> {
        if self.cut.cut.load(Ordering::Acquire) {
            return Some(Next::Cut);
        }
        match self.rx.try_recv() {
            Ok(out) => Some(Next::Send(out)),
            Err(mpsc::error::TryRecvError::Empty) => None,
            Err(mpsc::error::TryRecvError::Disconnected) => Some(Next::End),
        }
    }
}

/// The last seq written per task (writer-owned, no lock).
#[derive(Debug, Default)]
pub struct Delivered {
    last: HashMap<Arc<str>, u64>,
}

impl Delivered {
    /// Marks `event` written; `false` when its seq was written already (drop it).
    pub fn admit(&mut self, event: &Event) -> bool {
        match self.last.get_mut(&event.task_id) {
            Some(last) if *last >= event.seq => false,
            Some(last) => {
                *last = event.seq;
                true
            }
            None => {
                self.last.insert(Arc::clone(&event.task_id), event.seq);
                true
            }
        }
    }

    /// The last seq written for `task`.
    pub fn last(&self, task: &str) -> u64 {
        self.last.get(task).copied().unwrap_or(0)
    }

    /// `error` `SYS_001` for a client cut off, with `last_seq: {task: seq}`.
    pub fn lagged_error(&self) -> protocol::Reply {
        let last: serde_json::Map<String, Value> = self
            .last
            .iter()
            .map(|(k, v)| (k.to_string(), Value::from(*v)))
            .collect();
        protocol::error(
            "SYS_001",
            "this client fell behind its send queue ([realtime] send_queue) and is closed; reconnect and resume with since / Last-Event-ID",
            None,
            Some(serde_json::json!({ "last_seq": last })),
        )
    }
}

/// Moves a subscription's events into `outbox` until the task's events are all delivered,
/// the client is cut, or it goes away.
pub async fn forward(mut sub: Subscription, outbox: Outbox) {
    let task: Arc<str> = Arc::from(sub.task_id());
    while let Some(item) = sub.next().await {
        match item {
            SubscriptionItem::Event(e) => {
                // Waits while the client's queue is full: history is paced by the client, and
                // live events pile up in the hub's bounded queue of this subscription instead,
                // which cuts the client (`Lagged`) when it overflows. The agent never waits.
                if outbox.tx.send(Out::Event(e)).await.is_err() {
                    return;
                }
            }
            SubscriptionItem::Lagged { .. } => {
                outbox.cut_off();
                return;
            }
            SubscriptionItem::Failed { last_seq, error } => {
                outbox.message(protocol::error(
                    "SYS_001",
                    &format!("task {task}: {error}; subscribe again with since = last_seq"),
                    None,
                    Some(serde_json::json!({ "task_id": &*task, "last_seq": last_seq })),
                ));
                return;
            }
        }
    }
    outbox.push(Out::TaskDone(task));
}
