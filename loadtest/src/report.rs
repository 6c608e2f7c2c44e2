//! Reports: the human summary on stdout, or with `--json` one JSON object on stdout whose field
//! names are stable (scripts such as `bench/compare` read them). All latencies are in **µs**.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::engine::EngineResult;
use crate::stats::ErrorCounts;

/// Something a mode produces at the end of a run.
pub trait Report {
    /// The `--json` object.
    fn to_json(&self) -> serde_json::Value;
    /// The human summary.
    fn to_text(&self) -> String;
}

/// Percentiles of a latency histogram recorded in ns, reported in µs (0.1 µs resolution).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct LatencySummary {
    /// Number of recorded values.
    pub count: u64,
    /// Smallest value.
    pub min: f64,
    /// Arithmetic mean.
    pub mean: f64,
    /// Standard deviation.
    pub stdev: f64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p99_9: f64,
    /// Largest value.
    pub max: f64,
}

fn us(ns: f64) -> f64 {
    (ns / 100.0).round() / 10.0
}

impl LatencySummary {
    /// Summarises a histogram of nanoseconds; all zeros when it is empty.
    pub fn from_ns(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        let q = |p: f64| us(h.value_at_quantile(p) as f64);
        Self {
            count: h.len(),
            min: us(h.min() as f64),
            mean: us(h.mean()),
            stdev: us(h.stdev()),
            p50: q(0.50),
            p90: q(0.90),
            p99: q(0.99),
            p99_9: q(0.999),
            max: us(h.max() as f64),
        }
    }

    /// `p50 … max` on one line.
    pub fn line(&self) -> String {
        format!(
            "p50 {}  p90 {}  p99 {}  p99.9 {}  max {}  mean {}",
            fmt_us(self.p50),
            fmt_us(self.p90),
            fmt_us(self.p99),
            fmt_us(self.p99_9),
            fmt_us(self.max),
            fmt_us(self.mean)
        )
    }
}

/// A latency in µs for humans: `87.3µs`, `1.24ms`, `2.50s`.
pub fn fmt_us(v: f64) -> String {
    if v >= 1_000_000.0 {
        format!("{:.2}s", v / 1e6)
    } else if v >= 1000.0 {
        format!("{:.2}ms", v / 1e3)
    } else {
        format!("{v:.1}µs")
    }
}

/// Bytes for humans.
pub fn fmt_bytes(b: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < UNITS.len() {
        v /= 1024.0;
        i += 1;
    }
    format!("{v:.1} {}", UNITS[i])
}

/// How the run was set up, echoed in the report.
#[derive(Debug, Clone, Serialize)]
pub struct RunInfo {
    /// Mode name (`h1`, `h2c`, `h2`, `ws`, ...).
    pub mode: String,
    /// Target URL.
    pub url: String,
    /// `"closed"` or `"open"`.
    #[serde(rename = "loop")]
    pub loop_kind: &'static str,
    /// Open loop: the requested rate (requests/s).
    pub target_rate: Option<f64>,
    /// Connections (`-c`).
    pub connections: usize,
    /// Concurrent streams per connection (h2; 1 otherwise).
    pub streams_per_connection: usize,
    /// Runtime threads.
    pub threads: usize,
    /// Warm-up seconds (not measured).
    pub warmup_s: f64,
}

/// The fields every mode report (besides [`RequestReport`]) starts with in its JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ReportHeader {
    /// Always `"orchestra-loadtest"`.
    pub tool: &'static str,
    /// This tool's version.
    pub version: &'static str,
    /// The mode (subcommand) that ran.
    pub mode: &'static str,
}

impl ReportHeader {
    /// The header of a `mode` report.
    pub fn new(mode: &'static str) -> Self {
        Self {
            tool: "orchestra-loadtest",
            version: env!("CARGO_PKG_VERSION"),
            mode,
        }
    }
}

/// Report of a request/response run (h1, h2c, h2, ws).
#[derive(Debug, Clone, Serialize)]
pub struct RequestReport {
    /// Always `"orchestra-loadtest"`.
    pub tool: &'static str,
    /// This tool's version.
    pub version: &'static str,
    /// The setup.
    #[serde(flatten)]
    pub info: RunInfo,
    /// Measured wall time in seconds.
    pub duration_s: f64,
    /// Measured requests, successful or not.
    pub requests: u64,
    /// Successful requests (a response with status < 400, or a correct echo).
    pub ok: u64,
    /// Failures by kind.
    pub errors: ErrorCounts,
    /// Successful requests per second.
    pub throughput_rps: f64,
    /// Payload bytes received.
    pub bytes: u64,
    /// Payload bytes received per second.
    pub bytes_per_s: f64,
    /// Latency of every request that got a response, in µs.
    pub latency_us: LatencySummary,
    /// Open loop: how late requests were sent after their intended time, in µs (large values
    /// mean too few connections for the rate, or an overloaded load generator).
    pub send_delay_us: Option<LatencySummary>,
    /// Responses by HTTP status.
    pub status_codes: BTreeMap<String, u64>,
}

impl RequestReport {
    /// Builds the report of an engine run.
    pub fn new(info: RunInfo, result: &EngineResult) -> Self {
        let t = &result.totals;
        let secs = result.elapsed.as_secs_f64().max(1e-9);
        let open = info.target_rate.is_some();
        Self {
            tool: "orchestra-loadtest",
            version: env!("CARGO_PKG_VERSION"),
            info,
            duration_s: (secs * 1000.0).round() / 1000.0,
            requests: t.requests(),
            ok: t.ok,
            errors: t.errors,
            throughput_rps: (t.ok as f64 / secs * 10.0).round() / 10.0,
            bytes: t.bytes,
            bytes_per_s: (t.bytes as f64 / secs).round(),
            latency_us: LatencySummary::from_ns(&t.latency),
            send_delay_us: open.then(|| LatencySummary::from_ns(&t.send_delay)),
            status_codes: t.status.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        }
    }
}

/// One line listing error counts by kind.
pub fn errors_line(e: &ErrorCounts) -> String {
    format!(
        "connect {}  timeout {}  5xx {}  4xx {}  reset {}  protocol {}",
        e.connect, e.timeout, e.status_5xx, e.status_4xx, e.reset, e.protocol
    )
}

impl Report for RequestReport {
    fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }

    fn to_text(&self) -> String {
        let i = &self.info;
        let mut s = String::new();
        let pacing = match i.target_rate {
            Some(r) => format!("open loop at {r} req/s"),
            None => "closed loop".to_string(),
        };
        let streams = if i.streams_per_connection > 1 {
            format!(" x {} streams", i.streams_per_connection)
        } else {
            String::new()
        };
        let _ = writeln!(
            s,
            "orchestra-loadtest {} {}  ({pacing}, {} connections{streams}, {} threads)",
            i.mode, i.url, i.connections, i.threads
        );
        let _ = writeln!(
            s,
            "  duration    {:.2}s  requests {}  ok {}  errors {}",
            self.duration_s, self.requests, self.ok, self.errors.total
        );
        let _ = writeln!(
            s,
            "  throughput  {:.1} req/s  received {} ({}/s)",
            self.throughput_rps,
            fmt_bytes(self.bytes as f64),
            fmt_bytes(self.bytes_per_s)
        );
        let _ = writeln!(s, "  latency     {}", self.latency_us.line());
        if let Some(d) = &self.send_delay_us {
            let _ = writeln!(s, "  send delay  {}", d.line());
        }
        let _ = writeln!(s, "  errors      {}", errors_line(&self.errors));
        if !self.status_codes.is_empty() {
            let codes: Vec<String> = self
                .status_codes
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect();
            let _ = writeln!(s, "  status      {}", codes.join("  "));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{new_histogram, record};
    use std::time::Duration;

    #[test]
    fn percentiles_in_us() {
        let mut h = new_histogram();
        // 1..=1000 µs, uniformly.
        for v in 1..=1000u64 {
            record(&mut h, Duration::from_micros(v));
        }
        let s = LatencySummary::from_ns(&h);
        assert_eq!(s.count, 1000);
        // 3 significant digits: within 0.1%.
        let close = |a: f64, b: f64| (a - b).abs() <= b * 0.001 + 0.1;
        assert!(close(s.p50, 500.0), "p50 {}", s.p50);
        assert!(close(s.p90, 900.0), "p90 {}", s.p90);
        assert!(close(s.p99, 990.0), "p99 {}", s.p99);
        assert!(close(s.p99_9, 999.0), "p99.9 {}", s.p99_9);
        assert!(close(s.max, 1000.0), "max {}", s.max);
        assert!(close(s.min, 1.0), "min {}", s.min);
        assert!(close(s.mean, 500.5), "mean {}", s.mean);
    }

    #[test]
    fn empty_histogram_is_zeros() {
        let s = LatencySummary::from_ns(&new_histogram());
        assert_eq!(s, LatencySummary::default());
    }

    #[test]
    fn human_units() {
        assert_eq!(fmt_us(87.25), "87.2µs");
        assert_eq!(fmt_us(1240.0), "1.24ms");
        assert_eq!(fmt_us(2_500_000.0), "2.50s");
        assert_eq!(fmt_bytes(2048.0), "2.0 KiB");
    }

    #[test]
    fn json_field_names_are_stable() {
        let mut totals = crate::stats::Shard::new();
        totals.add(&crate::stats::Sample {
            latency: Some(Duration::from_micros(100)),
            send_delay: None,
            status: Some(200),
            bytes: 13,
            error: None,
        });
        let result = EngineResult {
            totals,
            elapsed: Duration::from_secs(1),
        };
        let info = RunInfo {
            mode: "h1".into(),
            url: "http://127.0.0.1/".into(),
            loop_kind: "closed",
            target_rate: None,
            connections: 1,
            streams_per_connection: 1,
            threads: 1,
            warmup_s: 0.0,
        };
        let v = RequestReport::new(info, &result).to_json();
        for key in [
            "tool",
            "version",
            "mode",
            "url",
            "loop",
            "target_rate",
            "connections",
            "threads",
            "duration_s",
            "requests",
            "ok",
            "errors",
            "throughput_rps",
            "bytes",
            "latency_us",
            "send_delay_us",
            "status_codes",
        ] {
            assert!(v.get(key).is_some(), "missing {key}");
        }
        assert_eq!(v["requests"], 1);
        assert_eq!(v["errors"]["status_5xx"], 0);
        assert_eq!(v["latency_us"]["p99_9"], 100.0);
        assert_eq!(v["status_codes"]["200"], 1);
    }
}
