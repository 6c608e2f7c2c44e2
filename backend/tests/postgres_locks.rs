//! PostgreSQL with a `lock_timeout` set by its operator: a task row locked elsewhere past it makes
//! a state change answer 503 `SYS_001` (try again), not 500, and the retry succeeds once.

use reqwest::StatusCode;
use serde_json::json;
use sqlx::{Connection, PgConnection};
use testkit::{BackendProcess, PgCluster};

const BIN: &str = env!("CARGO_BIN_EXE_orchestra-backend");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_lock_held_past_lock_timeout_is_503_and_the_retry_succeeds() {
    let pg = tokio::task::spawn_blocking(PgCluster::start)
        .await
        .expect("join")
        .expect("PostgreSQL starts (scripts/setup --install-only installs it)");
    let mut other = PgConnection::connect(&pg.url()).await.expect("connect");
    // Sessions opened from now on (the backend's) give up on a lock after 300 ms.
    sqlx::query("ALTER DATABASE postgres SET lock_timeout = '300ms'")
        .execute(&mut other)
        .await
        .expect("lock_timeout");
    let backend = BackendProcess::start(BIN, pg.url())
        .await
        .expect("backend starts");
    let base = backend.url();
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

    sqlx::query("BEGIN")
        .execute(&mut other)
        .await
        .expect("begin");
    sqlx::query("SELECT id FROM tasks WHERE id = 't' FOR UPDATE")
        .execute(&mut other)
        .await
        .expect("row lock");
    let patch = json!({"state": "assigned", "agent_id": "a"});
    let r = http
        .patch(format!("{base}/v1/tasks/t"))
        .json(&patch)
        .send()
        .await
        .expect("patch");
    let status = r.status();
    let body: serde_json::Value = r.json().await.expect("json error");
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "SYS_001", "{body}");
    sqlx::query("COMMIT")
        .execute(&mut other)
        .await
        .expect("release");

    let r = http
        .patch(format!("{base}/v1/tasks/t"))
        .json(&patch)
        .send()
        .await
        .expect("retry");
    assert_eq!(r.status(), StatusCode::OK);
    let v: serde_json::Value = http
        .get(format!("{base}/v1/tasks/t"))
        .send()
        .await
        .expect("read")
        .json()
        .await
        .expect("json");
    assert_eq!(v["state"], "assigned", "{v}");
    assert_eq!(v["version"], 2, "one state change: {v}");
}
