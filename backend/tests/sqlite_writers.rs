//! Ten writers append to one SQLite backend at once: every request succeeds (the single
//! writer connection queues them; nobody sees `database is locked`) and every event is stored.

mod common;

use reqwest::StatusCode;
use serde_json::json;

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
