//! A process that is spooling is SIGKILLed: what it was told is durable must reach the backend
//! exactly once when a new client opens the same spool. Also: a full spool refuses cleanly and
//! logs it once per episode. The spooling process is `orchestra-backend-load`, the client
//! driver that stands in for the gateway.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use orchestra_backend::client::{BackendClient, ClientConfig};

const LOAD: &str = env!("CARGO_BIN_EXE_orchestra-backend-load");

fn read(path: &Path) -> String {
    std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// The highest seq reported `durable` so far.
fn last_durable(stdout: &str) -> u64 {
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix("durable 0 "))
        .filter_map(|s| s.trim().parse().ok())
        .max()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_while_spooling_loses_nothing_acked_and_doubles_nothing() {
    let mut db = common::sqlite().await;
    let url = db.url();
    db.backend.kill();
    let dir = tempfile::tempdir().expect("tempdir");
    let spool = dir.path().join("spool");
    let out = dir.path().join("stdout");
    let err = dir.path().join("stderr");
    let mut child = Command::new(LOAD)
        .args(["--url", &url, "--events", "1000000", "--per-call", "3"])
        .args(["--report-every", "1", "--run-id", "crash", "--window", "64"])
        .arg("--spool-dir")
        .arg(&spool)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).expect("stdout file"))
        .stderr(std::fs::File::create(&err).expect("stderr file"))
        .spawn()
        .expect("spawn the load driver");
    let deadline = Instant::now() + Duration::from_secs(60);
    while last_durable(&read(&out)) < 5000 {
        assert!(
            child.try_wait().expect("wait").is_none(),
            "the driver exited early: {}",
            read(&err)
        );
        assert!(
            Instant::now() < deadline,
            "spooling too slow: {}",
            read(&err)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
    let acked = last_durable(&read(&out));
    assert!(acked >= 5000);
    assert!(
        read(&err).contains("circuit breaker open"),
        "it was spooling: {}",
        read(&err)
    );

    db.backend.restart().await.expect("backend back");
    let mut cfg = ClientConfig::new(&url, &spool);
    cfg.breaker_max_open = Duration::from_millis(200);
    let client = BackendClient::start(cfg).expect("client on the same spool");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = client.status();
        if !s.spooling && s.spool_records == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "not replayed: {s:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut seqs: Vec<u64> = Vec::new();
    loop {
        let since = seqs.last().copied().unwrap_or(0);
        let page = client
            .task_events("crash-task-0", since, 10_000)
            .await
            .expect("read");
        if page.is_empty() {
            break;
        }
        seqs.extend(page.iter().map(|e| e.seq));
    }
    // Everything acked is there; what was written after the last ack may be there too (it was
    // fsynced, the ack just had not been printed); nothing twice, no gap.
    assert!(
        seqs.len() as u64 >= acked,
        "acked {acked}, stored {}",
        seqs.len()
    );
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    let task = client
        .task("crash-task-0")
        .await
        .expect("read")
        .expect("the spooled create reached the backend");
    assert_eq!(task.session_id, "crash-session");
    let s = client.status();
    assert!(s.replayed > 0);
    assert_eq!(s.rejected, 0);
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_spool_is_logged_once_and_counted() {
    let closed = testkit::net::closed_addr().expect("addr");
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(LOAD)
        .args(["--url", &format!("http://{closed}"), "--events", "3000"])
        .args(["--spool-max-bytes", "65536", "--run-id", "full"])
        .arg("--spool-dir")
        .arg(dir.path().join("spool"))
        .stdin(Stdio::null())
        .output()
        .expect("run the load driver");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let summary: serde_json::Value =
        serde_json::from_str(stdout.lines().last().expect("summary")).expect("JSON summary");
    let refused = summary["refused"].as_u64().expect("refused");
    let spooled = summary["spooled"].as_u64().expect("spooled");
    assert!(spooled > 100, "{summary}");
    assert!(refused > 100, "{summary}");
    assert_eq!(spooled + refused, 3000, "{summary}");
    assert_eq!(summary["client"]["refused"], refused);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let full_lines = stderr
        .lines()
        .filter(|l| l.contains("backend spool full"))
        .count();
    assert_eq!(full_lines, 1, "one log line per episode:\n{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
