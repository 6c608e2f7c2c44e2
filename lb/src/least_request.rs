//! Least request by power of two choices.
//!
//! Draw two distinct available targets uniformly at random (see [`crate::pool`]) and send the
//! request to the one with fewer requests in flight, normalised by weight:
//!
//! ```text
//!     cost = (in_flight + 1) / weight
//! ```
//!
//! With equal weights this is plain "fewer in flight wins"; a `weight = 2` target is allowed
//! twice the outstanding requests at equal cost. The first drawn wins ties. P2C gets most of the
//! benefit of a global least-loaded choice (exponentially better maximum load than random) in
//! O(1) and without every balancer thread converging on the same target.
//!
//! Unlike [`crate::peak_ewma`] this ignores latency: it fits backends whose requests cost about
//! the same, or where in-flight count is the only trustworthy signal.

use std::sync::Arc;

use crate::clock::LazyNow;
use crate::pool::Pool;
use crate::{Balancer, PickContext, Target};

/// Least-request P2C over a [`Pool`].
#[derive(Debug)]
pub struct LeastRequest {
    pool: Arc<Pool>,
}

impl LeastRequest {
    /// Builds the strategy over `pool`.
    pub fn new(pool: Arc<Pool>) -> Self {
        LeastRequest { pool }
    }
}

/// Whether `b` costs strictly less than `a`: `(in_b + 1) / w_b < (in_a + 1) / w_a`, compared
/// cross-multiplied in integers.
fn b_cheaper(a: &Target, b: &Target) -> bool {
    let load = |t: &Target| u128::from(t.stats.in_flight()) + 1;
    load(b) * u128::from(a.weight.max(1)) < load(a) * u128::from(b.weight.max(1))
}

impl Balancer for LeastRequest {
    fn pick(&self, _ctx: &PickContext) -> Option<usize> {
        let mut now = LazyNow::new(&**self.pool.clock());
        let targets = self.pool.targets();
        self.pool
            .p2c(&mut now, |a, b| b_cheaper(&targets[a], &targets[b]))
    }

    fn targets(&self) -> &[Target] {
        self.pool.targets()
    }

    fn strategy(&self) -> &'static str {
        "least_request"
    }

    fn pool(&self) -> Option<&Arc<Pool>> {
        Some(&self.pool)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lr(weights: &[u32]) -> LeastRequest {
        let targets = weights
            .iter()
            .enumerate()
            .map(|(i, w)| Target::new(([127, 0, 0, 1], 4000 + i as u16).into(), *w))
            .collect();
        LeastRequest::new(Pool::with_defaults(targets))
    }

    #[test]
    fn prefers_fewer_in_flight() {
        let b = lr(&[1, 1]);
        let _busy: Vec<_> = (0..5).map(|_| b.start(0).expect("slot")).collect();
        for _ in 0..100 {
            assert_eq!(b.pick(&PickContext::default()), Some(1));
        }
    }

    #[test]
    fn weight_allows_more_in_flight() {
        let b = lr(&[4, 1]);
        // 0: (2 + 1) / 4 = 0.75 < 1: (0 + 1) / 1 = 1.
        let _busy: Vec<_> = (0..2).map(|_| b.start(0).expect("slot")).collect();
        for _ in 0..100 {
            assert_eq!(b.pick(&PickContext::default()), Some(0));
        }
    }

    #[test]
    fn spreads_sequential_load_evenly() {
        let b = lr(&[1, 1, 1, 1]);
        let mut guards = Vec::new();
        for _ in 0..400 {
            let i = b.pick(&PickContext::default()).expect("pick");
            guards.push(b.start(i).expect("slot"));
        }
        // P2C keeps the maximum close to the mean (100): never a runaway target.
        for t in b.targets() {
            assert!(
                (80..=120).contains(&t.stats.in_flight()),
                "{}",
                t.stats.in_flight()
            );
        }
        assert_eq!(b.strategy(), "least_request");
    }
}
