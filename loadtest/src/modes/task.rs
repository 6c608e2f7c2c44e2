//! `task`: starts one task through the gateway's realtime channel (`/ws`) and prints its
//! output — the command-line way to drive an agent (README "Run the whole loop"). With
//! `--repeat N` it measures instead: browser `worker:start` → first `worker:output`, N times,
//! beside the tool's own start time measured apart (`bash -c 'echo x'` spawned locally).

use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;

use super::realtime::{auth_headers, RtClient};
use crate::cli::TaskArgs;
use crate::net::Connector;
use crate::report::{LatencySummary, Report};
use crate::stats::{new_histogram, record};

/// What `task` reports.
#[derive(Debug, Serialize)]
pub struct TaskReport {
    /// The task (the last one with `--repeat`).
    pub task_id: String,
    /// `success` or `error`.
    pub status: String,
    /// Exit code.
    pub exit_code: i64,
    /// Output items received.
    pub outputs: u64,
    /// `--repeat`: worker:start sent → first worker:output received.
    pub start_to_first_output: Option<LatencySummary>,
    /// `--repeat`: `bash -c 'echo x'` spawned here → its first stdout byte.
    pub local_spawn_to_first_output: Option<LatencySummary>,
}

impl Report for TaskReport {
    fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    fn to_text(&self) -> String {
        let mut s = format!(
            "task {}: {} (exit code {}), {} output items\n",
            self.task_id, self.status, self.exit_code, self.outputs
        );
        if let (Some(a), Some(b)) = (
            &self.start_to_first_output,
            &self.local_spawn_to_first_output,
        ) {
            s.push_str(&format!(
                "worker:start -> first output (n={}): {}\nlocal bash spawn -> first output (n={}): {}\n",
                a.count,
                a.line(),
                b.count,
                b.line()
            ));
        }
        s
    }
}

/// Runs the mode.
pub async fn run(a: TaskArgs, connector: Connector, url: String) -> Result<TaskReport, String> {
    let headers = auth_headers(&a.auth)?;
    let mut c = RtClient::connect(&connector, &url, &headers).await?;
    let session = c.join(a.session.as_deref()).await?;
    let prompt = a.prompt.join(" ");
    if a.repeat == 0 {
        let (report, _) = run_once(&mut c, &session, &a, &prompt, true).await?;
        if report.status != "success" {
            return Err(format!(
                "task {} ended with {} (exit code {})",
                report.task_id, report.status, report.exit_code
            ));
        }
        return Ok(report);
    }
    let mut remote = new_histogram();
    let mut last = None;
    for _ in 0..a.repeat {
        let (r, first) = run_once(&mut c, &session, &a, &prompt, false).await?;
        if let Some(d) = first {
            record(&mut remote, d);
        }
        last = Some(r);
    }
    let mut local = new_histogram();
    for _ in 0..a.repeat {
        record(&mut local, local_spawn(&prompt).await?);
    }
    let mut report = last.ok_or("no run")?;
    report.start_to_first_output = Some(LatencySummary::from_ns(&remote));
    report.local_spawn_to_first_output = Some(LatencySummary::from_ns(&local));
    Ok(report)
}

/// One task: its report and the time from `worker:start` to its first output.
async fn run_once(
    c: &mut RtClient,
    session: &str,
    a: &TaskArgs,
    prompt: &str,
    print: bool,
) -> Result<(TaskReport, Option<Duration>), String> {
    let t0 = Instant::now();
    let reply = c
        .start(session, &a.tool, prompt, a.agent.as_deref())
        .await?;
    let task = reply["data"]["task_id"]
        .as_str()
        .ok_or_else(|| format!("worker:start reply without task_id: {reply}"))?
        .to_string();
    if print {
        eprintln!(
            "task {task}: {} on {}",
            reply["data"]["status"].as_str().unwrap_or("?"),
            reply["data"]["agent_id"].as_str().unwrap_or("(queued)")
        );
    }
    let mut first = None;
    let mut outputs = 0;
    loop {
        let v = c
            .next_json(a.timeout)
            .await
            .ok_or_else(|| format!("task {task}: no event within {:?}", a.timeout))?;
        if v["data"]["task_id"] != task.as_str() && v["type"] != "error" {
            continue;
        }
        match v["type"].as_str().unwrap_or("") {
            "worker:output" => {
                outputs += 1;
                first.get_or_insert_with(|| t0.elapsed());
                if print {
                    let text = v["data"]["text"].as_str().unwrap_or("");
                    let nl = if text.ends_with('\n') { "" } else { "\n" };
                    if v["data"]["kind"] == "stderr" {
                        eprint!("{text}{nl}");
                    } else {
                        print!("{text}{nl}");
                    }
                }
            }
            "task:result" => {
                let d = &v["data"];
                let report = TaskReport {
                    task_id: task,
                    status: d["status"].as_str().unwrap_or("?").to_string(),
                    exit_code: d["exit_code"].as_i64().unwrap_or(-1),
                    outputs,
                    start_to_first_output: None,
                    local_spawn_to_first_output: None,
                };
                return Ok((report, first));
            }
            "worker:status"
                if matches!(v["data"]["status"].as_str(), Some("error" | "stopped")) =>
            {
                return Err(format!(
                    "task {task}: {}: {}",
                    v["data"]["status"].as_str().unwrap_or("?"),
                    v["data"]["reason"].as_str().unwrap_or("")
                ));
            }
            "error" => return Err(format!("error: {}", v["data"])),
            _ => {}
        }
    }
}

/// `bash -c PROMPT` spawned here: time to its first stdout byte.
async fn local_spawn(prompt: &str) -> Result<Duration, String> {
    use tokio::io::AsyncReadExt;
    let t0 = Instant::now();
    let mut child = tokio::process::Command::new("bash")
        .arg("-c")
        .arg(prompt)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("bash: {e}"))?;
    let mut out = child.stdout.take().ok_or("no stdout")?;
    let mut b = [0u8; 1];
    let _ = out.read(&mut b).await;
    let d = t0.elapsed();
    let _ = child.wait().await;
    Ok(d)
}
