//! When to stop talking to the backend, and how long to wait between tries.
//!
//! [`Breaker`] is a consecutive-failure circuit breaker: `failures` failed requests in a row
//! open it; while open, no request is sent and writes go to the spool; after the open period one
//! request is let through (half-open): success closes it, failure opens it again for twice as
//! long (capped at `max_open`). Time is passed in, never read, so tests are exact.
//!
//! [`backoff`] is capped exponential backoff with "equal jitter": attempt `n` (from 1) waits
//! `d/2 + rand(0 ..= d/2)` with `d = min(max, base * 2^(n-1))`, so retries of many gateways do
//! not arrive in lockstep and no wait is ever shorter than half the nominal one.

use std::time::{Duration, Instant};

/// The breaker's state, as reported in `status()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Requests flow.
    Closed,
    /// No requests until the open period ends.
    Open,
    /// One probe request is allowed.
    HalfOpen,
}

impl BreakerState {
    /// `closed`, `open`, `half_open`.
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }

    pub(crate) fn to_u8(self) -> u8 {
        self as u8
    }

    pub(crate) fn from_u8(v: u8) -> BreakerState {
        match v {
            1 => BreakerState::Open,
            2 => BreakerState::HalfOpen,
            _ => BreakerState::Closed,
        }
    }
}

/// A consecutive-failure circuit breaker.
#[derive(Debug, Clone)]
pub struct Breaker {
    failures: u32,
    min_open: Duration,
    max_open: Duration,
    consecutive: u32,
    open_for: Duration,
    open_until: Option<Instant>,
}

impl Breaker {
    /// Opens after `failures` failures in a row, first for `min_open`, doubling up to `max_open`.
    pub fn new(failures: u32, min_open: Duration, max_open: Duration) -> Breaker {
        Breaker {
            failures: failures.max(1),
            min_open,
            max_open: max_open.max(min_open),
            consecutive: 0,
            open_for: min_open,
            open_until: None,
        }
    }

    /// The state at `now`.
    pub fn state(&self, now: Instant) -> BreakerState {
        match self.open_until {
            None => BreakerState::Closed,
            Some(t) if now < t => BreakerState::Open,
            Some(_) => BreakerState::HalfOpen,
        }
    }

    /// True when a request may be sent at `now`.
    pub fn allows(&self, now: Instant) -> bool {
        self.state(now) != BreakerState::Open
    }

    /// When the open period ends (`None` when not open).
    pub fn retry_at(&self) -> Option<Instant> {
        self.open_until
    }

    /// A request succeeded: close.
    pub fn success(&mut self) {
        self.consecutive = 0;
        self.open_until = None;
        self.open_for = self.min_open;
    }

    /// A request failed at `now`; returns true when this failure opened the breaker.
    pub fn failure(&mut self, now: Instant) -> bool {
        self.consecutive = self.consecutive.saturating_add(1);
        match self.state(now) {
            BreakerState::HalfOpen => {
                // The probe failed: open again, for longer.
                self.open_for = (self.open_for * 2).min(self.max_open);
                self.open_until = Some(now + self.open_for);
                true
            }
            BreakerState::Closed if self.consecutive >= self.failures => {
                self.open_until = Some(now + self.open_for);
                true
            }
            _ => false,
        }
    }
}

/// The wait before retry `attempt` (1 = first retry); `unit` is a uniform random number in
/// `[0, 1)` (passed in so tests are exact).
pub fn backoff(attempt: u32, base: Duration, max: Duration, unit: f64) -> Duration {
    let exp = attempt.saturating_sub(1).min(20);
    let nominal = base.saturating_mul(1u32 << exp).min(max);
    let half = nominal / 2;
    half + half.mul_f64(unit.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn opens_after_consecutive_failures_and_half_opens_after_the_period() {
        let t0 = Instant::now();
        let mut b = Breaker::new(3, 100 * MS, 400 * MS);
        assert!(!b.failure(t0));
        assert!(!b.failure(t0));
        assert_eq!(b.state(t0), BreakerState::Closed);
        assert!(b.failure(t0));
        assert_eq!(b.state(t0 + 99 * MS), BreakerState::Open);
        assert!(!b.allows(t0 + 99 * MS));
        assert_eq!(b.state(t0 + 100 * MS), BreakerState::HalfOpen);
        // The probe fails: open for twice as long.
        let t1 = t0 + 100 * MS;
        assert!(b.failure(t1));
        assert_eq!(b.retry_at(), Some(t1 + 200 * MS));
        let t2 = t1 + 200 * MS;
        assert!(b.failure(t2));
        assert_eq!(b.retry_at(), Some(t2 + 400 * MS), "capped at max_open");
        let t3 = t2 + 400 * MS;
        assert!(b.failure(t3));
        assert_eq!(b.retry_at(), Some(t3 + 400 * MS));
        b.success();
        assert_eq!(b.state(t3), BreakerState::Closed);
        // Back to the short period after a success.
        b.failure(t3);
        b.failure(t3);
        b.failure(t3);
        assert_eq!(b.retry_at(), Some(t3 + 100 * MS));
    }

    #[test]
    fn a_success_resets_the_failure_count() {
        let t0 = Instant::now();
        let mut b = Breaker::new(2, 10 * MS, 10 * MS);
        b.failure(t0);
        b.success();
        assert!(!b.failure(t0));
        assert!(b.failure(t0));
    }

    #[test]
    fn backoff_doubles_with_equal_jitter_and_caps() {
        let base = 10 * MS;
        let max = 100 * MS;
        assert_eq!(backoff(1, base, max, 0.0), 5 * MS);
        assert_eq!(backoff(1, base, max, 0.5), Duration::from_micros(7_500));
        assert_eq!(backoff(2, base, max, 0.0), 10 * MS);
        assert_eq!(backoff(3, base, max, 0.5), 30 * MS);
        assert_eq!(backoff(10, base, max, 0.0), 50 * MS);
        assert_eq!(backoff(u32::MAX, base, max, 1.0), 100 * MS);
    }
}
