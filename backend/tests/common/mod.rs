//! The API scenarios every database runs (`api_sqlite.rs`, `api_postgres.rs`): real
//! `orchestra-backend` processes, a real HTTP client, assertions on what the client received.

#![allow(dead_code)]

use orchestra_backend::model::NewTask;
use reqwest::{Client, Method, StatusCode};
use serde_json::{json, Value};
use testkit::{BackendProcess, PgCluster};

/// A backend process and what it runs on; dropped backend first, then the database.
pub struct Db {
    pub backend: BackendProcess,
    pub pg: Option<PgCluster>,
    pub dir: tempfile::TempDir,
}

impl Db {
    pub fn url(&self) -> String {
        self.backend.url()
    }

    /// The SQLite file of a [`sqlite`] backend.
    pub fn sqlite_file(&self) -> std::path::PathBuf {
        sqlite_file(self.dir.path())
    }
}

fn sqlite_file(dir: &std::path::Path) -> std::path::PathBuf {
    dir.join("db").join("orchestra.db")
}

pub const BIN: &str = env!("CARGO_BIN_EXE_orchestra-backend");

/// A `custom` task `id` in `session` with prompt `p`, no requirements, default priority.
pub fn custom_task(id: &str, session: &str) -> NewTask {
    NewTask {
        id: Some(id.into()),
        session_id: session.into(),
        tool: "custom".into(),
        prompt: "p".into(),
        cwd: None,
        requires: vec![],
        priority: 0,
        agent_id: None,
    }
}

/// The `seq` of every event in a `GET .../events` answer, in order.
pub fn event_seqs(answer: &Value) -> Vec<u64> {
    answer["events"]
        .as_array()
        .unwrap_or_else(|| panic!("no events array: {answer}"))
        .iter()
        .map(|e| e["seq"].as_u64().expect("seq"))
        .collect()
}

/// A backend on a fresh SQLite file.
pub async fn sqlite() -> Db {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", sqlite_file(dir.path()).display());
    let backend = BackendProcess::start(BIN, url)
        .await
        .expect("backend starts");
    Db {
        backend,
        pg: None,
        dir,
    }
}

/// A backend on a fresh PostgreSQL cluster.
pub async fn postgres() -> Db {
    let pg = tokio::task::spawn_blocking(PgCluster::start)
        .await
        .expect("join")
        .expect("PostgreSQL starts (scripts/setup --install-only installs it)");
    let backend = BackendProcess::start(BIN, pg.url())
        .await
        .expect("backend starts");
    Db {
        backend,
        pg: Some(pg),
        dir: tempfile::tempdir().expect("tempdir"),
    }
}

/// Creates session `session` (owner `o`) and task `task` in it ([`new_task`]).
pub async fn session_with_task(base: &str, session: &str, task: &str) {
    let (s, v) = call(
        Method::POST,
        &format!("{base}/v1/sessions"),
        Some(json!({"id": session, "owner": "o"})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, v) = new_task(base, task, session).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
}

/// Sends `body` (JSON unless it is a raw string) and returns status and JSON answer.
pub async fn call(method: Method, url: &str, body: Option<Value>) -> (StatusCode, Value) {
    let mut req = Client::new().request(method, url);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status();
    let text = resp.text().await.expect("body");
    let v = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("answer is not JSON ({e}): {status} {text:?}"));
    (status, v)
}

pub async fn raw(method: Method, url: &str, body: Vec<u8>) -> (StatusCode, Value) {
    let resp = Client::new()
        .request(method, url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("request");
    let status = resp.status();
    let text = resp.text().await.expect("body");
    let v = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("answer is not JSON ({e}): {status} {text:?}"));
    (status, v)
}

/// Asserts the SPEC error shape with `code`, and returns the message.
pub fn error_of(v: &Value, code: &str) -> String {
    assert_eq!(v["error"]["code"], code, "error code in {v}");
    let msg = v["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(!msg.is_empty(), "error message in {v}");
    msg
}

pub async fn healthz(base: &str) {
    let (s, v) = call(Method::GET, &format!("{base}/healthz"), None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["status"], "ok");
}

pub async fn agents(base: &str) {
    let (s, v) = call(
        Method::PUT,
        &format!("{base}/v1/agents/worker-1"),
        Some(json!({"name": "w1", "capabilities": ["custom", "claude"], "metadata": {"os": "linux"}, "status": "online", "last_seen": 1000})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["capabilities"], json!(["custom", "claude"]));
    assert_eq!(v["metadata"]["os"], "linux");
    // A newer upsert updates.
    let (s, v) = call(
        Method::PUT,
        &format!("{base}/v1/agents/worker-1"),
        Some(json!({"name": "w1", "status": "offline", "last_seen": 2000})),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["status"], "offline");
    assert_eq!(v["last_seen"], 2000);
    // An older one replayed late changes nothing.
    let (s, v) = call(
        Method::PUT,
        &format!("{base}/v1/agents/worker-1"),
        Some(json!({"status": "online", "last_seen": 1500})),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["status"], "offline");
    assert_eq!(v["last_seen"], 2000);
    let (s, v) = call(Method::GET, &format!("{base}/v1/agents/worker-1"), None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["id"], "worker-1");
    let (s, v) = call(Method::GET, &format!("{base}/v1/agents/nobody"), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(error_of(&v, "NOT_FOUND").contains("nobody"));
    for i in 2..=5 {
        let (s, _) = call(
            Method::PUT,
            &format!("{base}/v1/agents/worker-{i}"),
            Some(json!({"status": "online", "last_seen": i})),
        )
        .await;
        assert_eq!(s, StatusCode::CREATED);
    }
    let ids = pages(base, "/v1/agents?limit=2", "agents").await;
    assert_eq!(
        ids,
        ["worker-1", "worker-2", "worker-3", "worker-4", "worker-5"]
    );
}

/// Follows `next_cursor` through every page of a list; asserts page sizes; returns the ids.
pub async fn pages(base: &str, first: &str, key: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let mut url = format!("{base}{first}");
    let limit: usize = first
        .split("limit=")
        .nth(1)
        .and_then(|l| l.split('&').next())
        .and_then(|l| l.parse().ok())
        .unwrap_or(100);
    for _ in 0..100 {
        let (s, v) = call(Method::GET, &url, None).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let items = v[key].as_array().expect("list").clone();
        assert!(items.len() <= limit);
        ids.extend(
            items
                .iter()
                .map(|i| i["id"].as_str().unwrap_or_default().to_string()),
        );
        match v["next_cursor"].as_str() {
            Some(c) => {
                assert_eq!(items.len(), limit, "a page before the last is full");
                url = format!("{base}{first}&cursor={c}");
            }
            None => return ids,
        }
    }
    panic!("more than 100 pages");
}

pub async fn sessions(base: &str) {
    let (s, v) = call(
        Method::POST,
        &format!("{base}/v1/sessions"),
        Some(json!({"id": "s-1", "owner": "alice"})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(v["id"], "s-1");
    let created_at = v["created_at"].clone();
    // Same id again: the stored row, no duplicate.
    let (s, v) = call(
        Method::POST,
        &format!("{base}/v1/sessions"),
        Some(json!({"id": "s-1", "owner": "alice"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["created_at"], created_at);
    // No id: generated.
    let (s, v) = call(
        Method::POST,
        &format!("{base}/v1/sessions"),
        Some(json!({"owner": "alice"})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    let generated = v["id"].as_str().expect("id").to_string();
    assert!(generated.len() >= 16);
    for i in 2..=4 {
        call(
            Method::POST,
            &format!("{base}/v1/sessions"),
            Some(json!({"id": format!("s-{i}"), "owner": if i == 3 { "bob" } else { "alice" }})),
        )
        .await;
    }
    let (s, v) = call(Method::GET, &format!("{base}/v1/sessions/s-3"), None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["owner"], "bob");
    let (s, v) = call(Method::GET, &format!("{base}/v1/sessions/none"), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    error_of(&v, "NOT_FOUND");
    let mut alice = pages(base, "/v1/sessions?owner=alice&limit=2", "sessions").await;
    let mut want = vec!["s-1".to_string(), "s-2".into(), "s-4".into(), generated];
    want.sort();
    alice.sort();
    assert_eq!(alice, want);
    let bob = pages(base, "/v1/sessions?owner=bob&limit=2", "sessions").await;
    assert_eq!(bob, ["s-3"]);
}

/// Posts task `id` (`custom`, requires `custom`, priority 2) in `session`.
pub async fn new_task(base: &str, id: &str, session: &str) -> (StatusCode, Value) {
    call(
        Method::POST,
        &format!("{base}/v1/tasks"),
        Some(json!({"id": id, "session_id": session, "tool": "custom", "prompt": "echo hi", "requires": ["custom"], "priority": 2})),
    )
    .await
}

async fn patch(base: &str, id: &str, body: Value) -> (StatusCode, Value) {
    call(Method::PATCH, &format!("{base}/v1/tasks/{id}"), Some(body)).await
}

pub async fn tasks(base: &str) {
    let (s, v) = new_task(base, "t-1", "missing-session").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(error_of(&v, "NOT_FOUND").contains("session missing-session"));
    call(
        Method::POST,
        &format!("{base}/v1/sessions"),
        Some(json!({"id": "s", "owner": "alice"})),
    )
    .await;
    let (s, v) = new_task(base, "t-1", "s").await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["state"], "pending");
    assert_eq!(v["version"], 1);
    assert_eq!(v["requires"], json!(["custom"]));
    let (s, v) = new_task(base, "t-1", "s").await;
    assert_eq!(s, StatusCode::OK, "same id again: the stored task");
    assert_eq!(v["version"], 1);

    let (s, v) = patch(
        base,
        "t-1",
        json!({"state": "assigned", "agent_id": "worker-1", "version": 1}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["agent_id"], "worker-1");
    assert_eq!(v["version"], 2);
    let (s, v) = patch(base, "t-1", json!({"state": "running"})).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["version"], 3);
    // The current state again: an idempotent no-op.
    let (s, v) = patch(base, "t-1", json!({"state": "running"})).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["version"], 3);
    // Illegal transition: 409 naming both states.
    let (s, v) = patch(base, "t-1", json!({"state": "pending"})).await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(
        error_of(&v, "PARAM_001"),
        "illegal transition running -> pending"
    );
    // Stale version.
    let (s, v) = patch(base, "t-1", json!({"state": "completed", "version": 2})).await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert!(error_of(&v, "PARAM_001").contains("stale version 2"));
    let (s, v) = patch(
        base,
        "t-1",
        json!({"state": "completed", "version": 3, "result": {"status": "success", "exit_code": 0}}),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["result"]["exit_code"], 0);
    let (s, v) = patch(base, "t-1", json!({"state": "running"})).await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(
        error_of(&v, "PARAM_001"),
        "illegal transition completed -> running"
    );
    let (s, v) = patch(base, "nope", json!({"state": "running"})).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    error_of(&v, "NOT_FOUND");
    // Assigned back to pending (the agent rejected it), and cancel from pending.
    new_task(base, "t-2", "s").await;
    patch(
        base,
        "t-2",
        json!({"state": "assigned", "agent_id": "worker-2"}),
    )
    .await;
    let (s, _) = patch(base, "t-2", json!({"state": "pending"})).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = patch(base, "t-2", json!({"state": "cancelled"})).await;
    assert_eq!(s, StatusCode::OK);
    for i in 3..=7 {
        new_task(base, &format!("t-{i}"), "s").await;
    }
    let (s, v) = call(Method::GET, &format!("{base}/v1/tasks/t-2"), None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["state"], "cancelled");
    let all = pages(base, "/v1/tasks?session_id=s&limit=3", "tasks").await;
    assert_eq!(all, ["t-1", "t-2", "t-3", "t-4", "t-5", "t-6", "t-7"]);
    let pending = pages(base, "/v1/tasks?state=pending&limit=2", "tasks").await;
    assert_eq!(pending, ["t-3", "t-4", "t-5", "t-6", "t-7"]);
    let on_w1 = pages(base, "/v1/tasks?agent_id=worker-1&limit=10", "tasks").await;
    assert_eq!(on_w1, ["t-1"]);
    let (s, v) = call(
        Method::GET,
        &format!("{base}/v1/tasks?state=sleeping"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    error_of(&v, "PARAM_001");
}

fn events_body(from: u64, to: u64) -> Value {
    Value::Array(
        (from..=to)
            .map(|seq| json!({"seq": seq, "kind": "worker:output", "data": {"text": format!("line {seq}")}}))
            .collect(),
    )
}

pub async fn events(base: &str) {
    call(
        Method::POST,
        &format!("{base}/v1/sessions"),
        Some(json!({"id": "s", "owner": "alice"})),
    )
    .await;
    new_task(base, "t", "s").await;
    let url = format!("{base}/v1/tasks/t/events");
    let (s, v) = call(Method::POST, &url, Some(events_body(1, 50))).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v, json!({"inserted": 50, "duplicates": 0}));
    // The same batch again (a replay): nothing inserted.
    let (s, v) = call(Method::POST, &url, Some(events_body(1, 50))).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v, json!({"inserted": 0, "duplicates": 50}));
    // Overlapping batch.
    let (_, v) = call(Method::POST, &url, Some(events_body(41, 100))).await;
    assert_eq!(v, json!({"inserted": 50, "duplicates": 10}));
    let (s, v) = call(Method::GET, &format!("{url}?since=10&limit=5"), None).await;
    assert_eq!(s, StatusCode::OK);
    let seqs = event_seqs(&v);
    assert_eq!(seqs, [11, 12, 13, 14, 15]);
    assert_eq!(v["events"][0]["data"]["text"], "line 11");
    assert_eq!(v["events"][0]["kind"], "worker:output");
    assert!(v["events"][0]["at"].as_i64().expect("at") > 0);
    let (_, v) = call(Method::GET, &url, None).await;
    let seqs = event_seqs(&v);
    assert_eq!(seqs, (1..=100).collect::<Vec<_>>());
    let (_, v) = call(Method::GET, &format!("{url}?since=100"), None).await;
    assert_eq!(v["events"], json!([]));
    let (s, v) = call(Method::GET, &format!("{url}?limit=10001"), None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(error_of(&v, "PARAM_001").contains("10000"));
    let (s, v) = call(Method::GET, &format!("{url}?limit=0"), None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    error_of(&v, "PARAM_001");
    let (s, v) = call(
        Method::POST,
        &url,
        Some(json!([{"seq": 0, "kind": "k", "data": 1}])),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(error_of(&v, "PARAM_001").contains("seq 0"));
    let (s, v) = call(
        Method::POST,
        &format!("{base}/v1/tasks/nope/events"),
        Some(events_body(1, 2)),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    error_of(&v, "NOT_FOUND");
    let (s, v) = call(Method::GET, &format!("{base}/v1/tasks/nope/events"), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    error_of(&v, "NOT_FOUND");
    // Bulk append across tasks; unknown tasks reported, the rest stored.
    new_task(base, "u", "s").await;
    let (s, v) = call(
        Method::POST,
        &format!("{base}/v1/events"),
        Some(json!([
            {"task_id": "t", "seq": 100, "kind": "k", "data": 1},
            {"task_id": "t", "seq": 101, "kind": "k", "data": 2},
            {"task_id": "u", "seq": 1, "kind": "k", "data": 3},
            {"task_id": "ghost", "seq": 1, "kind": "k", "data": 4}
        ])),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        v,
        json!({"inserted": 2, "duplicates": 1, "unknown_tasks": ["ghost"]})
    );
    // A batch larger than one multi-row INSERT.
    let (_, v) = call(Method::POST, &url, Some(events_body(200, 2700))).await;
    assert_eq!(v, json!({"inserted": 2501, "duplicates": 0}));
    let (_, v) = call(Method::GET, &format!("{url}?since=199&limit=10000"), None).await;
    assert_eq!(v["events"].as_array().expect("events").len(), 2501);
}

pub async fn bad_input(base: &str) {
    let sessions = format!("{base}/v1/sessions");
    let (s, v) = raw(Method::POST, &sessions, b"{\"owner\": ".to_vec()).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(error_of(&v, "PARAM_001").contains("invalid JSON"));
    let (s, v) = call(
        Method::POST,
        &sessions,
        Some(json!({"owner": "a", "admin": true})),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(error_of(&v, "PARAM_001").contains("unknown field `admin`"));
    let (s, v) = call(Method::POST, &sessions, Some(json!({"owner": 42}))).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    error_of(&v, "PARAM_001");
    let (s, v) = call(
        Method::POST,
        &sessions,
        Some(json!({"id": "", "owner": "a"})),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    error_of(&v, "PARAM_001");
    // 9 MiB body: over the 8 MiB cap.
    let mut big = b"{\"owner\": \"".to_vec();
    big.extend(std::iter::repeat_n(b'a', 9 << 20));
    big.extend(b"\"}");
    let (s, v) = raw(Method::POST, &sessions, big).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(error_of(&v, "PARAM_001").contains("larger than"));
    let (s, v) = call(
        Method::PATCH,
        &format!("{base}/v1/tasks/x"),
        Some(json!({"state": "flying"})),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    error_of(&v, "PARAM_001");
    let (s, v) = call(Method::GET, &format!("{base}/v1/agents?limit=abc"), None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    error_of(&v, "PARAM_001");
    let (s, v) = call(Method::GET, &format!("{base}/v1/agents?limit=1001"), None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    error_of(&v, "PARAM_001");
    let (s, v) = call(Method::GET, &format!("{base}/v2/whatever"), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    error_of(&v, "NOT_FOUND");
    let (s, v) = call(Method::DELETE, &format!("{base}/v1/tasks/x"), None).await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);
    error_of(&v, "PARAM_001");
    let long = "x".repeat(300);
    let (s, v) = call(Method::GET, &format!("{base}/v1/tasks/{long}"), None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    error_of(&v, "PARAM_001");
    // The service still answers after all that.
    healthz(base).await;
}

/// One `#[tokio::test]` per scenario, on the database `start` opens.
#[macro_export]
macro_rules! scenarios {
    ($start:path) => {
        #[tokio::test]
        async fn healthz() {
            let db = $start().await;
            common::healthz(&db.url()).await;
        }
        #[tokio::test]
        async fn agents_upsert_get_and_pages() {
            let db = $start().await;
            common::agents(&db.url()).await;
        }
        #[tokio::test]
        async fn sessions_idempotent_create_read_and_pages() {
            let db = $start().await;
            common::sessions(&db.url()).await;
        }
        #[tokio::test]
        async fn tasks_state_machine_versions_filters_and_pages() {
            let db = $start().await;
            common::tasks(&db.url()).await;
        }
        #[tokio::test]
        async fn events_idempotent_append_and_range_reads() {
            let db = $start().await;
            common::events(&db.url()).await;
        }
        #[tokio::test]
        async fn bad_input_is_400_param_001_and_unknown_is_404() {
            let db = $start().await;
            common::bad_input(&db.url()).await;
        }
    };
}
