//! Cost of one monitor tick on the control plane: rotating the latency registry, sampling the
//! dashboard's time series (1m and 5m summaries of every series, route rates) and evaluating the
//! alert rules, for a config of `n` routes, `n` upstreams (one target each) and `n / 2` rules.
//! Each iteration first records 100 samples per route (as traffic between two ticks would), so
//! the rules' windows always have new data.
//!
//! Run: `cargo bench -p orchestra-bench --bench monitor`. Results go to `bench/RESULTS.md`.

use std::hint::black_box;
use std::time::{Instant, SystemTime};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use orchestra_gateway::state::GatewayState;

fn config_text(n: usize) -> String {
    let mut s = String::from("[monitor]\ninterval = \"1s\"\n");
    for i in 0..n {
        s.push_str(&format!(
            "[[upstreams]]\nname = \"u{i}\"\ntargets = [{{ addr = \"127.0.0.1:{}\" }}]\n\
             [[routes]]\nname = \"r{i}\"\nmatch = {{ path_prefix = \"/r{i}/\" }}\nupstream = \"u{i}\"\n",
            10_000 + i
        ));
    }
    for i in 0..n / 2 {
        let rule = match i % 3 {
            0 => format!("metric = \"p99\"\nseries = \"route:r{i}:total\"\nabove = \"100ms\"\nwindow = \"1m\""),
            1 => format!("metric = \"error_rate\"\nseries = \"route:r{i}\"\nabove = 0.05"),
            _ => format!("metric = \"upstream_healthy_targets\"\nseries = \"u{i}\"\nbelow = 1"),
        };
        s.push_str(&format!("[[alerts]]\nname = \"a{i}\"\n{rule}\n"));
    }
    s
}

fn tick(c: &mut Criterion) {
    let mut g = c.benchmark_group("monitor_tick");
    for n in [10usize, 100] {
        let text = config_text(n);
        let snapshot = orchestra_config::from_str(&text, "bench.toml").expect("config");
        let state = GatewayState::new(snapshot, &text, 4);
        let live = state.live();
        let mut v = 0u64;
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| {
                for (pair, counters) in &live.series.routes {
                    for _ in 0..100 {
                        v = (v * 7 + 13) % 50_000;
                        state.registry.record(&[pair.total, pair.upstream], 200 + v);
                        counters.add(if v.is_multiple_of(50) { 503 } else { 200 });
                    }
                }
                let n = orchestra_gateway::monitor::tick(
                    &state,
                    &live,
                    Instant::now(),
                    SystemTime::now(),
                );
                black_box(n.len())
            })
        });
    }
    g.finish();
}

criterion_group!(benches, tick);
criterion_main!(benches);
