//! Micro-benchmarks of the gateway's per-request hot path and of config swaps.
//!
//! Run: `cargo bench -p orchestra-bench --bench hot_path`. Results go to `bench/RESULTS.md`
//! with the exact command.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use http::{HeaderMap, HeaderValue, Method};
use orchestra_config::RouteRequest;
use orchestra_gateway::request_id::RequestIdentity;
use orchestra_metrics::{Metric, Registry, SeriesKey, SeriesKind};

/// A config with `n` routes: `n - 1` prefixes `/svc{i}/` and a catch-all last, so a request for
/// the last prefix scans the whole table (the worst case of first-match routing).
fn config_text(n: usize) -> String {
    let mut s = String::from(
        "[[upstreams]]\nname = \"u\"\nbalancer = \"round_robin\"\ntargets = [{ addr = \"127.0.0.1:3001\" }]\n",
    );
    for i in 0..n.saturating_sub(1) {
        s.push_str(&format!(
            "[[routes]]\nname = \"r{i}\"\nmatch = {{ path_prefix = \"/svc{i}/\", methods = [\"GET\"] }}\nupstream = \"u\"\n"
        ));
    }
    s.push_str("[[routes]]\nname = \"all\"\nmatch = { path_prefix = \"/\" }\nupstream = \"u\"\n");
    s
}

fn route_match(c: &mut Criterion) {
    let mut g = c.benchmark_group("route_match");
    for n in [10usize, 1_000, 10_000] {
        let snap = orchestra_config::from_str(&config_text(n), "bench.toml").expect("config");
        let headers = HeaderMap::new();
        let first = "/svc0/x".to_string();
        let last = format!("/svc{}/x", n.saturating_sub(2));
        for (label, path) in [("first", &first), ("last", &last)] {
            g.bench_with_input(BenchmarkId::new(label, n), path, |b, path| {
                b.iter(|| {
                    let req = RouteRequest {
                        host: Some("api.example.com"),
                        path,
                        method: &Method::GET,
                        headers: &headers,
                    };
                    black_box(snap.routes.find(black_box(&req)).map(|(i, _)| i))
                })
            });
        }
    }
    g.finish();
}

fn snapshot_load(c: &mut Criterion) {
    let snap = orchestra_config::from_str(&config_text(10), "bench.toml").expect("config");
    let swap = ArcSwap::from_pointee(snap);
    c.bench_function("snapshot_load_full", |b| {
        b.iter(|| black_box(swap.load_full()))
    });
}

fn request_identity(c: &mut Criterion) {
    let empty = HeaderMap::new();
    c.bench_function("request_id/generate", |b| {
        b.iter(|| black_box(RequestIdentity::from_headers(black_box(&empty))))
    });
    let mut given = HeaderMap::new();
    given.insert("x-request-id", HeaderValue::from_static("abc-123"));
    given.insert(
        "traceparent",
        HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
    );
    c.bench_function("request_id/continue", |b| {
        b.iter(|| black_box(RequestIdentity::from_headers(black_box(&given))))
    });
}

fn histogram_record(c: &mut Criterion) {
    let registry = Registry::new(4);
    let ids: Vec<_> = ["route", "target", "protocol"]
        .iter()
        .map(|n| {
            registry.intern(SeriesKey {
                kind: SeriesKind::Route,
                name: (*n).to_string(),
                metric: Metric::Total,
            })
        })
        .collect();
    let mut v = 0u64;
    c.bench_function("histogram/record_3_series", |b| {
        b.iter(|| {
            v = (v + 7919) % 100_000;
            registry.record(black_box(&ids), v + 1)
        })
    });
    let counters = registry.route_counters("route");
    c.bench_function("histogram/status_counter", |b| {
        b.iter(|| counters.add(black_box(200)))
    });
}

/// Config apply with 10,000 routes: compile (parse + validate + build) and the swap itself.
fn config_swap(c: &mut Criterion) {
    let text = config_text(10_000);
    let mut g = c.benchmark_group("config_10k_routes");
    g.sample_size(10);
    g.bench_function("compile", |b| {
        b.iter(|| black_box(orchestra_config::from_str(&text, "bench.toml").expect("config")))
    });
    let current =
        ArcSwap::from_pointee(orchestra_config::from_str(&text, "bench.toml").expect("c"));
    g.bench_function("swap", |b| {
        b.iter_custom(|iters| {
            let mut total = std::time::Duration::ZERO;
            for _ in 0..iters {
                let next = Arc::new(orchestra_config::from_str(&text, "bench.toml").expect("c"));
                let start = Instant::now();
                let old = current.swap(next);
                total += start.elapsed();
                drop(old); // the old snapshot is freed outside the measured swap
            }
            total
        })
    });
    g.finish();
}

criterion_group!(
    benches,
    route_match,
    snapshot_load,
    request_identity,
    histogram_record,
    config_swap
);
criterion_main!(benches);
