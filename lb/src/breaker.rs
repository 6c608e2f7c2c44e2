//! Per-upstream circuit breaker: a concurrency cap plus failure tripping.
//!
//! Two independent protections, checked by [`CircuitBreaker::try_acquire`] before a request is
//! sent to the upstream:
//!
//! * **Concurrency cap** (Envoy's `max_requests`): at most `max_in_flight` requests hold a
//!   [`BreakerGuard`] at once; one more is rejected with [`Rejected::MaxInFlight`] instead of
//!   queueing behind an overloaded upstream. `0` means no cap.
//! * **Tripping**: `consecutive_failures` failed requests in a row (`0` disables) **open** the
//!   breaker for `open_for` (config key `eject_for`, default 10 s): every request is rejected at
//!   once with [`Rejected::Open`]. When the period ends the breaker is **half-open**: exactly one
//!   request (the probe) is let through, the rest are still rejected. If the probe succeeds the
//!   breaker **closes** (failure count reset); if it fails the breaker opens for another
//!   `open_for`; if the probe is abandoned (guard dropped without an outcome) the next request
//!   becomes the probe.
//!
//! ```text
//!   Closed ──(n failures in a row)──► Open ──(open_for elapsed)──► HalfOpen
//!     ▲                                 ▲                              │
//!     └──────────(probe succeeds)───────┼──────────────────────────────┤
//!                                       └──────(probe fails)───────────┘
//! ```
//!
//! Outcomes of requests that started before the breaker opened are ignored, so a burst of
//! in-flight failures cannot re-trip it. State is three atomics (`open_until_ns`, `probing`,
//! the failure run) read with the injected [`Clock`](crate::clock::Clock); nothing locks.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::clock::{nanos, SharedClock};

/// Breaker settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Largest number of concurrent requests (`0` = no cap); default 1024.
    pub max_in_flight: u64,
    /// Failed requests in a row that open the breaker (`0` = never); default 5.
    pub consecutive_failures: u32,
    /// How long the breaker stays open before the half-open probe; default 10 s.
    pub open_for: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            max_in_flight: 1024,
            consecutive_failures: 5,
            open_for: Duration::from_secs(10),
        }
    }
}

/// Why [`CircuitBreaker::try_acquire`] refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejected {
    /// `limit` requests are already in flight.
    MaxInFlight {
        /// The configured cap.
        limit: u64,
    },
    /// The breaker is open (or half-open with its probe outstanding).
    Open {
        /// Time until the next probe may be attempted (zero while a probe is outstanding).
        retry_after: Duration,
    },
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejected::MaxInFlight { limit } => {
                write!(f, "upstream has {limit} requests in flight (max_in_flight)")
            }
            Rejected::Open { retry_after } => write!(
                f,
                "circuit breaker open after consecutive failures; next probe in {} ms",
                retry_after.as_millis()
            ),
        }
    }
}

impl std::error::Error for Rejected {}

/// The breaker's state as seen now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Requests flow.
    Closed,
    /// Requests are rejected for `remaining`.
    Open {
        /// Time left in the open period.
        remaining: Duration,
    },
    /// One probe request may pass.
    HalfOpen,
}

/// A circuit breaker for one upstream.
#[derive(Debug)]
pub struct CircuitBreaker {
    cfg: BreakerConfig,
    clock: SharedClock,
    in_flight: AtomicU64,
    failures_in_a_row: AtomicU32,
    /// Clock reading (ns) at which the open period ends; `0` = closed.
    open_until_ns: AtomicU64,
    /// A half-open probe is outstanding.
    probing: AtomicBool,
    trips: AtomicU64,
}

impl CircuitBreaker {
    /// A closed breaker.
    pub fn new(cfg: BreakerConfig, clock: SharedClock) -> Arc<Self> {
        Arc::new(CircuitBreaker {
            cfg,
            clock,
            in_flight: AtomicU64::new(0),
            failures_in_a_row: AtomicU32::new(0),
            open_until_ns: AtomicU64::new(0),
            probing: AtomicBool::new(false),
            trips: AtomicU64::new(0),
        })
    }

    /// The settings.
    pub fn config(&self) -> &BreakerConfig {
        &self.cfg
    }

    /// Requests currently holding a guard.
    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// How many times the breaker has opened.
    pub fn trips(&self) -> u64 {
        self.trips.load(Ordering::Relaxed)
    }

    /// The current state.
    pub fn state(&self) -> BreakerState {
        let until = self.open_until_ns.load(Ordering::Relaxed);
        if until == 0 {
            return BreakerState::Closed;
        }
        let now = self.clock.now_ns();
        if now < until {
            BreakerState::Open {
                remaining: Duration::from_nanos(until - now),
            }
        } else {
            BreakerState::HalfOpen
        }
    }

    /// Admits one request, or says why not. Keep the guard for the whole request and report its
    /// outcome with [`BreakerGuard::record`].
    pub fn try_acquire(self: &Arc<Self>) -> Result<BreakerGuard, Rejected> {
        let mut probe = false;
        let until = self.open_until_ns.load(Ordering::Relaxed);
        if until != 0 {
            let now = self.clock.now_ns();
            if now < until {
                return Err(Rejected::Open {
                    retry_after: Duration::from_nanos(until - now),
                });
            }
            if self
                .probing
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
                .is_err()
            {
                return Err(Rejected::Open {
                    retry_after: Duration::ZERO,
                });
            }
            probe = true;
        }
        let limit = self.cfg.max_in_flight;
        let prev = self.in_flight.fetch_add(1, Ordering::Relaxed);
        if limit != 0 && prev >= limit {
            self.in_flight.fetch_sub(1, Ordering::Relaxed);
            if probe {
                self.probing.store(false, Ordering::Release);
            }
            return Err(Rejected::MaxInFlight { limit });
        }
        Ok(BreakerGuard {
            breaker: Arc::clone(self),
            probe,
            opened_before: until,
        })
    }

    fn open(&self, now: u64) -> u64 {
        now.saturating_add(nanos(self.cfg.open_for)).max(1)
    }

    fn on_success(&self, probe: bool) {
        self.failures_in_a_row.store(0, Ordering::Relaxed);
        if probe {
            self.open_until_ns.store(0, Ordering::Relaxed);
            self.probing.store(false, Ordering::Release);
        }
    }

    fn on_failure(&self, probe: bool, opened_before: u64) {
        let now = self.clock.now_ns();
        if probe {
            self.open_until_ns.store(self.open(now), Ordering::Relaxed);
            self.trips.fetch_add(1, Ordering::Relaxed);
            self.probing.store(false, Ordering::Release);
            return;
        }
        // Started while closed but the breaker has opened since: already accounted for.
        if opened_before != 0 || self.open_until_ns.load(Ordering::Relaxed) != 0 {
            return;
        }
        let run = self.failures_in_a_row.fetch_add(1, Ordering::Relaxed) + 1;
        let threshold = self.cfg.consecutive_failures;
        if threshold != 0
            && run >= threshold
            && self
                .open_until_ns
                .compare_exchange(0, self.open(now), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.failures_in_a_row.store(0, Ordering::Relaxed);
            self.trips.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// One admitted request; releases its slot on drop.
#[derive(Debug)]
pub struct BreakerGuard {
    breaker: Arc<CircuitBreaker>,
    probe: bool,
    opened_before: u64,
}

impl BreakerGuard {
    /// Whether this request is the half-open probe.
    pub fn is_probe(&self) -> bool {
        self.probe
    }

    /// Reports the request's outcome (`false` for connect failure, timeout, reset, 5xx) and
    /// releases the slot.
    pub fn record(mut self, success: bool) {
        if success {
            self.breaker.on_success(self.probe);
        } else {
            self.breaker.on_failure(self.probe, self.opened_before);
        }
        // The probe has been resolved; do not release `probing` again on drop.
        self.probe = false;
    }
}

impl Drop for BreakerGuard {
    fn drop(&mut self) {
        self.breaker.in_flight.fetch_sub(1, Ordering::Relaxed);
        if self.probe {
            // Abandoned probe: let the next request probe instead.
            self.breaker.probing.store(false, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    fn breaker(max: u64, failures: u32) -> (Arc<CircuitBreaker>, Arc<ManualClock>) {
        let clock = ManualClock::new(1);
        let cfg = BreakerConfig {
            max_in_flight: max,
            consecutive_failures: failures,
            open_for: Duration::from_secs(10),
        };
        (CircuitBreaker::new(cfg, clock.clone()), clock)
    }

    #[test]
    fn caps_in_flight() {
        let (b, _) = breaker(3, 0);
        let guards: Vec<_> = (0..3).map(|_| b.try_acquire().expect("admit")).collect();
        assert_eq!(
            b.try_acquire().map(|_| ()),
            Err(Rejected::MaxInFlight { limit: 3 })
        );
        assert_eq!(b.in_flight(), 3);
        drop(guards);
        assert_eq!(b.in_flight(), 0);
        assert!(b.try_acquire().is_ok());
        let (unlimited, _) = breaker(0, 0);
        let _many: Vec<_> = (0..10_000).map(|_| unlimited.try_acquire()).collect();
        assert_eq!(unlimited.in_flight(), 10_000);
    }

    #[test]
    fn trips_then_half_open_probe_closes_or_reopens() {
        let (b, clock) = breaker(100, 3);
        for _ in 0..2 {
            b.try_acquire().expect("admit").record(false);
        }
        b.try_acquire().expect("admit").record(true); // success resets the run
        let in_flight_before_trip = b.try_acquire().expect("admit");
        for _ in 0..3 {
            b.try_acquire().expect("admit").record(false);
        }
        assert_eq!(b.trips(), 1);
        assert_eq!(
            b.try_acquire().map(|_| ()),
            Err(Rejected::Open {
                retry_after: Duration::from_secs(10)
            })
        );
        in_flight_before_trip.record(false); // ignored: started before the trip
        assert_eq!(b.trips(), 1);
        clock.advance(Duration::from_secs(10));
        assert_eq!(b.state(), BreakerState::HalfOpen);
        let probe = b.try_acquire().expect("probe");
        assert!(probe.is_probe());
        assert!(matches!(b.try_acquire(), Err(Rejected::Open { .. })));
        probe.record(false);
        assert_eq!(b.trips(), 2);
        assert!(matches!(b.state(), BreakerState::Open { .. }));
        clock.advance(Duration::from_secs(10));
        drop(b.try_acquire().expect("abandoned probe"));
        let probe = b.try_acquire().expect("next probe");
        probe.record(true);
        assert_eq!(b.state(), BreakerState::Closed);
        let g = b.try_acquire().expect("closed");
        assert!(!g.is_probe());
    }
}
