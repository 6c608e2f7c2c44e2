//! End-to-end tests of the `rate_limit` plugin through the gateway binary: burst then `429`
//! with its headers, `Retry-After` honoured, independent keys, `X-Forwarded-For` trust, and
//! bucket state across config reloads.

mod common;
mod plugin_support;

use std::time::Duration;

use common::admin::Admin;
use common::*;
use plugin_support::*;
use testkit::client::H2Client;
use testkit::{EchoServer, GatewayProcess};

/// The `ratelimit` header of an allowed response, which must be `"name";r=R;t=T`; returns `R`.
fn remaining(resp: &reqwest::Response, name: &str) -> u64 {
    let v = header(resp, "ratelimit")
        .unwrap_or_else(|| panic!("allowed response without RateLimit: {:?}", resp.headers()));
    let rest = v
        .strip_prefix(&format!("\"{name}\";r="))
        .unwrap_or_else(|| panic!("RateLimit {v:?}"));
    let (r, t) = rest
        .split_once(";t=")
        .unwrap_or_else(|| panic!("RateLimit {v:?}"));
    t.parse::<u64>()
        .unwrap_or_else(|_| panic!("RateLimit t in {v:?}"));
    r.parse().unwrap_or_else(|_| panic!("RateLimit r in {v:?}"))
}

/// An echo upstream behind a gateway whose catch-all route `api` runs one `rate_limit` plugin
/// `name` (`key`, `rate` and `extra` lines).
async fn start_limited(
    name: &str,
    key: &str,
    rate: &str,
    extra: &str,
) -> (EchoServer, GatewayProcess) {
    let echo = EchoServer::start("rl").await.expect("echo");
    let body = body_with(
        &echo,
        &format!(
            "{}{}",
            plugin_route("api", "/", &[name]),
            rate_limit_plugin(name, key, rate, extra)
        ),
    );
    let gw = start_with(body).await;
    (echo, gw)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burst_is_admitted_then_429_with_retry_after_and_ratelimit_headers() {
    let (echo, gw) = start_limited("rl", "client_ip", "3/min", "").await;
    let client = http_client();
    for i in 0..3u64 {
        let resp = client.get(gw.http_url("/a")).send().await.expect("send");
        assert_eq!(resp.status(), 200, "request {i} of the burst");
        assert_eq!(
            header(&resp, "ratelimit-policy").as_deref(),
            Some("\"rl\";q=3;w=60"),
            "RateLimit-Policy on an allowed response"
        );
        assert_eq!(remaining(&resp, "rl"), 2 - i, "remaining after request {i}");
    }
    let before = echo.count();
    let resp = client.get(gw.http_url("/a")).send().await.expect("send");
    let limited = assert_limited(resp, "rl", 3, 60).await;
    // One request per 20 s is the steady rate: the next slot is at most 20 s away.
    assert!(limited.retry_after <= 20, "{limited:?}");
    assert_eq!(
        echo.count(),
        before,
        "a limited request reached the upstream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_honoured() {
    let (_echo, gw) = start_limited("fast", "client_ip", "2/s", "").await;
    let client = http_client();
    let mut got = Vec::new();
    let mut limited = None;
    // The burst is 2; loopback requests land well inside the 500 ms emission interval, but a
    // loaded machine may let a slot refill, so allow a few more before the 429.
    for _ in 0..10 {
        let resp = client.get(gw.http_url("/r")).send().await.expect("send");
        got.push(resp.status().as_u16());
        if resp.status() == 429 {
            limited = Some(assert_limited(resp, "fast", 2, 1).await);
            break;
        }
    }
    let limited = limited.unwrap_or_else(|| panic!("no 429 within 10 requests: {got:?}"));
    assert!(
        got.len() >= 3 && got[..got.len() - 1].iter().all(|&s| s == 200),
        "burst of 2 not admitted before the 429: {got:?}"
    );
    assert_eq!(limited.retry_after, 1);
    tokio::time::sleep(Duration::from_secs(limited.retry_after)).await;
    let resp = client.get(gw.http_url("/r")).send().await.expect("send");
    assert_eq!(
        resp.status(),
        200,
        "request after waiting Retry-After = {}s was refused",
        limited.retry_after
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_keys_are_limited_independently() {
    let (_echo, gw) = start_limited("per_client", "header:x-api-client", "2/min", "").await;
    let client = http_client();
    let send = |who: &'static str| {
        let client = client.clone();
        let url = gw.http_url("/k");
        async move {
            client
                .get(url)
                .header("x-api-client", who)
                .send()
                .await
                .expect("send")
        }
    };
    assert_eq!(send("alpha").await.status(), 200);
    assert_eq!(send("alpha").await.status(), 200);
    assert_limited(send("alpha").await, "per_client", 2, 60).await;
    // A different key has its own full bucket, and alpha stays limited.
    assert_eq!(send("beta").await.status(), 200);
    assert_eq!(send("beta").await.status(), 200);
    assert_limited(send("beta").await, "per_client", 2, 60).await;
    assert_limited(send("alpha").await, "per_client", 2, 60).await;
    // Without the header the client IP is the key: yet another bucket.
    let resp = client.get(gw.http_url("/k")).send().await.expect("send");
    assert_eq!(
        resp.status(),
        200,
        "header-less request fell into a used bucket"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_forwarded_for_from_an_untrusted_peer_is_ignored() {
    let (_echo, gw) = start_limited("by_ip", "client_ip", "2/min", "").await;
    let client = http_client();
    let mut got = Vec::new();
    for xff in [
        "198.51.100.1",
        "198.51.100.2",
        "198.51.100.3",
        "203.0.113.9",
    ] {
        let resp = client
            .get(gw.http_url("/x"))
            .header("x-forwarded-for", xff)
            .send()
            .await
            .expect("send");
        got.push(resp.status().as_u16());
    }
    assert_eq!(
        got,
        vec![200, 200, 429, 429],
        "spoofed X-Forwarded-For values got their own buckets"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_forwarded_for_from_a_trusted_peer_picks_the_bucket() {
    let (_echo, gw) = start_limited(
        "by_ip",
        "client_ip",
        "2/min",
        "trusted_proxies = [\"127.0.0.1/32\"]",
    )
    .await;
    let client = http_client();
    let send = |xff: &'static str| {
        let client = client.clone();
        let url = gw.http_url("/x");
        async move {
            client
                .get(url)
                .header("x-forwarded-for", xff)
                .send()
                .await
                .expect("send")
                .status()
                .as_u16()
        }
    };
    let first: Vec<u16> = vec![
        send("198.51.100.1").await,
        send("198.51.100.1").await,
        send("198.51.100.1").await,
    ];
    assert_eq!(first, vec![200, 200, 429], "one forwarded client");
    // Another forwarded client has its own bucket; the rightmost untrusted hop counts, so a
    // client-written prefix does not matter.
    let second: Vec<u16> = vec![
        send("198.51.100.2").await,
        send("10.9.9.9, 198.51.100.2").await,
        send("198.51.100.2").await,
    ];
    assert_eq!(second, vec![200, 200, 429], "second forwarded client");
    // The proxy's own address (no X-Forwarded-For) is a third bucket.
    let resp = client.get(gw.http_url("/x")).send().await.expect("send");
    assert_eq!(resp.status(), 200, "the peer's own bucket was used up");
}

fn reload_body(echo: &EchoServer, rate: &str, extra_route: bool) -> String {
    let mut rest = String::new();
    if extra_route {
        rest.push_str(&route("other", "path_prefix = \"/other/\"", "echo", ""));
    }
    rest.push_str(&plugin_route("api", "/", &["rl"]));
    rest.push_str(&rate_limit_plugin("rl", "client_ip", rate, ""));
    body_with(echo, &rest)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bucket_survives_an_unrelated_reload_and_a_changed_rate_starts_fresh() {
    let echo = EchoServer::start("rl").await.expect("echo");
    let gw = start_with_admin(reload_body(&echo, "2/min", false)).await;
    let admin = Admin::new(&gw);
    let client = http_client();
    assert_eq!(
        statuses(3, || client.get(gw.http_url("/s"))).await,
        vec![200, 200, 429]
    );

    // An unrelated change (a new route) keeps the plugin instance and its exhausted bucket.
    admin
        .apply(&gw.config_text(&reload_body(&echo, "2/min", true)))
        .await;
    let resp = client
        .get(gw.http_url("/other/x"))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200, "the added route is live");
    let resp = client.get(gw.http_url("/s")).send().await.expect("send");
    assert_limited(resp, "rl", 2, 60).await;

    // A changed definition is a new plugin with fresh buckets.
    admin
        .apply(&gw.config_text(&reload_body(&echo, "3/min", true)))
        .await;
    assert_eq!(
        statuses(4, || client.get(gw.http_url("/s"))).await,
        vec![200, 200, 200, 429],
        "after changing rate to 3/min"
    );
    let resp = client.get(gw.http_url("/s")).send().await.expect("send");
    assert_limited(resp, "rl", 3, 60).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h1_and_h2c_share_the_client_ip_bucket_and_h2c_gets_the_429_headers() {
    let (_echo, gw) = start_limited("rl", "client_ip", "3/min", "").await;
    let client = http_client();
    assert_eq!(
        statuses(2, || client.get(gw.http_url("/m"))).await,
        vec![200, 200]
    );
    let mut h2 = H2Client::connect_h2c(gw.http_addr()).await.expect("h2c");
    let resp = h2.get("/m").await.expect("h2c send");
    assert_eq!(resp.status, 200, "third request of the burst, over h2c");
    assert_eq!(resp.header("ratelimit"), Some("\"rl\";r=0;t=60"));
    let resp = h2.get("/m").await.expect("h2c send");
    assert_eq!(resp.status, 429, "fourth request, over h2c");
    let retry_after = resp
        .header("retry-after")
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("h2c 429 without a numeric Retry-After: {:?}", resp.headers));
    assert!((1..=20).contains(&retry_after), "Retry-After {retry_after}");
    assert_eq!(resp.header("ratelimit-policy"), Some("\"rl\";q=3;w=60"));
    assert_eq!(
        resp.header("ratelimit").map(str::to_string),
        Some(format!("\"rl\";r=0;t={retry_after}"))
    );
    let body = resp.json().expect("JSON error");
    assert_eq!(body["error"]["code"], "RATE_LIMITED", "{body}");
    // And the h1 client is limited too.
    let resp = client.get(gw.http_url("/m")).send().await.expect("send");
    assert_limited(resp, "rl", 3, 60).await;
}
