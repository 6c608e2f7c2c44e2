//! Ten writers append to one SQLite backend at once: every request succeeds (the single
//! writer connection queues them; nobody sees `database is locked`) and every event is stored.
//! And a write lock held by another process for a moment makes writers wait, not fail.

mod common;

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
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

/// A second connection (in this test process, not the backend's) holding SQLite's write lock
/// on `db`'s file until it is committed.
async fn hold_write_lock(db: &common::Db) -> SqliteConnection {
    let mut other = SqliteConnectOptions::new()
        .filename(db.sqlite_file())
        .connect()
        .await
        .expect("second connection");
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut other)
        .await
        .expect("write lock");
    other
}

/// Releases what [`hold_write_lock`] took.
async fn release(mut other: SqliteConnection) {
    sqlx::query("COMMIT")
        .execute(&mut other)
        .await
        .expect("release");
    other.close().await.expect("close");
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
    common::session_with_task(&base, "s", "t").await;
    let other = hold_write_lock(&db).await;
    let send = |method: Method, path: &str, body: serde_json::Value| {
        let url = format!("{base}{path}");
        tokio::spawn(async move { common::call(method, &url, Some(body)).await })
    };
    let append = send(
        Method::POST,
        "/v1/tasks/t/events",
        json!([{"seq": 1, "kind": "worker:output", "data": "x"}]),
    );
    let create = send(
        Method::POST,
        "/v1/tasks",
        json!({"id": "t2", "session_id": "s", "tool": "custom", "prompt": "p"}),
    );
    let patch = send(
        Method::PATCH,
        "/v1/tasks/t",
        json!({"state": "assigned", "agent_id": "a"}),
    );
    // Long enough for the three requests to reach the store; well inside its busy timeout.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    release(other).await;

    let (status, body) = append.await.expect("append task");
    assert_eq!(status, StatusCode::OK, "append: {body}");
    let (status, body) = create.await.expect("create task");
    assert_eq!(status, StatusCode::CREATED, "create: {body}");
    let (status, body) = patch.await.expect("patch task");
    assert_eq!(status, StatusCode::OK, "patch: {body}");

    let (_, v) = common::call(Method::GET, &format!("{base}/v1/tasks/t/events"), None).await;
    assert_eq!(common::event_seqs(&v), vec![1]);
    let (_, v) = common::call(Method::GET, &format!("{base}/v1/tasks/t"), None).await;
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
    common::session_with_task(&base, "s", "t").await;
    let other = hold_write_lock(&db).await;
    let events = json!([
        {"seq": 1, "kind": "worker:output", "data": "a"},
        {"seq": 2, "kind": "worker:output", "data": "b"}
    ]);
    let append = format!("{base}/v1/tasks/t/events");
    let (status, v) = common::call(Method::POST, &append, Some(events.clone())).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert!(common::error_of(&v, "SYS_001").contains("locked"), "{v}");
    // Reads go on while the lock is held.
    let (status, v) = common::call(Method::GET, &append, None).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(common::event_seqs(&v), Vec::<u64>::new());
    release(other).await;

    for _ in 0..2 {
        let (status, v) = common::call(Method::POST, &append, Some(events.clone())).await;
        assert_eq!(status, StatusCode::OK, "{v}");
    }
    let (_, v) = common::call(Method::GET, &append, None).await;
    assert_eq!(common::event_seqs(&v), vec![1, 2]);
}
