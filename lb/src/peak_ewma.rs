//! Peak-EWMA power of two choices: the default strategy.
//!
//! Each target keeps an estimate of its round-trip time, `est` (nanoseconds, `f64`), and the
//! clock reading of its last update, `t_est`. A completed attempt with latency `rtt` at time `t`
//! updates it:
//!
//! ```text
//!     w   = exp(−(t − t_est) / decay)
//!     est = rtt                        if rtt > est   (peak: jump up at once)
//!     est = est · w + rtt · (1 − w)    otherwise      (decay toward the lower sample)
//!     t_est = t
//! ```
//!
//! The weight `w` depends on elapsed time, not on the number of samples: a sample that arrives
//! `decay` after the previous one keeps `1/e ≈ 37 %` of the old estimate, whatever the request
//! rate. So a target that turns slow is avoided after its *first* slow response, while one that
//! recovers regains traffic smoothly over about `decay` (default 10 s).
//!
//! **Reading decays too.** When a strategy reads the estimate at time `t` it uses
//! `est · exp(−(t − t_est) / decay)` — the stored value blended with a zero sample at `t`, as
//! tower does — computed from the timestamp without writing anything. A slow target that gets no
//! traffic therefore looks cheaper and cheaper until it is tried again and either confirms its
//! slowness (jumping back up) or proves it recovered.
//!
//! **Cost.** A pick draws two available targets (see [`crate::pool`]) and keeps the one with the
//! lower `cost = est_read × (in_flight + 1) / weight`. Multiplying by the requests outstanding
//! makes a fast but busy target compare like a slower idle one (its queue will be served at that
//! rate); dividing by the static weight lets a `weight = 2` target carry twice the load at
//! equal cost.
//!
//! **Comparing without reading the clock.** Every estimate decays by the same factor per unit of
//! time, so with `L = est × (in_flight + 1) / weight` (stored, undecayed):
//!
//! ```text
//!     cost_b(t) < cost_a(t)  ⇔  L_b · e^{−(t − t_b)/decay} < L_a · e^{−(t − t_a)/decay}
//!                            ⇔  L_b · e^{(t_b − t_a)/decay} < L_a
//! ```
//!
//! — the reading time `t` cancels. The pick evaluates the right-hand form: the same decision as
//! decaying both estimates to "now", with one `exp` and no clock read. (Readings for display,
//! [`PeakEwma::cost`] and the admin snapshot, do decay to the current time.)
//!
//! **Initial value.** A target without samples starts at `default_rtt` (30 ms), timestamped when
//! its pool is built, so new targets neither flood (estimate 0) nor starve. The default is a
//! placeholder, not a measurement: the first completed attempt *replaces* it (up or down), so a
//! fast target does not need `decay` seconds of traffic to live down the 30 ms guess.
//!
//! **Failures.** A failed attempt counts as a sample of `max(latency, est)`: a target that fails
//! fast must not look fast. Keeping it out is outlier detection's job ([`crate::outlier`]).
//!
//! Concurrency: the estimate is an `AtomicU64` holding `f64` bits, updated with a
//! compare-and-swap loop; the timestamp is a separate atomic advanced with `fetch_max`. Two
//! completions racing may blend against each other's timestamp — a bounded, transient error that
//! the next sample corrects. Nothing here locks.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::clock::{nanos, LazyNow};
use crate::pool::Pool;
use crate::target::{Outcome, TargetStats};
use crate::{Balancer, PickContext, Target};

/// Peak-EWMA settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EwmaConfig {
    /// Time constant of the exponential decay (default 10 s).
    pub decay: Duration,
    /// Estimate of a target that has no samples yet (default 30 ms).
    pub default_rtt: Duration,
}

impl Default for EwmaConfig {
    fn default() -> Self {
        EwmaConfig {
            decay: Duration::from_secs(10),
            default_rtt: Duration::from_millis(30),
        }
    }
}

impl EwmaConfig {
    /// The settings in the units the hot path uses.
    pub(crate) fn compile(&self) -> Ewma {
        let decay_ns = nanos(self.decay).max(1) as f64;
        Ewma {
            decay_ns,
            default_rtt_ns: nanos(self.default_rtt).max(1) as f64,
        }
    }
}

/// [`EwmaConfig`] converted once to nanoseconds as `f64`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ewma {
    decay_ns: f64,
    default_rtt_ns: f64,
}

/// `est · exp(−(now − updated_at) / decay_ns)`: the estimate read at `now`.
pub fn decayed(est_ns: f64, updated_at_ns: u64, now_ns: u64, decay_ns: f64) -> f64 {
    let dt = now_ns.saturating_sub(updated_at_ns);
    if dt == 0 {
        est_ns
    } else {
        est_ns * (-(dt as f64) / decay_ns).exp()
    }
}

/// The estimate after a sample of `rtt_ns` at `now_ns` (the formula in the module doc).
pub fn updated(est_ns: f64, updated_at_ns: u64, now_ns: u64, rtt_ns: f64, decay_ns: f64) -> f64 {
    if rtt_ns > est_ns {
        return rtt_ns;
    }
    let dt = now_ns.saturating_sub(updated_at_ns) as f64;
    let w = (-dt / decay_ns).exp();
    est_ns * w + rtt_ns * (1.0 - w)
}

/// Gives `stats` the default estimate, timestamped `now_ns`, if it has none.
pub(crate) fn init_estimate(stats: &TargetStats, now_ns: u64, cfg: &Ewma) {
    if stats
        .rtt_estimate_ns_bits
        .compare_exchange(
            0,
            cfg.default_rtt_ns.to_bits(),
            Ordering::Relaxed,
            Ordering::Relaxed,
        )
        .is_ok()
    {
        stats.rtt_updated_at_ns.fetch_max(now_ns, Ordering::Relaxed);
    }
}

/// The estimate of `stats` read at `now_ns` (`default_rtt` if it has none).
pub(crate) fn estimate_ns(stats: &TargetStats, now_ns: u64, cfg: &Ewma) -> f64 {
    let bits = stats.rtt_estimate_ns_bits.load(Ordering::Relaxed);
    if bits == 0 {
        return cfg.default_rtt_ns;
    }
    let at = stats.rtt_updated_at_ns.load(Ordering::Relaxed);
    decayed(f64::from_bits(bits), at, now_ns, cfg.decay_ns)
}

/// Folds one completed attempt into the estimate of `stats`.
pub(crate) fn record(stats: &TargetStats, now_ns: u64, outcome: Outcome, cfg: &Ewma) {
    let decay_ns = cfg.decay_ns;
    let latency_ns = (nanos(outcome.latency) as f64).max(1.0);
    if !stats.rtt_measured.load(Ordering::Relaxed)
        && !stats.rtt_measured.swap(true, Ordering::Relaxed)
    {
        // First measurement: it replaces the default (a failure only raises it).
        let bits = stats.rtt_estimate_ns_bits.load(Ordering::Relaxed);
        let est = if bits == 0 {
            cfg.default_rtt_ns
        } else {
            f64::from_bits(bits)
        };
        let first = if outcome.success {
            latency_ns
        } else {
            latency_ns.max(est)
        };
        stats
            .rtt_estimate_ns_bits
            .store(first.to_bits(), Ordering::Relaxed);
        stats.rtt_updated_at_ns.fetch_max(now_ns, Ordering::Relaxed);
        return;
    }
    let at = stats.rtt_updated_at_ns.load(Ordering::Relaxed);
    let mut cur = stats.rtt_estimate_ns_bits.load(Ordering::Relaxed);
    loop {
        let est = if cur == 0 {
            cfg.default_rtt_ns
        } else {
            f64::from_bits(cur)
        };
        let sample = if outcome.success {
            latency_ns
        } else {
            latency_ns.max(est)
        };
        // `max(1.0)` keeps the bits non-zero: zero means "no estimate".
        let next = updated(est, at, now_ns, sample, decay_ns)
            .max(1.0)
            .to_bits();
        match stats.rtt_estimate_ns_bits.compare_exchange_weak(
            cur,
            next,
            Ordering::Relaxed,
            Ordering::Relaxed,
        ) {
            Ok(_) => break,
            Err(actual) => cur = actual,
        }
    }
    stats.rtt_updated_at_ns.fetch_max(now_ns, Ordering::Relaxed);
}

/// Peak-EWMA P2C over a [`Pool`].
#[derive(Debug)]
pub struct PeakEwma {
    pool: Arc<Pool>,
}

impl PeakEwma {
    /// Builds the strategy over `pool`.
    pub fn new(pool: Arc<Pool>) -> Self {
        PeakEwma { pool }
    }

    /// The cost of target `idx` at `now_ns` (module doc): `est × (in_flight + 1) / weight`.
    pub fn cost(&self, idx: usize, now_ns: u64) -> Option<f64> {
        let t = self.pool.targets().get(idx)?;
        Some(cost(t, now_ns, &self.pool.ewma()))
    }
}

fn cost(t: &Target, now_ns: u64, cfg: &Ewma) -> f64 {
    let est = estimate_ns(&t.stats, now_ns, cfg);
    est * (t.stats.in_flight() as f64 + 1.0) / f64::from(t.weight.max(1))
}

/// Whether `b`'s cost is strictly below `a`'s at any common reading time `t` (module doc):
/// `L_b · e^{(t_b − t_a)/decay} < L_a` with `L = est · (in_flight + 1) / weight` undecayed.
fn b_cheaper(a: &Target, b: &Target, cfg: &Ewma) -> bool {
    let (ea, ta) = stored(&a.stats, cfg);
    let (eb, tb) = stored(&b.stats, cfg);
    // Cross-multiplied weights: L_a ∝ est_a · (in_a + 1) · w_b, L_b ∝ est_b · (in_b + 1) · w_a.
    let la = ea * (a.stats.in_flight() as f64 + 1.0) * f64::from(b.weight.max(1));
    let mut lb = eb * (b.stats.in_flight() as f64 + 1.0) * f64::from(a.weight.max(1));
    if ta != tb {
        let dt = if tb > ta {
            (tb - ta) as f64
        } else {
            -((ta - tb) as f64)
        };
        lb *= (dt / cfg.decay_ns).exp();
    }
    lb < la
}

/// The stored (undecayed) estimate and its timestamp.
fn stored(stats: &TargetStats, cfg: &Ewma) -> (f64, u64) {
    let bits = stats.rtt_estimate_ns_bits.load(Ordering::Relaxed);
    let at = stats.rtt_updated_at_ns.load(Ordering::Relaxed);
    if bits == 0 {
        (cfg.default_rtt_ns, at)
    } else {
        (f64::from_bits(bits), at)
    }
}

/// Peak-EWMA P2C pick over `pool` (also the consistent-hash fallback).
pub(crate) fn pick(pool: &Pool) -> Option<usize> {
    let mut now = LazyNow::new(&**pool.clock());
    let cfg = pool.ewma();
    let targets = pool.targets();
    pool.p2c(&mut now, |a, b| b_cheaper(&targets[a], &targets[b], &cfg))
}

impl Balancer for PeakEwma {
    fn pick(&self, _ctx: &PickContext) -> Option<usize> {
        pick(&self.pool)
    }

    fn targets(&self) -> &[Target] {
        self.pool.targets()
    }

    fn strategy(&self) -> &'static str {
        "peak_ewma"
    }

    fn pool(&self) -> Option<&Arc<Pool>> {
        Some(&self.pool)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Clock, ManualClock};
    use crate::outlier::OutlierConfig;

    const MS: u64 = 1_000_000;
    const S: u64 = 1_000_000_000;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * b.abs().max(1.0)
    }

    fn setup(n: usize) -> (PeakEwma, Arc<ManualClock>) {
        let clock = ManualClock::new(S);
        let targets = (0..n)
            .map(|i| Target::new(([127, 0, 0, 1], 3000 + i as u16).into(), 1))
            .collect();
        let pool = Pool::new(
            targets,
            clock.clone(),
            EwmaConfig::default(),
            OutlierConfig::disabled(),
        );
        (PeakEwma::new(pool), clock)
    }

    fn complete(b: &PeakEwma, idx: usize, ms: u64) {
        b.start(idx)
            .expect("slot")
            .complete(Outcome::success(Duration::from_millis(ms)));
    }

    #[test]
    fn starts_at_default_rtt() {
        let (b, _) = setup(1);
        assert_eq!(b.cost(0, S), Some(30.0 * MS as f64));
    }

    #[test]
    fn jumps_up_decays_down_and_idles_toward_zero() {
        let (b, clock) = setup(1);
        let s = &b.targets()[0].stats;
        let cfg = EwmaConfig::default().compile();
        // A slower sample replaces the estimate immediately.
        clock.advance(Duration::from_secs(1));
        complete(&b, 0, 100);
        assert!(close(
            estimate_ns(s, clock.now_ns(), &cfg),
            100.0 * MS as f64
        ));
        // A faster sample one decay later keeps 1/e of the old estimate.
        clock.advance(Duration::from_secs(10));
        complete(&b, 0, 10);
        let w = (-1.0f64).exp();
        let expect = 100.0 * MS as f64 * w + 10.0 * MS as f64 * (1.0 - w);
        assert!(close(estimate_ns(s, clock.now_ns(), &cfg), expect));
        // Idle: the read value decays with time, without any write.
        clock.advance(Duration::from_secs(20));
        let read = estimate_ns(s, clock.now_ns(), &cfg);
        assert!(close(read, expect * (-2.0f64).exp()));
        assert!(close(
            f64::from_bits(s.rtt_estimate_ns_bits.load(Ordering::Relaxed)),
            expect
        ));
        // Cost multiplies by in-flight + 1.
        let _g = b.start(0).expect("slot");
        assert!(close(b.cost(0, clock.now_ns()).expect("cost"), 2.0 * read));
    }

    #[test]
    fn first_sample_replaces_the_default() {
        let (b, clock) = setup(1);
        clock.advance(Duration::from_secs(1));
        complete(&b, 0, 5);
        let s = &b.targets()[0].stats;
        assert!(close(
            estimate_ns(s, clock.now_ns(), &EwmaConfig::default().compile()),
            5.0 * MS as f64
        ));
    }

    #[test]
    fn same_instant_sample_is_ignored_when_lower() {
        // dt = 0 → w = 1: a lower sample at the very same instant does not move the estimate.
        assert_eq!(updated(50.0, 7, 7, 10.0, 1e10), 50.0);
        assert_eq!(updated(50.0, 7, 7, 60.0, 1e10), 60.0);
        assert_eq!(decayed(50.0, 9, 7, 1e10), 50.0);
    }

    #[test]
    fn failure_never_lowers_the_estimate() {
        let (b, clock) = setup(1);
        clock.advance(Duration::from_secs(5));
        b.start(0)
            .expect("slot")
            .complete(Outcome::failure(Duration::from_micros(10)));
        let s = &b.targets()[0].stats;
        assert!(close(
            estimate_ns(s, clock.now_ns(), &EwmaConfig::default().compile()),
            30.0 * MS as f64
        ));
        assert_eq!(s.errors(), 1);
    }

    #[test]
    fn idle_slow_target_is_eventually_retried() {
        let (b, clock) = setup(2);
        clock.advance(Duration::from_millis(1));
        complete(&b, 1, 2_000);
        // With two targets every pair is {0, 1}: the comparison is deterministic. The fast
        // target keeps getting 5 ms samples once a second; the idle slow one only decays.
        let mut retried_after_s = None;
        for sec in 1..=120u64 {
            clock.advance(Duration::from_secs(1));
            complete(&b, 0, 5);
            if b.pick(&PickContext::default()) == Some(1) {
                retried_after_s = Some(sec);
                break;
            }
        }
        // 2000 ms · e^(−t/10 s) drops below the fast estimate (5 ms + 25 ms · e^(−t/10 s))
        // at t = 10 s · ln(1975 / 5) ≈ 59.8 s.
        assert_eq!(retried_after_s, Some(60));
    }

    #[test]
    fn clock_free_comparison_matches_decayed_costs() {
        fastrand::seed(5);
        let cfg = EwmaConfig::default().compile();
        for _ in 0..2_000 {
            let make = |port| {
                let t = Target::new(([127, 0, 0, 1], port).into(), fastrand::u32(1..4));
                let est = fastrand::f64() * 100.0 * MS as f64 + 1.0;
                t.stats
                    .rtt_estimate_ns_bits
                    .store(est.to_bits(), Ordering::Relaxed);
                let at = fastrand::u64(S..100 * S);
                t.stats.rtt_updated_at_ns.store(at, Ordering::Relaxed);
                for _ in 0..fastrand::u32(0..4) {
                    t.stats.begin();
                }
                t
            };
            let (a, b) = (make(1), make(2));
            let now = 100 * S + fastrand::u64(0..60 * S);
            let direct = cost(&b, now, &cfg) < cost(&a, now, &cfg);
            let (ca, cb) = (cost(&a, now, &cfg), cost(&b, now, &cfg));
            // Skip near-ties where rounding may legitimately differ.
            if (ca - cb).abs() > 1e-9 * ca.max(cb) {
                assert_eq!(b_cheaper(&a, &b, &cfg), direct, "{ca} {cb}");
            }
        }
    }

    #[test]
    fn weight_divides_cost() {
        let clock = ManualClock::new(S);
        let targets = vec![
            Target::new(([127, 0, 0, 1], 1).into(), 1),
            Target::new(([127, 0, 0, 1], 2).into(), 3),
        ];
        let pool = Pool::new(
            targets,
            clock.clone(),
            EwmaConfig::default(),
            OutlierConfig::disabled(),
        );
        let b = PeakEwma::new(pool);
        let c0 = b.cost(0, S).expect("cost");
        let c1 = b.cost(1, S).expect("cost");
        assert!(close(c0, 3.0 * c1));
        assert_eq!(b.cost(2, S), None);
    }
}
