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

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use serde::Deserialize;

use crate::compile::Compiler;
use crate::parse::{join, key, typed};
use crate::route::Route;
use crate::secrets::MASK;
use crate::snapshot::Upstream;
use crate::ErrorKind;

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

/// `[monitor]`; absent = defaults.
pub(crate) fn monitor(c: &mut Compiler<'_>, raw: Option<toml::Value>) -> MonitorSettings {
    let d = MonitorSettings::default();
    let Some(raw) = raw.and_then(|v| typed::<RawMonitor>(v, "monitor", c.file, c.errors)) else {
        return d;
    };
    let mut interval = c.positive_duration("monitor.interval", raw.interval.as_deref(), d.interval);
    if interval < Duration::from_millis(100) || interval > Duration::from_secs(3600) {
        c.invalid(
            "monitor.interval",
            raw.interval.as_deref().unwrap_or_default(),
            "must be between 100ms and 1h",
        );
        interval = d.interval;
    }
    // Default: 30 minutes, or fewer when a short interval would need more points than allowed.
    let default_history = d
        .history
        .min(interval.saturating_mul(MonitorSettings::MAX_POINTS as u32));
    let history = c.positive_duration("monitor.history", raw.history.as_deref(), default_history);
    if history.as_nanos() / interval.as_nanos() > u128::from(MonitorSettings::MAX_POINTS) {
        c.invalid(
            "monitor.history",
            raw.history.as_deref().unwrap_or("30m"),
            format!(
                "history / interval must be at most {} points (raise interval or lower history)",
                MonitorSettings::MAX_POINTS
            ),
        );
    }
    let webhook_attempts = match raw.webhook_attempts {
        None => d.webhook_attempts,
        Some(n) if (1..=20).contains(&n) => n as u32,
        Some(n) => {
            c.invalid(
                "monitor.webhook_attempts",
                &n.to_string(),
                "must be between 1 and 20",
            );
            d.webhook_attempts
        }
    };
    let webhook_backoff = c.positive_duration(
        "monitor.webhook_backoff",
        raw.webhook_backoff.as_deref(),
        d.webhook_backoff,
    );
    let webhook_backoff_max = c.positive_duration(
        "monitor.webhook_backoff_max",
        raw.webhook_backoff_max.as_deref(),
        d.webhook_backoff_max,
    );
    if webhook_backoff_max < webhook_backoff {
        c.invalid(
            "monitor.webhook_backoff_max",
            raw.webhook_backoff_max.as_deref().unwrap_or("30s"),
            "must not be less than webhook_backoff",
        );
    }
    MonitorSettings {
        interval,
        history,
        webhook_timeout: c.positive_duration(
            "monitor.webhook_timeout",
            raw.webhook_timeout.as_deref(),
            d.webhook_timeout,
        ),
        webhook_attempts,
        webhook_backoff,
        webhook_backoff_max,
    }
}

/// What alert rules may refer to.
pub(crate) struct Known<'a> {
    pub(crate) routes: &'a [Route],
    pub(crate) upstreams: &'a [Arc<Upstream>],
    pub(crate) agents_on: bool,
    pub(crate) interval: Duration,
}

/// `[[alerts]]`, each checked against the routes, upstreams and sections it refers to.
pub(crate) fn alerts(
    c: &mut Compiler<'_>,
    raw: Vec<toml::Value>,
    known: &Known<'_>,
) -> Vec<AlertRule> {
    let mut out = Vec::new();
    let mut names = HashSet::new();
    for (i, value) in raw.into_iter().enumerate() {
        let path = format!("alerts[{i}]");
        let definition = value.clone();
        let Some(a) = typed::<RawAlert>(value, &path, c.file, c.errors) else {
            continue;
        };
        if let Some(rule) = alert(c, &path, a, definition, known) {
            if !names.insert(Arc::clone(&rule.name)) {
                c.err(
                    join(&path, "name"),
                    ErrorKind::Duplicate {
                        what: "alert",
                        name: rule.name.to_string(),
                    },
                );
                continue;
            }
            out.push(rule);
        }
    }
    out
}

fn alert(
    c: &mut Compiler<'_>,
    path: &str,
    a: RawAlert,
    definition: toml::Value,
    known: &Known<'_>,
) -> Option<AlertRule> {
    let errors_before = c.errors.len();
    if a.name.is_empty() || a.name.len() > 200 || a.name.chars().any(char::is_control) {
        c.invalid(
            join(path, "name"),
            &a.name,
            "must be 1 to 200 characters, without control characters",
        );
    }
    let Some(metric) = AlertMetric::parse(&a.metric) else {
        let known: Vec<&str> = AlertMetric::ALL.iter().map(|m| m.as_str()).collect();
        c.invalid(
            join(path, "metric"),
            &a.metric,
            format!("unknown metric (known: {})", known.join(", ")),
        );
        return None;
    };
    let (subject, series) = subject(c, path, metric, a.series.as_deref(), known)?;
    let (comparison, threshold, threshold_text) = threshold(c, path, metric, &a)?;
    let for_ = c.duration(&join(path, "for"), a.for_.as_deref(), Duration::ZERO);
    let windowed = matches!(
        subject,
        AlertSubject::Latency { .. } | AlertSubject::Routes(_)
    );
    let window = match (&a.window, windowed) {
        (Some(w), false) => {
            c.invalid(
                join(path, "window"),
                w,
                "only latency and error_rate rules have a window",
            );
            Duration::ZERO
        }
        (w, _) => {
            let wp = join(path, "window");
            let window = c.positive_duration(&wp, w.as_deref(), Duration::from_secs(60));
            if window > Duration::from_secs(3600) {
                c.invalid(&wp, w.as_deref().unwrap_or_default(), "must be at most 1h");
            } else if windowed && window < known.interval {
                c.invalid(
                    &wp,
                    w.as_deref().unwrap_or("1m"),
                    format!(
                        "must be at least monitor.interval ({}ms)",
                        known.interval.as_millis()
                    ),
                );
            }
            if windowed {
                window
            } else {
                Duration::ZERO
            }
        }
    };
    let webhook = webhook(c, path, a.webhook.as_deref(), &a.headers);
    if c.errors.len() > errors_before {
        return None;
    }
    Some(AlertRule {
        name: a.name.into(),
        metric,
        subject,
        series,
        comparison,
        threshold,
        threshold_text,
        for_,
        window,
        webhook: webhook.map(Arc::new),
        definition,
    })
}

/// The rule's subject and its display form, checked against what exists.
fn subject(
    c: &mut Compiler<'_>,
    path: &str,
    metric: AlertMetric,
    series: Option<&str>,
    known: &Known<'_>,
) -> Option<(AlertSubject, String)> {
    let sp = join(path, "series");
    let route_names = || {
        let names: Vec<&str> = known.routes.iter().map(|r| &*r.name).collect();
        names.join(", ")
    };
    match metric {
        AlertMetric::P50 | AlertMetric::P90 | AlertMetric::P99 => {
            let Some(s) = series else {
                c.err(
                    sp,
                    ErrorKind::Shape {
                        message:
                            "missing key `series` (a latency series such as \"route:api:total\")"
                                .into(),
                    },
                );
                return None;
            };
            latency_series(c, &sp, s, known).map(|subject| (subject, s.to_string()))
        }
        AlertMetric::ErrorRate => match series {
            None | Some("*") => Some((AlertSubject::Routes(None), "*".to_string())),
            Some(s) => {
                let name = s
                    .strip_prefix("route:")
                    .map(|n| n.strip_suffix(":total").unwrap_or(n));
                match name {
                    Some(n) if known.routes.iter().any(|r| &*r.name == n) => {
                        Some((AlertSubject::Routes(Some(n.to_string())), s.to_string()))
                    }
                    Some(_) => {
                        c.invalid(&sp, s, format!("no such route (routes: {})", route_names()));
                        None
                    }
                    None => {
                        c.invalid(
                            &sp,
                            s,
                            "error_rate reads a route: write \"route:NAME\" (or omit it for all routes)",
                        );
                        None
                    }
                }
            }
        },
        AlertMetric::AgentsOnline => {
            if let Some(s) = series {
                c.invalid(&sp, s, "agents_online has no series; remove the key");
                return None;
            }
            if !known.agents_on {
                c.invalid(
                    join(path, "metric"),
                    "agents_online",
                    "needs an [agents] section (the agent hub)",
                );
                return None;
            }
            Some((AlertSubject::Agents, String::new()))
        }
        AlertMetric::UpstreamHealthyTargets => {
            let Some(s) = series else {
                c.err(
                    sp,
                    ErrorKind::Shape {
                        message: "missing key `series` (the upstream's name)".into(),
                    },
                );
                return None;
            };
            let name = s.strip_prefix("upstream:").unwrap_or(s);
            if known.upstreams.iter().any(|u| &*u.name == name) {
                Some((AlertSubject::Upstream(name.to_string()), name.to_string()))
            } else {
                let names: Vec<&str> = known.upstreams.iter().map(|u| &*u.name).collect();
                c.invalid(
                    &sp,
                    s,
                    format!("no such upstream (upstreams: {})", names.join(", ")),
                );
                None
            }
        }
    }
}

/// `KIND:NAME:METRIC`, e.g. `route:api:total`, `target:api/127.0.0.1:3001:upstream`,
/// `protocol:h2:total`.
fn latency_series(
    c: &mut Compiler<'_>,
    sp: &str,
    s: &str,
    known: &Known<'_>,
) -> Option<AlertSubject> {
    let shape = "expected KIND:NAME:METRIC with KIND route, target or protocol and METRIC total \
                 or upstream, e.g. \"route:api:total\"";
    let (Some((kind, rest)), Some((_, metric))) = (s.split_once(':'), s.rsplit_once(':')) else {
        c.invalid(sp, s, shape);
        return None;
    };
    let Some(name) = rest.strip_suffix(metric).and_then(|r| r.strip_suffix(':')) else {
        c.invalid(sp, s, shape);
        return None;
    };
    let upstream = match metric {
        "total" => false,
        "upstream" => true,
        _ => {
            c.invalid(sp, s, shape);
            return None;
        }
    };
    let kind = match kind {
        "route" => {
            if !known.routes.iter().any(|r| &*r.name == name) {
                let names: Vec<&str> = known.routes.iter().map(|r| &*r.name).collect();
                c.invalid(
                    sp,
                    s,
                    format!("no route {name:?} (routes: {})", names.join(", ")),
                );
                return None;
            }
            LatencyKind::Route
        }
        "target" => {
            let exists = name.split_once('/').is_some_and(|(u, addr)| {
                known.upstreams.iter().any(|up| {
                    &*up.name == u
                        && up
                            .balancer
                            .targets()
                            .iter()
                            .any(|t| t.addr.to_string() == addr)
                })
            });
            if !exists {
                c.invalid(
                    sp,
                    s,
                    "no such target: write target:UPSTREAM/IP:PORT:METRIC with a target of that upstream",
                );
                return None;
            }
            LatencyKind::Target
        }
        "protocol" => {
            if !["h1", "h2", "h3", "ws"].contains(&name) {
                c.invalid(sp, s, "protocols are h1, h2, h3 and ws");
                return None;
            }
            LatencyKind::Protocol
        }
        _ => {
            c.invalid(sp, s, shape);
            return None;
        }
    };
    Some(AlertSubject::Latency {
        kind,
        name: name.to_string(),
        upstream,
    })
}

/// Exactly one of `above` and `below`, in the metric's unit.
fn threshold(
    c: &mut Compiler<'_>,
    path: &str,
    metric: AlertMetric,
    a: &RawAlert,
) -> Option<(Comparison, f64, String)> {
    let (comparison, value) = match (&a.above, &a.below) {
        (Some(v), None) => (Comparison::Above, v),
        (None, Some(v)) => (Comparison::Below, v),
        (Some(_), Some(v)) => {
            c.invalid(
                join(path, "below"),
                &v.to_string(),
                "set either above or below, not both",
            );
            return None;
        }
        (None, None) => {
            c.err(
                path.to_string(),
                ErrorKind::Shape {
                    message: "missing key `above` or `below` (the threshold)".into(),
                },
            );
            return None;
        }
    };
    let vp = join(path, comparison.as_str());
    let shown = match value {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let parsed = match (metric.unit(), value) {
        ("us", toml::Value::String(s)) => crate::duration::parse_duration(s)
            .map(|d| d.as_secs_f64() * 1e6)
            .map_err(|r| format!("invalid duration: {r}")),
        ("us", _) => Err("latency thresholds are durations with a unit, e.g. \"200ms\"".into()),
        ("ratio", toml::Value::Float(f)) => Ok(*f),
        ("ratio", toml::Value::Integer(n)) => Ok(*n as f64),
        ("ratio", toml::Value::String(s)) => s
            .strip_suffix('%')
            .and_then(|p| p.trim().parse::<f64>().ok())
            .map(|p| p / 100.0)
            .ok_or_else(|| "expected a ratio such as 0.05 or \"5%\"".to_string()),
        ("ratio", _) => Err("expected a ratio such as 0.05 or \"5%\"".into()),
        (_, toml::Value::Integer(n)) if *n >= 0 => Ok(*n as f64),
        _ => Err("expected a whole number (a count), e.g. 1".into()),
    };
    match parsed {
        Ok(v) if metric.unit() == "ratio" && !(0.0..=1.0).contains(&v) => {
            c.invalid(vp, &shown, "a ratio is between 0 and 1 (0.05 = 5%)");
            None
        }
        Ok(v) => Some((comparison, v, shown)),
        Err(reason) => {
            c.invalid(vp, &shown, reason);
            None
        }
    }
}

fn webhook(
    c: &mut Compiler<'_>,
    path: &str,
    url: Option<&str>,
    headers: &BTreeMap<String, String>,
) -> Option<Webhook> {
    let hp = join(path, "headers");
    let Some(url) = url else {
        if !headers.is_empty() {
            c.invalid(&hp, "", "headers need a webhook");
        }
        return None;
    };
    let wp = join(path, "webhook");
    let parsed = url.parse::<http::Uri>().ok().filter(|u| {
        matches!(u.scheme_str(), Some("http") | Some("https"))
            && u.host().is_some_and(|h| !h.is_empty())
    });
    // Headers are checked even when the URL is wrong, so every error is reported at once.
    let origin = match &parsed {
        None => {
            c.invalid(&wp, url, "expected an http:// or https:// URL with a host");
            None
        }
        Some(uri) => {
            let userinfo = uri
                .authority()
                .and_then(|a| a.as_str().rsplit_once('@'))
                .map(|(u, _)| u);
            if userinfo.is_some_and(|u| u.contains(MASK)) {
                c.invalid(
                    &wp,
                    url,
                    "\"***\" is what GET /admin/config shows in place of credentials: write the real ones",
                );
            }
            let scheme = uri.scheme_str().unwrap_or("http");
            let host = uri.host().unwrap_or_default();
            let port = uri
                .port_u16()
                .unwrap_or(if scheme == "https" { 443 } else { 80 });
            Some(format!("{scheme}://{host}:{port}"))
        }
    };
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    for (k, v) in headers {
        let p = join(&hp, &key(k));
        let Ok(name) = HeaderName::from_bytes(k.as_bytes()) else {
            c.invalid(&p, k, "not a valid HTTP header name");
            continue;
        };
        if [
            http::header::HOST,
            http::header::CONTENT_LENGTH,
            http::header::CONTENT_TYPE,
            http::header::TRANSFER_ENCODING,
        ]
        .contains(&name)
        {
            c.invalid(&p, k, "set by the gateway; not configurable");
            continue;
        }
        if v == MASK {
            c.invalid(
                &p,
                v,
                "\"***\" is what GET /admin/config shows in place of a secret: write the real value",
            );
            continue;
        }
        let Ok(mut value) = HeaderValue::from_str(v) else {
            c.invalid(&p, v, "not a valid HTTP header value");
            continue;
        };
        value.set_sensitive(true);
        if seen.insert(name.clone()) {
            out.push((name, value));
        }
    }
    Some(Webhook {
        url: url.to_string(),
        shown: crate::secrets::mask_url(url).into_owned(),
        origin: origin?,
        headers: out,
    })
}
