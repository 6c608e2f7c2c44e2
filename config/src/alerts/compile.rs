//! Compiling `[monitor]` and `[[alerts]]`: the settings' defaults and bounds, and each rule's
//! metric, series (which must exist in the config being compiled), threshold and webhook, with
//! every error reported at its key path and secrets never quoted.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue};

use super::{
    AlertMetric, AlertRule, AlertSubject, Comparison, LatencyKind, MonitorSettings, RawAlert,
    RawMonitor, Webhook,
};
use crate::compile::Compiler;
use crate::parse::{join, key, typed};
use crate::route::Route;
use crate::secrets::MASK;
use crate::snapshot::Upstream;
use crate::ErrorKind;
use orchestra_config_core::Problem;

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
    let webhook_attempts = c.count(
        "monitor.webhook_attempts",
        raw.webhook_attempts,
        20,
        d.webhook_attempts as usize,
    ) as u32;
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
                    Problem::Shape {
                        message:
                            "missing key `series` (a latency series such as \"route:api:total\")"
                                .into(),
                    }
                    .into(),
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
                    Problem::Shape {
                        message: "missing key `series` (the upstream's name)".into(),
                    }
                    .into(),
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
                Problem::Shape {
                    message: "missing key `above` or `below` (the threshold)".into(),
                }
                .into(),
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
