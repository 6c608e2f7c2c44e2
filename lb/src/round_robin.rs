//! Smooth weighted round robin, lock-free.
//!
//! nginx's smooth weighted round robin keeps, per target, a `current` score: on each pick every
//! target adds its weight to `current`, the target with the highest `current` wins, and the winner
//! subtracts the total weight. For weights `a=5, b=1, c=1` this yields `a a b a c a a` — the
//! heavy target is interleaved rather than picked in a burst.
//!
//! The sequence is periodic with period `W = Σ weight / gcd(weights)`, so instead of mutating
//! scores under a lock on every pick we run the algorithm once at build time, store one period
//! as a schedule of target indices, and pick with a single atomic counter:
//! `schedule[counter.fetch_add(1) % W]`. Over any `k·W` consecutive picks each target gets exactly
//! `k · weight / gcd` of them. When `W` would exceed [`MAX_SCHEDULE`] the weights are scaled down
//! proportionally (each at least 1) first; equal weights give a schedule of one entry per target,
//! which is plain round robin.
//!
//! `round_robin` and `weighted_round_robin` are the same algorithm (weights are always honoured;
//! with all weights equal it is plain rotation); [`Balancer::strategy`] reports the name used in
//! the config.
//!
//! **Availability.** A scheduled target that is unavailable (unhealthy or ejected, see
//! [`crate::pool`]) is skipped: the pick walks forward through the schedule to the next available
//! entry and advances the shared counter past the skipped entries, so the skipped target's turns
//! are spread over the others in schedule order instead of all landing on its successor. If the
//! first [`SKIP_PROBE`] entries are all unavailable the pool is counted; with no available target
//! (panic mode) the scheduled target is used as is.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::clock::LazyNow;
use crate::pool::Pool;
use crate::{Balancer, PickContext, Target};

/// Schedule entries a pick inspects before checking whether any target is available at all.
pub const SKIP_PROBE: usize = 64;

/// Largest schedule length kept in memory; larger total weights are scaled down to fit.
pub const MAX_SCHEDULE: usize = 1 << 16;

/// Smooth weighted round robin over a fixed target list.
#[derive(Debug)]
pub struct RoundRobin {
    pool: Arc<Pool>,
    schedule: Vec<u32>,
    next: AtomicUsize,
    name: &'static str,
}

impl RoundRobin {
    /// Builds the balancer over a pool with default settings (coarse clock, default outlier
    /// detection), precomputing one period of the smooth weighted sequence.
    pub fn new(targets: Vec<Target>) -> Self {
        Self::with_pool(Pool::with_defaults(targets))
    }

    /// Builds the balancer over `pool`, reporting itself as `round_robin`.
    pub fn with_pool(pool: Arc<Pool>) -> Self {
        let weights = normalized_weights(pool.targets());
        let schedule = smooth_schedule(&weights);
        RoundRobin {
            pool,
            schedule,
            next: AtomicUsize::new(0),
            name: "round_robin",
        }
    }

    /// The same balancer reporting itself as `weighted_round_robin`.
    pub fn weighted(mut self) -> Self {
        self.name = "weighted_round_robin";
        self
    }

    /// Walks the schedule from `start` to the next available entry.
    fn next_available(&self, start: usize) -> Option<(usize, usize)> {
        let len = self.schedule.len();
        let mut now = LazyNow::new(&**self.pool.clock());
        let mut probe = |k: usize| {
            let idx = self.schedule[(start + k) % len] as usize;
            self.pool.available_at(idx, &mut now).then_some((k, idx))
        };
        if let Some(hit) = (0..SKIP_PROBE.min(len)).find_map(&mut probe) {
            return Some(hit);
        }
        if len <= SKIP_PROBE {
            return None;
        }
        let mut now2 = LazyNow::new(&**self.pool.clock());
        if self.pool.available_count_at(&mut now2) == 0 {
            return None;
        }
        (SKIP_PROBE..len).find_map(probe)
    }
}

impl Balancer for RoundRobin {
    fn pick(&self, _ctx: &PickContext) -> Option<usize> {
        if self.schedule.is_empty() {
            return None;
        }
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        match self.next_available(n) {
            Some((0, idx)) => Some(idx),
            Some((skipped, idx)) => {
                self.next.fetch_add(skipped, Ordering::Relaxed);
                Some(idx)
            }
            // Panic mode: nothing is available, keep the plain schedule.
            None => Some(self.schedule[n % self.schedule.len()] as usize),
        }
    }

    fn targets(&self) -> &[Target] {
        self.pool.targets()
    }

    fn strategy(&self) -> &'static str {
        self.name
    }

    fn pool(&self) -> Option<&Arc<Pool>> {
        Some(&self.pool)
    }
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Divides weights by their gcd and scales them down until one period fits [`MAX_SCHEDULE`].
fn normalized_weights(targets: &[Target]) -> Vec<u64> {
    let raw: Vec<u64> = targets.iter().map(|t| u64::from(t.weight.max(1))).collect();
    let g = raw.iter().copied().fold(0, gcd).max(1);
    let mut w: Vec<u64> = raw.iter().map(|x| x / g).collect();
    let total: u64 = w.iter().sum();
    let cap = MAX_SCHEDULE.max(targets.len()) as u64;
    if total > cap {
        w = w.iter().map(|x| (x * cap / total).max(1)).collect();
    }
    w
}

/// Runs nginx's smooth weighted round robin for one full period.
fn smooth_schedule(weights: &[u64]) -> Vec<u32> {
    let total: i64 = weights.iter().map(|w| *w as i64).sum();
    let mut current = vec![0i64; weights.len()];
    let mut out = Vec::with_capacity(total as usize);
    for _ in 0..total {
        let mut best = 0;
        for (i, w) in weights.iter().enumerate() {
            current[i] += *w as i64;
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= total;
        out.push(best as u32);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn targets(weights: &[u32]) -> Vec<Target> {
        weights
            .iter()
            .enumerate()
            .map(|(i, w)| Target::new(([127, 0, 0, 1], 1000 + i as u16).into(), *w))
            .collect()
    }

    fn picks(rr: &RoundRobin, n: usize) -> Vec<usize> {
        (0..n)
            .map(|_| rr.pick(&PickContext::default()).expect("pick"))
            .collect()
    }

    #[test]
    fn equal_weights_cycle_in_order() {
        let rr = RoundRobin::new(targets(&[1, 1, 1]));
        assert_eq!(picks(&rr, 6), vec![0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn smooth_interleaves_heavy_target() {
        let rr = RoundRobin::new(targets(&[5, 1, 1]));
        assert_eq!(picks(&rr, 7), vec![0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn exact_split_over_whole_periods() {
        let rr = RoundRobin::new(targets(&[3, 1]));
        let p = picks(&rr, 400);
        assert_eq!(p.iter().filter(|&&i| i == 0).count(), 300);
        assert_eq!(p.iter().filter(|&&i| i == 1).count(), 100);
    }

    #[test]
    fn gcd_shrinks_schedule() {
        let rr = RoundRobin::new(targets(&[200, 100]));
        assert_eq!(rr.schedule.len(), 3);
    }

    #[test]
    fn huge_weights_are_capped_but_keep_ratio() {
        let rr = RoundRobin::new(targets(&[u32::MAX, u32::MAX / 2, 1]));
        assert!(rr.schedule.len() <= MAX_SCHEDULE + 3);
        let c0 = rr.schedule.iter().filter(|&&i| i == 0).count() as f64;
        let c1 = rr.schedule.iter().filter(|&&i| i == 1).count() as f64;
        assert!((c0 / c1 - 2.0).abs() < 0.01, "ratio {}", c0 / c1);
        assert!(rr.schedule.contains(&2));
    }

    #[test]
    fn empty_has_no_pick() {
        let rr = RoundRobin::new(Vec::new());
        assert_eq!(rr.pick(&PickContext::default()), None);
    }

    #[test]
    fn skips_unavailable_without_doubling_the_successor() {
        let rr = RoundRobin::new(targets(&[1, 1, 1]));
        rr.targets()[1].stats.set_healthy(false);
        assert_eq!(picks(&rr, 6), vec![0, 2, 0, 2, 0, 2]);
        rr.targets()[1].stats.set_healthy(true);
        let p = picks(&rr, 3);
        assert!(p.contains(&0) && p.contains(&1) && p.contains(&2), "{p:?}");
    }

    #[test]
    fn skips_long_unavailable_runs_and_panics_when_all_down() {
        let rr = RoundRobin::new(targets(&[500, 1]));
        rr.targets()[0].stats.set_healthy(false);
        assert_eq!(picks(&rr, 5), vec![1; 5]);
        rr.targets()[1].stats.set_healthy(false);
        let p = picks(&rr, 501);
        assert_eq!(
            p.iter().filter(|&&i| i == 1).count(),
            1,
            "panic mode keeps the schedule"
        );
        assert_eq!(rr.strategy(), "round_robin");
        assert_eq!(rr.weighted().strategy(), "weighted_round_robin");
    }

    #[test]
    fn in_flight_guard_releases() {
        let t = Target::new(([127, 0, 0, 1], 1).into(), 1);
        {
            let _g = t.stats.start();
            assert_eq!(t.stats.in_flight(), 1);
        }
        assert_eq!(t.stats.in_flight(), 0);
        assert_eq!(t.stats.requests(), 1);
    }
}
