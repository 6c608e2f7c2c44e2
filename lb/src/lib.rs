//! Load balancing for Orchestra Gateway.
//!
//! An upstream is a set of [`Target`]s in a [`Pool`] behind a [`Balancer`]. The request
//! pipeline asks the balancer for a target, takes an in-flight slot, and reports how the attempt
//! went:
//!
//! ```
//! use std::time::Duration;
//! use orchestra_lb::{build, Outcome, Params, PickContext, Strategy, Target};
//!
//! let addr = "127.0.0.1:3001".parse().expect("a socket address");
//! let targets = vec![Target::new(addr, 1)];
//! let balancer = build(Strategy::PeakEwma, targets, &Params::default());
//! let (idx, guard) = balancer.pick_and_start(&PickContext::default()).expect("a target");
//! assert_eq!(idx, 0);
//! guard.complete(Outcome::success(Duration::from_millis(12)));
//! ```
//!
//! | concern | module |
//! |---|---|
//! | time injection (`Clock`; coarse, precise and manual clocks) | [`clock`] |
//! | targets, live per-target atomics, in-flight guards | [`target`] |
//! | shared per-upstream state, availability, panic mode, P2C | [`pool`] |
//! | smooth weighted round robin (`round_robin`, `weighted_round_robin`) | [`round_robin`] |
//! | least request, P2C (`least_request`) | [`least_request`] |
//! | peak-EWMA P2C, the default (`peak_ewma`) | [`peak_ewma`] |
//! | ketama consistent hashing (`consistent_hash`) | [`consistent_hash`] |
//! | weighted random by reported load (`resource_based`) | [`resource_based`] |
//! | strategy names and the `build` factory | [`strategy`] |
//! | passive outlier detection (ejection) | [`outlier`] |
//! | active health checks (tokio task) | [`health`] |
//! | circuit breaker | [`breaker`] |
//! | retry policy, backoff, retry budget | [`retry`] |
//!
//! Picking is lock-free: strategies read immutable data built when the config is compiled and
//! update atomics only. Nothing here takes a mutex on the request path.

#![warn(missing_docs)]

pub mod breaker;
pub mod clock;
pub mod consistent_hash;
pub mod health;
pub mod least_request;
pub mod outlier;
pub mod peak_ewma;
pub mod pool;
pub mod resource_based;
pub mod retry;
pub mod round_robin;
pub mod strategy;
pub mod target;

use std::sync::Arc;

pub use breaker::{BreakerConfig, BreakerGuard, BreakerState, CircuitBreaker, Rejected};
pub use clock::{Clock, ManualClock, MonotonicClock, SharedClock};
pub use consistent_hash::{hash_key, hash_str, ConsistentHash};
pub use health::{CheckKind, HealthCheckConfig, HealthChecker, HealthError};
pub use least_request::LeastRequest;
pub use outlier::OutlierConfig;
pub use peak_ewma::{EwmaConfig, PeakEwma};
pub use pool::{Pool, TargetSnapshot};
pub use resource_based::ResourceBased;
pub use retry::{Backoff, Failure, RequestGuard, RetryBudget, RetryGuard, RetryOn, RetryPolicy};
pub use round_robin::RoundRobin;
pub use strategy::{build, build_on, Params, Strategy, UnknownStrategy};
pub use target::{InFlightGuard, Outcome, Target, TargetStats};

/// What the pipeline knows about a request when it asks for a target.
#[derive(Debug, Default, Clone, Copy)]
pub struct PickContext {
    /// A hash of the request's affinity key, for hashing strategies (`None` when absent);
    /// compute it with [`hash_key`] / [`hash_str`].
    pub hash_key: Option<u64>,
}

/// A load-balancing strategy over a fixed list of targets.
///
/// Implementations hold the targets they were built with; [`Balancer::targets`] exposes them so
/// the pipeline and the admin API can read per-target state. The strategies of this crate share
/// a [`Pool`] ([`Balancer::pool`]), which gives them availability (health and outlier ejection),
/// RTT estimates and the clock; the provided methods use it when present.
pub trait Balancer: Send + Sync + std::fmt::Debug {
    /// Chooses a target for one request attempt, returning its index in [`Balancer::targets`],
    /// or `None` when no target can take the request (an empty upstream).
    fn pick(&self, ctx: &PickContext) -> Option<usize>;

    /// The targets this balancer chooses among, in config order.
    fn targets(&self) -> &[Target];

    /// The strategy's config name (e.g. `round_robin`).
    fn strategy(&self) -> &'static str;

    /// The shared per-upstream state, for balancers built on a [`Pool`] (all of this crate's).
    fn pool(&self) -> Option<&Arc<Pool>> {
        None
    }

    /// Takes an in-flight slot on target `idx`; complete the guard with the attempt's
    /// [`Outcome`] so RTT estimates and outlier detection learn from it. `None` when `idx` is
    /// out of range.
    fn start(&self, idx: usize) -> Option<InFlightGuard> {
        match self.pool() {
            Some(pool) => pool.start(idx),
            None => self.targets().get(idx).map(|t| t.stats.start()),
        }
    }

    /// [`Balancer::pick`] then [`Balancer::start`].
    fn pick_and_start(&self, ctx: &PickContext) -> Option<(usize, InFlightGuard)> {
        let idx = self.pick(ctx)?;
        Some((idx, self.start(idx)?))
    }

    /// Whether target `idx` is healthy and not ejected.
    fn is_available(&self, idx: usize) -> bool {
        match self.pool() {
            Some(pool) => pool.is_available(idx),
            None => self
                .targets()
                .get(idx)
                .is_some_and(|t| t.stats.is_healthy()),
        }
    }

    /// Stores a load report for target `idx` (see [`TargetStats::report_load`]); used by
    /// `resource_based`. `false` when `idx` is out of range or a value is not finite.
    fn report_load(&self, idx: usize, cpu: f32, mem: f32, load: f32) -> bool {
        self.targets()
            .get(idx)
            .is_some_and(|t| t.stats.report_load(cpu, mem, load))
    }

    /// Per-target state for the admin API.
    fn snapshot(&self) -> Vec<TargetSnapshot> {
        match self.pool() {
            Some(pool) => pool.snapshot(),
            None => self
                .targets()
                .iter()
                .map(|t| TargetSnapshot {
                    addr: t.addr,
                    weight: t.weight,
                    healthy: t.stats.is_healthy(),
                    ejected: false,
                    in_flight: t.stats.in_flight(),
                    ewma_rtt_us: 0,
                    requests: t.stats.requests(),
                    errors: t.stats.errors(),
                })
                .collect(),
        }
    }
}
