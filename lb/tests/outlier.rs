//! Outlier ejection, readmission and the max-ejection-percent rule, with a manual clock.

use std::sync::Arc;
use std::time::Duration;

use orchestra_lb::{
    build, Balancer, EwmaConfig, ManualClock, Outcome, OutlierConfig, Params, PickContext,
    Strategy, Target,
};

fn balancer(n: usize, strategy: Strategy) -> (Box<dyn Balancer>, Arc<ManualClock>) {
    let clock = ManualClock::new(1_000_000_000);
    let targets = (0..n)
        .map(|i| Target::new(([10, 1, 0, 1], 8000 + i as u16).into(), 1))
        .collect();
    let params = Params {
        clock: clock.clone(),
        peak_ewma: EwmaConfig::default(),
        outlier: OutlierConfig::default(),
    };
    (build(strategy, targets, &params), clock)
}

fn fail(b: &dyn Balancer, idx: usize, times: usize) {
    for _ in 0..times {
        let g = b.start(idx).expect("slot");
        g.complete(Outcome::failure(Duration::from_millis(1)));
    }
}

fn succeed(b: &dyn Balancer, idx: usize) {
    let g = b.start(idx).expect("slot");
    g.complete(Outcome::success(Duration::from_millis(1)));
}

#[test]
fn five_consecutive_failures_eject_for_base_time() {
    let (b, clock) = balancer(10, Strategy::RoundRobin);
    fail(&*b, 0, 4);
    succeed(&*b, 0); // resets the run
    fail(&*b, 0, 4);
    assert!(b.is_available(0));
    fail(&*b, 0, 1);
    assert!(!b.is_available(0));
    assert!(b.snapshot()[0].ejected);
    for _ in 0..100 {
        assert_ne!(b.pick(&PickContext::default()), Some(0));
    }
    clock.advance(Duration::from_secs(30) - Duration::from_nanos(1));
    assert!(!b.is_available(0));
    clock.advance(Duration::from_nanos(1));
    assert!(b.is_available(0), "readmitted exactly after 30 s");
    assert!(!b.snapshot()[0].ejected);
    assert_eq!(b.pool().expect("pool").ejected_count(), 0);
}

#[test]
fn repeat_ejections_grow_then_decay() {
    let (b, clock) = balancer(10, Strategy::PeakEwma);
    fail(&*b, 3, 5);
    clock.advance(Duration::from_secs(30));
    // Fails again right after readmission: multiplier 2 → 60 s.
    fail(&*b, 3, 5);
    clock.advance(Duration::from_secs(60) - Duration::from_nanos(1));
    assert!(!b.is_available(3));
    clock.advance(Duration::from_nanos(1));
    assert!(b.is_available(3));
    // 20 s (two clean intervals) of good behaviour: multiplier 2 − 2 + 1 = 1 → 30 s.
    clock.advance(Duration::from_secs(20));
    fail(&*b, 3, 5);
    clock.advance(Duration::from_secs(30));
    assert!(b.is_available(3));
}

#[test]
fn ejection_is_capped_at_max_ejection() {
    let (b, clock) = balancer(10, Strategy::LeastRequest);
    for _ in 0..20 {
        fail(&*b, 1, 5);
        clock.advance(Duration::from_secs(300));
        assert!(b.is_available(1), "never out longer than 300 s");
    }
}

#[test]
fn at_most_ten_percent_ejected_but_at_least_one() {
    let (b, clock) = balancer(10, Strategy::RoundRobin);
    fail(&*b, 0, 5);
    fail(&*b, 1, 5);
    assert!(!b.is_available(0));
    assert!(b.is_available(1), "10 % of 10 targets is one");
    clock.advance(Duration::from_secs(30));
    // Target 1 kept its run of failures: its next failure ejects it now that there is room.
    fail(&*b, 1, 1);
    assert!(!b.is_available(1));
    assert!(b.is_available(0));

    let (small, _) = balancer(3, Strategy::RoundRobin);
    fail(&*small, 2, 5);
    assert!(
        !small.is_available(2),
        "fewer than 10 targets: one may still be ejected"
    );
    fail(&*small, 1, 5);
    assert!(small.is_available(1));

    let (big, _) = balancer(20, Strategy::RoundRobin);
    for i in 0..3 {
        fail(&*big, i, 5);
    }
    let out: Vec<bool> = (0..3).map(|i| !big.is_available(i)).collect();
    assert_eq!(out, vec![true, true, false]);
}

#[test]
fn failures_of_requests_in_flight_at_ejection_are_ignored() {
    let (b, clock) = balancer(10, Strategy::RoundRobin);
    let late: Vec<_> = (0..10).map(|_| b.start(4).expect("slot")).collect();
    fail(&*b, 4, 5);
    for g in late {
        g.complete(Outcome::failure(Duration::from_millis(1)));
    }
    clock.advance(Duration::from_secs(30));
    assert!(
        b.is_available(4),
        "late failures did not extend or repeat the ejection"
    );
    fail(&*b, 4, 4);
    assert!(b.is_available(4), "run restarted from zero at readmission");
}

#[test]
fn disabled_detection_never_ejects() {
    let clock = ManualClock::new(1);
    let params = Params {
        clock,
        peak_ewma: EwmaConfig::default(),
        outlier: OutlierConfig::disabled(),
    };
    let targets = vec![Target::new(([10, 1, 0, 1], 1).into(), 1)];
    let b = build(Strategy::PeakEwma, targets, &params);
    fail(&*b, 0, 50);
    assert!(b.is_available(0));
    assert_eq!(b.targets()[0].stats.errors(), 50);
}
