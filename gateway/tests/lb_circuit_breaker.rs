//! The per-upstream circuit breaker through the real gateway: the `max_in_flight` cap turns
//! excess concurrent requests into 503 `UPSTREAM_UNAVAILABLE` at once, and a run of
//! `consecutive_failures` failed requests (upstream 5xx, or a dead target without retries)
//! opens it: requests are refused with 503 + `Retry-After` without reaching the upstream until
//! `eject_for` has passed, and a successful probe closes it again.

mod common;
mod lb_common;

use std::time::{Duration, Instant};

use common::*;
use lb_common::*;
use testkit::{ControlledEcho, GatewayProcess};

/// Polls `/admin/upstreams` until the breaker of `name` reports `state` (the admin API renders
/// an open breaker as `"open"` with `open_remaining_ms`; the state is matched as a prefix).
async fn wait_breaker(gw: &GatewayProcess, name: &str, state: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let up = admin_upstream(gw, name).await;
        let now = up["circuit_breaker"]["state"].as_str().unwrap_or_default();
        if now.starts_with(state) {
            return up;
        }
        assert!(
            Instant::now() < deadline,
            "breaker of {name} never reported {state:?}: {up}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `max_in_flight = 2`, upstream answering after 1.5 s, 6 requests sent at once: exactly 2
/// are admitted (200, and the only ones the upstream sees) and exactly 4 are refused at once
/// with 503 JSON `UPSTREAM_UNAVAILABLE`. "Exactly" holds because all 6 reach the gateway
/// long before the first admitted one finishes, which the test checks (the refusals come back
/// well under 1.5 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn max_in_flight_refuses_the_excess_with_503() {
    let slow = ControlledEcho::start("slow").await.expect("echo");
    let gw = gateway()
        .admin(true)
        .config(format!(
            "{}{}",
            lb_upstream(
                "capped",
                "peak_ewma",
                &[slow.addr()],
                "circuit_breaker = { max_in_flight = 2, consecutive_failures = 5, eject_for = \"10s\" }"
            ),
            catch_all("capped")
        ))
        .start()
        .await
        .expect("gateway");

    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..6 {
        let url = gw.http_url(&format!("/slow?ms=1500&i={i}"));
        tasks.push(tokio::spawn(async move {
            // One client per request: six separate connections, nothing queued client-side.
            let resp = http_client().get(url).send().await.expect("send");
            (resp, started.elapsed())
        }));
    }
    let mut ok = 0;
    let mut refused = 0;
    for t in tasks {
        let (resp, after) = t.await.expect("task");
        match resp.status().as_u16() {
            200 => {
                assert!(
                    after >= Duration::from_millis(1500),
                    "200 too early: {after:?}"
                );
                ok += 1;
            }
            503 => {
                assert!(
                    after < Duration::from_millis(1000),
                    "refusal took {after:?}: the cap must refuse at once"
                );
                assert_json_error(resp, 503, "UPSTREAM_UNAVAILABLE").await;
                refused += 1;
            }
            other => panic!("unexpected status {other}: {:?}", resp.text().await),
        }
    }
    assert_eq!(
        (ok, refused),
        (2, 4),
        "admitted vs refused of 6 concurrent requests"
    );
    assert_eq!(slow.count(), 2, "only admitted requests reach the upstream");

    // The cap is released: the breaker is closed with nothing in flight, and a request passes.
    let up = wait_idle(&gw, "capped")
        .await
        .expect("idle after the burst");
    assert_eq!(up["circuit_breaker"]["state"], "closed", "{up}");
    assert_eq!(up["circuit_breaker"]["in_flight"], 0, "{up}");
    let resp = http_client()
        .get(gw.http_url("/after"))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
}

/// `consecutive_failures = 3`, `eject_for = "2s"`, no retries: three 500s from the upstream
/// open the breaker; the next requests (any path) get 503 JSON with `Retry-After` (1..=2 s)
/// and never reach the upstream. After 2 s one probe is let through; it succeeds, the breaker
/// closes and traffic flows again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consecutive_5xx_open_the_breaker_until_a_probe_succeeds() {
    let echo = ControlledEcho::start("flaky").await.expect("echo");
    let gw = gateway()
        .admin(true)
        .config(format!(
            "{}{}",
            lb_upstream(
                "flaky",
                "peak_ewma",
                &[echo.addr()],
                "circuit_breaker = { max_in_flight = 100, consecutive_failures = 3, eject_for = \"2s\" }"
            ),
            catch_all("flaky")
        ))
        .start()
        .await
        .expect("gateway");
    let client = http_client();

    for i in 0..3 {
        let resp = client
            .get(gw.http_url(&format!("/status/500?i={i}")))
            .send()
            .await
            .expect("send");
        assert_eq!(resp.status(), 500, "upstream 500 #{i} passed through");
    }
    assert_eq!(echo.count(), 3);
    let up = wait_breaker(&gw, "flaky", "open").await;
    let opened = Instant::now();
    assert!(up["circuit_breaker"]["trips"].as_u64() >= Some(1), "{up}");

    for path in ["/status/500?after=open", "/fine"] {
        let resp = client.get(gw.http_url(path)).send().await.expect("send");
        let retry_after = header(&resp, "retry-after");
        assert_json_error(resp, 503, "UPSTREAM_UNAVAILABLE").await;
        let secs: u64 = retry_after
            .as_deref()
            .unwrap_or_else(|| panic!("503 from an open breaker without Retry-After ({path})"))
            .parse()
            .expect("Retry-After in seconds");
        assert!(
            (1..=2).contains(&secs),
            "Retry-After {secs} for eject_for = 2s"
        );
    }
    assert_eq!(
        echo.count(),
        3,
        "an open breaker must not reach the upstream"
    );

    // Half-open after 2 s: the probe (a healthy path) succeeds and closes the breaker.
    tokio::time::sleep(Duration::from_millis(2_100).saturating_sub(opened.elapsed())).await;
    let resp = client.get(gw.http_url("/fine")).send().await.expect("send");
    assert_eq!(resp.status(), 200, "probe after eject_for");
    assert_eq!(echo.count(), 4);
    wait_breaker(&gw, "flaky", "closed").await;
    for i in 0..5 {
        let resp = client
            .get(gw.http_url(&format!("/fine?again={i}")))
            .send()
            .await
            .expect("send");
        assert_eq!(resp.status(), 200, "closed breaker lets traffic through");
    }
    assert_eq!(echo.count(), 9);
}

/// The same with a dead target and no retries: three 502s open the breaker, the fourth
/// request gets 503 with `Retry-After` instead of another connect attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consecutive_connect_failures_open_the_breaker() {
    let dead = testkit::net::closed_addr().expect("closed addr");
    let gw = gateway()
        .admin(true)
        .config(format!(
            "{}{}",
            lb_upstream(
                "dead",
                "peak_ewma",
                &[dead],
                "circuit_breaker = { consecutive_failures = 3, eject_for = \"30s\" }"
            ),
            catch_all("dead")
        ))
        .start()
        .await
        .expect("gateway");
    // One connection per request: the gateway's error answers may close the connection.
    for i in 0..3 {
        let resp = http_client()
            .get(gw.http_url(&format!("/x/{i}")))
            .send()
            .await
            .expect("send");
        assert_json_error(resp, 502, "UPSTREAM_UNAVAILABLE").await;
    }
    let up = wait_breaker(&gw, "dead", "open").await;
    let target = target_of(&up, dead);
    let resp = http_client()
        .get(gw.http_url("/x/after"))
        .send()
        .await
        .expect("send");
    let retry_after = header(&resp, "retry-after").expect("Retry-After on an open breaker");
    assert_json_error(resp, 503, "UPSTREAM_UNAVAILABLE").await;
    let secs: u64 = retry_after.parse().expect("seconds");
    assert!((1..=30).contains(&secs), "Retry-After {secs}");
    let after = admin_target(&gw, "dead", dead).await;
    assert_eq!(
        after["requests"], target["requests"],
        "no attempt on the target while open: before {target}, after {after}"
    );
}
