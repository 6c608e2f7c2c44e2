//! PostgreSQL with a `lock_timeout` set by its operator: a task row locked elsewhere past it makes
//! a state change answer 503 `SYS_001` (try again), not 500, and the retry succeeds once.

mod common;

use reqwest::{Method, StatusCode};
use serde_json::json;
use sqlx::{Connection, PgConnection};
use testkit::{BackendProcess, PgCluster};

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
    let backend = BackendProcess::start(common::BIN, pg.url())
        .await
        .expect("backend starts");
    let base = backend.url();
    common::session_with_task(&base, "s", "t").await;

    sqlx::query("BEGIN")
        .execute(&mut other)
        .await
        .expect("begin");
    sqlx::query("SELECT id FROM tasks WHERE id = 't' FOR UPDATE")
        .execute(&mut other)
        .await
        .expect("row lock");
    let task = format!("{base}/v1/tasks/t");
    let patch = json!({"state": "assigned", "agent_id": "a"});
    let (status, v) = common::call(Method::PATCH, &task, Some(patch.clone())).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    common::error_of(&v, "SYS_001");
    sqlx::query("COMMIT")
        .execute(&mut other)
        .await
        .expect("release");

    let (status, v) = common::call(Method::PATCH, &task, Some(patch)).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let (_, v) = common::call(Method::GET, &task, None).await;
    assert_eq!(v["state"], "assigned", "{v}");
    assert_eq!(v["version"], 2, "one state change: {v}");
}
