//! Where alert values come from: the gateway's own latency registry, route status counters,
//! upstream balancers and the agent count the hub maintains.

use std::time::Instant;

use hdrhistogram::Histogram;
use orchestra_config::{AlertSubject, LatencyKind};
use orchestra_metrics::{Metric, SeriesKey, SeriesKind, StatusCounters, Window};

use crate::state::{GatewayState, Live};

/// The cumulative readings rules are evaluated on.
pub trait Readings {
    /// The since-start histogram of a latency subject (µs).
    fn latency_total(&self, subject: &AlertSubject) -> Option<Histogram<u64>>;
    /// Since-start `(responses, errors)` of one route, or of all routes for `None`; errors are
    /// 5xx answers and requests that got no response at all.
    fn route_counts(&self, route: Option<&str>) -> (u64, u64);
    /// Agents connected right now.
    fn agents_online(&self) -> usize;
    /// Targets of `upstream` that are healthy and not ejected (`None`: no such upstream).
    fn healthy_targets(&self, upstream: &str) -> Option<usize>;
}

/// [`Readings`] of a running gateway.
pub struct LiveReadings<'a> {
    /// The gateway.
    pub state: &'a GatewayState,
    /// The running config.
    pub live: &'a Live,
    /// The reading time (the registry was rotated at it).
    pub now: Instant,
}

/// `(responses, errors)` of one route's counters.
pub fn counts(c: &StatusCounters) -> (u64, u64) {
    c.nonzero()
        .into_iter()
        .fold((0, 0), |(total, errors), (code, n)| {
            let error = code == 0 || code >= 500;
            (total + n, if error { errors + n } else { errors })
        })
}

impl Readings for LiveReadings<'_> {
    fn latency_total(&self, subject: &AlertSubject) -> Option<Histogram<u64>> {
        let AlertSubject::Latency {
            kind,
            name,
            upstream,
        } = subject
        else {
            return None;
        };
        let key = SeriesKey {
            kind: match kind {
                LatencyKind::Route => SeriesKind::Route,
                LatencyKind::Target => SeriesKind::Target,
                LatencyKind::Protocol => SeriesKind::Protocol,
            },
            name: name.clone(),
            metric: if *upstream {
                Metric::Upstream
            } else {
                Metric::Total
            },
        };
        let id = self.state.registry.intern(key);
        Some(self.state.registry.histogram(id, Window::Total, self.now))
    }

    fn route_counts(&self, route: Option<&str>) -> (u64, u64) {
        match route {
            Some(name) => counts(&self.state.registry.route_counters(name)),
            None => self
                .state
                .registry
                .all_route_counters()
                .iter()
                .map(|(_, c)| counts(c))
                .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1)),
        }
    }

    fn agents_online(&self) -> usize {
        self.state.agents_online()
    }

    fn healthy_targets(&self, upstream: &str) -> Option<usize> {
        let u = self
            .live
            .snapshot
            .upstreams
            .iter()
            .find(|u| &*u.name == upstream)?;
        Some(
            u.balancer
                .snapshot()
                .iter()
                .filter(|t| t.healthy && !t.ejected)
                .count(),
        )
    }
}
