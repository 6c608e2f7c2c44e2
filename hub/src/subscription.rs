//! A subscriber to one task's events: resume without a seam (DELIVERY 5, 6, 7).
//!
//! [`Hub::subscribe`] with `since = S`, under the task's lock and in one step: registers the
//! subscriber for live events (a bounded queue), and copies the ring's events after `S`. The
//! subscription then delivers, in order:
//!
//! 1. **history** from the backend, `S < seq < first seq in the ring`, page by page — only
//!    when the ring does not reach back to `S + 1`;
//! 2. the **ring** copy;
//! 3. **live** events from its queue.
//!
//! Every event passes one check: it is delivered only when its seq is above the last one
//! delivered. Since the live queue was registered before the ring was copied, nothing falls
//! between the parts, and nothing comes twice. A task that is not live any more (it ended and
//! everything is stored) is read from the backend only.
//!
//! When the live queue overflows (the subscriber is slower than the task), the task drops the
//! subscriber; the subscription delivers what was queued, then one
//! [`SubscriptionItem::Lagged`] with the last delivered seq, and ends. The client resumes with
//! that seq as `since`.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::error::HubError;
use crate::event::Event;
use crate::hub::{Hub, HubMetrics};
use crate::persist::{Persist, PersistError};
use crate::task::Subscriber;

/// Events read from the backend per request.
pub const HISTORY_PAGE: usize = 500;

/// What a subscription yields.
#[derive(Debug, Clone, PartialEq)]
pub enum SubscriptionItem {
    /// The next event (seq = the previous one + 1, except across a hole in stored history).
    Event(Arc<Event>),
    /// The subscriber fell behind and was cut off; resume with `since = last_seq`. Last item.
    Lagged {
        /// The last seq delivered (0 = none).
        last_seq: u64,
    },
    /// History could not be read; resume with `since = last_seq` later. Last item.
    Failed {
        /// The last seq delivered (0 = none).
        last_seq: u64,
        /// Why.
        error: HubError,
    },
}

/// A task's events after a given seq, then live (see the module doc).
pub struct Subscription {
    task_id: Arc<str>,
    persist: Arc<dyn Persist>,
    metrics: Hub,
    last: u64,
    /// Read the backend for seqs below this (0 = no history needed; `u64::MAX` = all).
    history_until: u64,
    history_done: bool,
    page: VecDeque<Arc<Event>>,
    ring: VecDeque<Arc<Event>>,
    live: Option<mpsc::Receiver<Arc<Event>>>,
    lagged: Arc<AtomicBool>,
    ended: bool,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("task", &self.task_id)
            .field("last", &self.last)
            .finish()
    }
}

impl Hub {
    /// Subscribes to `task_id`'s events with `seq > since`. `UnknownTask` when neither the hub
    /// nor the backend knows the task.
    pub async fn subscribe(&self, task_id: &str, since: u64) -> Result<Subscription, HubError> {
        let hub = &self.inner;
        let config = hub.config.load();
        let live_task = hub.tasks.get(task_id).map(|t| Arc::clone(t.value()));
        let lagged = Arc::new(AtomicBool::new(false));
        let (id, history_until, ring, live) = match live_task {
            Some(task) => {
                let mut inner = task.lock();
                let ring: VecDeque<Arc<Event>> = inner
                    .ring
                    .iter()
                    .filter(|e| e.seq > since)
                    .cloned()
                    .collect();
                let first_in_ring = inner.ring.front().map_or(inner.published + 1, |e| e.seq);
                let live = if inner.is_finished() {
                    None
                } else {
                    let (tx, rx) = mpsc::channel(config.subscriber_queue.max(1));
                    inner.subs.push(Subscriber {
                        tx,
                        lagged: Arc::clone(&lagged),
                    });
                    Some(rx)
                };
                let history_until = if since + 1 < first_in_ring {
                    first_in_ring
                } else {
                    0
                };
                (Arc::clone(&task.id), history_until, ring, live)
            }
            None => {
                if hub.persist.task(task_id).await?.is_none() {
                    return Err(HubError::UnknownTask(task_id.to_string()));
                }
                (Arc::from(task_id), u64::MAX, VecDeque::new(), None)
            }
        };
        Ok(Subscription {
            task_id: id,
            persist: Arc::clone(&hub.persist),
            metrics: self.clone(),
            last: since,
            history_until,
            history_done: history_until == 0,
            page: VecDeque::new(),
            ring,
            live,
            lagged,
            ended: false,
        })
    }
}

impl Subscription {
    /// The task.
    pub fn task_id(&self) -> &str {
        &self.task_id
    }

    /// The last seq delivered.
    pub fn last_seq(&self) -> u64 {
        self.last
    }

    /// The next item; `None` once the task's events are all delivered (it ended) or after a
    /// `Lagged` / `Failed` item.
    pub async fn next(&mut self) -> Option<SubscriptionItem> {
        loop {
            if self.ended {
                return None;
            }
            if let Some(e) = self.page.pop_front() {
                if let Some(item) = self.deliver(e) {
                    return Some(item);
                }
                continue;
            }
            if !self.history_done {
                if let Err(error) = self.fetch().await {
                    self.ended = true;
                    return Some(SubscriptionItem::Failed {
                        last_seq: self.last,
                        error,
                    });
                }
                continue;
            }
            if let Some(e) = self.ring.pop_front() {
                if let Some(item) = self.deliver(e) {
                    return Some(item);
                }
                continue;
            }
            let Some(rx) = self.live.as_mut() else {
                self.ended = true;
                return None;
            };
            match rx.recv().await {
                Some(e) => {
                    if let Some(item) = self.deliver(e) {
                        return Some(item);
                    }
                }
                None => {
                    self.ended = true;
                    if self.lagged.load(Ordering::Acquire) {
                        HubMetrics::inc(&self.metrics.inner.metrics.subscribers_lagged);
                        return Some(SubscriptionItem::Lagged {
                            last_seq: self.last,
                        });
                    }
                    return None;
                }
            }
        }
    }

    fn deliver(&mut self, e: Arc<Event>) -> Option<SubscriptionItem> {
        if e.seq <= self.last {
            return None;
        }
        self.last = e.seq;
        Some(SubscriptionItem::Event(e))
    }

    /// Reads the next history page into `self.page` (or marks history done).
    async fn fetch(&mut self) -> Result<(), HubError> {
        let stored = self
            .persist
            .events_since(&self.task_id, self.last, HISTORY_PAGE)
            .await?;
        if stored.is_empty() {
            self.history_done = true;
            if self.history_until != u64::MAX && self.last + 1 < self.history_until {
                return Err(HubError::Backend(PersistError::Unavailable(format!(
                    "events {}..{} of task {} are not readable from the backend yet",
                    self.last + 1,
                    self.history_until - 1,
                    self.task_id
                ))));
            }
            return Ok(());
        }
        for s in &stored {
            if s.seq >= self.history_until {
                self.history_done = true;
                break;
            }
            if let Some(e) = Event::from_stored(&self.task_id, s) {
                self.page.push_back(Arc::new(e));
            }
        }
        if self.page.is_empty() && !self.history_done {
            // A page of events of unknown kinds: skip past them.
            self.last = stored.last().map_or(self.last, |s| s.seq);
        }
        Ok(())
    }
}
