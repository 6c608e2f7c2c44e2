//! Ten writers append to one SQLite backend at once: every request succeeds (the single
//! writer connection queues them; nobody sees `database is locked`) and every event is stored.
//! And a write lock held by another process for a moment makes writers wait, not fail.

mod common;

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_concurrent_writers_never_see_database_is_locked() {
    let db = common::sqlite().await;
    let base = db.url();
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{base}/v1/sessions"))
        .json(&json!({"id": "s", "owner": "o"}))
        .send()
        .await
        .expect("session");
    assert_eq!(r.status(), StatusCode::CREATED);
    let mut writers = Vec::new();
    for w in 0..10 {
        let http = http.clone();
        let base = base.clone();
        writers.push(tokio::spawn(async move {
            let task = format!("t-{w}");
            let r = http
                .post(format!("{base}/v1/tasks"))
                .json(&json!({"id": task, "session_id": "s", "tool": "custom", "prompt": "p"}))
                .send()
                .await
                .expect("task");
            assert_eq!(r.status(), StatusCode::CREATED);
            let mut failures = Vec::new();
            for batch in 0..50u64 {
                let events: Vec<_> = (1..=20u64)
                    .map(|i| json!({"seq": batch * 20 + i, "kind": "worker:output", "data": {"w": w}}))
                    .collect();
                let r = http
                    .post(format!("{base}/v1/tasks/{task}/events"))
                    .json(&events)
                    .send()
                    .await
                    .expect("append");
                if r.status() != StatusCode::OK {
                    failures.push(r.text().await.unwrap_or_default());
                }
                // Reads and state changes interleaved with the appends.
                if batch == 10 {
                    let r = http
                        .patch(format!("{base}/v1/tasks/{task}"))
                        .json(&json!({"state": "assigned", "agent_id": "a"}))
                        .send()
                        .await
                        .expect("patch");
                    assert_eq!(r.status(), StatusCode::OK);
                }
                let r = http
                    .get(format!("{base}/v1/tasks/{task}/events?since={}&limit=5", batch * 20))
                    .send()
                    .await
                    .expect("read");
                assert_eq!(r.status(), StatusCode::OK);
            }
            failures
        }));
    }
    for w in writers {
        let failures = w.await.expect("writer");
        assert!(failures.is_empty(), "{failures:?}");
    }
    for w in 0..10 {
        let v: serde_json::Value = http
            .get(format!("{base}/v1/tasks/t-{w}/events?limit=10000"))
            .send()
            .await
            .expect("read")
            .json()
            .await
            .expect("json");
        let seqs = common::event_seqs(&v);
        assert_eq!(seqs, (1..=1000).collect::<Vec<_>>());
    }
    let stderr = db.backend.stderr();
    assert!(!stderr.contains("database is locked"), "{stderr}");
    assert!(!stderr.to_lowercase().contains("busy"), "{stderr}");
}

/// Another process holding SQLite's write lock for a moment (the `sqlite3` shell, a backup, or a
/// reader of the backend's own pool that caught the WAL index mid-update and briefly takes the
/// write lock to re-read it): every kind of write — the ones that read before they write
/// (append, task creation, state change) included — waits for the lock within the busy timeout
/// instead of answering `database is locked`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_lock_held_by_another_process_makes_writers_wait_not_fail() {
    let db = common::sqlite().await;
    let base = db.url();
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{base}/v1/sessions"))
        .json(&json!({"id": "s", "owner": "o"}))
        .send()
        .await
        .expect("session");
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = http
        .post(format!("{base}/v1/tasks"))
        .json(&json!({"id": "t", "session_id": "s", "tool": "custom", "prompt": "p"}))
        .send()
        .await
        .expect("task");
    assert_eq!(r.status(), StatusCode::CREATED);

    let file = db.dir.path().join("db").join("orchestra.db");
    let mut other = SqliteConnectOptions::new()
        .filename(&file)
        .connect()
        .await
        .expect("second connection");
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut other)
        .await
        .expect("write lock");

    let append = tokio::spawn({
        let (http, base) = (http.clone(), base.clone());
        async move {
            let r = http
                .post(format!("{base}/v1/tasks/t/events"))
                .json(&json!([{"seq": 1, "kind": "worker:output", "data": "x"}]))
                .send()
                .await
                .expect("append");
            (r.status(), r.text().await.unwrap_or_default())
        }
    });
    let create = tokio::spawn({
        let (http, base) = (http.clone(), base.clone());
        async move {
            let r = http
                .post(format!("{base}/v1/tasks"))
                .json(&json!({"id": "t2", "session_id": "s", "tool": "custom", "prompt": "p"}))
                .send()
                .await
                .expect("create");
            (r.status(), r.text().await.unwrap_or_default())
        }
    });
    let patch = tokio::spawn({
        let (http, base) = (http.clone(), base.clone());
        async move {
            let r = http
                .patch(format!("{base}/v1/tasks/t"))
                .json(&json!({"state": "assigned", "agent_id": "a"}))
                .send()
                .await
                .expect("patch");
            (r.status(), r.text().await.unwrap_or_default())
        }
    });
    // Long enough for the three requests to reach the store; well inside its busy timeout.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    sqlx::query("COMMIT")
        .execute(&mut other)
        .await
        .expect("release");
    other.close().await.expect("close");

    let (status, body) = append.await.expect("append task");
    assert_eq!(status, StatusCode::OK, "append: {body}");
    let (status, body) = create.await.expect("create task");
    assert_eq!(status, StatusCode::CREATED, "create: {body}");
    let (status, body) = patch.await.expect("patch task");
    assert_eq!(status, StatusCode::OK, "patch: {body}");

    let v: serde_json::Value = http
        .get(format!("{base}/v1/tasks/t/events"))
        .send()
        .await
        .expect("read")
        .json()
        .await
        .expect("json");
    assert_eq!(common::event_seqs(&v), vec![1]);
    let v: serde_json::Value = http
        .get(format!("{base}/v1/tasks/t"))
        .send()
        .await
        .expect("read")
        .json()
        .await
        .expect("json");
    assert_eq!(v["state"], "assigned", "{v}");
    let stderr = db.backend.stderr();
    assert!(!stderr.contains("database is locked"), "{stderr}");
}

/// A write lock held elsewhere past the store's busy timeout (5 s): the write answers 503
/// `SYS_001` (try again), not 500, stores nothing, and the same call succeeds once the lock is
/// gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_lock_held_past_the_busy_timeout_is_503_and_the_retry_stores_once() {
    let db = common::sqlite().await;
    let base = db.url();
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{base}/v1/sessions"))
        .json(&json!({"id": "s", "owner": "o"}))
        .send()
        .await
        .expect("session");
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = http
        .post(format!("{base}/v1/tasks"))
        .json(&json!({"id": "t", "session_id": "s", "tool": "custom", "prompt": "p"}))
        .send()
        .await
        .expect("task");
    assert_eq!(r.status(), StatusCode::CREATED);

    let file = db.dir.path().join("db").join("orchestra.db");
    let mut other = SqliteConnectOptions::new()
        .filename(&file)
        .connect()
        .await
        .expect("second connection");
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut other)
        .await
        .expect("write lock");
    let events = json!([
        {"seq": 1, "kind": "worker:output", "data": "a"},
        {"seq": 2, "kind": "worker:output", "data": "b"}
    ]);
    let r = http
        .post(format!("{base}/v1/tasks/t/events"))
        .json(&events)
        .send()
        .await
        .expect("append");
    let status = r.status();
    let body: serde_json::Value = r.json().await.expect("json error");
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "SYS_001", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("locked")),
        "{body}"
    );
    // Reads go on while the lock is held.
    let v: serde_json::Value = http
        .get(format!("{base}/v1/tasks/t/events"))
        .send()
        .await
        .expect("read")
        .json()
        .await
        .expect("json");
    assert_eq!(common::event_seqs(&v), Vec::<u64>::new());
    sqlx::query("COMMIT")
        .execute(&mut other)
        .await
        .expect("release");
    other.close().await.expect("close");

    for _ in 0..2 {
        let r = http
            .post(format!("{base}/v1/tasks/t/events"))
            .json(&events)
            .send()
            .await
            .expect("retry");
        assert_eq!(r.status(), StatusCode::OK);
    }
    let v: serde_json::Value = http
        .get(format!("{base}/v1/tasks/t/events"))
        .send()
        .await
        .expect("read")
        .json()
        .await
        .expect("json");
    assert_eq!(common::event_seqs(&v), vec![1, 2]);
}
