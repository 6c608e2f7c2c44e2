//! Retries: which failures to retry, how long to wait, and a budget that stops retry storms.
//!
//! **Policy.** [`RetryPolicy::should_retry`] allows another attempt when all hold:
//! * fewer than `attempts` retries were made (`attempts` counts retries *after* the first try:
//!   `attempts = 2` means at most three tries);
//! * the failure matches one of the `on` conditions (config names: `connect-failure`, `reset`,
//!   `timeout`, `5xx`, `gateway-error` = 502/503/504, or a status code such as `503`);
//! * the request is idempotent, or `idempotent_only = false`, or the failure is a connect
//!   failure — nothing was sent, so even a `POST` is safe to retry.
//!
//! **Backoff.** Exponential with full jitter (AWS architecture blog's "Full Jitter"): before
//! retry number `r` (0 for the first retry) wait a uniformly random time in
//! `[0, min(max, base · 2^r))`. Defaults: `base = 25 ms`, `max = 250 ms` (Envoy's).
//! Jitter spreads the retries of many clients that failed together.
//!
//! **Budget** (Envoy's retry budget). Retries in flight may not exceed
//! `max(min_concurrency, ⌊active × budget_percent / 100⌋)` where `active` counts requests in
//! flight on the upstream (defaults 20 % and 3). When an upstream degrades, every request wants
//! to retry; the budget caps the extra load at 20 % instead of multiplying it by `attempts + 1`,
//! while the minimum keeps retries possible at low traffic. A retry over budget is not sent: the
//! failure goes to the client. Counters are atomics; a retry slot is reserved with a
//! compare-and-swap so concurrent retries cannot overshoot.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How an attempt failed, as far as retrying is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The connection could not be established; no byte of the request was sent.
    ConnectFailure,
    /// The connection was reset or closed before a complete response head.
    Reset,
    /// The upstream did not answer within the read timeout.
    Timeout,
    /// The upstream answered with this status.
    Status(u16),
}

/// The set of failures a policy retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryOn {
    /// Retry connect failures.
    pub connect_failure: bool,
    /// Retry resets.
    pub reset: bool,
    /// Retry timeouts.
    pub timeout: bool,
    /// Bit `c − 500` set: retry status `c` (500..=599).
    statuses: u128,
}

impl Default for RetryOn {
    /// `["connect-failure", "reset", "503"]`.
    fn default() -> Self {
        RetryOn::none()
            .with_connect_failure()
            .with_reset()
            .with_status(503)
    }
}

impl RetryOn {
    /// Retries nothing.
    pub fn none() -> Self {
        RetryOn {
            connect_failure: false,
            reset: false,
            timeout: false,
            statuses: 0,
        }
    }

    /// Adds connect failures.
    pub fn with_connect_failure(mut self) -> Self {
        self.connect_failure = true;
        self
    }

    /// Adds resets.
    pub fn with_reset(mut self) -> Self {
        self.reset = true;
        self
    }

    /// Adds status `code`; codes outside 500..=599 are ignored.
    pub fn with_status(mut self, code: u16) -> Self {
        if (500..=599).contains(&code) {
            self.statuses |= 1u128 << (code - 500);
        }
        self
    }

    /// Parses config names (see the module doc); accepts `_` for `-`.
    pub fn parse<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<Self, UnknownCondition> {
        let mut on = RetryOn::none();
        for name in names {
            match name.replace('_', "-").as_str() {
                "connect-failure" => on.connect_failure = true,
                "reset" => on.reset = true,
                "timeout" => on.timeout = true,
                "5xx" => on.statuses = (1u128 << 100) - 1,
                "gateway-error" => on = on.with_status(502).with_status(503).with_status(504),
                code => match u16::from_str(code) {
                    Ok(c) if (500..=599).contains(&c) => on = on.with_status(c),
                    _ => return Err(UnknownCondition(name.to_owned())),
                },
            }
        }
        Ok(on)
    }

    /// Whether `failure` is in the set.
    pub fn matches(&self, failure: Failure) -> bool {
        match failure {
            Failure::ConnectFailure => self.connect_failure,
            Failure::Reset => self.reset,
            Failure::Timeout => self.timeout,
            Failure::Status(c) => {
                (500..=599).contains(&c) && self.statuses & (1u128 << (c - 500)) != 0
            }
        }
    }
}

/// A retry condition name that is not recognised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownCondition(pub String);

impl fmt::Display for UnknownCondition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown retry condition {:?}; expected connect-failure, reset, timeout, 5xx, \
             gateway-error or a status code 500-599",
            self.0
        )
    }
}

impl std::error::Error for UnknownCondition {}

/// Exponential backoff with full jitter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Ceiling of the first retry's wait.
    pub base: Duration,
    /// Largest ceiling.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base: Duration::from_millis(25),
            max: Duration::from_millis(250),
        }
    }
}

impl Backoff {
    /// `min(max, base · 2^retry)`: the upper bound of the wait before retry `retry` (0-based).
    pub fn ceiling(&self, retry: u32) -> Duration {
        let factor = 1u32.checked_shl(retry.min(31)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.max)
    }

    /// The wait for `unit ∈ [0, 1)` (a uniform random number; clamped): `ceiling · unit`.
    pub fn delay(&self, retry: u32, unit: f64) -> Duration {
        let unit = if unit.is_finite() {
            unit.clamp(0.0, 1.0)
        } else {
            0.0
        };
        self.ceiling(retry).mul_f64(unit)
    }

    /// A random wait before retry `retry` (0-based).
    pub fn random_delay(&self, retry: u32) -> Duration {
        self.delay(retry, fastrand::f64())
    }
}

/// Which failed attempts to retry, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first try (default 2).
    pub attempts: u32,
    /// Failures to retry (default connect-failure, reset, 503).
    pub on: RetryOn,
    /// Retry non-idempotent requests only on connect failure (default `true`).
    pub idempotent_only: bool,
    /// Wait between attempts.
    pub backoff: Backoff,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 2,
            on: RetryOn::default(),
            idempotent_only: true,
            backoff: Backoff::default(),
        }
    }
}

impl RetryPolicy {
    /// Whether to retry after `retries_done` retries ended with `failure` (module doc).
    pub fn should_retry(&self, retries_done: u32, failure: Failure, idempotent: bool) -> bool {
        retries_done < self.attempts
            && self.on.matches(failure)
            && (idempotent || !self.idempotent_only || failure == Failure::ConnectFailure)
    }
}

/// Whether an HTTP method is idempotent (RFC 9110 §9.2.2).
pub fn is_idempotent_method(method: &str) -> bool {
    matches!(
        method,
        "GET" | "HEAD" | "OPTIONS" | "TRACE" | "PUT" | "DELETE"
    )
}

/// Envoy-style retry budget for one upstream (module doc).
#[derive(Debug)]
pub struct RetryBudget {
    budget_percent: u32,
    min_concurrency: u64,
    active: AtomicU64,
    retries: AtomicU64,
    rejected: AtomicU64,
}

impl RetryBudget {
    /// A budget of `budget_percent` % of active requests, never below `min_concurrency`.
    pub fn new(budget_percent: u32, min_concurrency: u32) -> Arc<Self> {
        Arc::new(RetryBudget {
            budget_percent,
            min_concurrency: u64::from(min_concurrency),
            active: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
        })
    }

    /// Envoy's defaults: 20 %, minimum 3.
    pub fn with_defaults() -> Arc<Self> {
        RetryBudget::new(20, 3)
    }

    /// Counts a request as active until the guard drops.
    pub fn start_request(self: &Arc<Self>) -> RequestGuard {
        self.active.fetch_add(1, Ordering::Relaxed);
        RequestGuard {
            budget: Arc::clone(self),
        }
    }

    /// Reserves a retry slot if the budget allows; `None` (and a rejection counted) if not.
    pub fn try_start_retry(self: &Arc<Self>) -> Option<RetryGuard> {
        let limit = self.limit();
        let ok = self
            .retries
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |r| {
                (r < limit).then_some(r + 1)
            })
            .is_ok();
        if ok {
            Some(RetryGuard {
                budget: Arc::clone(self),
            })
        } else {
            self.rejected.fetch_add(1, Ordering::Relaxed);
            None
        }
    }

    /// Retries allowed in flight now.
    pub fn limit(&self) -> u64 {
        let active = self.active.load(Ordering::Relaxed);
        let share = active.saturating_mul(u64::from(self.budget_percent)) / 100;
        share.max(self.min_concurrency)
    }

    /// Requests in flight.
    pub fn active(&self) -> u64 {
        self.active.load(Ordering::Relaxed)
    }

    /// Retries in flight.
    pub fn retries_in_flight(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }

    /// Retries refused since creation.
    pub fn rejected(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }
}

/// An active request counted by a [`RetryBudget`].
#[derive(Debug)]
pub struct RequestGuard {
    budget: Arc<RetryBudget>,
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.budget.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A retry in flight counted by a [`RetryBudget`].
#[derive(Debug)]
pub struct RetryGuard {
    budget: Arc<RetryBudget>,
}

impl Drop for RetryGuard {
    fn drop(&mut self) {
        self.budget.retries.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_caps_retries_at_percent_of_active() {
        let b = RetryBudget::with_defaults();
        let _reqs: Vec<_> = (0..100).map(|_| b.start_request()).collect();
        let retries: Vec<_> = (0..25).filter_map(|_| b.try_start_retry()).collect();
        assert_eq!(retries.len(), 20);
        assert_eq!(b.rejected(), 5);
        drop(retries);
        assert_eq!(b.retries_in_flight(), 0);
        assert!(b.try_start_retry().is_some());
    }

    #[test]
    fn budget_minimum_concurrency() {
        let b = RetryBudget::with_defaults();
        let _reqs: Vec<_> = (0..5).map(|_| b.start_request()).collect();
        let retries: Vec<_> = (0..10).filter_map(|_| b.try_start_retry()).collect();
        assert_eq!(retries.len(), 3);
        let idle = RetryBudget::new(20, 0);
        assert!(idle.try_start_retry().is_none());
    }

    #[test]
    fn backoff_stays_within_bounds() {
        let bo = Backoff::default();
        assert_eq!(bo.ceiling(0), Duration::from_millis(25));
        assert_eq!(bo.ceiling(1), Duration::from_millis(50));
        assert_eq!(bo.ceiling(3), Duration::from_millis(200));
        assert_eq!(bo.ceiling(4), Duration::from_millis(250));
        assert_eq!(bo.ceiling(1000), Duration::from_millis(250));
        assert_eq!(bo.delay(2, 0.5), Duration::from_millis(50));
        assert_eq!(bo.delay(2, 0.0), Duration::ZERO);
        assert_eq!(bo.delay(2, f64::NAN), Duration::ZERO);
        for r in 0..10 {
            for _ in 0..100 {
                let d = bo.random_delay(r);
                assert!(d < bo.ceiling(r) || d == Duration::ZERO, "{d:?}");
            }
        }
    }

    #[test]
    fn policy_rules() {
        let p = RetryPolicy::default();
        assert!(p.should_retry(0, Failure::Status(503), true));
        assert!(p.should_retry(1, Failure::Reset, true));
        assert!(
            !p.should_retry(2, Failure::Reset, true),
            "attempts exhausted"
        );
        assert!(!p.should_retry(0, Failure::Status(500), true));
        assert!(!p.should_retry(0, Failure::Timeout, true));
        assert!(!p.should_retry(0, Failure::Reset, false), "POST after send");
        assert!(
            p.should_retry(0, Failure::ConnectFailure, false),
            "nothing was sent"
        );
        let lax = RetryPolicy {
            idempotent_only: false,
            ..p
        };
        assert!(lax.should_retry(0, Failure::Reset, false));
        assert!(is_idempotent_method("PUT") && !is_idempotent_method("POST"));
    }

    #[test]
    fn parses_condition_names() {
        let on = RetryOn::parse(["connect-failure", "reset", "503"]).expect("parse");
        assert_eq!(on, RetryOn::default());
        let gw = RetryOn::parse(["gateway_error", "timeout"]).expect("parse");
        assert!(gw.matches(Failure::Status(504)) && gw.matches(Failure::Timeout));
        assert!(!gw.matches(Failure::Status(500)));
        let all = RetryOn::parse(["5xx"]).expect("parse");
        assert!(all.matches(Failure::Status(599)) && !all.matches(Failure::Status(404)));
        let err = RetryOn::parse(["404"]).expect_err("not retryable");
        assert!(err.to_string().contains("\"404\""), "{err}");
    }
}
