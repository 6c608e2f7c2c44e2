//! Sending one request with retries: exponential backoff with jitter between attempts, and the
//! circuit breaker that stops trying (the writer then spools).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;

use crate::client::breaker::{backoff, Breaker, BreakerState};
use crate::client::status::Counters;
use crate::client::transport::{Outcome, Transport};
use crate::model::{BulkAppendResult, NewEvent};

/// Retries, breaker and counters: the part of the writer a request needs.
pub(super) struct Sender {
    pub(super) transport: Transport,
    pub(super) breaker: Breaker,
    pub(super) counters: Arc<Counters>,
    pub(super) attempts: u32,
    pub(super) backoff_base: Duration,
    pub(super) backoff_max: Duration,
    pub(super) rng: rand::rngs::SmallRng,
}

impl Sender {
    pub(super) fn publish(&self) {
        let state = self.breaker.state(Instant::now());
        self.counters
            .breaker
            .store(state.to_u8(), Ordering::Relaxed);
    }

    /// Sends with retries; `None` when the backend is unreachable (breaker open, or every
    /// attempt failed).
    pub(super) async fn send<T, F, Fut>(&mut self, mut request: F) -> Option<Outcome<T>>
    where
        F: FnMut(Transport) -> Fut,
        Fut: std::future::Future<Output = Outcome<T>>,
    {
        let mut attempt = 0;
        loop {
            if !self.breaker.allows(Instant::now()) {
                self.publish();
                return None;
            }
            match request(self.transport.clone()).await {
                Outcome::Failed(reason) => {
                    self.counters
                        .requests_failed
                        .fetch_add(1, Ordering::Relaxed);
                    let was_reachable = self.counters.reachable.swap(false, Ordering::Relaxed);
                    let opened = self.breaker.failure(Instant::now());
                    self.publish();
                    attempt += 1;
                    if opened {
                        tracing::warn!(backend = self.transport.base(), error = %reason,
                            retry_in_ms = self.breaker.retry_at().map(|t| t.saturating_duration_since(Instant::now()).as_millis() as u64),
                            "backend unreachable: circuit breaker open, writes go to the spool");
                        return None;
                    }
                    if was_reachable {
                        tracing::info!(backend = self.transport.base(), error = %reason, "backend request failed; retrying");
                    }
                    if attempt >= self.attempts {
                        return None;
                    }
                    let unit: f64 = self.rng.random();
                    tokio::time::sleep(backoff(attempt, self.backoff_base, self.backoff_max, unit))
                        .await;
                }
                answered => {
                    let was = self.breaker.state(Instant::now());
                    self.breaker.success();
                    self.publish();
                    if !self.counters.reachable.swap(true, Ordering::Relaxed)
                        && was != BreakerState::Closed
                    {
                        tracing::info!(backend = self.transport.base(), "backend reachable again");
                    }
                    return Some(answered);
                }
            }
        }
    }

    /// Sends the events of consecutive appends as one bulk append, with [`Sender::send`]'s
    /// retries.
    pub(super) async fn send_events(
        &mut self,
        groups: &[(&str, &[NewEvent])],
    ) -> Option<Outcome<BulkAppendResult>> {
        self.send(|t| async move { t.send_events(groups).await })
            .await
    }
}
