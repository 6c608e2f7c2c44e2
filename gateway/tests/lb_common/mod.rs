//! Helpers shared by the load-balancing end-to-end tests (`lb_*.rs`): upstream TOML with a
//! chosen balancer, a bounded concurrent load generator, and `/admin/upstreams` readers.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use testkit::gateway::toml::{Route, Upstream};
use testkit::GatewayProcess;

/// `[[upstreams]]` with `balancer`, equal-weight `targets`, generous timeouts unless `extra`
/// sets them, and the `extra` lines (retries, health_check, circuit_breaker, hash_key ...).
pub fn lb_upstream(name: &str, balancer: &str, addrs: &[SocketAddr], extra: &str) -> String {
    let mut upstream = Upstream::new(name, addrs).balancer(balancer);
    if !extra.contains("timeouts") {
        upstream = upstream.timeouts("1s", "10s", "60s");
    }
    upstream.line(extra).to_string()
}

/// A catch-all route `all` to `upstream`.
pub fn catch_all(upstream: &str) -> String {
    Route::prefix("all", "/", upstream).to_string()
}

/// What a bounded load run saw.
#[derive(Debug, Default)]
pub struct LoadReport {
    /// Responses by status code.
    pub statuses: BTreeMap<u16, usize>,
    /// Transport errors (no response), with the request index.
    pub errors: Vec<String>,
    /// Bodies of the first few non-200 answers, for failure messages.
    pub samples: Vec<String>,
    /// `"server"` of each 200 JSON answer, counted.
    pub servers: BTreeMap<String, usize>,
    /// Wall time of the run.
    pub elapsed: Duration,
}

impl LoadReport {
    /// Requests answered 200.
    pub fn ok(&self) -> usize {
        self.statuses.get(&200).copied().unwrap_or(0)
    }

    /// Requests sent.
    pub fn total(&self) -> usize {
        self.statuses.values().sum::<usize>() + self.errors.len()
    }
}

/// Sends `total` GETs of `url(i)` with `concurrency` workers over one client; `done` counts
/// completed requests (so a test can act mid-run). Never takes longer than the client's
/// per-request timeout times `total / concurrency`.
pub async fn run_load(
    client: reqwest::Client,
    url: impl Fn(usize) -> String + Send + Sync + 'static,
    total: usize,
    concurrency: usize,
    done: Arc<AtomicUsize>,
) -> LoadReport {
    let url = Arc::new(url);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (client, url, next, done) = (client.clone(), url.clone(), next.clone(), done.clone());
        workers.push(tokio::spawn(async move {
            let mut report = LoadReport::default();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break;
                }
                match client.get(url(i)).send().await {
                    Ok(resp) => {
                        let status = resp.status().as_u16();
                        *report.statuses.entry(status).or_default() += 1;
                        let text = resp.text().await.unwrap_or_default();
                        if status == 200 {
                            if let Some(s) = serde_json::from_str::<Value>(&text)
                                .ok()
                                .and_then(|v| v["server"].as_str().map(str::to_string))
                            {
                                *report.servers.entry(s).or_default() += 1;
                            }
                        } else if report.samples.len() < 5 {
                            report.samples.push(format!("#{i} {status} {text}"));
                        }
                    }
                    Err(e) => report.errors.push(format!("#{i}: {e}")),
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
            report
        }));
    }
    let mut all = LoadReport::default();
    for w in workers {
        let r = w.await.expect("load worker");
        for (k, v) in r.statuses {
            *all.statuses.entry(k).or_default() += v;
        }
        for (k, v) in r.servers {
            *all.servers.entry(k).or_default() += v;
        }
        all.errors.extend(r.errors);
        all.samples.extend(r.samples);
    }
    all.elapsed = started.elapsed();
    all
}

/// Waits until `counter` reaches `n` (bounded by `timeout`; panics otherwise).
pub async fn wait_count(counter: &AtomicUsize, n: usize, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while counter.load(Ordering::Relaxed) < n {
        assert!(
            Instant::now() < deadline,
            "only {} of {n} requests completed within {timeout:?}",
            counter.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The `/admin/upstreams` entry of upstream `name`.
pub async fn admin_upstream(gw: &GatewayProcess, name: &str) -> Value {
    let resp = super::common::http_client()
        .get(gw.admin_url("/admin/upstreams"))
        .send()
        .await
        .expect("GET /admin/upstreams");
    assert_eq!(resp.status(), 200, "GET /admin/upstreams");
    let body: Value = resp.json().await.expect("admin upstreams JSON");
    body["upstreams"]
        .as_array()
        .and_then(|list| list.iter().find(|u| u["name"] == name))
        .cloned()
        .unwrap_or_else(|| panic!("upstream {name} not in /admin/upstreams: {body}"))
}

/// The `/admin/upstreams` entry of target `addr` of upstream `name`.
pub async fn admin_target(gw: &GatewayProcess, name: &str, addr: SocketAddr) -> Value {
    let upstream = admin_upstream(gw, name).await;
    target_of(&upstream, addr)
}

/// Target `addr` in an `/admin/upstreams` upstream entry.
pub fn target_of(upstream: &Value, addr: SocketAddr) -> Value {
    upstream["targets"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["addr"] == addr.to_string()))
        .cloned()
        .unwrap_or_else(|| panic!("target {addr} not listed: {upstream}"))
}

/// Polls `/admin/upstreams` until target `addr` of `name` satisfies `pred`; returns that entry
/// and how long it took, or panics with the last entry after `timeout`.
pub async fn wait_target(
    gw: &GatewayProcess,
    name: &str,
    addr: SocketAddr,
    timeout: Duration,
    what: &str,
    pred: impl Fn(&Value) -> bool,
) -> (Value, Duration) {
    let started = Instant::now();
    loop {
        let t = admin_target(gw, name, addr).await;
        if pred(&t) {
            return (t, started.elapsed());
        }
        assert!(
            started.elapsed() < timeout,
            "target {addr} of {name} not {what} within {timeout:?}; last: {t}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Waits (up to 2 s) until upstream `name` shows no active request, no retry in flight and no
/// target slot in flight; `Err` with the last entry otherwise.
pub async fn wait_idle(gw: &GatewayProcess, name: &str) -> Result<Value, Value> {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let up = admin_upstream(gw, name).await;
        let budget_idle =
            up["retry_budget"]["active"] == 0 && up["retry_budget"]["retries_in_flight"] == 0;
        let targets_idle = up["targets"]
            .as_array()
            .is_some_and(|t| t.iter().all(|t| t["in_flight"] == 0));
        if budget_idle && targets_idle {
            return Ok(up);
        }
        if Instant::now() >= deadline {
            return Err(up);
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
