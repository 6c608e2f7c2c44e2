//! Pick cost per strategy at 3 / 100 / 1,000 targets.
//!
//! * `pick/<strategy>/<n>`: `Balancer::pick` alone, one thread.
//! * `pick_complete/<strategy>/<n>`: pick + take the in-flight slot + complete it with an
//!   outcome (what one request attempt costs the balancer), one thread.
//! * `contended/<strategy>/<n>`: the same as `pick_complete`, measured on one thread while a
//!   second thread does the same on the same balancer in a loop.
//!
//! Run: `cargo bench -p orchestra-lb --bench pick -- --warm-up-time 1 --measurement-time 2`.

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use orchestra_lb::{build, hash_str, Balancer, Outcome, Params, PickContext, Strategy, Target};

const SIZES: [usize; 3] = [3, 100, 1_000];
const STRATEGIES: [Strategy; 5] = [
    Strategy::RoundRobin,
    Strategy::LeastRequest,
    Strategy::PeakEwma,
    Strategy::ConsistentHash,
    Strategy::ResourceBased,
];

fn balancer(strategy: Strategy, n: usize) -> Box<dyn Balancer> {
    let targets = (0..n)
        .map(|i| {
            let addr = ([10, (i >> 8) as u8, i as u8, 1], 8080).into();
            Target::new(addr, 1 + (i % 3) as u32)
        })
        .collect();
    let b = build(strategy, targets, &Params::default());
    // Give every target a measured RTT and a load report, as in steady state.
    for i in 0..n {
        if let Some(g) = b.start(i) {
            g.complete(Outcome::success(Duration::from_micros(
                500 + (i as u64 % 7) * 100,
            )));
        }
        b.report_load(i, (i % 10) as f32 / 10.0, 0.3, 0.5);
    }
    b
}

/// Request keys for `consistent_hash` (hashed once up front: the pipeline hashes per request,
/// but that cost belongs to the pipeline, not to the pick).
fn keys() -> Vec<PickContext> {
    (0..1024)
        .map(|i| PickContext {
            hash_key: Some(hash_str(&format!("user-{i}"))),
        })
        .collect()
}

fn attempt(b: &dyn Balancer, ctx: &PickContext) {
    if let Some((_, g)) = b.pick_and_start(ctx) {
        g.complete(Outcome::success(Duration::from_micros(700)));
    }
}

/// Benchmarks `op(balancer, key)` in group `name` for every strategy and size, one thread,
/// cycling through the request keys (`op` is generic, so it is inlined as the hand-written loops
/// were: no indirect call in the measurement).
fn bench_single_thread<F: Fn(&dyn Balancer, &PickContext)>(c: &mut Criterion, name: &str, op: F) {
    let keys = keys();
    let mut group = c.benchmark_group(name);
    for strategy in STRATEGIES {
        for n in SIZES {
            let b = balancer(strategy, n);
            let mut k = 0usize;
            group.bench_function(BenchmarkId::new(strategy.as_str(), n), |bench| {
                bench.iter(|| {
                    k = (k + 1) & 1023;
                    op(&*b, black_box(&keys[k]));
                })
            });
        }
    }
    group.finish();
}

fn bench_pick(c: &mut Criterion) {
    bench_single_thread(c, "pick", |b, key| {
        black_box(b.pick(key));
    });
}

fn bench_pick_complete(c: &mut Criterion) {
    bench_single_thread(c, "pick_complete", attempt);
}

fn bench_contended(c: &mut Criterion) {
    let keys = keys();
    let mut group = c.benchmark_group("contended");
    for strategy in STRATEGIES {
        for n in SIZES {
            let b = balancer(strategy, n);
            let stop = AtomicBool::new(false);
            std::thread::scope(|s| {
                s.spawn(|| {
                    let mut k = 0usize;
                    while !stop.load(Ordering::Relaxed) {
                        k = (k + 7) & 1023;
                        attempt(&*b, &keys[k]);
                    }
                });
                let mut k = 0usize;
                group.bench_function(BenchmarkId::new(strategy.as_str(), n), |bench| {
                    bench.iter(|| {
                        k = (k + 1) & 1023;
                        attempt(&*b, black_box(&keys[k]));
                    })
                });
                stop.store(true, Ordering::Relaxed);
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench_pick, bench_pick_complete, bench_contended);
criterion_main!(benches);
