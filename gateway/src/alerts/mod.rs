//! Alert rules (`[[alerts]]`, SPEC "Admin API"): evaluated on the control plane from the
//! gateway's own histograms and registries; state changes are logged and POSTed to webhooks.
//!
//! | file | what it does |
//! |---|---|
//! | [`window`] | sliding windows over cumulative histograms and counters (p99 / error rate of the last `window`) |
//! | [`rule`] | one rule's state machine: `ok` → `pending` → `firing` → `ok`, with `for` |
//! | [`readings`] | where values come from: the latency registry, route status counters, upstream health, the agent count |
//! | [`webhook`] | delivery: one queue per webhook URL, JSON POSTs with bounded retries and backoff |
//!
//! [`AlertEngine`] holds every rule's state. The monitor task ([`crate::monitor`]) calls
//! [`AlertEngine::sync`] with the running rules (after a reload, rules whose `[[alerts]]` element
//! is unchanged keep their state; a firing rule that was removed or changed is resolved), then
//! [`AlertEngine::evaluate`] every `monitor.interval`, and hands the returned
//! [`Notification`]s to the [`webhook::Notifier`]. Nothing here runs on data-plane threads:
//! requests only record into the registry, which the engine reads.

pub mod readings;
pub mod rule;
pub mod webhook;
pub mod window;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use orchestra_config::{AlertMetric, AlertRule, AlertSubject, Webhook};
use serde_json::{json, Value};

pub use readings::Readings;
pub use rule::{Change, Phase, RuleState};
pub use webhook::DeliveryStats;

use window::{LatencyWindow, RateWindow};

/// How a rule's value is computed from the readings.
#[derive(Debug)]
enum Sampler {
    /// A quantile of a latency series over a window.
    Latency(LatencyWindow),
    /// The error share of route responses over a window.
    Rate(RateWindow),
    /// A count read as is (agents online, healthy targets).
    Gauge,
}

impl Sampler {
    fn for_rule(rule: &AlertRule) -> Sampler {
        match (&rule.subject, rule.metric.quantile()) {
            (AlertSubject::Latency { .. }, Some(q)) => {
                Sampler::Latency(LatencyWindow::new(q, rule.window))
            }
            (AlertSubject::Routes(_), _) => Sampler::Rate(RateWindow::new(rule.window)),
            _ => Sampler::Gauge,
        }
    }
}

/// One rule with its state, sampler and delivery counters.
#[derive(Debug)]
pub struct Entry {
    /// The rule and its state.
    pub state: RuleState,
    sampler: Sampler,
    /// Notification delivery counters of this rule.
    pub stats: Arc<DeliveryStats>,
}

/// A state change to log and POST.
#[derive(Debug, Clone)]
pub struct Notification {
    /// The rule's name.
    pub rule: Arc<str>,
    /// Fired or resolved.
    pub change: Change,
    /// Where to POST it (none: logged only).
    pub webhook: Option<Arc<Webhook>>,
    /// The JSON body.
    pub payload: Value,
    /// The rule's delivery counters.
    pub stats: Arc<DeliveryStats>,
}

/// Every rule's state.
#[derive(Debug, Default)]
pub struct AlertEngine {
    entries: Vec<Entry>,
    config_version: u64,
}

impl AlertEngine {
    /// The rules with their states, in config order.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Follows the running config (`version`): unchanged rules keep their state; a firing rule
    /// that was removed or changed is resolved (returned as a notification).
    pub fn sync(
        &mut self,
        rules: &[AlertRule],
        version: u64,
        wall: SystemTime,
    ) -> Vec<Notification> {
        if version == self.config_version {
            return Vec::new();
        }
        self.config_version = version;
        let mut old: Vec<Option<Entry>> = std::mem::take(&mut self.entries)
            .into_iter()
            .map(Some)
            .collect();
        for rule in rules {
            let kept = old.iter_mut().find_map(|slot| {
                slot.as_ref()
                    .is_some_and(|e| {
                        e.state.rule.name == rule.name && e.state.rule.definition == rule.definition
                    })
                    .then(|| slot.take())
                    .flatten()
            });
            let entry = match kept {
                Some(mut e) => {
                    e.state.rule = rule.clone();
                    e
                }
                None => Entry {
                    state: RuleState::new(rule.clone(), wall),
                    sampler: Sampler::for_rule(rule),
                    stats: Arc::default(),
                },
            };
            self.entries.push(entry);
        }
        let mut out = Vec::new();
        for mut e in old.into_iter().flatten() {
            if !e.state.is_firing() {
                continue;
            }
            let changed = rules.iter().any(|r| r.name == e.state.rule.name);
            let reason = if changed {
                "rule changed by a config reload"
            } else {
                "rule removed by a config reload"
            };
            e.state.phase = Phase::Ok;
            e.state.since = wall;
            out.push(notification(
                &e,
                Change::Resolved,
                Some(reason),
                wall,
                version,
            ));
        }
        out
    }

    /// Evaluates every rule once; returns the state changes.
    pub fn evaluate(
        &mut self,
        readings: &dyn Readings,
        now: Instant,
        wall: SystemTime,
    ) -> Vec<Notification> {
        let version = self.config_version;
        let mut out = Vec::new();
        for e in &mut self.entries {
            let value = sample(&mut e.sampler, &e.state.rule, readings, now);
            if let Some(change) = e.state.step(value, now, wall) {
                out.push(notification(e, change, None, wall, version));
            }
        }
        out
    }
}

fn sample(
    sampler: &mut Sampler,
    rule: &AlertRule,
    readings: &dyn Readings,
    now: Instant,
) -> Option<f64> {
    match (sampler, &rule.subject) {
        (Sampler::Latency(w), subject) => {
            let total = readings.latency_total(subject)?;
            w.observe(total, now)
        }
        (Sampler::Rate(w), AlertSubject::Routes(route)) => {
            let (requests, errors) = readings.route_counts(route.as_deref());
            w.observe(requests, errors, now)
        }
        (_, AlertSubject::Agents) => Some(readings.agents_online() as f64),
        (_, AlertSubject::Upstream(name)) => readings.healthy_targets(name).map(|n| n as f64),
        _ => None,
    }
}

/// Seconds since the Unix epoch (0 before it).
pub fn unix(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// A value in its metric's unit, for humans: `312.5ms`, `4.20%`, `2`.
pub fn value_text(metric: AlertMetric, value: f64) -> String {
    match metric.unit() {
        "us" => {
            let d = Duration::from_secs_f64(value.max(0.0) / 1e6);
            if d >= Duration::from_secs(1) {
                format!("{:.3}s", d.as_secs_f64())
            } else if d >= Duration::from_millis(1) {
                format!("{:.1}ms", d.as_secs_f64() * 1e3)
            } else {
                format!("{}us", d.as_micros())
            }
        }
        "ratio" => format!("{:.2}%", value * 100.0),
        _ => format!("{value}"),
    }
}

/// `p99 of route:api:total above 200ms`.
pub fn condition_text(rule: &AlertRule) -> String {
    let of = if rule.series.is_empty() {
        String::new()
    } else {
        format!(" of {}", rule.series)
    };
    format!(
        "{}{of} {} {}",
        rule.metric.as_str(),
        rule.comparison.as_str(),
        rule.threshold_text
    )
}

fn notification(
    e: &Entry,
    change: Change,
    reason: Option<&str>,
    wall: SystemTime,
    config_version: u64,
) -> Notification {
    let rule = &e.state.rule;
    let (status, state) = match change {
        Change::Fired => ("firing", "firing"),
        Change::Resolved => ("resolved", "ok"),
    };
    let value = e.state.last_value;
    let payload = json!({
        "alert": &*rule.name,
        "status": status,
        "state": state,
        "metric": rule.metric.as_str(),
        "series": rule.series,
        "condition": condition_text(rule),
        "comparison": rule.comparison.as_str(),
        "threshold": rule.threshold,
        "threshold_text": rule.threshold_text,
        "unit": rule.metric.unit(),
        "value": value,
        "value_text": value.map(|v| value_text(rule.metric, v)),
        "for_s": rule.for_.as_secs_f64(),
        "window_s": rule.window.as_secs_f64(),
        "since_unix": unix(e.state.since),
        "at_unix": unix(wall),
        "reason": reason,
        "gateway": {
            "config_version": config_version,
            "version": env!("CARGO_PKG_VERSION"),
        },
    });
    Notification {
        rule: Arc::clone(&rule.name),
        change,
        webhook: rule.webhook.clone(),
        payload,
        stats: Arc::clone(&e.stats),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hdrhistogram::Histogram;
    use std::cell::RefCell;

    /// Readings set by the test.
    #[derive(Default)]
    struct Fixed {
        latency: RefCell<Vec<u64>>,
        counts: (u64, u64),
        healthy: usize,
    }

    impl Readings for Fixed {
        fn latency_total(&self, _: &AlertSubject) -> Option<Histogram<u64>> {
            let mut h = Histogram::new(3).ok()?;
            for v in self.latency.borrow().iter() {
                h.record(*v).ok()?;
            }
            Some(h)
        }
        fn route_counts(&self, _: Option<&str>) -> (u64, u64) {
            self.counts
        }
        fn agents_online(&self) -> usize {
            0
        }
        fn healthy_targets(&self, _: &str) -> Option<usize> {
            Some(self.healthy)
        }
    }

    fn rules(extra: &str) -> Vec<AlertRule> {
        let text = format!(
            "[[upstreams]]\nname = \"u\"\ntargets = [{{ addr = \"127.0.0.1:1\" }}]\n\
             [[routes]]\nname = \"r\"\nupstream = \"u\"\n\
             [monitor]\ninterval = \"1s\"\n\
             [[alerts]]\nname = \"slow\"\nmetric = \"p99\"\nseries = \"route:r:total\"\n\
             above = \"100ms\"\nwindow = \"2s\"\nwebhook = \"http://127.0.0.1:9/h\"\n\
             [[alerts]]\nname = \"down\"\nmetric = \"upstream_healthy_targets\"\nseries = \"u\"\nbelow = 1\n{extra}"
        );
        orchestra_config::from_str(&text, "t.toml")
            .expect("config")
            .alerts
    }

    #[test]
    fn fires_and_resolves_from_readings() {
        let t0 = Instant::now();
        let w0 = UNIX_EPOCH + Duration::from_secs(100);
        let s = Duration::from_secs(1);
        let mut engine = AlertEngine::default();
        assert!(engine.sync(&rules(""), 1, w0).is_empty());
        let r = Fixed {
            healthy: 1,
            ..Fixed::default()
        };
        assert!(engine.evaluate(&r, t0, w0).is_empty(), "baseline");
        r.latency.borrow_mut().extend([250_000; 10]);
        let n = engine.evaluate(&r, t0 + s, w0 + s);
        assert_eq!(n.len(), 1);
        assert_eq!(n[0].change, Change::Fired);
        assert_eq!(n[0].payload["status"], "firing");
        assert_eq!(n[0].payload["alert"], "slow");
        assert_eq!(n[0].payload["since_unix"], 101.0);
        assert!(n[0].webhook.is_some());
        assert_eq!(n[0].payload["value_text"], "250.1ms", "{}", n[0].payload);
        // No new request for a whole window: resolved.
        assert!(engine.evaluate(&r, t0 + 2 * s, w0 + 2 * s).is_empty());
        let n = engine.evaluate(&r, t0 + 3 * s, w0 + 3 * s);
        assert_eq!(n.len(), 1);
        assert_eq!(n[0].change, Change::Resolved);
        assert_eq!(n[0].payload["status"], "resolved");
        assert_eq!(n[0].payload["value"], Value::Null);
    }

    #[test]
    fn reload_keeps_unchanged_rules_and_resolves_removed_firing_ones() {
        let t0 = Instant::now();
        let w0 = UNIX_EPOCH;
        let mut engine = AlertEngine::default();
        engine.sync(&rules(""), 1, w0);
        let r = Fixed::default(); // healthy = 0: "down" fires at once
        let n = engine.evaluate(&r, t0, w0);
        assert_eq!(n.len(), 1);
        assert_eq!(&*n[0].rule, "down");
        let since = engine.entries()[1].state.since;
        // A reload that adds a rule: "down" keeps firing, same since, no notification.
        let extra = "[[alerts]]\nname = \"errors\"\nmetric = \"error_rate\"\nabove = 0.5\n";
        assert!(engine
            .sync(&rules(extra), 2, w0 + Duration::from_secs(5))
            .is_empty());
        assert_eq!(engine.entries().len(), 3);
        assert!(engine.entries()[1].state.is_firing());
        assert_eq!(engine.entries()[1].state.since, since);
        assert!(engine.evaluate(&r, t0, w0).is_empty());
        // A reload that changes "down": resolved with a reason, then a fresh state.
        let changed = rules("").into_iter().take(1).collect::<Vec<_>>();
        let n = engine.sync(&changed, 3, w0);
        assert_eq!(n.len(), 1);
        assert_eq!(n[0].payload["reason"], "rule removed by a config reload");
        assert_eq!(engine.entries().len(), 1);
    }

    #[test]
    fn values_read_as_humans_write_them() {
        assert_eq!(value_text(AlertMetric::P99, 850.0), "850us");
        assert_eq!(value_text(AlertMetric::P99, 312_500.0), "312.5ms");
        assert_eq!(value_text(AlertMetric::P50, 1_500_000.0), "1.500s");
        assert_eq!(value_text(AlertMetric::ErrorRate, 0.042), "4.20%");
        assert_eq!(value_text(AlertMetric::UpstreamHealthyTargets, 2.0), "2");
    }
}
