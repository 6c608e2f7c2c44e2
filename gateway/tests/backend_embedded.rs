//! The gateway's backend: the embedded default (SQLite in-process, reached over HTTP by the same
//! client), a remote backend going away and coming back as `/readyz` sees it, the client's
//! counters in `/metrics`, and `[backend]` changes reported as restart-needed on reload.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::admin::*;
use common::*;
use orchestra_backend::server::RunningServer;
use orchestra_backend::store::Store;
use serde_json::Value;
use testkit::GatewayProcess;

const WAIT: Duration = Duration::from_secs(20);

/// Polls `/readyz` until `want(status, body)` holds; returns the last body.
async fn readyz_until(gw: &GatewayProcess, want: impl Fn(u16, &Value) -> bool) -> Value {
    let client = http_client();
    let deadline = Instant::now() + WAIT;
    let mut last = (0, Value::Null);
    loop {
        if let Ok(resp) = client.get(gw.http_url("/readyz")).send().await {
            let status = resp.status().as_u16();
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            if want(status, &body) {
                return body;
            }
            last = (status, body);
        }
        assert!(
            Instant::now() < deadline,
            "/readyz never got there; last {last:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_backend_by_default_shows_in_readyz_and_metrics() {
    let mut gw = gateway().admin(true).start().await.expect("gateway");
    let body = readyz_until(&gw, |s, _| s == 200).await;
    assert_eq!(body["status"], "ready");
    let db = gw.data_dir().join("orchestra.db");
    assert_eq!(
        body["backend"]["target"],
        format!("embedded sqlite {}", db.display())
    );
    assert_eq!(body["backend"]["embedded"], true);
    assert_eq!(body["backend"]["reachable"], true);
    assert_eq!(body["backend"]["spooling"], false);
    assert!(db.exists(), "the SQLite file is created under data_dir");
    let metrics = Admin::new(&gw)
        .call(reqwest::Method::GET, "/metrics", None)
        .await;
    assert_eq!(metrics.status, 200);
    let up = format!(
        "orchestra_backend_up{{backend=\"embedded sqlite {}\"}} 1",
        db.display()
    );
    assert!(metrics.text.contains(&up), "{}", metrics.text);
    for name in [
        "orchestra_backend_spooling 0",
        "orchestra_backend_spool_bytes 0",
        "orchestra_backend_spool_refused_total 0",
        "orchestra_backend_writes_total 0",
        "# TYPE orchestra_backend_replayed_total counter",
    ] {
        assert!(metrics.text.contains(name), "{name} in\n{}", metrics.text);
    }
    // The exposition still parses as a whole.
    let lines = metrics.text.lines().map(|l| Ok(l.to_string()));
    prometheus_parse::Scrape::parse(lines).expect("valid Prometheus text");
    let status = gw.terminate().await.expect("SIGTERM");
    assert!(status.success());
    assert!(
        gw.stderr().contains("backend stopped"),
        "the backend is stopped on SIGTERM:\n{}",
        gw.stderr()
    );
}

async fn serve(addr: SocketAddr, path: &std::path::Path) -> RunningServer {
    let store = Store::open(&format!("sqlite://{}", path.display()))
        .await
        .expect("store");
    let deadline = Instant::now() + WAIT;
    loop {
        match RunningServer::start(addr, store.clone()).await {
            Ok(s) => return s,
            Err(e) => {
                assert!(Instant::now() < deadline, "cannot bind {addr} again: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_backend_going_away_and_back_shows_in_readyz() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("remote.db");
    let server = serve(([127, 0, 0, 1], 0).into(), &db).await;
    let addr = server.addr();
    let gw = start_gateway(format!(
        "[backend]\nurl = \"http://{addr}\"\nspool_dir = \"@DATA_DIR@/spool\"\n"
    ))
    .await;
    let body = readyz_until(&gw, |s, _| s == 200).await;
    assert_eq!(body["backend"]["target"], format!("http://{addr}"));
    assert_eq!(body["backend"]["embedded"], false);
    assert!(
        !gw.data_dir().join("orchestra.db").exists(),
        "no embedded database with a url"
    );
    server.stop().await;
    let body = readyz_until(&gw, |s, _| s == 503).await;
    assert_eq!(body["status"], "backend_unreachable");
    assert_eq!(body["backend"]["reachable"], false);
    let server = serve(addr, &db).await;
    let body = readyz_until(&gw, |s, _| s == 200).await;
    assert_eq!(body["backend"]["reachable"], true);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_change_on_reload_needs_a_restart() {
    let gw = gateway().admin(true).start().await.expect("gateway");
    let admin = Admin::new(&gw);
    admin
        .put_config_needing_restart(
            &gw.config_text("[backend]\nbatch_max_events = 10\n"),
            &["backend"],
        )
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unwritable_sqlite_path_fails_start_up_with_the_key() {
    let out = gateway()
        .config("[backend]\nsqlite_path = \"/proc/orchestra/nope.db\"\n")
        .start()
        .await;
    let err = out.expect_err("start-up fails").to_string();
    assert!(err.contains("backend.sqlite_path"), "{err}");
    assert!(err.contains("/proc/orchestra/nope.db"), "{err}");
}
