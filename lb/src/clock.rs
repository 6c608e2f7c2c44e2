//! Injected time.
//!
//! Everything in this crate that depends on time — the peak-EWMA decay, outlier ejection expiry,
//! the circuit breaker's open period — reads it through a [`Clock`], as a count of nanoseconds
//! on a monotonic timeline. Tests use [`ManualClock`] and move time forward explicitly, so the
//! math is exact and no test sleeps.
//!
//! Production code uses [`MonotonicClock`] (`std::time::Instant`). Picks never read the clock
//! (peak-EWMA compares estimates without it, see its module doc); completions read it once.
//! Request latencies are measured by the caller and passed in [`Outcome`](crate::Outcome).

use std::fmt::Debug;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// A monotonic source of time in nanoseconds.
///
/// Only differences between two readings are meaningful; the origin is arbitrary but fixed for
/// the life of the clock. Readings never go backwards.
pub trait Clock: Send + Sync + Debug {
    /// Nanoseconds since the clock's origin.
    fn now_ns(&self) -> u64;
}

/// A clock shared between a pool, its guards and its health or breaker state.
pub type SharedClock = Arc<dyn Clock>;

/// The process's monotonic clock (`std::time::Instant`), with its origin at the first reading
/// made by any `MonotonicClock` in the process.
#[derive(Debug, Default, Clone, Copy)]
pub struct MonotonicClock;

impl MonotonicClock {
    /// The clock as a [`SharedClock`].
    pub fn shared() -> SharedClock {
        Arc::new(MonotonicClock)
    }
}

fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

impl Clock for MonotonicClock {
    fn now_ns(&self) -> u64 {
        // u64 nanoseconds cover 584 years of uptime; saturate rather than wrap beyond that.
        u64::try_from(origin().elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// A clock that moves only when told to; for tests.
#[derive(Debug, Default)]
pub struct ManualClock {
    now_ns: AtomicU64,
}

impl ManualClock {
    /// A clock reading `start_ns`.
    pub fn new(start_ns: u64) -> Arc<Self> {
        Arc::new(ManualClock {
            now_ns: AtomicU64::new(start_ns),
        })
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let ns = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        self.now_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// Sets the reading to `now_ns`; never moves it backwards.
    pub fn set(&self, now_ns: u64) {
        self.now_ns.fetch_max(now_ns, Ordering::Relaxed);
    }
}

impl Clock for ManualClock {
    fn now_ns(&self) -> u64 {
        self.now_ns.load(Ordering::Relaxed)
    }
}

/// Converts a duration to nanoseconds, saturating at `u64::MAX`.
pub(crate) fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Reads a clock at most once, on first use; lets a pick skip the clock when nothing needs it.
pub(crate) struct LazyNow<'a> {
    clock: &'a dyn Clock,
    now: Option<u64>,
}

impl<'a> LazyNow<'a> {
    pub(crate) fn new(clock: &'a dyn Clock) -> Self {
        LazyNow { clock, now: None }
    }

    pub(crate) fn get(&mut self) -> u64 {
        *self.now.get_or_insert_with(|| self.clock.now_ns())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_forward() {
        let c = ManualClock::new(5);
        c.advance(Duration::from_nanos(10));
        assert_eq!(c.now_ns(), 15);
        c.set(3);
        assert_eq!(c.now_ns(), 15);
        c.set(100);
        assert_eq!(c.now_ns(), 100);
    }

    #[test]
    fn monotonic_clock_does_not_go_backwards() {
        let c = MonotonicClock;
        let a = c.now_ns();
        let b = c.now_ns();
        assert!(b >= a);
    }

    #[test]
    fn lazy_now_reads_once() {
        let c = ManualClock::new(7);
        let mut n = LazyNow::new(&*c);
        assert_eq!(n.get(), 7);
        c.advance(Duration::from_nanos(1));
        assert_eq!(n.get(), 7);
    }
}
