//! Discrete-event simulation with a manual clock: does peak-EWMA P2C avoid a slow target?
//!
//! Three targets serve requests in 10 ms; one needs 20 ms more. A request arrives every
//! millisecond (10,000 in total); each completes after its target's latency, with the clock set
//! to that instant. No sleeping, no threads: the run is exact and fast.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

use orchestra_lb::{
    build, Clock, EwmaConfig, InFlightGuard, ManualClock, Outcome, OutlierConfig, Params,
    PickContext, Strategy, Target,
};

const MS: u64 = 1_000_000;
const REQUESTS: u64 = 10_000;

fn simulate(strategy: Strategy) -> [u64; 3] {
    fastrand::seed(42);
    let clock = ManualClock::new(1_000 * MS);
    let targets = (0..3)
        .map(|i| Target::new(([10, 2, 0, 1], 9000 + i as u16).into(), 1))
        .collect();
    let params = Params {
        clock: clock.clone(),
        peak_ewma: EwmaConfig::default(),
        outlier: OutlierConfig::default(),
    };
    let b = build(strategy, targets, &params);
    let latency_ms = |idx: usize, seq: u64| (if idx == 2 { 30 } else { 10 }) + seq % 3;

    let mut due: BinaryHeap<Reverse<(u64, u64)>> = BinaryHeap::new();
    let mut guards: Vec<Option<(InFlightGuard, u64)>> = Vec::new();
    let mut picks = [0u64; 3];
    let start = clock.now_ns();
    for seq in 0..REQUESTS {
        let arrival = start + seq * MS;
        while let Some(&Reverse((at, id))) = due.peek() {
            if at > arrival {
                break;
            }
            due.pop();
            clock.set(at);
            if let Some((g, sent)) = guards[id as usize].take() {
                g.complete(Outcome::success(Duration::from_nanos(at - sent)));
            }
        }
        clock.set(arrival);
        let (idx, guard) = b.pick_and_start(&PickContext::default()).expect("pick");
        picks[idx] += 1;
        due.push(Reverse((arrival + latency_ms(idx, seq) * MS, seq)));
        guards.push(Some((guard, arrival)));
    }
    picks
}

#[test]
fn peak_ewma_avoids_the_slow_target() {
    let picks = simulate(Strategy::PeakEwma);
    let slow_share = picks[2] as f64 / REQUESTS as f64;
    eprintln!("peak_ewma picks {picks:?}, slow share {slow_share:.3}");
    assert!(slow_share < 0.10, "{picks:?}");
    assert!(picks[2] > 0, "the slow target is still probed");
}

#[test]
fn round_robin_splits_evenly_regardless() {
    let picks = simulate(Strategy::RoundRobin);
    eprintln!("round_robin picks {picks:?}");
    assert_eq!(picks, [3334, 3333, 3333]);
}

#[test]
fn least_request_sits_in_between() {
    let picks = simulate(Strategy::LeastRequest);
    let slow_share = picks[2] as f64 / REQUESTS as f64;
    eprintln!("least_request picks {picks:?}, slow share {slow_share:.3}");
    assert!(slow_share < 1.0 / 3.0, "{picks:?}");
}
