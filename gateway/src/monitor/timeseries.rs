//! The dashboard's time series: one point per `monitor.interval`, `monitor.history` of them.
//!
//! Each point holds, per latency series of the running config (`route:*`, `target:*`,
//! `protocol:*`, total latency), p50 / p90 / p99 and the sample count over the 1-minute and the
//! 5-minute window (as `GET /admin/histograms?window=...` would have answered at that moment),
//! and per route the request rate and the error share since the previous point. Values are `f32`
//! with NaN for "no data" (4 bytes each: 3600 points × 50 series × 2 windows × 4 columns ≈ 6 MB at
//! the largest allowed history), served as `null` by `GET /admin/timeseries`.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant, SystemTime};

use orchestra_metrics::{Metric, Window};
use serde_json::{json, Value};

use crate::alerts::readings::counts;
use crate::alerts::unix;
use crate::state::{GatewayState, Live};

/// The two windows sampled, in [`TimeSeries`] order.
pub const WINDOWS: [Window; 2] = [Window::OneMinute, Window::FiveMinutes];

/// One named row of `N` aligned columns.
#[derive(Debug)]
struct Row<const N: usize> {
    kind: &'static str,
    name: String,
    cols: [VecDeque<f32>; N],
}

/// Rows keyed by series (or route) name; every row has one entry per point.
#[derive(Debug)]
struct Table<const N: usize> {
    rows: BTreeMap<String, Row<N>>,
}

impl<const N: usize> Default for Table<N> {
    fn default() -> Self {
        Table {
            rows: BTreeMap::new(),
        }
    }
}

impl<const N: usize> Table<N> {
    /// Appends one point; `len` is the number of points before it. Rows missing from `values`
    /// get NaN, new rows are back-filled with NaN.
    fn push(&mut self, len: usize, values: Vec<(String, &'static str, String, [f32; N])>) {
        let mut seen = BTreeSet::new();
        for (key, kind, name, v) in values {
            let row = self.rows.entry(key.clone()).or_insert_with(|| Row {
                kind,
                name,
                cols: std::array::from_fn(|_| std::iter::repeat_n(f32::NAN, len).collect()),
            });
            for (col, x) in row.cols.iter_mut().zip(v) {
                col.push_back(x);
            }
            seen.insert(key);
        }
        for (key, row) in &mut self.rows {
            if !seen.contains(key) {
                for col in &mut row.cols {
                    col.push_back(f32::NAN);
                }
            }
        }
    }

    /// Drops the oldest `n` points, and rows left without any value.
    fn drop_front(&mut self, n: usize) {
        for row in self.rows.values_mut() {
            for col in &mut row.cols {
                col.drain(..n.min(col.len()));
            }
        }
        self.rows
            .retain(|_, r| r.cols[0].iter().any(|x| !x.is_nan()));
    }
}

/// The sampled history.
#[derive(Debug, Default)]
pub struct TimeSeries {
    interval: Duration,
    capacity: usize,
    times: VecDeque<f64>,
    /// Per window of [`WINDOWS`]: p50, p90, p99, count (µs).
    latency: [Table<4>; 2],
    /// Per route: requests/s, error share.
    rates: Table<2>,
    last_counts: HashMap<String, (u64, u64)>,
    last_at: Option<Instant>,
}

fn nan_or(x: Option<f64>) -> f32 {
    x.map(|v| v as f32).unwrap_or(f32::NAN)
}

impl TimeSeries {
    /// Samples the gateway at `now` (the registry was just rotated) and appends one point.
    pub fn sample(&mut self, state: &GatewayState, live: &Live, now: Instant, wall: SystemTime) {
        let settings = &live.snapshot.monitor;
        self.interval = settings.interval;
        self.capacity = settings.points();
        let len = self.times.len();
        let wanted = series_of(live);
        for (table, window) in self.latency.iter_mut().zip(WINDOWS) {
            let values = state
                .registry
                .summaries(window, now)
                .into_iter()
                .filter(|(k, _)| k.metric == Metric::Total && wanted.contains(&k.path()))
                .map(|(k, s)| {
                    let v = if s.count == 0 {
                        [f32::NAN, f32::NAN, f32::NAN, 0.0]
                    } else {
                        [s.p50 as f32, s.p90 as f32, s.p99 as f32, s.count as f32]
                    };
                    (k.path(), k.kind.as_str(), k.name, v)
                })
                .collect();
            table.push(len, values);
        }
        let dt = self
            .last_at
            .map(|t| now.saturating_duration_since(t).as_secs_f64())
            .filter(|d| *d > 0.0);
        let mut rates = Vec::new();
        let mut next_counts = HashMap::new();
        for (route, c) in state.registry.all_route_counters() {
            let (total, errors) = counts(&c);
            let prev = self.last_counts.get(&route).copied();
            let (rps, error_rate) = match (prev, dt) {
                (Some((pt, pe)), Some(dt)) => {
                    let d_total = total.saturating_sub(pt);
                    let d_err = errors.saturating_sub(pe);
                    let rate = (d_total > 0).then(|| d_err as f64 / d_total as f64);
                    (Some(d_total as f64 / dt), rate)
                }
                _ => (None, None),
            };
            next_counts.insert(route.clone(), (total, errors));
            let live_route = route == "-" || live.routes.routes().iter().any(|r| *r.name == *route);
            if live_route {
                rates.push((
                    route.clone(),
                    "route",
                    route,
                    [nan_or(rps), nan_or(error_rate)],
                ));
            }
        }
        self.rates.push(len, rates);
        self.last_counts = next_counts;
        self.last_at = Some(now);
        self.times.push_back(unix(wall));
        if self.times.len() > self.capacity {
            let n = self.times.len() - self.capacity;
            self.times.drain(..n);
            for t in &mut self.latency {
                t.drop_front(n);
            }
            self.rates.drop_front(n);
        }
    }

    /// Number of points held.
    pub fn len(&self) -> usize {
        self.times.len()
    }

    /// True before the first sample.
    pub fn is_empty(&self) -> bool {
        self.times.is_empty()
    }

    /// The JSON of `GET /admin/timeseries`: `window` 0 (1m) or 1 (5m), optionally only one
    /// series kind (`route`, `target`, `protocol`).
    pub fn to_json(&self, window: usize, kind: Option<&str>) -> Value {
        let col = |c: &VecDeque<f32>| -> Value {
            Value::Array(
                c.iter()
                    .map(|x| {
                        if x.is_nan() {
                            Value::Null
                        } else {
                            json!(((*x as f64) * 1000.0).round() / 1000.0)
                        }
                    })
                    .collect(),
            )
        };
        let latency: Vec<Value> = self.latency[window.min(1)]
            .rows
            .iter()
            .filter(|(_, r)| kind.is_none_or(|k| k == r.kind))
            .map(|(key, r)| {
                json!({
                    "series": key,
                    "kind": r.kind,
                    "name": r.name,
                    "p50": col(&r.cols[0]),
                    "p90": col(&r.cols[1]),
                    "p99": col(&r.cols[2]),
                    "count": col(&r.cols[3]),
                })
            })
            .collect();
        let rates: Vec<Value> = self
            .rates
            .rows
            .iter()
            .map(|(route, r)| {
                json!({
                    "route": route,
                    "rps": col(&r.cols[0]),
                    "error_rate": col(&r.cols[1]),
                })
            })
            .collect();
        json!({
            "interval_s": self.interval.as_secs_f64(),
            "window": WINDOWS[window.min(1)].as_str(),
            "unit": "us",
            "t": self.times,
            "latency": latency,
            "rates": rates,
        })
    }
}

/// The latency series (total) of the running config's routes, targets and protocols.
fn series_of(live: &Live) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for r in live.routes.routes() {
        out.insert(format!("route:{}:total", r.name));
    }
    for u in &live.upstreams {
        for t in u.balancer.targets() {
            out.insert(format!("target:{}/{}:total", u.name, t.addr));
        }
    }
    for p in ["h1", "h2", "h3", "ws"] {
        out.insert(format!("protocol:{p}:total"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_stay_aligned_and_age_out() {
        let mut t: Table<2> = Table::default();
        t.push(0, vec![("a".into(), "route", "a".into(), [1.0, 2.0])]);
        t.push(1, vec![("b".into(), "route", "b".into(), [3.0, 4.0])]);
        assert_eq!(t.rows["a"].cols[0].len(), 2);
        assert!(t.rows["a"].cols[0][1].is_nan());
        assert!(t.rows["b"].cols[0][0].is_nan());
        assert_eq!(t.rows["b"].cols[1][1], 4.0);
        // Dropping the first point leaves "a" without data: the row goes.
        t.drop_front(1);
        assert!(!t.rows.contains_key("a"));
        assert_eq!(t.rows["b"].cols[0].len(), 1);
    }
}
