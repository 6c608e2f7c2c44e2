//! Reconnect backoff: exponential, capped, with jitter, reset after a stable connection.
//!
//! After the `n`-th consecutive failure (counting from 0) the ceiling is
//! `min(max, base × 2ⁿ)` and the delay is drawn uniformly from `[ceiling / 2, ceiling]`
//! ("equal jitter"): agents that lost the gateway at the same moment spread their reconnects
//! over half the ceiling, and no agent ever retries in a tight loop (full jitter can draw 0).
//! With the defaults (1 s base, 30 s cap) the ceilings are 1, 2, 4, 8, 16, 30, 30 ... s.
//!
//! A connection that stayed up for `stable_after` (60 s by default) resets the count, so a
//! gateway restart after days of uptime is retried after about a second; a connection that
//! drops again soon after it was made (an auth failure, a gateway crash loop) keeps growing
//! the delay. The random draw is passed in, so tests pin the sequence.

use std::time::Duration;

use crate::config::ReconnectPolicy;

/// The backoff state of the reconnect loop.
#[derive(Debug, Clone)]
pub struct Backoff {
    policy: ReconnectPolicy,
    failures: u32,
}

impl Backoff {
    /// A fresh backoff.
    pub fn new(policy: ReconnectPolicy) -> Self {
        Backoff {
            policy,
            failures: 0,
        }
    }

    /// The ceiling of the next delay.
    pub fn ceiling(&self) -> Duration {
        let factor = 2u32.saturating_pow(self.failures.min(31));
        self.policy
            .base
            .checked_mul(factor)
            .unwrap_or(self.policy.max)
            .min(self.policy.max)
    }

    /// The delay before the next attempt, `unit` being a uniform draw from `[0, 1]`; counts one
    /// more failure.
    pub fn next_delay(&mut self, unit: f64) -> Duration {
        let ceiling = self.ceiling();
        self.failures = self.failures.saturating_add(1);
        let half = ceiling / 2;
        half + half.mul_f64(unit.clamp(0.0, 1.0))
    }

    /// A connection ended after being up for `connected_for`: resets the backoff when that
    /// was long enough.
    pub fn on_disconnect(&mut self, connected_for: Duration) {
        if connected_for >= self.policy.stable_after {
            self.failures = 0;
        }
    }

    /// Consecutive failures so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> ReconnectPolicy {
        ReconnectPolicy {
            base: Duration::from_secs(1),
            max: Duration::from_secs(30),
            stable_after: Duration::from_secs(60),
        }
    }

    #[test]
    fn doubles_up_to_the_cap_with_equal_jitter() {
        let mut b = Backoff::new(policy());
        let highs: Vec<u64> = (0..8)
            .map(|_| b.next_delay(1.0).as_millis() as u64)
            .collect();
        assert_eq!(highs, [1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]);
        let mut b = Backoff::new(policy());
        let lows: Vec<u64> = (0..7)
            .map(|_| b.next_delay(0.0).as_millis() as u64)
            .collect();
        assert_eq!(lows, [500, 1000, 2000, 4000, 8000, 15000, 15000]);
        let mut b = Backoff::new(policy());
        assert_eq!(b.next_delay(0.5), Duration::from_millis(750));
    }

    #[test]
    fn resets_only_after_a_stable_connection() {
        let mut b = Backoff::new(policy());
        for _ in 0..4 {
            b.next_delay(0.0);
        }
        b.on_disconnect(Duration::from_secs(5));
        assert_eq!(b.ceiling(), Duration::from_secs(16));
        b.on_disconnect(Duration::from_secs(60));
        assert_eq!(b.ceiling(), Duration::from_secs(1));
        assert_eq!(b.failures(), 0);
    }

    #[test]
    fn never_overflows() {
        let mut b = Backoff::new(policy());
        for _ in 0..100 {
            assert!(b.next_delay(1.0) <= Duration::from_secs(30));
        }
    }
}
