//! Retries and the retry budget through the real gateway. The budget rule: retries in flight
//! on an upstream may not exceed `max(3, ⌊active × budget_percent / 100⌋)`, `active` being the
//! upstream's requests in flight; a request keeps its retry slot from its first retry to its
//! end. Attempts are counted by the upstream itself, grouped by `x-request-id` (a retry resends
//! the same request, id included).

mod common;
mod lb_common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::*;
use lb_common::*;
use testkit::{ControlledEcho, GatewayProcess};

/// attempts = 5 on 503, tiny backoff so the tests stay fast.
const RETRY_503: &str = "retries = { attempts = 5, on = [\"503\"], budget_percent = 20, \
                         backoff_base = \"1ms\", backoff_max = \"5ms\" }";

async fn start(upstream: &ControlledEcho, extra: &str) -> GatewayProcess {
    gateway()
        .admin(true)
        .config(format!(
            "{}{}",
            lb_upstream("always503", "peak_ewma", &[upstream.addr()], extra),
            catch_all("always503")
        ))
        .start()
        .await
        .expect("gateway")
}

/// Attempts the upstream saw per `x-request-id`.
fn attempts_by_request(upstream: &ControlledEcho) -> BTreeMap<String, usize> {
    let mut by_id = BTreeMap::new();
    for r in upstream.requests().requests() {
        let id = r.header("x-request-id").unwrap_or("<none>").to_string();
        *by_id.entry(id).or_default() += 1;
    }
    by_id
}

/// Sends `n` GETs of `/status/503` at once (`x-request-id: TAG-i`) and asserts that every
/// client got the 503 and that the first `n` attempts the upstream saw were one per request
/// (all first attempts in flight together: the precondition of the budget tests).
async fn concurrent_503s(gw: &GatewayProcess, upstream: &ControlledEcho, n: usize, tag: &str) {
    let client = http_client();
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let request = client
                .get(gw.http_url(&format!("/status/503?i={i}")))
                .header("x-request-id", format!("{tag}-{i}"));
            tokio::spawn(async move { request.send().await.expect("send").status().as_u16() })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.expect("task"), 503, "every client gets the 503");
    }
    let log = upstream.requests().requests();
    let first_wave: BTreeSet<&str> = log
        .iter()
        .take(n)
        .filter_map(|r| r.header("x-request-id"))
        .collect();
    assert_eq!(
        first_wave.len(),
        n,
        "precondition: all {n} first attempts arrived before any retry"
    );
}

/// One request at a time: the budget's floor of 3 always leaves room, so every request is
/// tried 1 + 5 times and the client then gets the upstream's 503 itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequential_requests_get_all_five_retries_then_the_503() {
    let upstream = ControlledEcho::start("u").await.expect("echo");
    let gw = start(&upstream, RETRY_503).await;
    let client = http_client();
    for i in 0..10 {
        let resp = client
            .get(gw.http_url(&format!("/status/503?i={i}")))
            .header("x-request-id", format!("seq-{i}"))
            .send()
            .await
            .expect("send");
        assert_eq!(resp.status(), 503, "request {i}");
        let body: serde_json::Value = resp.json().await.expect("upstream JSON");
        assert_eq!(
            body["server"], "u",
            "the client gets the upstream's own 503: {body}"
        );
    }
    let by_id = attempts_by_request(&upstream);
    let expected: BTreeMap<String, usize> = (0..10).map(|i| (format!("seq-{i}"), 6)).collect();
    assert_eq!(by_id, expected, "attempts per request (1 + attempts = 6)");
    let up = admin_upstream(&gw, "always503").await;
    assert_eq!(up["retry_budget"]["rejected"], 0, "no retry refused: {up}");
}

/// 20 requests at once against an upstream that answers 503 after 200 ms. Every first attempt
/// is in flight together (checked from the upstream's log), so `active` is at most 20 and at
/// most `max(3, ⌊20 × 20 / 100⌋) = 4` requests can hold a retry slot; the first 3 to ask always
/// get one (the floor). A request without a slot gets its 503 after 1 attempt, one with a slot
/// makes at most 6. Hence 3 or 4 requests retried and at most 20 + 4 × 5 = 40 attempts in
/// total (instead of 120 without a budget).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_retries_are_capped_by_the_budget() {
    const N: usize = 20;
    let upstream = ControlledEcho::start_with_delay("u", Duration::from_millis(200))
        .await
        .expect("echo");
    let gw = start(&upstream, RETRY_503).await;

    concurrent_503s(&gw, &upstream, N, "burst").await;

    let by_id = attempts_by_request(&upstream);
    let total: usize = by_id.values().sum();
    let retried: Vec<(&String, &usize)> = by_id.iter().filter(|(_, n)| **n > 1).collect();
    let up = admin_upstream(&gw, "always503").await;
    eprintln!(
        "total attempts {total}; retried requests {retried:?}; budget {}",
        up["retry_budget"]
    );
    assert_eq!(by_id.len(), N, "one id per request: {by_id:?}");
    let limit = 3.max(N * 20 / 100);
    assert!(
        (3..=limit).contains(&retried.len()),
        "{} requests retried; the budget allows at least 3 and at most {limit}: {by_id:?}",
        retried.len()
    );
    assert!(
        by_id.values().all(|n| (1..=6).contains(n)),
        "at most 1 + 5 attempts per request: {by_id:?}"
    );
    assert!(
        total <= N + limit * 5,
        "{total} attempts exceed the budget's bound {}",
        N + limit * 5
    );
    assert!(
        up["retry_budget"]["rejected"].as_u64() >= Some((N - retried.len()) as u64),
        "every request without a slot was refused a retry: {up}"
    );
}

/// Three requests at once (upstream answers 503 after 100 ms): three retrying requests are
/// within the budget's floor of 3 (`max(3, ⌊3 × 20 / 100⌋) = 3`), so each must get all
/// 1 + 5 attempts, exactly as a lone request does. A request going on to its next retry is
/// still one retry in flight, not two.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_concurrent_requests_fit_the_budget_floor() {
    const N: usize = 3;
    let upstream = ControlledEcho::start_with_delay("u", Duration::from_millis(100))
        .await
        .expect("echo");
    let gw = start(&upstream, RETRY_503).await;
    concurrent_503s(&gw, &upstream, N, "trio").await;
    let by_id = attempts_by_request(&upstream);
    let up = admin_upstream(&gw, "always503").await;
    let expected: BTreeMap<String, usize> = (0..N).map(|i| (format!("trio-{i}"), 6)).collect();
    assert_eq!(
        by_id, expected,
        "attempts per request with 3 concurrent requests (budget floor 3); retry budget {}",
        up["retry_budget"]
    );
}

/// A POST is not idempotent: a 503 is passed through after exactly one attempt. A connect
/// failure, though, is retried for any method (nothing was sent): POSTs to an upstream with
/// one dead and one live target all succeed, each reaching the live one exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_is_retried_only_after_a_connect_failure() {
    let upstream = ControlledEcho::start("u").await.expect("echo");
    let live = ControlledEcho::start("live").await.expect("echo");
    let dead = testkit::net::closed_addr().expect("closed addr");
    let gw = gateway()
        .admin(true)
        .config(format!(
            "{}{}{}\
             [[routes]]\nname = \"flaky\"\nmatch = {{ path_prefix = \"/flaky/\" }}\n\
             upstream = \"always503\"\nstrip_prefix = true\n\n\
             [[routes]]\nname = \"half\"\nmatch = {{ path_prefix = \"/half/\" }}\n\
             upstream = \"half\"\nstrip_prefix = true\n",
            lb_upstream("always503", "peak_ewma", &[upstream.addr()], RETRY_503),
            lb_upstream(
                "half",
                "round_robin",
                &[dead, live.addr()],
                "retries = { attempts = 2, on = [\"connect-failure\"], backoff_base = \"1ms\", \
                 backoff_max = \"5ms\" }"
            ),
            ""
        ))
        .start()
        .await
        .expect("gateway");
    let client = http_client();

    for i in 0..5 {
        let resp = client
            .post(gw.http_url(&format!("/flaky/status/503?i={i}")))
            .header("x-request-id", format!("post-{i}"))
            .body("{\"order\":1}")
            .send()
            .await
            .expect("send");
        assert_eq!(
            resp.status(),
            503,
            "POST {i}: the upstream's 503 passes through"
        );
    }
    let by_id = attempts_by_request(&upstream);
    let expected: BTreeMap<String, usize> = (0..5).map(|i| (format!("post-{i}"), 1)).collect();
    assert_eq!(by_id, expected, "a POST is never retried on 503");

    for i in 0..6 {
        let resp = client
            .post(gw.http_url(&format!("/half/orders?i={i}")))
            .body("{\"order\":2}")
            .send()
            .await
            .expect("send");
        assert_eq!(resp.status(), 200, "POST {i} retried past the dead target");
        let body: serde_json::Value = resp.json().await.expect("json");
        assert_eq!(
            body["body_len"], 11,
            "the body was replayed to the live target"
        );
    }
    assert_eq!(
        live.count(),
        6,
        "each POST reached the live target exactly once"
    );
    let dead_target = admin_target(&gw, "half", dead).await;
    assert!(
        dead_target["errors"].as_u64() >= Some(1),
        "round robin sent some POSTs to the dead target first: {dead_target}"
    );
}
