//! `agents`: many simulated agents against the gateway's agent hub (QUIC, `orchestra-agent/1`).
//!
//! 1. Read the gateway's VmRSS and CPU time (`--pid`).
//! 2. Register `-c` agents (`load-0` … `load-{c-1}`, credentials derived as testkit's
//!    `AgentKey::new` does; `--write-keys FILE` writes the matching keys file for the gateway),
//!    `--open-concurrency` at a time, over one client UDP socket; each heartbeats every
//!    `--heartbeat`.
//! 3. Wait `--settle`, read RSS: `(after − before) / registered` is the gateway's memory per
//!    agent. Hold `--hold` with every agent idle but heartbeating: the gateway's CPU over that
//!    time is its idle cost.
//! 4. `--tasks N`: start N tasks one after another through the admin API (`POST /admin/tasks`);
//!    each lands on some agent, which accepts it, sends one output line and its result at once.
//!    Recorded per task: POST sent → `TaskAssign` received by the agent (the dispatch path:
//!    admin call, hub pick among every connected agent, stream open), and POST sent → the first
//!    output acked (stored durably).
//! 5. `--stream-lines L`: one more task whose agent sends L output lines back to back (QUIC flow
//!    control paces it) and its result: items/s from the first line sent to the result's ack,
//!    i.e. into the backend durably.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use serde::Serialize;
use testkit::agent::hub::{keys_file, AgentKey};
use testkit::agent::{AgentClient, AgentEndpoint, TaskStream};
use tokio::sync::{watch, Semaphore};

use crate::cli::AgentsArgs;
use crate::progress::Progress;
use crate::report::{LatencySummary, Report, ReportHeader};
use crate::stats::{new_histogram, record};

/// The id of simulated agent `i`.
pub fn agent_id(i: usize) -> String {
    format!("load-{i}")
}

/// Report of an `agents` run.
#[derive(Debug, Clone, Serialize)]
pub struct AgentsReport {
    /// `tool`, `version` and `mode` (`"agents"`).
    #[serde(flatten)]
    pub header: ReportHeader,
    /// The gateway's QUIC address.
    pub addr: String,
    /// Agents asked for.
    pub requested: usize,
    /// Agents registered.
    pub registered: u64,
    /// Registrations that failed.
    pub failed: u64,
    /// The first failure, if any.
    pub first_error: Option<String>,
    /// Connect + TLS + register → `Registered`, µs.
    pub register_latency_us: LatencySummary,
    /// Seconds to register them all.
    pub open_s: f64,
    /// Gateway memory (with `--pid`).
    pub rss: Option<AgentRss>,
    /// Gateway CPU while every agent idles (with `--pid`): percent of one core.
    pub idle_cpu_percent: Option<f64>,
    /// Seconds held idle.
    pub hold_s: f64,
    /// Agents the gateway disconnected during the run.
    pub closed_early: u64,
    /// POST /admin/tasks sent → TaskAssign received, µs.
    pub dispatch_latency_us: LatencySummary,
    /// POST /admin/tasks sent → first output acked (durable), µs.
    pub first_output_acked_us: LatencySummary,
    /// The streamed task: lines sent and items/s into the backend.
    pub stream: Option<StreamReport>,
}

/// Gateway memory.
#[derive(Debug, Clone, Serialize)]
pub struct AgentRss {
    /// Before registering, KiB.
    pub before_kib: u64,
    /// After registering and settling, KiB.
    pub after_kib: u64,
    /// `(after − before) × 1024 / registered`, bytes.
    pub per_agent_bytes: Option<f64>,
}

/// One task's output throughput.
#[derive(Debug, Clone, Serialize)]
pub struct StreamReport {
    /// Output lines (plus the result event).
    pub lines: u64,
    /// First line sent → result acked, seconds.
    pub seconds: f64,
    /// Events per second, durably stored.
    pub items_per_s: f64,
}

impl Report for AgentsReport {
    fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }

    fn to_text(&self) -> String {
        let mut s = format!(
            "orchestra-loadtest agents {}\n  registered  {}/{} in {:.2}s  failed {}  closed early {}\n  register    {}\n",
            self.addr,
            self.registered,
            self.requested,
            self.open_s,
            self.failed,
            self.closed_early,
            self.register_latency_us.line(),
        );
        if let Some(e) = &self.first_error {
            s.push_str(&format!("  first error {e}\n"));
        }
        if let Some(r) = &self.rss {
            s.push_str(&format!(
                "  gateway RSS before {} KiB  after {} KiB  per agent {}\n",
                r.before_kib,
                r.after_kib,
                r.per_agent_bytes
                    .map_or("-".to_string(), |b| format!("{:.0} B", b))
            ));
        }
        if let Some(c) = self.idle_cpu_percent {
            s.push_str(&format!(
                "  idle CPU    {c:.2}% of one core over {:.0}s\n",
                self.hold_s
            ));
        }
        if self.dispatch_latency_us.count > 0 {
            s.push_str(&format!(
                "  dispatch    {}\n",
                self.dispatch_latency_us.line()
            ));
            s.push_str(&format!(
                "  1st output  {}\n",
                self.first_output_acked_us.line()
            ));
        }
        if let Some(st) = &self.stream {
            s.push_str(&format!(
                "  stream      {} lines in {:.3}s = {:.0} items/s (acked, durable)\n",
                st.lines, st.seconds, st.items_per_s
            ));
        }
        s
    }
}

/// The report of `--write-keys`.
#[derive(Debug, Clone, Serialize)]
pub struct KeysWritten {
    /// The file.
    pub path: String,
    /// Agents in it.
    pub agents: usize,
}

impl Report for KeysWritten {
    fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }

    fn to_text(&self) -> String {
        format!(
            "wrote the keys of {} agents (load-0 ...) to {}: point [agents] keys_file at it\n",
            self.agents, self.path
        )
    }
}

/// Writes the keys file for `n` simulated agents.
pub fn write_keys(path: &std::path::Path, n: usize) -> Result<(), String> {
    let keys: Vec<AgentKey> = (0..n).map(|i| AgentKey::new(&agent_id(i))).collect();
    std::fs::write(path, keys_file(&keys)).map_err(|e| format!("{}: {e}", path.display()))
}

/// Per-process CPU time (user + system) in seconds, from `/proc/PID/stat`.
fn cpu_seconds(pid: u32) -> Result<f64, String> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = text.rsplit_once(')').map(|(_, r)| r).ok_or("bad stat")?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        f.get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .ok_or("bad stat")
    };
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 after the ')'.
    let total = ticks(11)? + ticks(12)?;
    Ok(total / 100.0)
}

/// Task events the agents saw: task id → when its assignment arrived, and when its first
/// output was acked.
#[derive(Default)]
struct Seen {
    assigned: Mutex<HashMap<String, Instant>>,
    first_acked: Mutex<HashMap<String, Instant>>,
    stream: Mutex<Option<(u64, Duration)>>,
}

async fn serve_task(mut t: TaskStream, seen: Arc<Seen>) {
    let id = t.task_id.clone();
    if let Ok(mut m) = seen.assigned.lock() {
        m.insert(id.clone(), Instant::now());
    }
    let prompt = t
        .assign
        .as_ref()
        .map(|a| a.prompt.clone())
        .unwrap_or_default();
    let lines: u64 = prompt
        .strip_prefix("stream:")
        .and_then(|n| n.parse().ok())
        .unwrap_or(1);
    if t.accept(1).await.is_err() {
        return;
    }
    let start = Instant::now();
    let mut seq = t.first_seq();
    for i in 0..lines {
        seq += 1;
        if t.output(seq, &format!("output line {i} of task {id}"))
            .await
            .is_err()
        {
            return;
        }
        if lines == 1 && t.wait_ack(seq, Duration::from_secs(30)).await.is_ok() {
            if let Ok(mut m) = seen.first_acked.lock() {
                m.insert(id.clone(), Instant::now());
            }
        }
    }
    seq += 1;
    let _ = t
        .result(seq, orchestra_proto::v1::ResultStatus::Success, 0)
        .await;
    if t.wait_ack(seq, Duration::from_secs(120)).await.is_ok() && lines > 1 {
        if let Ok(mut s) = seen.stream.lock() {
            *s = Some((lines + 1, start.elapsed()));
        }
    }
    t.tx.finish().await;
}

/// A keep-alive HTTP/1.1 connection to the admin API.
struct Admin {
    send: hyper::client::conn::http1::SendRequest<Full<bytes::Bytes>>,
    authority: String,
    token: Option<String>,
}

impl Admin {
    async fn connect(base: &str, token: Option<String>) -> Result<Admin, String> {
        let uri: http::Uri = base.parse().map_err(|e| format!("--admin: {e}"))?;
        let authority = uri.authority().ok_or("--admin without host")?.to_string();
        let tcp = tokio::net::TcpStream::connect(&authority)
            .await
            .map_err(|e| format!("admin {authority}: {e}"))?;
        tcp.set_nodelay(true).map_err(|e| e.to_string())?;
        let (send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        Ok(Admin {
            send,
            authority,
            token,
        })
    }

    async fn start_task(&mut self, prompt: &str) -> Result<String, String> {
        let body = serde_json::json!({"tool": "custom", "prompt": prompt}).to_string();
        let mut req = http::Request::post("/admin/tasks")
            .header(http::header::HOST, &self.authority)
            .header(http::header::CONTENT_TYPE, "application/json");
        if let Some(t) = &self.token {
            req = req.header(http::header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let req = req
            .body(Full::new(bytes::Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        self.send.ready().await.map_err(|e| e.to_string())?;
        let resp = self
            .send
            .send_request(req)
            .await
            .map_err(|e| e.to_string())?;
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
        if status != http::StatusCode::CREATED {
            return Err(format!("POST /admin/tasks: {status} {v}"));
        }
        v["task_id"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| format!("no task_id in {v}"))
    }
}

/// Polls `map` for `id` (the agent may see the assignment before the POST answer arrives).
async fn wait_for(
    map: &Mutex<HashMap<String, Instant>>,
    id: &str,
    limit: Duration,
) -> Option<Instant> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(t) = map.lock().ok().and_then(|mut m| m.remove(id)) {
            return Some(t);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
}

/// Runs the `agents` mode.
pub async fn run(a: AgentsArgs, progress: bool) -> Result<Box<dyn Report>, String> {
    if let Some(path) = &a.write_keys {
        write_keys(path, a.agents)?;
        return Ok(Box::new(KeysWritten {
            path: path.display().to_string(),
            agents: a.agents,
        }));
    }
    let addr: SocketAddr = a
        .addr
        .parse()
        .map_err(|e| format!("--addr {}: {e}", a.addr))?;
    let pem = std::fs::read(&a.ca).map_err(|e| format!("--ca {}: {e}", a.ca.display()))?;
    let endpoint = AgentEndpoint::new(addr, &pem, None).map_err(|e| e.to_string())?;
    let rss_before = a.pid.map(crate::modes::ws_hold::read_rss_kib).transpose()?;

    let seen = Arc::new(Seen::default());
    let registered = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let closed = Arc::new(AtomicU64::new(0));
    let first_error: Arc<Mutex<Option<String>>> = Arc::default();
    let latency = Arc::new(Mutex::new(new_histogram()));
    let (stop_tx, stop_rx) = watch::channel(false);
    let gate = Arc::new(Semaphore::new(a.open_concurrency.max(1)));
    let _progress = progress.then(|| {
        let (r, f) = (Arc::clone(&registered), Arc::clone(&failed));
        Progress::spawn(move |t| {
            format!(
                "[{:>4.0}s] registered {} failed {}",
                t.as_secs_f64(),
                r.load(Ordering::Relaxed),
                f.load(Ordering::Relaxed)
            )
        })
    });
    let started = Instant::now();
    let mut handles = Vec::with_capacity(a.agents);
    for i in 0..a.agents {
        let permit = Arc::clone(&gate)
            .acquire_owned()
            .await
            .map_err(|e| e.to_string())?;
        let mut spec = AgentKey::new(&agent_id(i)).spec();
        spec.heartbeat = Some(a.heartbeat);
        spec.max_tasks = 4;
        let (endpoint, seen, registered, failed, closed) = (
            endpoint.clone(),
            Arc::clone(&seen),
            Arc::clone(&registered),
            Arc::clone(&failed),
            Arc::clone(&closed),
        );
        let (first_error, latency, mut stop) = (
            Arc::clone(&first_error),
            Arc::clone(&latency),
            stop_rx.clone(),
        );
        let timeout = a.timeout;
        handles.push(tokio::spawn(async move {
            let t0 = Instant::now();
            let client =
                tokio::time::timeout(timeout, AgentClient::connect_quic(&endpoint, &spec)).await;
            drop(permit);
            let mut client = match client {
                Ok(Ok(c)) => c,
                Ok(Err(e)) => {
                    failed.fetch_add(1, Ordering::Relaxed);
                    first_error
                        .lock()
                        .map(|mut f| f.get_or_insert(e.to_string()).clone())
                        .ok();
                    return;
                }
                Err(_) => {
                    failed.fetch_add(1, Ordering::Relaxed);
                    first_error
                        .lock()
                        .map(|mut f| f.get_or_insert("register timed out".into()).clone())
                        .ok();
                    return;
                }
            };
            if let Ok(mut h) = latency.lock() {
                record(&mut h, t0.elapsed());
            }
            registered.fetch_add(1, Ordering::Relaxed);
            loop {
                tokio::select! {
                    t = client.task() => match t {
                        Some(t) => { tokio::spawn(serve_task(t, Arc::clone(&seen))); }
                        None => { closed.fetch_add(1, Ordering::Relaxed); break; }
                    },
                    _ = stop.wait_for(|s| *s) => break,
                }
            }
        }));
    }
    // Every registration finished (or failed).
    while registered.load(Ordering::Relaxed) + failed.load(Ordering::Relaxed) < a.agents as u64 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let open_s = started.elapsed().as_secs_f64();
    tokio::time::sleep(a.settle).await;
    let rss_after = a.pid.map(crate::modes::ws_hold::read_rss_kib).transpose()?;
    let cpu0 = a.pid.map(cpu_seconds).transpose()?;
    let hold_start = Instant::now();
    tokio::time::sleep(a.hold).await;
    let hold_s = hold_start.elapsed().as_secs_f64();
    let cpu1 = a.pid.map(cpu_seconds).transpose()?;
    let idle_cpu_percent = match (cpu0, cpu1) {
        (Some(c0), Some(c1)) => Some((c1 - c0) / hold_s * 100.0),
        _ => None,
    };

    let mut dispatch = new_histogram();
    let mut first_output = new_histogram();
    let mut stream = None;
    if a.tasks > 0 || a.stream_lines > 0 {
        let mut admin = Admin::connect(&a.admin, a.token.clone()).await?;
        for _ in 0..a.tasks {
            let t0 = Instant::now();
            let id = admin.start_task("echo one").await?;
            let assigned = wait_for(&seen.assigned, &id, a.timeout)
                .await
                .ok_or_else(|| format!("task {id}: no agent got it within {:?}", a.timeout))?;
            record(&mut dispatch, assigned.duration_since(t0));
            let acked = wait_for(&seen.first_acked, &id, a.timeout)
                .await
                .ok_or_else(|| {
                    format!("task {id}: first output not acked within {:?}", a.timeout)
                })?;
            record(&mut first_output, acked.duration_since(t0));
        }
        if a.stream_lines > 0 {
            admin
                .start_task(&format!("stream:{}", a.stream_lines))
                .await?;
            let deadline = Instant::now() + Duration::from_secs(300);
            loop {
                if let Some((lines, took)) = seen.stream.lock().ok().and_then(|s| *s) {
                    stream = Some(StreamReport {
                        lines,
                        seconds: took.as_secs_f64(),
                        items_per_s: lines as f64 / took.as_secs_f64().max(1e-9),
                    });
                    break;
                }
                if Instant::now() >= deadline {
                    return Err("the streamed task did not finish within 300 s".into());
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    let _ = stop_tx.send(true);
    for h in handles {
        let _ = h.await;
    }
    let reg = registered.load(Ordering::Relaxed);
    let rss = match (rss_before, rss_after) {
        (Some(b), Some(af)) => Some(AgentRss {
            before_kib: b,
            after_kib: af,
            per_agent_bytes: (reg > 0).then(|| (af as f64 - b as f64) * 1024.0 / reg as f64),
        }),
        _ => None,
    };
    let register_latency_us = latency
        .lock()
        .map(|h| LatencySummary::from_ns(&h))
        .unwrap_or_default();
    Ok(Box::new(AgentsReport {
        header: ReportHeader::new("agents"),
        addr: a.addr.clone(),
        requested: a.agents,
        registered: reg,
        failed: failed.load(Ordering::Relaxed),
        first_error: first_error.lock().ok().and_then(|f| f.clone()),
        register_latency_us,
        open_s,
        rss,
        idle_cpu_percent,
        hold_s,
        closed_early: closed.load(Ordering::Relaxed),
        dispatch_latency_us: LatencySummary::from_ns(&dispatch),
        first_output_acked_us: LatencySummary::from_ns(&first_output),
        stream,
    }))
}
