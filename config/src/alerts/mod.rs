//! `[[alerts]]` rules and the `[monitor]` section: what the gateway watches in its own
//! histograms and registries, and where it reports a change of state.
//!
//! ```toml
//! [monitor]                   # optional; these are the defaults
//! interval = "5s"             # alert evaluation and dashboard sampling period
//! history = "30m"             # dashboard time series kept (at most 3600 points; the default
//!                             # shrinks to 3600 × interval when the interval is short)
//! webhook_timeout = "5s"      # per POST
//! webhook_attempts = 5        # tries per notification
//! webhook_backoff = "500ms"   # first retry delay, doubled per try ...
//! webhook_backoff_max = "30s" # ... up to this
//!
//! [[alerts]]
//! name = "api-latency"
//! metric = "p99"                  # p50 | p90 | p99 | error_rate | agents_online | upstream_healthy_targets
//! series = "route:api:total"      # latency: KIND:NAME:METRIC; error_rate: route:NAME (absent = all routes);
//!                                 # upstream_healthy_targets: the upstream's name; agents_online: none
//! above = "200ms"                 # or below = ...; durations for latency, a ratio (0.05 or "5%")
//!                                 # for error_rate, an integer for counts
//! for = "1m"                      # the condition must hold this long before the rule fires (default 0s)
//! window = "1m"                   # latency and error_rate: samples of the last ... (default 1m)
//! webhook = "https://hooks.example/orchestra"   # optional; user-info and query are masked when shown
//! headers = { Authorization = "Bearer ..." }    # optional; every value is a secret
//! ```
//!
//! Each rule keeps its `[[alerts]]` element as written (`definition`) so that the gateway can keep
//! the state of rules a reload did not change.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use serde::Deserialize;

mod compile;

pub(crate) use compile::{alerts, monitor, Known};

/// `[monitor]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawMonitor {
    /// Alert evaluation and dashboard sampling period (default `5s`).
    pub interval: Option<String>,
    /// How much dashboard history is kept (default `30m`).
    pub history: Option<String>,
    /// Timeout of one webhook POST (default `5s`).
    pub webhook_timeout: Option<String>,
    /// Tries per notification (default 5).
    pub webhook_attempts: Option<i64>,
    /// First retry delay (default `500ms`).
    pub webhook_backoff: Option<String>,
    /// Largest retry delay (default `30s`).
    pub webhook_backoff_max: Option<String>,
}

/// One `[[alerts]]` element as written.
#[derive(Debug, Deserialize)]
pub struct RawAlert {
    /// Unique rule name.
    pub name: String,
    /// What is measured.
    pub metric: String,
    /// Which series, route or upstream.
    pub series: Option<String>,
    /// Fire when the value is above this.
    pub above: Option<toml::Value>,
    /// Fire when the value is below this.
    pub below: Option<toml::Value>,
    /// How long the condition must hold.
    #[serde(rename = "for")]
    pub for_: Option<String>,
    /// Sample window of latency and error-rate rules.
    pub window: Option<String>,
    /// Where state changes are POSTed.
    pub webhook: Option<String>,
    /// Extra request headers for the webhook (credentials).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

/// `[monitor]` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonitorSettings {
    /// Alert evaluation and dashboard sampling period.
    pub interval: Duration,
    /// Dashboard time-series history.
    pub history: Duration,
    /// Timeout of one webhook POST.
    pub webhook_timeout: Duration,
    /// Tries per notification (the first one included).
    pub webhook_attempts: u32,
    /// Delay before the first retry; doubled per retry.
    pub webhook_backoff: Duration,
    /// Largest delay between retries.
    pub webhook_backoff_max: Duration,
}

impl Default for MonitorSettings {
    fn default() -> Self {
        MonitorSettings {
            interval: Duration::from_secs(5),
            history: Duration::from_secs(30 * 60),
            webhook_timeout: Duration::from_secs(5),
            webhook_attempts: 5,
            webhook_backoff: Duration::from_millis(500),
            webhook_backoff_max: Duration::from_secs(30),
        }
    }
}

impl MonitorSettings {
    /// Most points a dashboard time series holds.
    pub const MAX_POINTS: u64 = 3_600;

    /// Points of dashboard history (`history / interval`, at least 1).
    pub fn points(&self) -> usize {
        let n = self.history.as_nanos() / self.interval.as_nanos().max(1);
        n.clamp(1, u128::from(Self::MAX_POINTS)) as usize
    }
}

/// What a rule measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AlertMetric {
    /// Median latency of a series.
    P50,
    /// 90th percentile latency.
    P90,
    /// 99th percentile latency.
    P99,
    /// Share of responses that are 5xx or none at all.
    ErrorRate,
    /// Agents connected to the hub.
    AgentsOnline,
    /// Targets of an upstream that are healthy and not ejected.
    UpstreamHealthyTargets,
}

impl AlertMetric {
    /// Every metric, in documentation order.
    pub const ALL: [AlertMetric; 6] = [
        AlertMetric::P50,
        AlertMetric::P90,
        AlertMetric::P99,
        AlertMetric::ErrorRate,
        AlertMetric::AgentsOnline,
        AlertMetric::UpstreamHealthyTargets,
    ];

    /// The config name (`p99`, `error_rate`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            AlertMetric::P50 => "p50",
            AlertMetric::P90 => "p90",
            AlertMetric::P99 => "p99",
            AlertMetric::ErrorRate => "error_rate",
            AlertMetric::AgentsOnline => "agents_online",
            AlertMetric::UpstreamHealthyTargets => "upstream_healthy_targets",
        }
    }

    /// The quantile of a latency metric.
    pub fn quantile(self) -> Option<f64> {
        match self {
            AlertMetric::P50 => Some(0.5),
            AlertMetric::P90 => Some(0.9),
            AlertMetric::P99 => Some(0.99),
            _ => None,
        }
    }

    /// The unit of the value: `us`, `ratio` or `count`.
    pub fn unit(self) -> &'static str {
        match self {
            AlertMetric::P50 | AlertMetric::P90 | AlertMetric::P99 => "us",
            AlertMetric::ErrorRate => "ratio",
            AlertMetric::AgentsOnline | AlertMetric::UpstreamHealthyTargets => "count",
        }
    }

    fn parse(s: &str) -> Option<AlertMetric> {
        AlertMetric::ALL.into_iter().find(|m| m.as_str() == s)
    }
}

/// What kind of latency series a rule reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LatencyKind {
    /// A route, by name.
    Route,
    /// An upstream target, named `upstream/IP:PORT`.
    Target,
    /// A front protocol (`h1`, `h2`, `h3`, `ws`).
    Protocol,
}

/// What a rule's value is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlertSubject {
    /// A latency series `KIND:NAME:total` or `KIND:NAME:upstream`.
    Latency {
        /// Route, target or protocol.
        kind: LatencyKind,
        /// Its name.
        name: String,
        /// The upstream latency (time to the response head) instead of the total.
        upstream: bool,
    },
    /// The responses of one route (`Some`) or of all routes (`None`).
    Routes(Option<String>),
    /// The agent hub's connected agents.
    Agents,
    /// The targets of one upstream.
    Upstream(String),
}

/// Fire above or below the threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparison {
    /// The value is greater than the threshold.
    Above,
    /// The value is less than the threshold.
    Below,
}

impl Comparison {
    /// `above` or `below`.
    pub fn as_str(self) -> &'static str {
        match self {
            Comparison::Above => "above",
            Comparison::Below => "below",
        }
    }

    /// True when `value` meets the condition.
    pub fn holds(self, value: f64, threshold: f64) -> bool {
        match self {
            Comparison::Above => value > threshold,
            Comparison::Below => value < threshold,
        }
    }
}

/// Where a rule's state changes are POSTed. Its `Debug` output shows the masked URL only.
#[derive(Clone, PartialEq, Eq)]
pub struct Webhook {
    /// The URL as written (may carry credentials: never log it).
    pub url: String,
    /// The URL with user-info and query values masked, for display.
    pub shown: String,
    /// `scheme://host:port`, for logs.
    pub origin: String,
    /// Extra headers (credentials), marked sensitive.
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl fmt::Debug for Webhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("Webhook")
            .field("url", &self.shown)
            .field("headers", &names)
            .finish()
    }
}

/// One compiled `[[alerts]]` rule.
#[derive(Debug, Clone)]
pub struct AlertRule {
    /// Unique name.
    pub name: Arc<str>,
    /// What is measured.
    pub metric: AlertMetric,
    /// Where it is read from.
    pub subject: AlertSubject,
    /// The series as shown (`route:api:total`, `demo`, `*` for all routes; empty for agents).
    pub series: String,
    /// Above or below.
    pub comparison: Comparison,
    /// The threshold in the metric's unit (µs, ratio or count).
    pub threshold: f64,
    /// The threshold as written (`200ms`, `0.05`, `1`).
    pub threshold_text: String,
    /// How long the condition must hold before the rule fires.
    pub for_: Duration,
    /// Latency and error-rate rules: the samples of the last `window` count.
    pub window: Duration,
    /// Where state changes are POSTed, if anywhere.
    pub webhook: Option<Arc<Webhook>>,
    /// The `[[alerts]]` element as written (to keep the rule's state across reloads).
    pub definition: toml::Value,
}
