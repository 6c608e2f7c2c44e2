//! Latency histograms through the real binary: exact counts per route, target and protocol,
//! percentiles of a slow upstream, the raw HdrHistogram export, Prometheus text, and the
//! `stats` subcommand.

mod common;

use std::collections::HashMap;

use base64::Engine;
use common::admin::*;
use common::*;
use hdrhistogram::serialization::Deserializer;
use hdrhistogram::Histogram;
use testkit::client::H2Client;
use testkit::prometheus::strict_exposition;
use testkit::{EchoServer, GatewayProcess};

const N: u64 = 50;
const SLOW: u64 = 20;
const SLOW_MS: u64 = 10;

/// Routes `fast` (`/fast` -> upstream `f`) and `slow` (`/slow` -> upstream `s`, each on its own
/// echo server).
async fn start(fast: &EchoServer, slow: &EchoServer) -> GatewayProcess {
    let gw = gateway()
        .admin(true)
        .config(format!(
            "{}{}{}{}",
            upstream("f", &[fast.addr()], ""),
            upstream("s", &[slow.addr()], ""),
            route(
                "fast",
                "path_prefix = \"/fast\"",
                "f",
                "strip_prefix = true"
            ),
            route("slow", "path_prefix = \"/slow\"", "s", "")
        ))
        .start()
        .await
        .expect("gateway");
    wait_ready(&gw).await;
    gw
}

fn u(v: &serde_json::Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("no integer {key:?} in {v}"))
}

/// Asserts the invariants of one summary: `p50 <= p90 <= p99 <= p999 <= max`, and
/// `mean <= max`.
fn assert_ordered(s: &serde_json::Value) {
    let (p50, p90, p99, p999, max) = (
        u(s, "p50"),
        u(s, "p90"),
        u(s, "p99"),
        u(s, "p999"),
        u(s, "max"),
    );
    assert!(
        p50 <= p90 && p90 <= p99 && p99 <= p999 && p999 <= max,
        "percentiles out of order: {s}"
    );
    let mean = s["mean"].as_f64().expect("mean");
    assert!(mean > 0.0 && mean <= max as f64, "mean out of range: {s}");
}

/// The brief's test 6 (JSON part): exact counts, the slow route's percentiles.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_are_exact_and_a_slow_upstream_shows_in_p50() {
    let fast = EchoServer::start("fast").await.expect("echo");
    let slow = EchoServer::start("slow").await.expect("echo");
    let gw = start(&fast, &slow).await;
    let admin = Admin::new(&gw);
    let client = http_client();

    let h = admin.histograms("total").await;
    assert_eq!(h["window"], "total", "{h}");
    assert_eq!(h["unit"], "us", "{h}");
    let h1_before = admin.series_count("protocol:h1:total").await;
    let h2_before = admin.series_count("protocol:h2:total").await;
    assert_eq!(admin.series_count("route:fast:total").await, 0);

    for i in 0..N {
        assert_served_by(&client, &gw.http_url(&format!("/fast/{i}")), "fast").await;
    }
    let target = format!("target:f/{}:total", fast.addr());
    for name in ["route:fast:total", "route:fast:upstream", target.as_str()] {
        let n = admin.wait_series_count(name, N).await;
        assert_eq!(n, N, "{name} after {N} requests");
    }
    let h1 = admin
        .wait_series_count("protocol:h1:total", h1_before + N)
        .await;
    assert_eq!(
        h1 - h1_before,
        N,
        "protocol:h1:total grew by {}",
        h1 - h1_before
    );
    assert_eq!(
        admin.series_count("protocol:h2:total").await,
        h2_before,
        "no h2 request was sent"
    );
    // The series carry their parts.
    let s = admin
        .series("total", "route:fast:total")
        .await
        .expect("route:fast:total listed");
    assert_eq!(s["kind"], "route", "{s}");
    assert_eq!(s["name"], "fast", "{s}");
    assert_eq!(s["metric"], "total", "{s}");
    assert_ordered(&s);
    let s = admin
        .series("total", "route:fast:upstream")
        .await
        .expect("listed");
    assert_eq!(s["metric"], "upstream", "{s}");
    // The last minute holds them too.
    let s = admin
        .series("1m", "route:fast:total")
        .await
        .expect("route:fast:total in 1m");
    assert_eq!(u(&s, "count"), N, "{s}");
    let bad = admin
        .call(reqwest::Method::GET, "/admin/histograms?window=2h", None)
        .await;
    assert_eq!(bad.status, 400, "{}", bad.text);

    // HTTP/2 (h2c prior knowledge) lands in protocol:h2.
    let mut h2 = H2Client::connect_h2c(gw.http_addr()).await.expect("h2c");
    for i in 0..5 {
        let r = h2.get(&format!("/fast/h2-{i}")).await.expect("h2 request");
        assert_eq!(r.status, 200);
    }
    let n = admin
        .wait_series_count("protocol:h2:total", h2_before + 5)
        .await;
    assert_eq!(n - h2_before, 5, "protocol:h2:total");
    let n = admin.wait_series_count("route:fast:total", N + 5).await;
    assert_eq!(n, N + 5, "route:fast:total");

    // A 10 ms upstream: p50 >= 10 000 µs for total and upstream latency alike.
    for i in 0..SLOW {
        assert_served_by(
            &client,
            &gw.http_url(&format!("/slow?ms={SLOW_MS}&i={i}")),
            "slow",
        )
        .await;
    }
    let slow_target = format!("target:s/{}", slow.addr());
    for name in [
        "route:slow:total".to_string(),
        "route:slow:upstream".to_string(),
        format!("{slow_target}:total"),
        format!("{slow_target}:upstream"),
    ] {
        assert_eq!(admin.wait_series_count(&name, SLOW).await, SLOW, "{name}");
        let s = admin.series("total", &name).await.expect("listed");
        assert!(
            u(&s, "p50") >= SLOW_MS * 1000,
            "{name}: p50 below the upstream's {SLOW_MS} ms: {s}"
        );
        assert!(
            s["mean"].as_f64().expect("mean") >= (SLOW_MS * 1000) as f64,
            "{name}: {s}"
        );
        assert_ordered(&s);
    }
    // Total latency includes the upstream's.
    let total = admin
        .series("total", "route:slow:total")
        .await
        .expect("listed");
    let up = admin
        .series("total", "route:slow:upstream")
        .await
        .expect("listed");
    assert!(
        total["mean"].as_f64() >= up["mean"].as_f64(),
        "total {total} vs upstream {up}"
    );
    // The fast route is not polluted by the slow one.
    assert_eq!(admin.series_count("route:fast:total").await, N + 5);
}

/// The brief's test 6 (exports): HdrHistogram V2 deflate + base64, Prometheus text, and the
/// `stats` subcommand.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hdr_prometheus_and_stats_agree_with_what_was_sent() {
    let fast = EchoServer::start("fast").await.expect("echo");
    let slow = EchoServer::start("slow").await.expect("echo");
    let gw = start(&fast, &slow).await;
    let admin = Admin::new(&gw);
    let client = http_client();
    for i in 0..N {
        assert_served_by(&client, &gw.http_url(&format!("/fast/{i}")), "fast").await;
    }
    for i in 0..SLOW {
        assert_served_by(
            &client,
            &gw.http_url(&format!("/slow?ms={SLOW_MS}&i={i}")),
            "slow",
        )
        .await;
    }
    // One 404 on the fast route, to see a second status code.
    let (status, _) = probe(&client, &gw.http_url("/fast/status/404"))
        .await
        .expect("answer");
    assert_eq!(status, 404);
    assert_eq!(
        admin.wait_series_count("route:fast:total", N + 1).await,
        N + 1
    );
    assert_eq!(
        admin.wait_series_count("route:slow:total", SLOW).await,
        SLOW
    );

    // HDR: one base64 line, V2 deflate inside, same count and percentiles as the JSON.
    let fast_target = format!("target:f/{}:total", fast.addr());
    for (name, count) in [
        ("route:fast:total", N + 1),
        ("route:slow:upstream", SLOW),
        (fast_target.as_str(), N + 1),
    ] {
        let a = admin
            .call(
                reqwest::Method::GET,
                &format!("/admin/histograms/{name}?format=hdr"),
                None,
            )
            .await;
        assert_eq!(a.status, 200, "{name}: {}", a.text);
        let line = a.text.trim_end_matches('\n');
        assert!(
            !line.is_empty() && !line.contains('\n'),
            "{name}: not one line: {:?}",
            a.text
        );
        let raw = base64::engine::general_purpose::STANDARD
            .decode(line)
            .unwrap_or_else(|e| panic!("{name}: not base64 ({e}): {line}"));
        // V2 compressed cookie (0x1c849304 | 0x10, big-endian), then a deflate payload.
        assert_eq!(
            &raw[..4],
            &[0x1c, 0x84, 0x93, 0x14],
            "{name}: not a V2 deflate cookie"
        );
        let h: Histogram<u64> = Deserializer::new()
            .deserialize(&mut &raw[..])
            .unwrap_or_else(|e| panic!("{name}: not an HdrHistogram V2 log: {e:?}"));
        assert_eq!(h.len(), count, "{name}: decoded count");
        let json = admin.series("total", name).await.expect("listed");
        assert_eq!(h.max(), u(&json, "max"), "{name}: max vs {json}");
        assert_eq!(
            h.value_at_quantile(0.5),
            u(&json, "p50"),
            "{name}: p50 vs {json}"
        );
        if name == "route:slow:upstream" {
            assert!(h.value_at_quantile(0.5) >= SLOW_MS * 1000, "{name}");
        }
    }
    let a = admin
        .call(
            reqwest::Method::GET,
            "/admin/histograms/route:nope:total?format=hdr",
            None,
        )
        .await;
    assert_eq!(a.status, 404, "{}", a.text);

    // Prometheus: a strict line-by-line check, then prometheus-parse.
    let text = admin.metrics().await;
    let samples = strict_exposition(&text);
    let get = |name: &str, labels: &[(&str, &str)]| -> Option<f64> {
        samples
            .iter()
            .find(|s| {
                s.name == name
                    && s.labels.len() == labels.len()
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|s| s.value)
    };
    assert_eq!(
        get(
            "orchestra_requests_total",
            &[("route", "fast"), ("code", "200")]
        ),
        Some(N as f64),
        "{text}"
    );
    assert_eq!(
        get(
            "orchestra_requests_total",
            &[("route", "fast"), ("code", "404")]
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        get(
            "orchestra_requests_total",
            &[("route", "slow"), ("code", "200")]
        ),
        Some(SLOW as f64),
        "{text}"
    );
    for (metric, kind, name, count) in [
        ("orchestra_request_duration_seconds", "route", "fast", N + 1),
        (
            "orchestra_upstream_duration_seconds",
            "route",
            "fast",
            N + 1,
        ),
        ("orchestra_request_duration_seconds", "route", "slow", SLOW),
        ("orchestra_upstream_duration_seconds", "route", "slow", SLOW),
        (
            "orchestra_request_duration_seconds",
            "target",
            &format!("f/{}", fast.addr()),
            N + 1,
        ),
    ] {
        let labels = [("kind", kind), ("name", name)];
        assert_eq!(
            get(&format!("{metric}_count"), &labels),
            Some(count as f64),
            "{metric} {labels:?}\n{text}"
        );
        // Buckets of this series, by `le`: cumulative, and `+Inf` equals `_count`.
        let mut buckets: Vec<(f64, f64)> = samples
            .iter()
            .filter(|s| {
                s.name == format!("{metric}_bucket")
                    && s.labels.get("kind").map(String::as_str) == Some(kind)
                    && s.labels.get("name").map(String::as_str) == Some(name)
            })
            .map(|s| {
                let le = s.labels.get("le").expect("le label");
                let le = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse::<f64>().expect("le is a number")
                };
                (le, s.value)
            })
            .collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        assert!(
            buckets.len() > 2,
            "{metric} {labels:?}: buckets {buckets:?}"
        );
        assert!(
            buckets.windows(2).all(|w| w[0].1 <= w[1].1),
            "{metric} {labels:?}: buckets not cumulative: {buckets:?}"
        );
        let inf = buckets.last().expect("buckets");
        assert_eq!(inf.0, f64::INFINITY, "{metric} {labels:?}: no +Inf bucket");
        assert_eq!(inf.1, count as f64, "{metric} {labels:?}: +Inf vs _count");
        if name == "slow" {
            // Every slow request took >= 10 ms: nothing in the buckets below 0.01 s.
            let below: f64 = buckets
                .iter()
                .filter(|(le, _)| *le < 0.01)
                .map(|b| b.1)
                .fold(0.0, f64::max);
            assert_eq!(below, 0.0, "{metric} slow: {buckets:?}");
            let sum = get(&format!("{metric}_sum"), &labels).expect("_sum");
            assert!(
                sum >= count as f64 * SLOW_MS as f64 / 1000.0,
                "{metric} slow: _sum {sum}"
            );
        }
    }
    // The same text through prometheus-parse.
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .expect("prometheus-parse");
    let sample = |metric: &str, labels: &[(&str, &str)]| {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .unwrap_or_else(|| panic!("prometheus-parse found no {metric} {labels:?}:\n{text}"))
    };
    let counter = sample(
        "orchestra_requests_total",
        &[("route", "fast"), ("code", "200")],
    );
    assert_eq!(counter.value, prometheus_parse::Value::Counter(N as f64));
    let hist = sample(
        "orchestra_request_duration_seconds",
        &[("kind", "route"), ("name", "slow")],
    );
    match &hist.value {
        prometheus_parse::Value::Histogram(b) => {
            let inf = b
                .iter()
                .find(|c| c.less_than.is_infinite())
                .expect("+Inf bucket");
            assert_eq!(inf.count, SLOW as f64);
        }
        other => panic!("not a histogram: {other:?}"),
    }

    // `stats --window total`: a row for route:fast:total with its count.
    let out = stats_total(&gw, &[]).await;
    assert!(out.status.success(), "{}", describe_output(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let rows: HashMap<&str, Vec<&str>> = stdout
        .lines()
        .filter_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            Some((*cols.first()?, cols))
        })
        .collect();
    for (series, count) in [("route:fast:total", N + 1), ("route:slow:upstream", SLOW)] {
        let row = rows
            .get(series)
            .unwrap_or_else(|| panic!("no row for {series}:\n{stdout}"));
        assert_eq!(
            row.get(1).and_then(|c| c.parse::<u64>().ok()),
            Some(count),
            "{series} row {row:?}:\n{stdout}"
        );
        let json = admin.series("total", series).await.expect("listed");
        assert_eq!(
            row.get(2).and_then(|c| c.parse::<u64>().ok()),
            Some(u(&json, "p50")),
            "{series} p50 column vs {json}:\n{stdout}"
        );
    }
}
