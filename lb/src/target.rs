//! Upstream targets and their live, lock-free state.
//!
//! A [`Target`] is an address, a static weight and an `Arc<TargetStats>` shared by every request,
//! strategy, health checker and outlier detector that deals with it. All of [`TargetStats`] is
//! atomics (floating-point values are stored as their bit patterns in `AtomicU64`/`AtomicU32`),
//! so reading or updating it never blocks.
//!
//! A request holds an [`InFlightGuard`] for as long as it occupies the target; it reports how the
//! attempt went with [`InFlightGuard::complete`]. Dropping the guard without completing still
//! releases the in-flight slot (a cancelled request teaches the balancer nothing).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::pool::Pool;

/// One upstream endpoint with its static weight and shared live statistics.
#[derive(Debug, Clone)]
pub struct Target {
    /// Socket address of the endpoint.
    pub addr: SocketAddr,
    /// Relative weight (≥ 1) used by weighted strategies.
    pub weight: u32,
    /// Counters shared by every request that uses this target.
    pub stats: Arc<TargetStats>,
}

impl Target {
    /// Creates a target with fresh statistics.
    pub fn new(addr: SocketAddr, weight: u32) -> Self {
        Target {
            addr,
            weight: weight.max(1),
            stats: Arc::new(TargetStats::default()),
        }
    }
}

/// Live state of one target, updated with relaxed atomics on the request path.
#[derive(Debug)]
pub struct TargetStats {
    in_flight: AtomicU64,
    requests: AtomicU64,
    errors: AtomicU64,
    /// Verdict of the active health checker (`true` until a checker says otherwise).
    healthy: AtomicBool,
    /// Clock reading (ns) at which the current ejection ends; `0` = not ejected.
    pub(crate) ejected_until_ns: AtomicU64,
    /// Clock reading (ns) at which the last ejection ended; `0` = never ejected.
    pub(crate) last_ejection_end_ns: AtomicU64,
    /// Failed attempts in a row since the last success or ejection.
    pub(crate) consecutive_failures: AtomicU32,
    /// Ejection multiplier: how many times the target was ejected, less clean intervals.
    pub(crate) times_ejected: AtomicU32,
    /// Peak-EWMA round-trip estimate in nanoseconds, as `f64` bits; `0` = no estimate yet.
    pub(crate) rtt_estimate_ns_bits: AtomicU64,
    /// Clock reading (ns) of the last update of `rtt_estimate_ns_bits`.
    pub(crate) rtt_updated_at_ns: AtomicU64,
    /// Whether the estimate holds a measurement (`false`: still the configured default).
    pub(crate) rtt_measured: AtomicBool,
    /// Last reported CPU utilisation in `[0, 1]`, as `f32` bits.
    cpu_bits: AtomicU32,
    /// Last reported memory utilisation in `[0, 1]`, as `f32` bits.
    mem_bits: AtomicU32,
    /// Last reported load (runnable work per core; `1.0` = saturated), as `f32` bits.
    load_bits: AtomicU32,
    /// Capacity factor in `[HEADROOM_FLOOR, 1]` derived from the last load report, as `f32` bits.
    headroom_bits: AtomicU32,
}

/// Smallest capacity factor a load report can give a target, so a saturated target still gets
/// a trickle of traffic (and weighted sampling stays cheap); see [`TargetStats::report_load`].
pub const HEADROOM_FLOOR: f32 = 0.05;

impl Default for TargetStats {
    fn default() -> Self {
        TargetStats {
            in_flight: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            healthy: AtomicBool::new(true),
            ejected_until_ns: AtomicU64::new(0),
            last_ejection_end_ns: AtomicU64::new(0),
            consecutive_failures: AtomicU32::new(0),
            times_ejected: AtomicU32::new(0),
            rtt_estimate_ns_bits: AtomicU64::new(0),
            rtt_updated_at_ns: AtomicU64::new(0),
            rtt_measured: AtomicBool::new(false),
            cpu_bits: AtomicU32::new(0),
            mem_bits: AtomicU32::new(0),
            load_bits: AtomicU32::new(0),
            headroom_bits: AtomicU32::new(1.0f32.to_bits()),
        }
    }
}

impl TargetStats {
    /// Marks the start of a request to this target; the returned guard ends it when dropped.
    ///
    /// A guard made here is not tied to a balancer: completing it updates the counters and the
    /// RTT estimate (with the coarse clock and default decay) but not outlier detection. Prefer
    /// [`Balancer::start`](crate::Balancer::start).
    pub fn start(self: &Arc<Self>) -> InFlightGuard {
        self.begin();
        InFlightGuard {
            origin: Origin::Bare(Arc::clone(self)),
        }
    }

    pub(crate) fn begin(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    /// Records a failed attempt (connect failure, timeout, reset or 5xx).
    pub fn record_error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }

    /// Requests currently outstanding on this target.
    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Requests started on this target since it was created.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Failed attempts on this target since it was created.
    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    /// The active health checker's verdict (`true` when no checker runs).
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Sets the health verdict; returns the previous one.
    pub fn set_healthy(&self, healthy: bool) -> bool {
        self.healthy.swap(healthy, Ordering::Relaxed)
    }

    /// Stores a load report and derives the target's capacity factor (headroom) from it.
    ///
    /// `cpu` and `mem` are utilisations in `[0, 1]`; `load` is runnable work per core (`0` =
    /// idle, `1` = saturated). Out-of-range values are clamped. The headroom is
    /// `max(HEADROOM_FLOOR, (1 − cpu) · (1 − mem) / (1 + load))`. Returns `false` and keeps the
    /// previous report when any value is NaN or infinite.
    pub fn report_load(&self, cpu: f32, mem: f32, load: f32) -> bool {
        if !(cpu.is_finite() && mem.is_finite() && load.is_finite()) {
            return false;
        }
        let cpu = cpu.clamp(0.0, 1.0);
        let mem = mem.clamp(0.0, 1.0);
        let load = load.max(0.0);
        let headroom = ((1.0 - cpu) * (1.0 - mem) / (1.0 + load)).max(HEADROOM_FLOOR);
        self.cpu_bits.store(cpu.to_bits(), Ordering::Relaxed);
        self.mem_bits.store(mem.to_bits(), Ordering::Relaxed);
        self.load_bits.store(load.to_bits(), Ordering::Relaxed);
        self.headroom_bits
            .store(headroom.to_bits(), Ordering::Relaxed);
        true
    }

    /// The last load report as `(cpu, mem, load)`; zeros before any report.
    pub fn load_report(&self) -> (f32, f32, f32) {
        (
            f32::from_bits(self.cpu_bits.load(Ordering::Relaxed)),
            f32::from_bits(self.mem_bits.load(Ordering::Relaxed)),
            f32::from_bits(self.load_bits.load(Ordering::Relaxed)),
        )
    }

    /// Capacity factor in `[HEADROOM_FLOOR, 1]` from the last load report (`1` before any).
    pub fn headroom(&self) -> f32 {
        f32::from_bits(self.headroom_bits.load(Ordering::Relaxed))
    }

    /// Whether an ejection is recorded (without checking its expiry).
    pub(crate) fn ejection_pending(&self) -> bool {
        self.ejected_until_ns.load(Ordering::Relaxed) != 0
    }
}

/// How one attempt on a target went, reported through [`InFlightGuard::complete`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// Time from sending the request to receiving the response head (or to the failure).
    pub latency: Duration,
    /// `false` for a connect failure, timeout, reset or 5xx response; `true` otherwise
    /// (a 4xx is the client's fault, not the target's).
    pub success: bool,
}

impl Outcome {
    /// A successful attempt that took `latency`.
    pub fn success(latency: Duration) -> Self {
        Outcome {
            latency,
            success: true,
        }
    }

    /// A failed attempt that took `latency`.
    pub fn failure(latency: Duration) -> Self {
        Outcome {
            latency,
            success: false,
        }
    }
}

#[derive(Debug)]
enum Origin {
    Bare(Arc<TargetStats>),
    Pool { pool: Arc<Pool>, idx: usize },
}

/// Holds one in-flight slot on a target; releases it on drop, whatever path the request took.
#[derive(Debug)]
pub struct InFlightGuard {
    origin: Origin,
}

impl InFlightGuard {
    /// A guard for target `idx` of `pool`; the caller has already counted the request.
    pub(crate) fn pooled(pool: Arc<Pool>, idx: usize) -> Self {
        InFlightGuard {
            origin: Origin::Pool { pool, idx },
        }
    }

    /// The target's index in its balancer, when the guard came from one.
    pub fn target_index(&self) -> Option<usize> {
        match &self.origin {
            Origin::Bare(_) => None,
            Origin::Pool { idx, .. } => Some(*idx),
        }
    }

    /// The statistics of the target this guard occupies.
    pub fn stats(&self) -> &TargetStats {
        match &self.origin {
            Origin::Bare(s) => s,
            Origin::Pool { pool, idx } => pool.stats(*idx),
        }
    }

    /// Reports how the attempt went and releases the slot.
    ///
    /// Updates the error counter, the peak-EWMA RTT estimate and (for guards from a balancer)
    /// outlier detection; see [`Pool::record`].
    pub fn complete(self, outcome: Outcome) {
        match &self.origin {
            Origin::Bare(stats) => crate::pool::record_bare(stats, outcome),
            Origin::Pool { pool, idx } => pool.record(*idx, outcome),
        }
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.stats().in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_report_derives_headroom() {
        let s = TargetStats::default();
        assert_eq!(s.headroom(), 1.0);
        assert!(s.report_load(0.5, 0.0, 1.0));
        assert!((s.headroom() - 0.25).abs() < 1e-6);
        assert!(s.report_load(2.0, -1.0, 0.0));
        assert_eq!(s.headroom(), HEADROOM_FLOOR);
        assert_eq!(s.load_report(), (1.0, 0.0, 0.0));
        assert!(!s.report_load(f32::NAN, 0.0, 0.0));
        assert_eq!(s.load_report(), (1.0, 0.0, 0.0));
    }

    #[test]
    fn complete_counts_errors_and_releases() {
        let t = Target::new(([127, 0, 0, 1], 1).into(), 0);
        assert_eq!(t.weight, 1);
        let g = t.stats.start();
        assert_eq!(g.target_index(), None);
        g.complete(Outcome::failure(Duration::from_millis(1)));
        assert_eq!(t.stats.in_flight(), 0);
        assert_eq!(t.stats.errors(), 1);
        t.stats
            .start()
            .complete(Outcome::success(Duration::from_millis(1)));
        assert_eq!(t.stats.errors(), 1);
        assert_eq!(t.stats.requests(), 2);
    }
}
