//! End to end: the `orchestra-loadtest` binary against the in-process bench upstream on
//! 127.0.0.1, bounded by `-n`.

use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;

use orchestra_bench::upstream::{self, State, UpstreamConfig};

/// Starts the bench upstream on an ephemeral port in a background runtime.
fn start_upstream() -> SocketAddr {
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    std_listener.set_nonblocking(true).expect("nonblocking");
    let addr = std_listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(std_listener).expect("listener");
            let state = Arc::new(State::new(&UpstreamConfig::default()));
            let _ = upstream::serve(listener, state, None).await;
        });
    });
    addr
}

fn loadtest(args: &[&str]) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_orchestra-loadtest"))
        .args(args)
        .args(["--json", "-q", "--threads", "1"])
        .output()
        .expect("run orchestra-loadtest");
    assert!(
        out.status.success(),
        "exit {:?}, stderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON object ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn assert_clean(report: &serde_json::Value, n: u64) {
    assert_eq!(report["requests"], n, "{report}");
    assert_eq!(report["ok"], n, "{report}");
    assert_eq!(report["errors"]["total"], 0, "{report}");
    assert_eq!(report["latency_us"]["count"], n, "{report}");
    assert!(report["latency_us"]["p50"].as_f64().unwrap_or(0.0) > 0.0);
}

#[test]
fn h1_closed_loop_counts_every_request() {
    let addr = start_upstream();
    let url = format!("http://{addr}/");
    let r = loadtest(&["h1", "-u", &url, "-n", "200", "-c", "4"]);
    assert_clean(&r, 200);
    assert_eq!(r["mode"], "h1");
    assert_eq!(r["loop"], "closed");
    assert_eq!(r["status_codes"]["200"], 200);
    assert_eq!(r["bytes"], 200 * 13);
}

#[test]
fn h1_open_loop_and_new_connections() {
    let addr = start_upstream();
    let url = format!("http://{addr}/bytes/1000");
    let r = loadtest(&[
        "h1",
        "-u",
        &url,
        "-n",
        "200",
        "-c",
        "4",
        "--rate",
        "2000",
        "--new-conn",
    ]);
    assert_clean(&r, 200);
    assert_eq!(r["loop"], "open");
    assert_eq!(r["bytes"], 200 * 1000);
    assert!(r["send_delay_us"]["count"].as_u64() == Some(200), "{r}");
}

#[test]
fn h2c_and_ws_echo() {
    let addr = start_upstream();
    let r = loadtest(&[
        "h2c",
        "-u",
        &format!("http://{addr}/"),
        "-n",
        "200",
        "-c",
        "2",
        "-m",
        "4",
    ]);
    assert_clean(&r, 200);
    let r = loadtest(&[
        "ws",
        "-u",
        &format!("ws://{addr}/ws"),
        "-n",
        "200",
        "-c",
        "4",
        "--msg-size",
        "128",
    ]);
    assert_clean(&r, 200);
    assert_eq!(r["bytes"], 200 * 128);
}

#[test]
fn connect_errors_are_counted_and_the_run_ends() {
    // Nothing listens on this port (bound then dropped).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let r = loadtest(&[
        "h1",
        "-u",
        &format!("http://127.0.0.1:{port}/"),
        "-n",
        "20",
        "-c",
        "2",
    ]);
    assert_eq!(r["requests"], 20);
    assert_eq!(r["ok"], 0);
    assert_eq!(r["errors"]["connect"], 20);
}

#[test]
fn slow_responses_time_out() {
    let addr = start_upstream();
    let r = loadtest(&[
        "h1",
        "-u",
        &format!("http://{addr}/slow?ms=2000"),
        "-n",
        "2",
        "-c",
        "2",
        "--timeout",
        "100ms",
    ]);
    assert_eq!(r["requests"], 2, "{r}");
    assert_eq!(r["errors"]["timeout"], 2, "{r}");
}
