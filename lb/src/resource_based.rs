//! Resource-based weighted random: send work where there is spare capacity.
//!
//! Meant for agents and other targets that report their own load (CPU, memory, load average).
//! Each report ([`Balancer::report_load`], stored in [`TargetStats`](crate::TargetStats) atomics)
//! gives the target a capacity factor
//!
//! ```text
//!     headroom = max(0.05, (1 − cpu) · (1 − mem) / (1 + load))      cpu, mem ∈ [0, 1], load ≥ 0
//!     w_eff    = weight · headroom                                   (headroom = 1 before any report)
//! ```
//!
//! and a pick chooses an available target with probability `w_eff / Σ w_eff` (weighted random,
//! so load spreads in proportion to spare capacity instead of herding on the single idlest
//! target between two reports). The 5 % floor keeps a saturated target reachable, so a stale or
//! wrong report cannot starve it for good.
//!
//! **Sampling without a lock or a rebuilt table.** Weights change with every report, so instead
//! of maintaining prefix sums the pick uses rejection sampling: draw a target `i` uniformly and
//! accept it with probability `w_eff(i) / W`, where `W` is the largest static weight (an upper
//! bound of every `w_eff`); otherwise draw again. Each accepted pick has exactly the weighted
//! distribution, and the expected number of draws is `N · W / Σ w_eff` — 1 when all targets are
//! idle and equal, at most 20 × (max weight / mean weight) when every target is saturated. After
//! [`MAX_DRAWS`] rejections (many targets unavailable or saturated) the pick falls back to one
//! exact O(N) pass over cumulative weights. Unavailable targets are rejected; with none available
//! (panic mode, [`crate::pool`]) every target is eligible.

use std::sync::Arc;

use crate::clock::LazyNow;
use crate::pool::Pool;
use crate::{Balancer, PickContext, Target};

/// Rejection-sampling draws before the exact O(N) fallback.
pub const MAX_DRAWS: usize = 32;

/// Weighted random by reported spare capacity, over a [`Pool`].
#[derive(Debug)]
pub struct ResourceBased {
    pool: Arc<Pool>,
    max_weight: f32,
}

impl ResourceBased {
    /// Builds the strategy over `pool`.
    pub fn new(pool: Arc<Pool>) -> Self {
        let max_weight = pool
            .targets()
            .iter()
            .map(|t| t.weight.max(1))
            .max()
            .unwrap_or(1) as f32;
        ResourceBased { pool, max_weight }
    }

    /// The effective weight of target `idx` (`weight × headroom`).
    pub fn effective_weight(&self, idx: usize) -> Option<f32> {
        self.pool.targets().get(idx).map(effective)
    }

    fn exact(&self, now: &mut LazyNow<'_>) -> Option<usize> {
        let targets = self.pool.targets();
        let panic = self.pool.available_count_at(now) == 0;
        let eligible = |i: usize, now: &mut LazyNow<'_>| panic || self.pool.available_at(i, now);
        let total: f64 = (0..targets.len())
            .filter(|&i| eligible(i, now))
            .map(|i| f64::from(effective(&targets[i])))
            .sum();
        let mut r = fastrand::f64() * total;
        let mut last = None;
        for (i, t) in targets.iter().enumerate() {
            if !eligible(i, now) {
                continue;
            }
            last = Some(i);
            r -= f64::from(effective(t));
            if r < 0.0 {
                return Some(i);
            }
        }
        last
    }
}

fn effective(t: &Target) -> f32 {
    t.weight.max(1) as f32 * t.stats.headroom()
}

impl Balancer for ResourceBased {
    fn pick(&self, _ctx: &PickContext) -> Option<usize> {
        let targets = self.pool.targets();
        let n = targets.len();
        if n == 0 {
            return None;
        }
        let mut now = LazyNow::new(&**self.pool.clock());
        for _ in 0..MAX_DRAWS {
            let i = fastrand::usize(..n);
            if fastrand::f32() * self.max_weight < effective(&targets[i])
                && self.pool.available_at(i, &mut now)
            {
                return Some(i);
            }
        }
        self.exact(&mut now)
    }

    fn targets(&self) -> &[Target] {
        self.pool.targets()
    }

    fn strategy(&self) -> &'static str {
        "resource_based"
    }

    fn pool(&self) -> Option<&Arc<Pool>> {
        Some(&self.pool)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rb(weights: &[u32]) -> ResourceBased {
        let targets = weights
            .iter()
            .enumerate()
            .map(|(i, w)| Target::new(([127, 0, 0, 1], 5000 + i as u16).into(), *w))
            .collect();
        ResourceBased::new(Pool::with_defaults(targets))
    }

    fn shares(b: &ResourceBased, n: usize) -> Vec<f64> {
        let mut c = vec![0usize; b.targets().len()];
        for _ in 0..n {
            c[b.pick(&PickContext::default()).expect("pick")] += 1;
        }
        c.iter().map(|&x| x as f64 / n as f64).collect()
    }

    #[test]
    fn splits_by_spare_capacity() {
        fastrand::seed(11);
        let b = rb(&[1, 1, 2]);
        assert!(b.report_load(0, 0.5, 0.0, 0.0)); // headroom 0.5 → w 0.5
        assert!(b.report_load(1, 0.0, 0.0, 0.0)); // 1.0
        assert!(b.report_load(2, 0.0, 0.5, 1.0)); // 2 · 0.5 / 2 = 0.5
        assert!(!b.report_load(9, 0.0, 0.0, 0.0));
        assert_eq!(b.effective_weight(1), Some(1.0));
        let s = shares(&b, 40_000);
        assert!((s[0] - 0.25).abs() < 0.02, "{s:?}");
        assert!((s[1] - 0.50).abs() < 0.02, "{s:?}");
        assert!((s[2] - 0.25).abs() < 0.02, "{s:?}");
    }

    #[test]
    fn saturated_targets_use_exact_fallback_correctly() {
        fastrand::seed(12);
        let b = rb(&[100, 1, 1, 1]);
        // Target 0 is unavailable; the others are saturated (headroom floor): rejection sampling
        // mostly fails and the exact pass must still split evenly among 1..=3.
        b.targets()[0].stats.set_healthy(false);
        for i in 1..4 {
            b.report_load(i, 1.0, 1.0, 10.0);
        }
        let s = shares(&b, 30_000);
        assert_eq!(s[0], 0.0);
        for x in &s[1..] {
            assert!((x - 1.0 / 3.0).abs() < 0.02, "{s:?}");
        }
        // Panic mode: all unavailable → all eligible, by weight.
        for t in b.targets() {
            t.stats.set_healthy(false);
        }
        let s = shares(&b, 10_000);
        assert!(s[0] > 0.9, "{s:?}");
    }
}
