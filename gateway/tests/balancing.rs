//! Round robin over an upstream's targets, plain and weighted.

mod common;

use std::collections::HashMap;

use common::*;
use testkit::EchoServer;

async fn count_servers(gw: &testkit::GatewayProcess, n: usize) -> HashMap<String, usize> {
    let client = http_client();
    let mut seen = HashMap::new();
    for i in 0..n {
        let resp = client
            .get(gw.http_url(&format!("/rr/{i}")))
            .send()
            .await
            .expect("send");
        assert_eq!(resp.status(), 200, "request {i}");
        let body: serde_json::Value = resp.json().await.expect("json");
        let server = body["server"].as_str().expect("server name").to_string();
        *seen.entry(server).or_insert(0) += 1;
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_round_robin_splits_exactly_by_weight() {
    let heavy = EchoServer::start("heavy").await.expect("echo");
    let light = EchoServer::start("light").await.expect("echo");
    let gw = start_gateway(format!(
        r#"[[upstreams]]
name = "weighted"
balancer = "round_robin"
targets = [ {{ addr = "{}", weight = 3 }}, {{ addr = "{}", weight = 1 }} ]
timeouts = {{ connect = "1s", read = "20s" }}

{}"#,
        heavy.addr(),
        light.addr(),
        route("all", "path_prefix = \"/\"", "weighted", "")
    ))
    .await;

    let seen = count_servers(&gw, 400).await;
    assert_eq!(seen.get("heavy"), Some(&300), "split: {seen:?}");
    assert_eq!(seen.get("light"), Some(&100), "split: {seen:?}");
    assert_eq!(heavy.count(), 300);
    assert_eq!(light.count(), 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unweighted_round_robin_alternates() {
    let a = EchoServer::start("a").await.expect("echo");
    let b = EchoServer::start("b").await.expect("echo");
    let c = EchoServer::start("c").await.expect("echo");
    let gw = start_gateway(format!(
        "{}{}",
        upstream("three", &[a.addr(), b.addr(), c.addr()], ""),
        route("all", "path_prefix = \"/\"", "three", "")
    ))
    .await;

    let seen = count_servers(&gw, 90).await;
    for name in ["a", "b", "c"] {
        assert_eq!(seen.get(name), Some(&30), "split: {seen:?}");
    }
}
