//! `GET /admin/alerts` (every rule's state) and `GET /admin/timeseries` (the dashboard's
//! sampled history), both read from [`crate::monitor`].

use std::sync::atomic::Ordering;

use http::{Request, StatusCode};
use hyper::body::Incoming;
use serde_json::{json, Value};

use super::{error, json_response, query_param, Resp};
use crate::alerts::{condition_text, unix, value_text, Phase};
use crate::state::GatewayState;

/// `GET /admin/alerts`: per rule, `state` (`ok` / `firing`), `since_unix`, `last_value`, whether
/// it is `pending` (condition met, `for` not yet elapsed), its webhook origin and delivery counts.
pub(super) fn alerts(state: &GatewayState) -> Resp {
    let engine = state.monitor.alerts();
    let list: Vec<Value> = engine
        .entries()
        .iter()
        .map(|e| {
            let r = &e.state.rule;
            let pending_since = match e.state.phase {
                Phase::Pending { since_wall, .. } => Some(unix(since_wall)),
                _ => None,
            };
            let value = e.state.last_value;
            json!({
                "name": &*r.name,
                "metric": r.metric.as_str(),
                "series": r.series,
                "condition": condition_text(r),
                "comparison": r.comparison.as_str(),
                "threshold": r.threshold,
                "threshold_text": r.threshold_text,
                "unit": r.metric.unit(),
                "for_s": r.for_.as_secs_f64(),
                "window_s": r.window.as_secs_f64(),
                "state": if e.state.is_firing() { "firing" } else { "ok" },
                "since_unix": unix(e.state.since),
                "pending": pending_since.is_some(),
                "pending_since_unix": pending_since,
                "last_value": value,
                "last_value_text": value.map(|v| value_text(r.metric, v)),
                "last_evaluated_unix": e.state.last_evaluated.map(unix),
                "webhook": r.webhook.as_ref().map(|w| w.origin.clone()),
                "notifications": {
                    "delivered": e.stats.delivered.load(Ordering::Relaxed),
                    "failed": e.stats.failed.load(Ordering::Relaxed),
                    "retries": e.stats.retries.load(Ordering::Relaxed),
                    "dropped": e.stats.dropped.load(Ordering::Relaxed),
                    "last_error": e.stats.last_error(),
                },
            })
        })
        .collect();
    let interval = state.live().snapshot.monitor.interval;
    json_response(
        StatusCode::OK,
        json!({"evaluation_interval_s": interval.as_secs_f64(), "alerts": list}),
    )
}

/// `GET /admin/timeseries?window=1m|5m&kind=route|target|protocol`.
pub(super) fn timeseries(req: &Request<Incoming>, state: &GatewayState) -> Resp {
    let window = match query_param(req, "window") {
        None | Some("1m") => 0,
        Some("5m") => 1,
        Some(w) => {
            return error(
                StatusCode::BAD_REQUEST,
                "PARAM_001",
                format!("window must be 1m or 5m, not {w:?}"),
            )
        }
    };
    let kind = match query_param(req, "kind") {
        None => None,
        Some(k @ ("route" | "target" | "protocol")) => Some(k),
        Some(k) => {
            return error(
                StatusCode::BAD_REQUEST,
                "PARAM_001",
                format!("kind must be route, target or protocol, not {k:?}"),
            )
        }
    };
    let body = state.monitor.timeseries().to_json(window, kind);
    json_response(StatusCode::OK, body)
}
