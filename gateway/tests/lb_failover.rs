//! Failover through the real gateway: a target killed mid-run is retried around and ejected
//! (passive outlier detection), stays out for the ejection period even once it is back, and is
//! readmitted afterwards; with an active health check a dead target is marked unhealthy,
//! skipped, and readmitted as soon as it passes its probes again.

mod common;
mod lb_common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use lb_common::*;
use testkit::ControlledEcho;

const RETRIES: &str =
    "retries = { attempts = 2, on = [\"connect-failure\", \"reset\", \"503\"], budget_percent = 20 }";

/// 2,000 GETs with concurrency 8; target `b` is stopped (listener and connections) after 500
/// have completed. At least 99.9 % must succeed thanks to retries, and every request must get
/// an HTTP answer; `b` must then show as ejected in `/admin/upstreams` while `a` and `c` do
/// not. `b` is started again on the same port right away: the ejection (30 s for a first
/// ejection) must keep it out for that long and readmit it afterwards (bounded wait of 45 s).
/// Every check runs and the failures are reported together.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killed_target_is_retried_around_ejected_and_readmitted_after_the_ejection() {
    let a = ControlledEcho::start("a").await.expect("echo");
    let mut b = ControlledEcho::start("b").await.expect("echo");
    let c = ControlledEcho::start("c").await.expect("echo");
    let gw = gateway()
        .admin(true)
        .config(format!(
            "{}{}",
            lb_upstream("api", "peak_ewma", &[a.addr(), b.addr(), c.addr()], RETRIES),
            catch_all("api")
        ))
        .start()
        .await
        .expect("gateway");
    let mut problems: Vec<String> = Vec::new();

    let done = Arc::new(AtomicUsize::new(0));
    let load = tokio::spawn(run_load(
        http_client(),
        {
            let base = gw.http_url("/item/");
            move |i| format!("{base}{i}")
        },
        2_000,
        8,
        done.clone(),
    ));
    wait_count(&done, 500, WAIT).await;
    let b_before_kill = b.count();
    b.stop().await;
    let killed_at = Instant::now();
    let report = load.await.expect("load");
    let up = admin_upstream(&gw, "api").await;
    eprintln!(
        "statuses {:?}, transport errors {}, servers {:?}, b before kill {b_before_kill}, in \
         {:?}; retry budget {}",
        report.statuses,
        report.errors.len(),
        report.servers,
        report.elapsed,
        up["retry_budget"]
    );
    assert!(b_before_kill > 0, "b served traffic before it was killed");
    if report.ok() < 1_998 {
        problems.push(format!(
            "only {} of 2000 requests succeeded (need >= 99.9 %): statuses {:?}, {} without any \
             HTTP answer {:?}, samples {:?}; retry budget {}",
            report.ok(),
            report.statuses,
            report.errors.len(),
            report.errors.iter().take(5).collect::<Vec<_>>(),
            report.samples,
            up["retry_budget"]
        ));
    }
    if !report.errors.is_empty() {
        problems.push(format!(
            "{} requests got no HTTP answer at all (connection closed under the client): {:?}",
            report.errors.len(),
            report.errors.iter().take(5).collect::<Vec<_>>()
        ));
    }

    let (ta, tb, tc) = (
        target_of(&up, a.addr()),
        target_of(&up, b.addr()),
        target_of(&up, c.addr()),
    );
    if tb["ejected"] != true {
        problems.push(format!("killed target b not ejected: {up}"));
    }
    if ta["ejected"] != false || tc["ejected"] != false {
        problems.push(format!("a live target is ejected: {up}"));
    }
    if tb["errors"].as_u64().unwrap_or(0) < 5 {
        problems.push(format!("ejection needs 5 consecutive failures; b: {tb}"));
    }

    // b comes back on the same port at once; the ejection must still keep it out, then end.
    b.restart().await.expect("restart b on the same port");
    let b_at_restart = b.count();
    let client = http_client();
    let deadline = killed_at + Duration::from_secs(45);
    let mut readmitted_after = None;
    let mut sent = 0u32;
    while Instant::now() < deadline {
        let resp = client
            .get(gw.http_url(&format!("/trickle/{sent}")))
            .send()
            .await
            .expect("send");
        assert_eq!(resp.status(), 200, "trickle request {sent}");
        sent += 1;
        if b.count() > b_at_restart {
            readmitted_after = Some(killed_at.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let tb = admin_target(&gw, "api", b.addr()).await;
    match readmitted_after {
        None => problems.push(format!(
            "b (back on its port) received no request within 45 s of the kill ({sent} requests \
             sent); admin: {tb}"
        )),
        Some(after) => {
            eprintln!("b readmitted {after:?} after the kill ({sent} trickle requests)");
            if after < Duration::from_secs(29) {
                problems.push(format!(
                    "b got traffic {after:?} after its ejection; a first ejection lasts 30 s"
                ));
            }
            if tb["ejected"] != false {
                problems.push(format!("b readmitted but still listed as ejected: {tb}"));
            }
        }
    }

    // Nothing leaks: once idle, no request is active and no target slot is held.
    let idle = wait_idle(&gw, "api").await;
    if let Err(up) = idle {
        problems.push(format!(
            "in-flight counters did not return to 0 when idle: {up}"
        ));
    }

    assert!(problems.is_empty(), "{}", problems.join("\n---\n"));
}

/// With `health_check` (every 100 ms, 2 failures → unhealthy, 2 passes → healthy): a target
/// stopped while idle is reported `healthy: false` and gets no traffic (every request still
/// succeeds on the other two); started again on the same port it is reported healthy and
/// receives requests again, each within a bounded wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn health_check_skips_a_dead_target_and_readmits_it_when_back() {
    let a = ControlledEcho::start("a").await.expect("echo");
    let mut b = ControlledEcho::start("b").await.expect("echo");
    let c = ControlledEcho::start("c").await.expect("echo");
    let extra = format!(
        "{RETRIES}\nhealth_check = {{ path = \"/healthz\", interval = \"100ms\", timeout = \
         \"200ms\", unhealthy_after = 2, healthy_after = 2 }}"
    );
    let gw = gateway()
        .admin(true)
        .config(format!(
            "{}{}",
            lb_upstream("api", "peak_ewma", &[a.addr(), b.addr(), c.addr()], &extra),
            catch_all("api")
        ))
        .start()
        .await
        .expect("gateway");
    let base = gw.http_url("/item/");
    let url = move |i: usize| format!("{base}{i}");

    // Probes reach every target.
    tokio::time::timeout(WAIT, b.requests().wait_for(2))
        .await
        .expect("health probes reach b");
    assert!(
        b.requests().requests().iter().any(|r| r.path == "/healthz"),
        "probes use the configured path"
    );
    let report = run_load(http_client(), url.clone(), 300, 8, Default::default()).await;
    assert_eq!(report.ok(), 300, "warm-up: {:?}", report.statuses);
    assert!(
        b.count_excluding_path("/healthz") > 0,
        "b serves traffic at first"
    );

    b.stop().await;
    let (tb, took) = wait_target(
        &gw,
        "api",
        b.addr(),
        Duration::from_secs(5),
        "unhealthy",
        |t| t["healthy"] == false,
    )
    .await;
    eprintln!("b unhealthy after {took:?}: {tb}");
    let b_requests = tb["requests"].as_u64().expect("requests counter");

    let report = run_load(http_client(), url.clone(), 300, 8, Default::default()).await;
    assert_eq!(
        report.ok(),
        300,
        "with b unhealthy every request goes to a or c: {:?} {:?} {:?}",
        report.statuses,
        report.errors.iter().take(3).collect::<Vec<_>>(),
        report.samples
    );
    let tb = admin_target(&gw, "api", b.addr()).await;
    assert_eq!(
        tb["requests"].as_u64(),
        Some(b_requests),
        "an unhealthy target must not be picked: {tb}"
    );
    assert_eq!(tb["healthy"], false, "{tb}");

    b.restart().await.expect("restart b on the same port");
    let (tb, took) = wait_target(
        &gw,
        "api",
        b.addr(),
        Duration::from_secs(5),
        "healthy",
        |t| t["healthy"] == true,
    )
    .await;
    eprintln!("b healthy again after {took:?}: {tb}");
    let b_traffic = b.count_excluding_path("/healthz");
    let done = Arc::new(AtomicUsize::new(0));
    let report = run_load(http_client(), url, 300, 8, done.clone()).await;
    assert_eq!(report.ok(), 300, "after readmission: {:?}", report.statuses);
    let got = b.count_excluding_path("/healthz") - b_traffic;
    assert_eq!(done.load(Ordering::Relaxed), 300);
    assert!(
        got >= 30,
        "readmitted b received {got} of 300 requests (servers {:?}); expected >= 10 %",
        report.servers
    );
}
