//! Shared by the agent hub's end-to-end tests: the gateway with the hub on, scripted agents, and
//! the admin calls that start tasks and read their events.

#![allow(dead_code)]

use std::time::Duration;

use serde_json::{json, Value};
use testkit::agent::hub::{self, AgentHub, AgentKey};
use testkit::agent::{AgentClient, AgentEndpoint};
use testkit::GatewayProcess;

pub const BIN: &str = env!("CARGO_BIN_EXE_orchestra-gateway");
pub const WAIT: Duration = Duration::from_secs(10);

pub async fn start(keys: &[AgentKey], agents: &str) -> GatewayProcess {
    AgentHub::new(BIN, keys)
        .agents(agents)
        .start()
        .await
        .unwrap_or_else(|e| panic!("gateway starts: {e}"))
}

pub fn endpoint(gw: &GatewayProcess) -> AgentEndpoint {
    hub::endpoint(gw).expect("agent endpoint")
}

pub async fn connect(gw: &GatewayProcess, key: &AgentKey) -> AgentClient {
    let ep = endpoint(gw);
    let mut last = None;
    for _ in 0..20 {
        match AgentClient::connect_quic(&ep, &key.spec()).await {
            Ok(c) => return c,
            Err(e) => last = Some(e.to_string()),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("agent {} connects: {last:?}", key.id);
}

/// `POST /admin/tasks` → (status, body).
pub async fn start_task(gw: &GatewayProcess, body: Value) -> (u16, Value) {
    hub::admin_post(&gw.admin_url("/admin/tasks"), body.to_string().as_bytes())
        .await
        .expect("POST /admin/tasks")
}

/// Starts a `custom` task and returns its id (201 expected).
pub async fn start_custom(gw: &GatewayProcess, prompt: &str) -> String {
    let (status, body) = start_task(gw, json!({"tool": "custom", "prompt": prompt})).await;
    assert_eq!(status, 201, "{body}");
    body["task_id"].as_str().expect("task_id").to_string()
}

/// All events of `task` after `since` until its end (polling the admin events endpoint).
pub async fn events_until_end(gw: &GatewayProcess, task: &str, wait: Duration) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut out: Vec<Value> = Vec::new();
    let mut since = 0;
    loop {
        let url = gw.admin_url(&format!(
            "/admin/tasks/{task}/events?since={since}&limit=10000&wait_ms=200"
        ));
        let page = hub::admin_json(&url).await.expect("events");
        let events = page["events"].as_array().cloned().unwrap_or_default();
        out.extend(events);
        since = page["last_seq"].as_u64().unwrap_or(since);
        if page["ended"] == true {
            return out;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "task {task} did not end within {wait:?}; {} events so far",
            out.len()
        );
    }
}

/// The agents the admin API lists.
pub async fn agents(gw: &GatewayProcess) -> Vec<Value> {
    hub::admin_json(&gw.admin_url("/admin/agents"))
        .await
        .expect("agents")["agents"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Waits until the admin API lists exactly `ids` (sorted).
pub async fn wait_agents(gw: &GatewayProcess, ids: &[&str]) -> Value {
    let want: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
    hub::admin_until(gw, "/admin/agents", WAIT, |v| {
        let got: Vec<String> = v["agents"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x["id"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        got == want
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}

/// The value of an unlabelled (or exactly labelled) metric line in `/metrics`.
pub async fn metric(gw: &GatewayProcess, line_prefix: &str) -> f64 {
    let (_, body) = hub::simple_request("GET", &gw.admin_url("/metrics"), None)
        .await
        .expect("metrics");
    let text = String::from_utf8_lossy(&body).to_string();
    text.lines()
        .find_map(|l| {
            l.strip_prefix(line_prefix)
                .and_then(|r| r.trim().parse().ok())
        })
        .unwrap_or_else(|| panic!("no metric {line_prefix} in:\n{text}"))
}

/// Accepts the assigned task, sends `lines` output lines and a successful result, waits for the
/// acks and ends the stream; returns the result's seq.
pub async fn run_to_end(stream: &mut testkit::agent::TaskStream, lines: u64) -> u64 {
    stream.accept(1).await.expect("accept");
    let mut seq = stream.first_seq();
    for i in 0..lines {
        seq += 1;
        stream
            .output(seq, &format!("line {i}"))
            .await
            .expect("output");
    }
    seq += 1;
    stream
        .result(seq, orchestra_proto::v1::ResultStatus::Success, 0)
        .await
        .expect("result");
    stream.wait_ack(seq, WAIT).await.expect("acked");
    stream.tx.finish().await;
    seq
}

/// Log messages that mean a write of the hub never reached the backend: a refusal (illegal
/// state transition, unknown task or session) or a write that could not be made durable.
const LOST_WRITE_LOGS: [&str; 4] = [
    "backend refused",
    "backend write not durable",
    "writes lost",
    "of an unknown task",
];

/// Fails when the gateway logged a hub write the backend refused or lost (the backend's state
/// machine and the ordered writes must accept everything the hub sends).
pub fn assert_no_lost_writes(gw: &GatewayProcess) {
    let logs = format!("{}{}", gw.stderr(), gw.stdout());
    let bad: Vec<&str> = logs
        .lines()
        .filter(|l| LOST_WRITE_LOGS.iter().any(|n| l.contains(n)))
        .collect();
    assert!(
        bad.is_empty(),
        "writes refused or lost:\n{}",
        bad.join("\n")
    );
}
