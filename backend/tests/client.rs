//! The gateway's backend client against a real `orchestra-backend` process on SQLite: batching,
//! refusals, and the spool while the backend is away (SIGKILLed and restarted on its port).

mod common;

use std::time::{Duration, Instant};

use orchestra_backend::client::{BackendClient, ClientConfig, ClientError, Persisted};
use orchestra_backend::model::{NewEvent, NewSession, TaskPatch, TaskState, WriteOp};

/// A client with a quick breaker, so tests see the backend come back within ~200 ms.
fn config(url: &str, spool: &std::path::Path) -> ClientConfig {
    let mut c = ClientConfig::new(url, spool);
    c.breaker_min_open = Duration::from_millis(50);
    c.breaker_max_open = Duration::from_millis(200);
    c.backoff_base = Duration::from_millis(5);
    c.request_timeout = Duration::from_secs(5);
    c
}

fn event(seq: u64) -> NewEvent {
    NewEvent {
        seq,
        kind: "worker:output".into(),
        data: serde_json::json!({"kind": "stdout", "text": format!("line {seq}")}),
    }
}

async fn create_task(client: &BackendClient, session: &str, task: &str) {
    client
        .write(WriteOp::CreateSession(NewSession {
            id: Some(session.into()),
            owner: "alice".into(),
        }))
        .await
        .expect("session durable");
    client
        .write(WriteOp::CreateTask(common::custom_task(task, session)))
        .await
        .expect("task durable");
}

/// Reads every event of `task` through the client (pages of 10,000) and returns the seqs.
async fn all_seqs(client: &BackendClient, task: &str) -> Vec<u64> {
    let mut seqs = Vec::new();
    loop {
        let since = seqs.last().copied().unwrap_or(0);
        let page = client
            .task_events(task, since, 10_000)
            .await
            .expect("range read");
        if page.is_empty() {
            return seqs;
        }
        seqs.extend(page.iter().map(|e| e.seq));
    }
}

/// Polls until the client has replayed its spool and has nothing queued.
async fn wait_drained(client: &BackendClient, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let s = client.status();
        if !s.spooling && s.spool_records == 0 && s.queued == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "spool not replayed: {s:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_are_batched_committed_and_read_back_in_order() {
    let db = common::sqlite().await;
    let spool = tempfile::tempdir().expect("tempdir");
    let client = BackendClient::start(config(&db.url(), spool.path())).expect("client");
    create_task(&client, "s", "t").await;
    let durables: Vec<_> = (1..=500)
        .map(|seq| client.append_events("t", vec![event(seq)]))
        .collect();
    for d in durables {
        assert_eq!(d.await, Ok(Persisted::Committed));
    }
    let status = client.status();
    assert_eq!(status.events, 500);
    assert!(status.reachable);
    // 500 single-event appends travel in batches of at most 50 (plus the two creates).
    assert!(
        status.batches <= 2 + 500 / 10,
        "events were batched: {status:?}"
    );
    assert_eq!(all_seqs(&client, "t").await, (1..=500).collect::<Vec<_>>());
    let page = client.task_events("t", 100, 3).await.expect("read");
    assert_eq!(
        page.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [101, 102, 103]
    );
    assert_eq!(page[0].data["text"], "line 101");
    let task = client.task("t").await.expect("task").expect("exists");
    assert_eq!(task.state, TaskState::Pending);
    assert!(client.task("none").await.expect("read").is_none());
    assert_eq!(
        client
            .session("s")
            .await
            .expect("read")
            .expect("exists")
            .owner,
        "alice"
    );
    client.shutdown().await;
    assert_eq!(
        client.append_events("t", vec![event(501)]).await,
        Err(ClientError::Closed)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_writes_fail_alone_with_the_backend_error() {
    let db = common::sqlite().await;
    let spool = tempfile::tempdir().expect("tempdir");
    let client = BackendClient::start(config(&db.url(), spool.path())).expect("client");
    create_task(&client, "s", "t").await;
    // Events of an unknown task, between two good appends of the same batch.
    let good1 = client.append_events("t", vec![event(1)]);
    let ghost = client.append_events("ghost", vec![event(1)]);
    let good2 = client.append_events("t", vec![event(2)]);
    let bad_seq = client.append_events("t", vec![event(0)]);
    let good3 = client.append_events("t", vec![event(3)]);
    assert_eq!(good1.await, Ok(Persisted::Committed));
    match ghost.await {
        Err(ClientError::Rejected {
            status: 404,
            message,
            ..
        }) => {
            assert!(message.contains("ghost"), "{message}")
        }
        other => panic!("expected a 404 rejection, got {other:?}"),
    }
    assert_eq!(good2.await, Ok(Persisted::Committed));
    match bad_seq.await {
        Err(ClientError::Rejected {
            status: 400, code, ..
        }) => assert_eq!(code, "PARAM_001"),
        other => panic!("expected a 400 rejection, got {other:?}"),
    }
    assert_eq!(good3.await, Ok(Persisted::Committed));
    let illegal = client
        .write(WriteOp::PatchTask {
            id: "t".into(),
            patch: TaskPatch {
                state: TaskState::Completed,
                agent_id: None,
                result: None,
                version: None,
            },
        })
        .await;
    match illegal {
        Err(e @ ClientError::Rejected { status: 409, .. }) => {
            assert!(
                e.to_string()
                    .contains("illegal transition pending -> completed"),
                "{e}"
            )
        }
        other => panic!("expected a 409 rejection, got {other:?}"),
    }
    assert_eq!(all_seqs(&client, "t").await, [1, 2, 3]);
    assert_eq!(client.status().rejected, 3);
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_events_spooled_while_the_backend_is_down_arrive_once_in_order() {
    let mut db = common::sqlite().await;
    let spool = tempfile::tempdir().expect("tempdir");
    let client = BackendClient::start(config(&db.url(), spool.path())).expect("client");
    create_task(&client, "s", "t").await;
    assert_eq!(
        client
            .append_events("t", (1..=10).map(event).collect())
            .await,
        Ok(Persisted::Committed)
    );
    db.backend.kill();
    // 10,000 events in calls of 1 to 7 events, none waiting on the backend.
    let mut durables = Vec::new();
    let mut seq = 11;
    let mut n = 0;
    while seq <= 10_000 {
        let k = (n % 7 + 1).min(10_001 - seq);
        durables.push(client.append_events("t", (seq..seq + k).map(event).collect()));
        seq += k;
        n += 1;
    }
    let mut spooled = 0;
    for d in durables {
        match d.await {
            Ok(Persisted::Spooled) => spooled += 1,
            other => panic!("expected the write spooled, got {other:?}"),
        }
    }
    let s = client.status();
    assert!(s.spooling, "{s:?}");
    assert!(!s.reachable, "{s:?}");
    assert_eq!(s.spool_records, spooled);
    assert!(s.spool_bytes > 0);
    let files = std::fs::read_dir(spool.path()).expect("spool dir").count();
    assert!(files >= 1, "segment files on disk");
    // Reads fail clearly meanwhile.
    assert!(matches!(
        client.task_events("t", 0, 10).await,
        Err(ClientError::Unavailable { .. })
    ));

    db.backend.restart().await.expect("backend restarts");
    wait_drained(&client, Duration::from_secs(60)).await;
    let s = client.status();
    assert_eq!(s.replayed, spooled);
    assert_eq!(s.spool_bytes, 0);
    assert!(s.reachable);
    let seqs = all_seqs(&client, "t").await;
    assert_eq!(seqs.len(), 10_000, "every event exactly once");
    assert_eq!(seqs, (1..=10_000).collect::<Vec<_>>(), "in seq order");
    let left: Vec<_> = std::fs::read_dir(spool.path())
        .expect("spool dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".seg"))
        .collect();
    assert!(left.is_empty(), "replayed segments deleted: {left:?}");
    // Writes go straight to the backend again.
    assert_eq!(
        client.append_events("t", vec![event(10_001)]).await,
        Ok(Persisted::Committed)
    );
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_made_while_spooling_queue_behind_the_spool_in_order() {
    let mut db = common::sqlite().await;
    let spool = tempfile::tempdir().expect("tempdir");
    let client = BackendClient::start(config(&db.url(), spool.path())).expect("client");
    db.backend.kill();
    // Session, task, events, a state change: all spooled, replayed in that order (the task
    // must exist before its events, and be assigned before it runs).
    create_task(&client, "s", "t").await;
    let patch = |state| WriteOp::PatchTask {
        id: "t".into(),
        patch: TaskPatch {
            state,
            agent_id: Some("w".into()),
            result: None,
            version: None,
        },
    };
    assert_eq!(
        client.write(patch(TaskState::Assigned)).await,
        Ok(Persisted::Spooled)
    );
    assert_eq!(
        client.write(patch(TaskState::Running)).await,
        Ok(Persisted::Spooled)
    );
    for seq in 1..=100 {
        assert_eq!(
            client.append_events("t", vec![event(seq)]).await,
            Ok(Persisted::Spooled)
        );
    }
    db.backend.restart().await.expect("restart");
    // Keep writing while the replay runs.
    let mut later = Vec::new();
    for seq in 101..=300 {
        later.push(client.append_events("t", vec![event(seq)]));
        if seq % 50 == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    later.push(client.write(patch(TaskState::Completed)));
    for d in later {
        assert!(d.await.is_ok());
    }
    wait_drained(&client, Duration::from_secs(30)).await;
    client.flush().await;
    assert_eq!(all_seqs(&client, "t").await, (1..=300).collect::<Vec<_>>());
    let t = client.task("t").await.expect("read").expect("task");
    assert_eq!(t.state, TaskState::Completed);
    assert_eq!(client.status().rejected, 0, "nothing replayed out of order");
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_spool_refuses_new_writes_and_says_so() {
    let closed = testkit::net::closed_addr().expect("addr");
    let spool = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(&format!("http://{closed}"), spool.path());
    cfg.spool_max_bytes = 16 * 1024;
    let client = BackendClient::start(cfg).expect("client");
    let mut spooled = 0;
    let mut refused = None;
    for seq in 1..=1000 {
        match client.append_events("t", vec![event(seq)]).await {
            Ok(Persisted::Spooled) => spooled += 1,
            Err(e) => {
                refused = Some((seq, e));
                break;
            }
            Ok(other) => panic!("nothing can commit: {other:?}"),
        }
    }
    let (at, err) = refused.expect("the spool fills up");
    assert!(spooled > 10 && at > 10);
    assert!(
        matches!(err, ClientError::SpoolFull { limit: 16384, .. }),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("spool") && msg.contains("full") && msg.contains("spool_max_bytes"),
        "{msg}"
    );
    // Later writes are refused too, never a panic; the spooled ones stay.
    assert!(matches!(
        client.append_events("t", vec![event(5000)]).await,
        Err(ClientError::SpoolFull { .. })
    ));
    let s = client.status();
    assert_eq!(s.refused, 2);
    assert_eq!(s.spool_records, spooled);
    assert!(s.spool_bytes <= 16 * 1024);
    client.shutdown().await;
}
