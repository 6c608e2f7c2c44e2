//! Choosing a strategy by its config name and building it.
//!
//! [`build`] is the one constructor the config compiler needs: it wraps the targets in a
//! [`Pool`] with the given [`Params`] and returns the strategy as a `Box<dyn Balancer>`.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use crate::clock::{MonotonicClock, SharedClock};
use crate::consistent_hash::ConsistentHash;
use crate::least_request::LeastRequest;
use crate::outlier::OutlierConfig;
use crate::peak_ewma::{EwmaConfig, PeakEwma};
use crate::pool::Pool;
use crate::resource_based::ResourceBased;
use crate::round_robin::RoundRobin;
use crate::{Balancer, Target};

/// A load-balancing strategy, by config name (`balancer = "..."`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Strategy {
    /// `round_robin`: smooth weighted round robin ([`crate::round_robin`]).
    RoundRobin,
    /// `weighted_round_robin`: the same algorithm under its explicit name.
    WeightedRoundRobin,
    /// `least_request`: P2C on requests in flight ([`crate::least_request`]).
    LeastRequest,
    /// `peak_ewma` (the default): P2C on RTT × load ([`crate::peak_ewma`]).
    #[default]
    PeakEwma,
    /// `consistent_hash`: ketama ring on the request's hash key ([`crate::consistent_hash`]).
    ConsistentHash,
    /// `resource_based`: weighted random by reported load ([`crate::resource_based`]).
    ResourceBased,
}

impl Strategy {
    /// Every strategy, in documentation order.
    pub const ALL: [Strategy; 6] = [
        Strategy::RoundRobin,
        Strategy::WeightedRoundRobin,
        Strategy::LeastRequest,
        Strategy::PeakEwma,
        Strategy::ConsistentHash,
        Strategy::ResourceBased,
    ];

    /// The config name.
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::RoundRobin => "round_robin",
            Strategy::WeightedRoundRobin => "weighted_round_robin",
            Strategy::LeastRequest => "least_request",
            Strategy::PeakEwma => "peak_ewma",
            Strategy::ConsistentHash => "consistent_hash",
            Strategy::ResourceBased => "resource_based",
        }
    }

    /// Whether picks use [`PickContext::hash_key`](crate::PickContext::hash_key).
    pub fn uses_hash_key(self) -> bool {
        self == Strategy::ConsistentHash
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A `balancer` value that names no strategy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownStrategy(pub String);

impl fmt::Display for UnknownStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown balancer {:?}; expected one of ", self.0)?;
        for (i, s) in Strategy::ALL.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            f.write_str(s.as_str())?;
        }
        Ok(())
    }
}

impl std::error::Error for UnknownStrategy {}

impl FromStr for Strategy {
    type Err = UnknownStrategy;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Strategy::ALL
            .into_iter()
            .find(|x| x.as_str() == s)
            .ok_or_else(|| UnknownStrategy(s.to_owned()))
    }
}

/// Per-upstream settings shared by every strategy.
#[derive(Debug, Clone)]
pub struct Params {
    /// Time source (default [`MonotonicClock`]; a [`ManualClock`](crate::ManualClock) in tests).
    pub clock: SharedClock,
    /// Peak-EWMA decay and initial RTT (the estimate is kept for every strategy: the admin API
    /// shows it).
    pub peak_ewma: EwmaConfig,
    /// Passive outlier detection.
    pub outlier: OutlierConfig,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            clock: MonotonicClock::shared(),
            peak_ewma: EwmaConfig::default(),
            outlier: OutlierConfig::default(),
        }
    }
}

/// Builds `strategy` over `targets` with `params`.
pub fn build(strategy: Strategy, targets: Vec<Target>, params: &Params) -> Box<dyn Balancer> {
    let pool = Pool::new(
        targets,
        Arc::clone(&params.clock),
        params.peak_ewma,
        params.outlier,
    );
    build_on(strategy, pool)
}

/// Builds `strategy` over an existing pool (e.g. one shared with a health checker).
pub fn build_on(strategy: Strategy, pool: Arc<Pool>) -> Box<dyn Balancer> {
    match strategy {
        Strategy::RoundRobin => Box::new(RoundRobin::with_pool(pool)),
        Strategy::WeightedRoundRobin => Box::new(RoundRobin::with_pool(pool).weighted()),
        Strategy::LeastRequest => Box::new(LeastRequest::new(pool)),
        Strategy::PeakEwma => Box::new(PeakEwma::new(pool)),
        Strategy::ConsistentHash => Box::new(ConsistentHash::new(pool)),
        Strategy::ResourceBased => Box::new(ResourceBased::new(pool)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PickContext;

    #[test]
    fn names_round_trip_and_default_is_peak_ewma() {
        for s in Strategy::ALL {
            assert_eq!(s.as_str().parse::<Strategy>(), Ok(s));
            let targets = vec![Target::new(([127, 0, 0, 1], 1).into(), 1)];
            let b = build(s, targets, &Params::default());
            assert_eq!(b.strategy(), s.as_str());
            assert_eq!(b.pick(&PickContext { hash_key: Some(1) }), Some(0));
            assert!(b.pool().is_some());
        }
        assert_eq!(Strategy::default(), Strategy::PeakEwma);
        let err = "fastest".parse::<Strategy>().expect_err("unknown");
        assert!(err.to_string().contains("peak_ewma"), "{err}");
    }
}
