//! The state every strategy shares: targets, clock, RTT estimates and availability.
//!
//! A [`Pool`] is built once per upstream (per config version) and shared, behind an `Arc`, by the
//! strategy, the [`InFlightGuard`]s of the requests in flight and the admin API.
//!
//! # Availability and panic mode
//! A target is **available** when the active health checker considers it healthy
//! ([`TargetStats::is_healthy`]) and outlier detection has not ejected it ([`crate::outlier`]).
//! Strategies pick only among available targets. When **no** target is available the pool is in
//! **panic mode** (Envoy's term): strategies pick among *all* targets as if every one were
//! available, because sending traffic to possibly-broken targets beats failing every request
//! with certainty — the health checker or the ejection may be wrong, or the failure may be
//! partial. Panic mode ends as soon as one target becomes available again.
//!
//! # Power of two choices
//! `Pool::p2c` is the selection step shared by `least_request` and `peak_ewma`: draw two
//! distinct targets uniformly at random among the available ones and keep the one with the
//! lower cost (the first drawn on a tie); both draws come from one 64-bit random word. Compared with scanning for the global minimum this is
//! O(1), needs no shared ordering structure, and avoids the herd behaviour of everyone sending to
//! the same "best" target between two load updates. The fast path draws from all targets and
//! redraws a candidate that is unavailable (up to [`REDRAWS`] times); if that keeps failing
//! (many targets down) it falls back to an exact O(N) two-pass selection over the available set.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::clock::{Clock, LazyNow, MonotonicClock, SharedClock};
use crate::outlier::{OutlierConfig, OutlierDetector};
use crate::peak_ewma::{self, Ewma, EwmaConfig};
use crate::target::{InFlightGuard, Outcome, Target, TargetStats};

/// Random draws per candidate before `Pool::p2c` falls back to an exact scan.
pub const REDRAWS: usize = 4;

/// Targets of one upstream with the per-upstream settings strategies and guards need.
///
/// Aligned to a cache line so that, inside its `Arc`, the reference count (written by every
/// [`Pool::start`] and guard drop) does not share a line with the fields every pick reads.
#[derive(Debug)]
#[repr(align(64))]
pub struct Pool {
    targets: Vec<Target>,
    clock: SharedClock,
    ewma_config: EwmaConfig,
    ewma: Ewma,
    outlier: OutlierDetector,
}

/// A per-target view for the admin API (`GET /admin/upstreams`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TargetSnapshot {
    /// Socket address of the target.
    pub addr: std::net::SocketAddr,
    /// Static weight from the config.
    pub weight: u32,
    /// The active health checker's verdict.
    pub healthy: bool,
    /// Whether outlier detection currently ejects the target.
    pub ejected: bool,
    /// Requests outstanding on the target.
    pub in_flight: u64,
    /// Peak-EWMA RTT estimate, decayed to now, in microseconds.
    pub ewma_rtt_us: u64,
    /// Requests started since the target was created.
    pub requests: u64,
    /// Failed attempts since the target was created.
    pub errors: u64,
}

impl Pool {
    /// Builds a pool; targets without an RTT estimate start at `ewma.default_rtt`, timestamped now.
    pub fn new(
        targets: Vec<Target>,
        clock: SharedClock,
        ewma: EwmaConfig,
        outlier: OutlierConfig,
    ) -> Arc<Self> {
        let now = clock.now_ns();
        let compiled = ewma.compile();
        for t in &targets {
            peak_ewma::init_estimate(&t.stats, now, &compiled);
        }
        Arc::new(Pool {
            targets,
            clock,
            ewma_config: ewma,
            ewma: compiled,
            outlier: OutlierDetector::new(outlier),
        })
    }

    /// A pool with the [`MonotonicClock`] and default peak-EWMA and outlier settings.
    pub fn with_defaults(targets: Vec<Target>) -> Arc<Self> {
        Pool::new(
            targets,
            MonotonicClock::shared(),
            EwmaConfig::default(),
            OutlierConfig::default(),
        )
    }

    /// The targets, in config order.
    pub fn targets(&self) -> &[Target] {
        &self.targets
    }

    /// The pool's clock.
    pub fn clock(&self) -> &SharedClock {
        &self.clock
    }

    /// The peak-EWMA settings.
    pub fn ewma_config(&self) -> &EwmaConfig {
        &self.ewma_config
    }

    pub(crate) fn ewma(&self) -> Ewma {
        self.ewma
    }

    /// The outlier-detection settings.
    pub fn outlier_config(&self) -> &OutlierConfig {
        self.outlier.config()
    }

    /// Targets currently ejected (expired ejections not yet observed still count).
    pub fn ejected_count(&self) -> usize {
        self.outlier.ejected_count()
    }

    pub(crate) fn stats(&self, idx: usize) -> &TargetStats {
        &self.targets[idx].stats
    }

    /// Whether target `idx` is healthy and not ejected (see the module doc); `false` when out
    /// of range.
    pub fn is_available(&self, idx: usize) -> bool {
        idx < self.targets.len() && self.available_at(idx, &mut LazyNow::new(&*self.clock))
    }

    /// Whether target `idx` (in range) is available; reads the clock only if it was ejected.
    pub(crate) fn available_at(&self, idx: usize, now: &mut LazyNow<'_>) -> bool {
        let s = &*self.targets[idx].stats;
        if !s.is_healthy() {
            return false;
        }
        !s.ejection_pending() || !self.outlier.is_ejected(s, now.get())
    }

    /// Number of available targets (O(N)); `0` means panic mode.
    pub fn available_count(&self) -> usize {
        let mut now = LazyNow::new(&*self.clock);
        (0..self.targets.len())
            .filter(|&i| self.available_at(i, &mut now))
            .count()
    }

    /// Takes an in-flight slot on target `idx`; `None` when out of range.
    pub fn start(self: &Arc<Self>, idx: usize) -> Option<InFlightGuard> {
        let t = self.targets.get(idx)?;
        t.stats.begin();
        Some(InFlightGuard::pooled(Arc::clone(self), idx))
    }

    /// Records a completed attempt on target `idx`: the error counter, the RTT estimate
    /// ([`crate::peak_ewma`]) and outlier detection ([`crate::outlier`]).
    pub fn record(&self, idx: usize, outcome: Outcome) {
        let Some(t) = self.targets.get(idx) else {
            return;
        };
        if !outcome.success {
            t.stats.record_error();
        }
        let now = self.clock.now_ns();
        peak_ewma::record(&t.stats, now, outcome, &self.ewma);
        self.outlier
            .on_outcome(&self.targets, idx, outcome.success, now);
    }

    /// The RTT estimate of target `idx` decayed to now; `None` when out of range.
    pub fn rtt_estimate(&self, idx: usize) -> Option<Duration> {
        let t = self.targets.get(idx)?;
        let ns = peak_ewma::estimate_ns(&t.stats, self.clock.now_ns(), &self.ewma);
        Some(Duration::from_nanos(ns as u64))
    }

    /// The per-target view for the admin API.
    pub fn snapshot(&self) -> Vec<TargetSnapshot> {
        let now = self.clock.now_ns();
        self.targets
            .iter()
            .map(|t| {
                let s = &*t.stats;
                TargetSnapshot {
                    addr: t.addr,
                    weight: t.weight,
                    healthy: s.is_healthy(),
                    ejected: self.outlier.is_ejected(s, now),
                    in_flight: s.in_flight(),
                    ewma_rtt_us: (peak_ewma::estimate_ns(s, now, &self.ewma) / 1_000.0) as u64,
                    requests: s.requests(),
                    errors: s.errors(),
                }
            })
            .collect()
    }

    /// Power of two choices over the available targets (panic mode: over all). `b_cheaper(a, b)`
    /// says whether candidate `b` costs strictly less than `a`; the first drawn wins ties.
    /// `None` only when the pool is empty.
    pub(crate) fn p2c(
        &self,
        now: &mut LazyNow<'_>,
        mut b_cheaper: impl FnMut(usize, usize) -> bool,
    ) -> Option<usize> {
        let n = self.targets.len();
        if n <= 1 {
            return (n == 1).then_some(0);
        }
        // Fast path: both candidates from one random word, both available.
        let (a, b) = pair_from(fastrand::u64(..), n);
        let (a, b) = if self.available_at(a, now) && self.available_at(b, now) {
            (a, b)
        } else {
            match self.redraw_pair(now) {
                Pair::Two(a, b) => (a, b),
                Pair::One(a) => return Some(a),
                Pair::Panic => pair_from(fastrand::u64(..), n),
            }
        };
        Some(if b_cheaper(a, b) { b } else { a })
    }

    /// Draws two distinct available targets, redrawing each up to [`REDRAWS`] times, then
    /// falling back to the exact scan.
    fn redraw_pair(&self, now: &mut LazyNow<'_>) -> Pair {
        let pair = match self.draw_available(now, None) {
            Some(a) => self.draw_available(now, Some(a)).map(|b| (a, b)),
            None => None,
        };
        match pair {
            Some((a, b)) => Pair::Two(a, b),
            None => self.exact_pair(now),
        }
    }

    /// Draws a random available target other than `exclude`, giving up after [`REDRAWS`] tries.
    fn draw_available(&self, now: &mut LazyNow<'_>, exclude: Option<usize>) -> Option<usize> {
        let n = self.targets.len();
        for _ in 0..REDRAWS {
            let i = match exclude {
                None => fastrand::usize(..n),
                Some(x) => skip(fastrand::usize(..n - 1), x),
            };
            if self.available_at(i, now) {
                return Some(i);
            }
        }
        None
    }

    /// Exact selection of two distinct random available targets (O(N), no allocation).
    fn exact_pair(&self, now: &mut LazyNow<'_>) -> Pair {
        let k = self.available_count_at(now);
        let nth = |r: usize, now: &mut LazyNow<'_>| {
            (0..self.targets.len())
                .filter(|&i| self.available_at(i, now))
                .nth(r)
        };
        match k {
            0 => Pair::Panic,
            1 => nth(0, now).map_or(Pair::Panic, Pair::One),
            _ => {
                let (ra, rb) = pair_from(fastrand::u64(..), k);
                match (nth(ra, now), nth(rb, now)) {
                    (Some(a), Some(b)) => Pair::Two(a, b),
                    (Some(a), None) | (None, Some(a)) => Pair::One(a),
                    (None, None) => Pair::Panic,
                }
            }
        }
    }

    pub(crate) fn available_count_at(&self, now: &mut LazyNow<'_>) -> usize {
        (0..self.targets.len())
            .filter(|&i| self.available_at(i, now))
            .count()
    }
}

enum Pair {
    Two(usize, usize),
    One(usize),
    Panic,
}

/// Two distinct indices in `0..n` (`n ≥ 2`) from one random word: the low and high 32 bits are
/// each mapped with Lemire's multiply-shift (bias below `n / 2^32`, irrelevant here).
fn pair_from(r: u64, n: usize) -> (usize, usize) {
    let scale = |x: u64, m: usize| ((x * m as u64) >> 32) as usize;
    let a = scale(r & 0xffff_ffff, n);
    let b = scale(r >> 32, n - 1);
    (a, skip(b, a))
}

/// Maps `i ∈ 0..n−1` onto `0..n` without `x`.
fn skip(i: usize, x: usize) -> usize {
    if i >= x {
        i + 1
    } else {
        i
    }
}

/// Completion of a guard made by [`TargetStats::start`], outside any pool.
pub(crate) fn record_bare(stats: &TargetStats, outcome: Outcome) {
    if !outcome.success {
        stats.record_error();
    }
    let cfg = EwmaConfig::default().compile();
    let now = MonotonicClock.now_ns();
    peak_ewma::init_estimate(stats, now, &cfg);
    peak_ewma::record(stats, now, outcome, &cfg);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    fn pool(n: usize) -> (Arc<Pool>, Arc<ManualClock>) {
        let clock = ManualClock::new(1_000);
        let targets = (0..n)
            .map(|i| Target::new(([127, 0, 0, 1], 2000 + i as u16).into(), 1))
            .collect();
        let p = Pool::new(
            targets,
            clock.clone(),
            EwmaConfig::default(),
            OutlierConfig::default(),
        );
        (p, clock)
    }

    #[test]
    fn p2c_skips_unavailable_and_panics_when_none_left() {
        let (p, clock) = pool(4);
        p.targets()[0].stats.set_healthy(false);
        p.targets()[1].stats.set_healthy(false);
        p.targets()[2].stats.set_healthy(false);
        let mut now = LazyNow::new(&*clock);
        for _ in 0..200 {
            assert_eq!(p.p2c(&mut now, |_, _| false), Some(3));
        }
        p.targets()[3].stats.set_healthy(false);
        assert_eq!(p.available_count(), 0);
        let mut seen = [false; 4];
        for _ in 0..400 {
            seen[p.p2c(&mut now, |_, _| false).expect("pick")] = true;
        }
        assert_eq!(seen, [true; 4], "panic mode picks among all");
    }

    #[test]
    fn p2c_prefers_lower_cost_among_available() {
        let (p, clock) = pool(3);
        p.targets()[1].stats.set_healthy(false);
        let mut now = LazyNow::new(&*clock);
        // Only 0 and 2 are available, so every pair is (0, 2): the cheaper one always wins.
        for _ in 0..200 {
            assert_eq!(p.p2c(&mut now, |a, b| b < a), Some(0));
        }
    }

    #[test]
    fn pair_from_is_distinct_and_covers_all() {
        for n in [2usize, 3, 7, 1000] {
            let mut seen = vec![[false; 2]; n];
            for k in 0..20_000u64 {
                let (a, b) = pair_from(fastrand::u64(..) ^ k, n);
                assert!(a < n && b < n && a != b);
                seen[a][0] = true;
                seen[b][1] = true;
            }
            assert!(seen.iter().all(|s| s[0] && s[1]), "n = {n}");
        }
        assert_eq!(pair_from(0, 5), (0, 1));
        assert_eq!(pair_from(u64::MAX, 5), (4, 3));
    }

    #[test]
    fn empty_and_single() {
        let (p, clock) = pool(0);
        let mut now = LazyNow::new(&*clock);
        assert_eq!(p.p2c(&mut now, |_, _| false), None);
        assert!(p.start(0).is_none());
        let (p, clock) = pool(1);
        p.targets()[0].stats.set_healthy(false);
        let mut now = LazyNow::new(&*clock);
        assert_eq!(p.p2c(&mut now, |_, _| false), Some(0));
    }

    #[test]
    fn snapshot_reports_state() {
        let (p, clock) = pool(2);
        let g = p.start(1).expect("slot");
        assert_eq!(g.target_index(), Some(1));
        let s = p.snapshot();
        assert_eq!(s[1].in_flight, 1);
        assert_eq!(s[1].ewma_rtt_us, 30_000);
        assert!(s[0].healthy && !s[0].ejected);
        clock.advance(Duration::from_millis(1));
        g.complete(Outcome::failure(Duration::from_millis(50)));
        let s = p.snapshot();
        assert_eq!((s[1].in_flight, s[1].requests, s[1].errors), (0, 1, 1));
        assert_eq!(s[1].ewma_rtt_us, 50_000);
    }
}
