//! Encodings of the registry: HdrHistogram V2 log lines and Prometheus text exposition.

use std::fmt::Write;
use std::time::Instant;

use base64::Engine;
use hdrhistogram::serialization::{Serializer, V2DeflateSerializer};
use hdrhistogram::Histogram;

use crate::{Metric, Registry, SeriesKind, Window};

/// Upper bounds (seconds) of the Prometheus latency buckets.
pub const BUCKETS_SECONDS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0,
];

/// The histogram as an HdrHistogram V2 compressed log payload (deflate, then base64), the form
/// `HistogramLogReader` and the HdrHistogram plotters read.
pub fn hdr_base64(h: &Histogram<u64>) -> Result<String, String> {
    let mut buf = Vec::new();
    V2DeflateSerializer::new()
        .serialize(h, &mut buf)
        .map_err(|e| format!("serialize: {e:?}"))?;
    Ok(base64::engine::general_purpose::STANDARD.encode(buf))
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Prometheus text exposition (format 0.0.4) of every series since start and of the per-route
/// status counters.
///
/// - `orchestra_requests_total{route, code}` counter;
/// - `orchestra_request_duration_seconds{kind, name}` histogram of total latency;
/// - `orchestra_upstream_duration_seconds{kind, name}` histogram of upstream latency.
pub fn prometheus(registry: &Registry, now: Instant) -> String {
    let mut out = String::with_capacity(4096);
    out.push_str("# HELP orchestra_requests_total Requests answered, by route and status code.\n");
    out.push_str("# TYPE orchestra_requests_total counter\n");
    for (route, counters) in registry.all_route_counters() {
        for (code, n) in counters.nonzero() {
            let _ = writeln!(
                out,
                "orchestra_requests_total{{route=\"{}\",code=\"{code}\"}} {n}",
                escape_label(&route)
            );
        }
    }
    registry.rotate(now);
    for (metric, name, help) in [
        (
            Metric::Total,
            "orchestra_request_duration_seconds",
            "Total request latency, from request head to end of response.",
        ),
        (
            Metric::Upstream,
            "orchestra_upstream_duration_seconds",
            "Upstream latency, from request head to the upstream's response head.",
        ),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} histogram");
        for (key, id) in registry.series() {
            if key.metric != metric {
                continue;
            }
            let h = registry.histogram(id, Window::Total, now);
            let labels = format!(
                "kind=\"{}\",name=\"{}\"",
                key.kind.as_str(),
                escape_label(&key.name)
            );
            write_histogram(&mut out, name, &labels, &h);
        }
    }
    out
}

fn write_histogram(out: &mut String, name: &str, labels: &str, h: &Histogram<u64>) {
    let mut cumulative = 0u64;
    let mut low = 0u64;
    for le in BUCKETS_SECONDS {
        let high = (le * 1e6) as u64;
        if !h.is_empty() {
            cumulative += h.count_between(low, high);
            // count_between is inclusive on both ends; move past `high` for the next bucket.
            low = h.next_non_equivalent(high);
        }
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {cumulative}");
    }
    let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", h.len());
    let sum_seconds = h.mean() * h.len() as f64 / 1e6;
    let _ = writeln!(out, "{name}_sum{{{labels}}} {sum_seconds}");
    let _ = writeln!(out, "{name}_count{{{labels}}} {}", h.len());
}

/// Label of a series kind for tables (`route`, `target`, `protocol`).
pub fn kind_label(kind: SeriesKind) -> &'static str {
    kind.as_str()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{SeriesKey, SeriesKind};
    use hdrhistogram::serialization::Deserializer;

    #[test]
    fn hdr_roundtrip() {
        let mut h = Histogram::<u64>::new(3).expect("histogram");
        for v in [5u64, 50, 500, 5000] {
            h.record(v).expect("record");
        }
        let b64 = hdr_base64(&h).expect("encode");
        let raw = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .expect("base64");
        let back: Histogram<u64> = Deserializer::new()
            .deserialize(&mut &raw[..])
            .expect("decode");
        assert_eq!(back.len(), 4);
        assert_eq!(back.max(), h.max());
    }

    #[test]
    fn prometheus_buckets_are_cumulative_and_complete() {
        let r = Registry::new(1);
        let id = r.intern(SeriesKey {
            kind: SeriesKind::Route,
            name: "api".into(),
            metric: Metric::Total,
        });
        for v in [50u64, 100, 100, 2_000, 40_000_000] {
            r.record(&[id], v);
        }
        r.route_counters("api").add(200);
        let text = prometheus(&r, Instant::now());
        assert!(text.contains("orchestra_requests_total{route=\"api\",code=\"200\"} 1"));
        assert!(text.contains(
            "orchestra_request_duration_seconds_bucket{kind=\"route\",name=\"api\",le=\"0.0001\"} 3"
        ), "{text}");
        assert!(text.contains(
            "orchestra_request_duration_seconds_bucket{kind=\"route\",name=\"api\",le=\"0.0025\"} 4"
        ), "{text}");
        assert!(text.contains(
            "orchestra_request_duration_seconds_bucket{kind=\"route\",name=\"api\",le=\"30\"} 4"
        ), "{text}");
        assert!(text.contains(
            "orchestra_request_duration_seconds_bucket{kind=\"route\",name=\"api\",le=\"+Inf\"} 5"
        ));
        assert!(text
            .contains("orchestra_request_duration_seconds_count{kind=\"route\",name=\"api\"} 5"));
    }
}
