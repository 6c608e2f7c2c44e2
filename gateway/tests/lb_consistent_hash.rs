//! Consistent hashing through the real gateway (`balancer = "consistent_hash"`,
//! `hash_key = "header:x-user-id"`): a key always lands on the same server, different keys
//! spread, the mapping survives a gateway restart (the ring depends on target addresses
//! only), and removing a target moves only the keys it owned.

mod common;
mod lb_common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;

use common::*;
use lb_common::*;
use testkit::{ControlledEcho, GatewayProcess};

const KEYS: usize = 50;
const PER_KEY: usize = 5;

async fn hash_gateway(addrs: &[SocketAddr]) -> GatewayProcess {
    gateway()
        .config(format!(
            "{}{}",
            lb_upstream(
                "sessions",
                "consistent_hash",
                addrs,
                "hash_key = \"header:x-user-id\""
            ),
            catch_all("sessions")
        ))
        .start()
        .await
        .expect("gateway")
}

/// `GET {base}/profile/{n}` with `x-user-id: key` (`base`: the gateway's `http://ADDR`); the
/// name of the server that answered.
async fn served_by(client: &reqwest::Client, base: &str, key: &str, n: usize) -> String {
    let resp = client
        .get(format!("{base}/profile/{n}"))
        .header("x-user-id", key)
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200, "key {key}");
    let body: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(body["headers"]["x-user-id"], key, "key forwarded upstream");
    body["server"].as_str().expect("server").to_string()
}

/// Each key's server over `PER_KEY` requests, sent by 8 concurrent workers with the keys
/// interleaved; panics if a key was served by two servers.
async fn key_map(gw: &GatewayProcess, per_key: usize) -> BTreeMap<String, String> {
    let client = http_client();
    let gw_url = gw.http_url("");
    let jobs: Vec<(String, usize)> = (0..per_key)
        .flat_map(|round| (0..KEYS).map(move |k| (format!("user-{k}"), round)))
        .collect();
    let jobs = Arc::new(jobs);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..8 {
        let (client, jobs, next, gw_url) =
            (client.clone(), jobs.clone(), next.clone(), gw_url.clone());
        workers.push(tokio::spawn(async move {
            let mut seen: Vec<(String, String)> = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some((key, round)) = jobs.get(i) else {
                    break;
                };
                let server = served_by(&client, &gw_url, key, *round).await;
                seen.push((key.clone(), server));
            }
            seen
        }));
    }
    let mut by_key: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for w in workers {
        for (key, server) in w.await.expect("worker") {
            by_key.entry(key).or_default().insert(server);
        }
    }
    assert_eq!(by_key.len(), KEYS);
    let split: Vec<_> = by_key.iter().filter(|(_, s)| s.len() > 1).collect();
    assert!(
        split.is_empty(),
        "keys served by more than one server: {split:?}"
    );
    by_key
        .into_iter()
        .map(|(k, s)| (k, s.into_iter().next().expect("one server")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn same_key_same_server_and_keys_spread() {
    let a = ControlledEcho::start("a").await.expect("echo");
    let b = ControlledEcho::start("b").await.expect("echo");
    let c = ControlledEcho::start("c").await.expect("echo");
    let addrs = [a.addr(), b.addr(), c.addr()];
    let gw = hash_gateway(&addrs).await;

    let map = key_map(&gw, PER_KEY).await;
    let mut per_server: BTreeMap<&str, usize> = BTreeMap::new();
    for s in map.values() {
        *per_server.entry(s.as_str()).or_default() += 1;
    }
    eprintln!("keys per server: {per_server:?}");
    assert!(
        per_server.len() > 1,
        "50 different keys all landed on one server: {per_server:?}"
    );
    // Every request was served once, by the server its key maps to.
    assert_eq!(
        a.count() + b.count() + c.count(),
        (KEYS * PER_KEY) as u64,
        "no retries: each request reached exactly one server"
    );
    for server in [&a, &b, &c] {
        let expected = per_server.get(server.name()).copied().unwrap_or(0) * PER_KEY;
        assert_eq!(
            server.count() as usize,
            expected,
            "{} counted its own requests",
            server.name()
        );
    }

    // Requests without the key still work (no affinity to keep).
    let client = http_client();
    for i in 0..10 {
        let resp = client
            .get(gw.http_url(&format!("/anon/{i}")))
            .send()
            .await
            .expect("send");
        assert_eq!(resp.status(), 200, "request without x-user-id");
    }

    // A new gateway process with the same targets maps every key the same way.
    drop(gw);
    let gw = hash_gateway(&addrs).await;
    for (key, server) in &map {
        assert_eq!(
            &served_by(&client, &gw.http_url(""), key, 0).await,
            server,
            "key {key} moved after a gateway restart"
        );
    }
    drop(gw);

    // Without c: keys owned by a or b stay put; c's keys move to a or b.
    let gw = hash_gateway(&[a.addr(), b.addr()]).await;
    let mut moved = 0;
    for (key, server) in &map {
        let now = served_by(&client, &gw.http_url(""), key, 0).await;
        if server == "c" {
            assert_ne!(now, "c");
            moved += 1;
        } else {
            assert_eq!(&now, server, "key {key} moved although its server stayed");
        }
    }
    eprintln!("{moved} of {KEYS} keys moved when c was removed");
}
