//! The real `orchestra-agent` binary against the real gateway (embedded backend, its SQLite
//! file in the test's temporary directory): what the backend stores is read back from that
//! file with the backend's own store, so "stored exactly once and in order" is checked where it
//! lives, not in the hub's memory.
//!
//! The agent runs `custom = ["bash", "-c", "{prompt}"]` tasks: 10,000 numbered lines; the same
//! with the agent frozen (SIGSTOP) until the gateway declares it offline, then thawed so it
//! reconnects and resumes; input to a `cat`; stop killing a grandchild; the WebSocket transport.

mod agent_support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use agent_support::*;
use orchestra_backend::model::{Event, Task, TaskState};
use orchestra_backend::store::Store;
use serde_json::{json, Value};
use testkit::agent::hub::{self as hubkit, AgentKey};
use testkit::agent::process::{agent_binary, AgentProcess};
use testkit::GatewayProcess;

/// The environment variable the agent reads its secret from.
const SECRET_ENV: &str = "ORCHESTRA_TEST_AGENT_SECRET";
/// How long a whole task may take (debug build, 2 shared cores).
const TASK_WAIT: Duration = Duration::from_secs(60);

/// A real agent process with its own directory.
struct RealAgent {
    process: AgentProcess,
    dir: tempfile::TempDir,
}

impl RealAgent {
    /// Starts `orchestra-agent` as `key` against `gw` over `transport` (`quic` or `ws`).
    fn start(gw: &GatewayProcess, key: &AgentKey, transport: &str) -> RealAgent {
        let bin = agent_binary().unwrap_or_else(|e| panic!("orchestra-agent binary: {e}"));
        let dir = tempfile::tempdir().expect("agent dir");
        let config = format!(
            "gateway = \"{addr}\"\nserver_name = \"localhost\"\nca = \"{ca}\"\n\
             transport = \"{transport}\"\nid = \"{id}\"\napi_key = \"{api_key}\"\n\
             secret_env = \"{SECRET_ENV}\"\ncapabilities = [\"custom\"]\nmax_tasks = 4\n\
             workdir = \"{work}\"\nstop_grace = \"500ms\"\nconnect_timeout = \"2s\"\n\n\
             [reconnect]\nbase = \"100ms\"\nmax = \"400ms\"\n\n\
             [tools]\ncustom = [\"bash\", \"-c\", \"{{prompt}}\"]\n",
            addr = hubkit::quic_addr(gw),
            ca = gw.self_signed_cert_path().display(),
            id = key.id,
            api_key = key.api_key,
            work = dir.path().join("work").display(),
        );
        let process = AgentProcess::start(
            &bin,
            dir.path(),
            &config,
            &[(SECRET_ENV, key.secret.as_str()), ("RUST_LOG", "info")],
        )
        .unwrap_or_else(|e| panic!("orchestra-agent starts: {e}"));
        RealAgent { process, dir }
    }

    /// A path in the agent's directory (files the tasks and the test share).
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// The gateway's embedded backend database, opened with the backend's own store.
async fn backend_store(gw: &GatewayProcess) -> Store {
    let db = gw.data_dir().join("orchestra.db");
    Store::open(&format!("sqlite://{}", db.display()))
        .await
        .unwrap_or_else(|e| panic!("open {}: {e}", db.display()))
}

/// Every stored event of `task`, in seq order.
async fn stored_events(store: &Store, task: &str) -> Vec<Event> {
    let mut out: Vec<Event> = Vec::new();
    loop {
        let since = out.last().map_or(0, |e| e.seq);
        let page = store
            .events(task, since, 5000)
            .await
            .expect("read events")
            .unwrap_or_default();
        if page.is_empty() {
            return out;
        }
        out.extend(page);
    }
}

/// Waits until the backend holds `task` in a terminal state with its final `worker:status`
/// stored, and returns the task and all its events.
async fn stored_end(store: &Store, task: &str, wait: Duration) -> (Task, Vec<Event>) {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        if let Ok(Some(t)) = store.task(task).await {
            if t.state.is_terminal() {
                let events = stored_events(store, task).await;
                let last_is_final = events.last().is_some_and(|e| {
                    e.kind == "worker:status"
                        && matches!(
                            e.data["status"].as_str(),
                            Some("completed" | "stopped" | "error")
                        )
                });
                if last_is_final {
                    return (t, events);
                }
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "task {task} not stored as ended within {wait:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Checks the stored events' seqs are 1, 2, 3, ... (each once, none missing).
fn assert_contiguous(events: &[Event]) {
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.seq, i as u64 + 1, "stored seqs are contiguous from 1");
    }
}

/// The texts of the stored `worker:output` events, in seq order.
fn output_texts(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter(|e| e.kind == "worker:output")
        .map(|e| e.data["text"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// Asserts the output is exactly `line 1` .. `line n`, each once and in order.
fn assert_numbered_lines(events: &[Event], n: usize) {
    let texts = output_texts(events);
    let want: Vec<String> = (1..=n).map(|i| format!("line {i}")).collect();
    if texts != want {
        let first_bad = texts
            .iter()
            .zip(&want)
            .position(|(a, b)| a != b)
            .unwrap_or(texts.len().min(want.len()));
        panic!(
            "{} output lines stored, {n} expected; first difference at index {first_bad}: {:?}",
            texts.len(),
            texts.get(first_bad)
        );
    }
}

/// The `task:result` event's data.
fn result_of(events: &[Event]) -> Value {
    events
        .iter()
        .find(|e| e.kind == "task:result")
        .map(|e| e.data.clone())
        .unwrap_or_else(|| panic!("no task:result stored"))
}

/// A gateway with fast heartbeats and the given agent keys.
async fn gateway(keys: &[AgentKey]) -> GatewayProcess {
    start(
        keys,
        "heartbeat_interval = \"300ms\"\noffline_after_missed = 2",
    )
    .await
}

/// `POST /admin/tasks` for a `custom` task running `script`.
async fn run_script(gw: &GatewayProcess, script: &str) -> String {
    let (status, body) = start_task(gw, json!({"tool": "custom", "prompt": script})).await;
    assert_eq!(status, 201, "{body}");
    body["task_id"].as_str().expect("task_id").to_string()
}

/// The live task's `seq` in `GET /admin/tasks/{id}` (0 when not live).
async fn live_seq(gw: &GatewayProcess, task: &str) -> u64 {
    hubkit::admin_json(&gw.admin_url(&format!("/admin/tasks/{task}")))
        .await
        .ok()
        .and_then(|v| v["seq"].as_u64())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_lines_are_stored_once_and_in_order() {
    let keys = AgentKey::many(&["w1"]);
    let gw = gateway(&keys).await;
    let agent = RealAgent::start(&gw, &keys[0], "quic");
    wait_agents(&gw, &["w1"]).await;
    let store = backend_store(&gw).await;
    let task = run_script(&gw, "for i in $(seq 1 10000); do echo \"line $i\"; done").await;
    let (t, events) = stored_end(&store, &task, TASK_WAIT).await;
    assert_eq!(t.state, TaskState::Completed, "{:?}", t.result);
    assert_eq!(t.agent_id.as_deref(), Some("w1"));
    assert_contiguous(&events);
    assert_numbered_lines(&events, 10_000);
    assert_eq!(result_of(&events)["exit_code"], 0);
    assert_eq!(events[0].kind, "worker:status");
    assert_eq!(events[0].data["status"], "starting");
    drop(agent);
    assert_no_lost_writes(&gw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_agent_goes_offline_then_reconnects_and_every_line_is_stored_once() {
    let keys = AgentKey::many(&["w1"]);
    let gw = gateway(&keys).await;
    let agent = RealAgent::start(&gw, &keys[0], "quic");
    wait_agents(&gw, &["w1"]).await;
    let store = backend_store(&gw).await;
    // Half the lines, then wait for the test's go file, then the other half.
    let go = agent.path("go");
    let script = format!(
        "for i in $(seq 1 5000); do echo \"line $i\"; done; \
         while [ ! -e '{go}' ]; do sleep 0.02; done; \
         for i in $(seq 5001 10000); do echo \"line $i\"; done",
        go = go.display()
    );
    let task = run_script(&gw, &script).await;
    // The first half reached the hub (starting + accepted + 5000 lines).
    let deadline = tokio::time::Instant::now() + TASK_WAIT;
    while live_seq(&gw, &task).await < 5002 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "first half not seen"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    agent.process.freeze().expect("SIGSTOP");
    // The task's process is in its own group: it goes on writing into the frozen agent's pipe.
    std::fs::write(&go, b"").expect("go file");
    wait_agents(&gw, &[]).await;
    hubkit::admin_until(&gw, &format!("/admin/tasks/{task}"), WAIT, |v| {
        v["state"] == "orphaned"
    })
    .await
    .unwrap_or_else(|e| panic!("the task waits for its agent: {e}"));
    agent.process.thaw().expect("SIGCONT");
    let (t, events) = stored_end(&store, &task, TASK_WAIT).await;
    assert_eq!(t.state, TaskState::Completed, "{:?}", t.result);
    assert_contiguous(&events);
    assert_numbered_lines(&events, 10_000);
    assert_eq!(result_of(&events)["exit_code"], 0);
    let offline = metric(&gw, "orchestra_agent_offline_total").await;
    assert!(offline >= 1.0, "the gateway declared the agent offline");
    drop(agent);
    assert_no_lost_writes(&gw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn input_reaches_the_task_stdin() {
    let keys = AgentKey::many(&["w1"]);
    let gw = gateway(&keys).await;
    let agent = RealAgent::start(&gw, &keys[0], "quic");
    wait_agents(&gw, &["w1"]).await;
    let store = backend_store(&gw).await;
    let task = run_script(&gw, "cat").await;
    let url = gw.admin_url(&format!("/admin/tasks/{task}/input"));
    // Input is refused while the task is still starting; retry until the agent accepted it.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (status, body) = hubkit::admin_post(&url, b"hello agent\n")
            .await
            .expect("input");
        if status == 200 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "input refused: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let url = gw.admin_url(&format!("/admin/tasks/{task}/input?close=true"));
    let (status, body) = hubkit::admin_post(&url, b"second line\n")
        .await
        .expect("input");
    assert_eq!(status, 200, "{body}");
    let (t, events) = stored_end(&store, &task, TASK_WAIT).await;
    assert_eq!(t.state, TaskState::Completed, "{:?}", t.result);
    assert_eq!(output_texts(&events), ["hello agent", "second line"]);
    assert_contiguous(&events);
    drop(agent);
    assert_no_lost_writes(&gw);
}

/// True when process `pid` is gone (or a zombie nobody reaped yet: it no longer runs).
fn process_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
    }
}

fn read_pid(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_kills_the_task_process_group() {
    let keys = AgentKey::many(&["w1"]);
    let gw = gateway(&keys).await;
    let agent = RealAgent::start(&gw, &keys[0], "quic");
    wait_agents(&gw, &["w1"]).await;
    let store = backend_store(&gw).await;
    let pid_file = agent.path("grandchild.pid");
    let script = format!(
        "sleep 300 & echo $! > '{p}.tmp'; mv '{p}.tmp' '{p}'; echo started; wait",
        p = pid_file.display()
    );
    let task = run_script(&gw, &script).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    let grandchild = loop {
        if let Some(pid) = read_pid(&pid_file) {
            break pid;
        }
        assert!(tokio::time::Instant::now() < deadline, "no grandchild pid");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(!process_gone(grandchild), "the grandchild runs");
    let url = gw.admin_url(&format!("/admin/tasks/{task}/stop"));
    let (status, body) = hubkit::admin_post(&url, b"").await.expect("stop");
    assert_eq!(status, 200, "{body}");
    let (t, events) = stored_end(&store, &task, TASK_WAIT).await;
    assert_eq!(t.state, TaskState::Cancelled, "{:?}", t.result);
    assert_eq!(
        result_of(&events)["stopped"],
        true,
        "{:?}",
        result_of(&events)
    );
    assert_eq!(events.last().expect("final").data["status"], "stopped");
    let deadline = tokio::time::Instant::now() + WAIT;
    while !process_gone(grandchild) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "grandchild {grandchild} still runs after stop"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(agent);
    assert_no_lost_writes(&gw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_over_websocket_runs_a_task() {
    let keys = AgentKey::many(&["w1"]);
    let gw = gateway(&keys).await;
    let agent = RealAgent::start(&gw, &keys[0], "ws");
    let listed = wait_agents(&gw, &["w1"]).await;
    assert_eq!(listed["agents"][0]["transport"], "ws", "{listed}");
    let store = backend_store(&gw).await;
    let task = run_script(&gw, "for i in $(seq 1 1000); do echo \"line $i\"; done").await;
    let (t, events) = stored_end(&store, &task, TASK_WAIT).await;
    assert_eq!(t.state, TaskState::Completed, "{:?}", t.result);
    assert_contiguous(&events);
    assert_numbered_lines(&events, 1000);
    drop(agent);
    assert_no_lost_writes(&gw);
}
