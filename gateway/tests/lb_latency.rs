//! Latency-aware balancing through the real gateway: three echo upstreams, one of them adding
//! 50 ms to every response, under 16 concurrent clients. `peak_ewma` (the default) keeps the
//! slow one under 10 % of the traffic; `round_robin` ignores latency and gives it about a third.
//! Shares are counted by the upstream servers themselves.

mod common;
mod lb_common;

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use lb_common::*;
use testkit::ControlledEcho;

const REQUESTS: usize = 1_500;
const CONCURRENCY: usize = 16;
/// Far above what a loaded 2-core CI machine adds to a fast answer, so "slow" stays slow.
const SLOW_DELAY: Duration = Duration::from_millis(50);

/// Runs the load through a gateway using `balancer`; returns (slow share, per-server counts).
async fn slow_share(balancer: &str) -> (f64, [u64; 3]) {
    let fast_a = ControlledEcho::start("fast-a").await.expect("echo");
    let fast_b = ControlledEcho::start("fast-b").await.expect("echo");
    let slow = ControlledEcho::start_with_delay("slow", SLOW_DELAY)
        .await
        .expect("echo");
    let gw = start_gateway(format!(
        "{}{}",
        lb_upstream(
            "api",
            balancer,
            &[fast_a.addr(), slow.addr(), fast_b.addr()],
            ""
        ),
        catch_all("api")
    ))
    .await;

    let report = run_load(
        http_client(),
        {
            let base = gw.http_url("/lb/");
            move |i| format!("{base}{i}")
        },
        REQUESTS,
        CONCURRENCY,
        Arc::new(AtomicUsize::new(0)),
    )
    .await;
    assert_eq!(
        report.ok(),
        REQUESTS,
        "every request must succeed: {:?} errors {:?} samples {:?}",
        report.statuses,
        report.errors.iter().take(5).collect::<Vec<_>>(),
        report.samples
    );
    let counts = [fast_a.count(), slow.count(), fast_b.count()];
    assert_eq!(
        counts.iter().sum::<u64>(),
        REQUESTS as u64,
        "the upstreams saw exactly the requests sent (no retries configured): {counts:?}"
    );
    let share = counts[1] as f64 / REQUESTS as f64;
    eprintln!(
        "{balancer}: fast-a {} slow {} fast-b {} (slow share {:.1} %) in {:?}",
        counts[0],
        counts[1],
        counts[2],
        share * 100.0,
        report.elapsed
    );
    (share, counts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn peak_ewma_keeps_the_slow_target_under_ten_percent() {
    let (share, counts) = slow_share("peak_ewma").await;
    assert!(
        share < 0.10,
        "peak_ewma sent {:.1} % of the requests to the target 50 ms slower (counts fast-a, slow, \
         fast-b = {counts:?}); expected < 10 %",
        share * 100.0
    );
    assert!(
        counts[0] > 0 && counts[2] > 0,
        "both fast targets serve traffic: {counts:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn round_robin_gives_the_slow_target_about_a_third() {
    let (share, counts) = slow_share("round_robin").await;
    assert!(
        (0.25..=0.42).contains(&share),
        "round_robin sent {:.1} % of the requests to the slow target (counts {counts:?}); \
         expected 25 %..42 %",
        share * 100.0
    );
}
