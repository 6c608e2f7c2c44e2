//! Attempt state of one request: admission (circuit breaker, retry budget), the balancer's
//! in-flight slot, outcomes fed back to the balancer, and retry decisions.
//!
//! ```text
//! first pick: breaker.try_acquire ─► budget.start_request ─► balancer.pick_and_start
//! response head: outcome = success unless 5xx (kept until the end: the slot stays in flight)
//! failure (connect, reset, timeout, retryable 5xx): slot completed as a failure, then
//!   retry? = policy allows (attempts, condition, idempotency) AND (a connect failure — the
//!   request reached no upstream — OR the budget has room)
//! end: slot completed with the kept outcome; breaker told success or failure
//! ```
//! Outcomes drive peak-EWMA estimates and outlier ejection in `orchestra-lb`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use orchestra_config::{HashKey, Upstream};
use orchestra_lb::{
    BreakerGuard, Failure, InFlightGuard, Outcome, PickContext, Rejected, RequestGuard, RetryGuard,
};

use crate::error::GatewayError;

/// Attempt state of one request.
#[derive(Debug, Default)]
pub struct Attempts {
    /// Affinity hash for consistent hashing.
    pub hash_key: Option<u64>,
    /// Retries started so far.
    pub retries: u32,
    slot: Option<InFlightGuard>,
    started: Option<Instant>,
    outcome: Option<Outcome>,
    breaker: Option<BreakerGuard>,
    request: Option<RequestGuard>,
    retry: Option<RetryGuard>,
    upstream_failed: bool,
    last_failed: Option<usize>,
    current: Option<usize>,
}

/// The hash of a request's affinity key, when the upstream hashes and the key is present.
pub fn hash_of(
    key: &HashKey,
    headers: &http::HeaderMap,
    client_ip: Option<std::net::IpAddr>,
) -> Option<u64> {
    match key {
        HashKey::Header(name) => headers
            .get(name)
            .map(|v| orchestra_lb::hash_key(v.as_bytes())),
        HashKey::ClientIp => client_ip.map(|ip| orchestra_lb::hash_str(&ip.to_string())),
        HashKey::Cookie(name) => headers
            .get_all(http::header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .find_map(|kv| {
                let (k, v) = kv.trim().split_once('=')?;
                (k == name).then(|| orchestra_lb::hash_str(v))
            }),
    }
}

impl Attempts {
    /// Admits the request (first attempt) and takes a target slot. Returns the target index.
    pub fn start(&mut self, upstream: &Arc<Upstream>) -> Result<usize, GatewayError> {
        let policy = &upstream.policy;
        if self.request.is_none() {
            if let Some(b) = &policy.breaker {
                let guard = b.try_acquire().map_err(|r| overloaded(upstream, r))?;
                self.breaker = Some(guard);
            }
            self.request = Some(policy.retry_budget.start_request());
        }
        let ctx = PickContext {
            hash_key: self.hash_key,
        };
        let no_target = || GatewayError::NoTarget {
            upstream: upstream.name.to_string(),
        };
        let (mut idx, mut slot) = upstream
            .balancer
            .pick_and_start(&ctx)
            .ok_or_else(no_target)?;
        // A retry avoids the target that just failed when the balancer offers another: a target
        // that refuses connections fails fast, so until it is ejected it can look cheapest.
        if upstream.balancer.targets().len() > 1 {
            for _ in 0..3 {
                if Some(idx) != self.last_failed {
                    break;
                }
                drop(slot);
                (idx, slot) = upstream
                    .balancer
                    .pick_and_start(&ctx)
                    .ok_or_else(no_target)?;
            }
        }
        self.current = Some(idx);
        self.slot = Some(slot);
        self.started = Some(Instant::now());
        self.outcome = None;
        Ok(idx)
    }

    fn latency(&self) -> Duration {
        self.started.map(|s| s.elapsed()).unwrap_or_default()
    }

    /// The upstream's response head arrived with `status`.
    pub fn responded(&mut self, status: u16) {
        let latency = self.latency();
        self.outcome = Some(if status >= 500 {
            self.upstream_failed = true;
            Outcome::failure(latency)
        } else {
            Outcome::success(latency)
        });
    }

    /// The current attempt failed before a usable response head.
    pub fn failed(&mut self) {
        self.upstream_failed = true;
        self.last_failed = self.current;
        if let Some(slot) = self.slot.take() {
            slot.complete(Outcome::failure(self.latency()));
        }
    }

    /// Whether to retry after `failure`; reserves a retry slot of the budget when it says yes.
    pub fn should_retry(
        &mut self,
        upstream: &Upstream,
        failure: Failure,
        idempotent: bool,
    ) -> bool {
        let Some(policy) = &upstream.policy.retry else {
            return false;
        };
        if !policy.should_retry(self.retries, failure, idempotent) {
            return false;
        }
        // This request's previous retry is over: free its slot before asking for the next one.
        self.retry = None;
        // The budget keeps retries from amplifying load on a struggling upstream. After a connect
        // failure no upstream received the request, so re-sending it adds no load: it is bounded
        // by `attempts` only. (With the budget, a burst of instant refusals from a dead target
        // exhausted it at low concurrency and turned retryable requests into 502s.)
        if failure == Failure::ConnectFailure {
            self.retries += 1;
            return true;
        }
        match upstream.policy.retry_budget.try_start_retry() {
            Some(guard) => {
                self.retry = Some(guard);
                self.retries += 1;
                true
            }
            None => {
                tracing::debug!(upstream = %upstream.name, "retry budget exhausted");
                false
            }
        }
    }

    /// Backoff before retry number `self.retries` (zero before the first attempt).
    pub fn backoff(&self, upstream: &Upstream) -> Option<Duration> {
        if self.retries == 0 {
            return None;
        }
        upstream
            .policy
            .retry
            .as_ref()
            .map(|p| p.backoff.random_delay(self.retries))
    }

    /// Ends the request: completes the slot with its outcome and tells the breaker.
    pub fn finish(&mut self) {
        if let (Some(slot), Some(outcome)) = (self.slot.take(), self.outcome.take()) {
            slot.complete(outcome);
        }
        if let Some(b) = self.breaker.take() {
            b.record(!self.upstream_failed);
        }
        self.retry = None;
        self.request = None;
    }
}

fn overloaded(upstream: &Upstream, r: Rejected) -> GatewayError {
    let retry_after = match r {
        Rejected::Open { retry_after } => Some(retry_after),
        Rejected::MaxInFlight { .. } => None,
    };
    GatewayError::Overloaded {
        upstream: upstream.name.to_string(),
        reason: r.to_string(),
        retry_after,
    }
}
