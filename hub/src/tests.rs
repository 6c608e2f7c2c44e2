//! The hub alone, with an in-memory store and links that record what the hub asks of them.
//! (End to end, with real agents over QUIC and WebSocket and the real backend, in the gateway's
//! tests.)

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use orchestra_backend::model::TaskState;
use orchestra_proto::v1::{self, task_event::Body};
use parking_lot::Mutex;

use crate::*;

#[derive(Default)]
struct FakeLink {
    starts: Mutex<Vec<TaskStart>>,
    closed: Mutex<Vec<(String, String)>>,
}

impl AgentLink for FakeLink {
    fn assign(&self, start: TaskStart) {
        self.starts.lock().push(start);
    }
    fn close(&self, code: &'static str, reason: &str) {
        self.closed
            .lock()
            .push((code.to_string(), reason.to_string()));
    }
}

impl FakeLink {
    fn take(&self) -> Vec<TaskStart> {
        std::mem::take(&mut *self.starts.lock())
    }
}

fn hello(id: &str, caps: &[&str], max_tasks: u32, running: &[&str]) -> AgentHello {
    AgentHello {
        id: id.to_string(),
        name: id.to_string(),
        capabilities: caps.iter().map(|c| c.to_string()).collect(),
        version: "test".into(),
        metadata: Default::default(),
        max_tasks,
        running_tasks: running.iter().map(|c| c.to_string()).collect(),
        transport: Transport::Quic,
        peer: "127.0.0.1:9".parse().expect("addr"),
    }
}

fn task(tool: &str) -> StartTask {
    StartTask {
        owner: "alice".into(),
        session_id: "s-1".into(),
        tool: tool.into(),
        prompt: "echo hi".into(),
        agent_id: None,
        requires: vec![],
        cwd: None,
        priority: 0,
    }
}

fn hub_with(config: HubConfig) -> (Hub, Arc<MemoryPersist>) {
    let store = MemoryPersist::new();
    (Hub::new(config, store.clone()), store)
}

fn hub() -> (Hub, Arc<MemoryPersist>) {
    hub_with(HubConfig::default())
}

fn connect(hub: &Hub, h: AgentHello) -> (AgentSession, Arc<FakeLink>) {
    let link = Arc::new(FakeLink::default());
    let session = hub.connect(h, link.clone());
    (session, link)
}

fn output(seq: u64, text: &str) -> v1::TaskEvent {
    v1::TaskEvent {
        seq,
        body: Some(Body::Output(v1::OutputItem {
            kind: v1::OutputKind::Stdout as i32,
            text: text.into(),
            json: String::new(),
        })),
    }
}

fn result(seq: u64, status: v1::ResultStatus) -> v1::TaskEvent {
    v1::TaskEvent {
        seq,
        body: Some(Body::Result(v1::TaskResult {
            status: status as i32,
            exit_code: 0,
            duration_ms: 5,
            ..Default::default()
        })),
    }
}

/// Accepts the assignment and streams `lines` output events, each batch made durable and
/// acked; returns the attachment and the last seq.
async fn run_lines(start: TaskStart, lines: u64) -> (TaskAttachment, u64) {
    let mut att = start.attachment;
    let first = start.assign.first_seq;
    let mut batch = Vec::new();
    let ack = att.accepted(first, 42, &mut batch).expect("accept");
    att.persist(std::mem::take(&mut batch))
        .await
        .expect("durable");
    att.acked(ack, 1).expect("ack");
    let mut seq = first;
    for i in 0..lines {
        seq += 1;
        let r = att
            .ingest(&output(seq, &format!("line {i}")), &mut batch)
            .expect("ingest");
        assert_eq!(r, Ingest::Accepted { ack: seq });
    }
    if !batch.is_empty() {
        att.persist(batch).await.expect("durable");
        att.acked(seq, lines).expect("ack");
    }
    (att, seq)
}

fn texts(store: &MemoryPersist, id: &str) -> Vec<(u64, String, serde_json::Value)> {
    store
        .events(id)
        .into_iter()
        .map(|e| (e.seq, e.kind, e.data))
        .collect()
}

#[tokio::test]
async fn no_capable_agent_is_agent_001() {
    let (hub, _) = hub();
    let err = hub.start_task(task("claude")).expect_err("no agents");
    assert_eq!(err.code(), "AGENT_001");
    let (_s, _l) = connect(&hub, hello("a", &["custom"], 1, &[]));
    let err = hub.start_task(task("claude")).expect_err("not capable");
    assert!(matches!(err, HubError::NoCapableAgent { .. }), "{err}");
    let mut named = task("custom");
    named.agent_id = Some("ghost".into());
    assert_eq!(
        hub.start_task(named).expect_err("absent").code(),
        "AGENT_001"
    );
    let mut bad = task("custom");
    bad.tool = String::new();
    assert_eq!(hub.start_task(bad).expect_err("bad").code(), "PARAM_001");
}

#[tokio::test]
async fn dispatch_by_capability_and_to_the_less_loaded() {
    let (hub, _) = hub();
    let (_a, la) = connect(&hub, hello("a", &["custom"], 4, &[]));
    let (_b, lb) = connect(&hub, hello("b", &["custom", "claude"], 4, &[]));
    let s = hub.start_task(task("claude")).expect("start");
    assert_eq!(s.agent_id.as_deref(), Some("b"));
    assert_eq!(s.status, Status::Starting);
    assert_eq!(lb.take().len(), 1);
    // b runs one task; custom tasks go to a (idle), then alternate by load.
    for _ in 0..3 {
        hub.start_task(task("custom")).expect("start");
    }
    let (na, nb) = (la.take().len(), lb.take().len());
    // Loads after: a=2, b=2 (b started with 1): the less loaded agent wins every pick.
    assert_eq!((na, nb), (2, 1), "a={na} b={nb}");
    let agents = hub.agents();
    assert_eq!(agents.len(), 2);
    assert_eq!(agents[0].running_tasks, 2);
    assert_eq!(agents[1].running_tasks, 2);
}

#[tokio::test]
async fn queued_by_priority_then_fifo() {
    let (hub, store) = hub();
    let (_a, link) = connect(&hub, hello("a", &["custom"], 1, &[]));
    let running = hub.start_task(task("custom")).expect("start");
    let mut ids = Vec::new();
    for (p, name) in [(1, "low"), (5, "high-1"), (5, "high-2"), (3, "mid")] {
        let mut t = task("custom");
        t.priority = p;
        t.prompt = name.into();
        let s = hub.start_task(t).expect("queued");
        assert_eq!(s.status, Status::Queued);
        assert_eq!(s.agent_id, None);
        ids.push(s.task_id);
    }
    assert_eq!(hub.task_counts().0, 4);
    let mut order = Vec::new();
    let mut start = link.take().pop().expect("running task");
    assert_eq!(start.assign.task_id, running.task_id);
    for _ in 0..5 {
        let (mut att, seq) = run_lines(start, 1).await;
        let mut batch = Vec::new();
        att.ingest(&result(seq + 1, v1::ResultStatus::Success), &mut batch)
            .expect("result");
        att.persist(batch).await.expect("durable");
        assert!(att.acked(seq + 1, 2).expect("ack"), "over");
        att.finish();
        match link.take().pop() {
            Some(next) => {
                order.push(next.assign.prompt.clone());
                start = next;
            }
            None => break,
        }
    }
    assert_eq!(order, ["high-1", "high-2", "mid", "low"]);
    // Queued tasks numbered `queued` 1, `starting` 2, then the agent from 3.
    let ev = texts(&store, &ids[0]);
    assert_eq!(ev[0].2["status"], "queued");
    assert_eq!(ev[1].2["status"], "starting");
    assert_eq!(ev[2].2["status"], "running");
    assert_eq!(ev[2].0, 3);
    let stored = store.stored_task(&ids[0]).expect("stored");
    assert_eq!(stored.state, TaskState::Completed);
    assert!(hub.tasks().is_empty(), "{:?}", hub.tasks());
}

#[tokio::test]
async fn queue_is_bounded() {
    let (hub, _) = hub_with(HubConfig {
        max_queued: 1,
        ..HubConfig::default()
    });
    let (_a, _l) = connect(&hub, hello("a", &["custom"], 1, &[]));
    hub.start_task(task("custom")).expect("runs");
    hub.start_task(task("custom")).expect("queued");
    let err = hub.start_task(task("custom")).expect_err("full");
    assert_eq!(err.code(), "AGENT_001");
    assert!(err.to_string().contains("max_queued"), "{err}");
}

#[tokio::test]
async fn seq_dedup_gaps_and_ack_after_durable() {
    let (hub, store) = hub();
    let (_a, link) = connect(&hub, hello("a", &["custom"], 1, &[]));
    let s = hub.start_task(task("custom")).expect("start");
    let start = link.take().pop().expect("assign");
    assert_eq!(start.assign.first_seq, 2, "starting took seq 1");
    let mut att = start.attachment;
    let mut batch = Vec::new();
    assert!(matches!(
        att.ingest(&output(3, "early"), &mut batch),
        Err(ProtocolError::EventBeforeAccept)
    ));
    assert!(matches!(
        att.accepted(5, 1, &mut batch),
        Err(ProtocolError::UnexpectedAccept { got: 5, .. })
    ));
    att.accepted(2, 1, &mut batch).expect("accept");
    att.ingest(&output(3, "a"), &mut batch).expect("3");
    // Ack means durable: the store holds the batch back.
    store.hold(true);
    let durable = att.persist(std::mem::take(&mut batch));
    let mut durable = Box::pin(durable);
    assert!(
        tokio::time::timeout(Duration::from_millis(50), &mut durable)
            .await
            .is_err(),
        "not durable while held"
    );
    store.hold(false);
    durable.await.expect("durable");
    att.acked(3, 2).expect("ack");
    assert_eq!(
        att.ingest(&output(3, "a"), &mut batch).expect("dup"),
        Ingest::Duplicate { ack: 3 }
    );
    assert_eq!(
        att.ingest(&output(5, "c"), &mut batch),
        Err(ProtocolError::SeqGap {
            expected: 4,
            got: 5
        })
    );
    assert_eq!(
        att.ingest(&v1::TaskEvent { seq: 4, body: None }, &mut batch),
        Err(ProtocolError::EmptyEvent(4))
    );
    assert!(batch.is_empty());
    assert_eq!(
        hub.metrics()
            .events_duplicate
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    let info = hub.task(&s.task_id).expect("live");
    assert_eq!((info.seq, info.durable_seq, info.state), (3, 3, "running"));
}

#[tokio::test]
async fn subscribe_resumes_without_a_seam_across_backend_ring_and_live() {
    let (hub, _store) = hub_with(HubConfig {
        ring_capacity: 16,
        ..HubConfig::default()
    });
    let (_a, link) = connect(&hub, hello("a", &["custom"], 1, &[]));
    let s = hub.start_task(task("custom")).expect("start");
    let (mut att, mut seq) = run_lines(link.take().pop().expect("assign"), 100).await;
    // since = 10: seqs 11.. come from the backend until the ring (last 16 events) takes over.
    let mut sub = hub.subscribe(&s.task_id, 10).await.expect("subscribe");
    // Live events arrive while history is being read.
    let mut batch = Vec::new();
    for i in 0..20 {
        seq += 1;
        att.ingest(&output(seq, &format!("live {i}")), &mut batch)
            .expect("live");
    }
    att.persist(std::mem::take(&mut batch))
        .await
        .expect("durable");
    att.ingest(&result(seq + 1, v1::ResultStatus::Success), &mut batch)
        .expect("result");
    att.persist(batch).await.expect("durable");
    let mut got = Vec::new();
    while let Some(item) = sub.next().await {
        match item {
            SubscriptionItem::Event(e) => got.push(e.seq),
            other => panic!("unexpected {other:?}"),
        }
    }
    let want: Vec<u64> = (11..=seq + 2).collect();
    assert_eq!(
        got, want,
        "every seq once, in order, through the final status"
    );
    // A finished task is served from the backend alone, identical bytes.
    att.acked(seq + 1, 21).expect("ack");
    att.finish();
    assert!(hub.task(&s.task_id).is_none());
    let mut sub = hub.subscribe(&s.task_id, 0).await.expect("history");
    let mut n = 0;
    while let Some(SubscriptionItem::Event(e)) = sub.next().await {
        n += 1;
        assert_eq!(e.seq, n);
    }
    assert_eq!(n, seq + 2);
    assert!(matches!(
        hub.subscribe("nope", 0).await,
        Err(HubError::UnknownTask(_))
    ));
}

#[tokio::test]
async fn slow_subscriber_is_cut_off_with_its_last_seq_and_resumes() {
    let (hub, _store) = hub_with(HubConfig {
        subscriber_queue: 8,
        ..HubConfig::default()
    });
    let (_a, link) = connect(&hub, hello("a", &["custom"], 1, &[]));
    let s = hub.start_task(task("custom")).expect("start");
    let start = link.take().pop().expect("assign");
    let mut sub = hub.subscribe(&s.task_id, 0).await.expect("subscribe");
    let (att, seq) = run_lines(start, 50).await;
    let mut got = Vec::new();
    let last = loop {
        match sub.next().await {
            Some(SubscriptionItem::Event(e)) => got.push(e.seq),
            Some(SubscriptionItem::Lagged { last_seq }) => break last_seq,
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(last, *got.last().expect("some delivered"));
    assert!(last < seq, "cut off before the end");
    assert!(sub.next().await.is_none());
    // Resume from the last delivered seq: the rest, once each.
    let mut sub = hub.subscribe(&s.task_id, last).await.expect("resume");
    for want in last + 1..=seq {
        match sub.next().await {
            Some(SubscriptionItem::Event(e)) => assert_eq!(e.seq, want),
            other => panic!("unexpected {other:?}"),
        }
    }
    drop(att);
}

#[tokio::test]
async fn reconnect_resumes_from_durable_and_stores_once() {
    let (hub, store) = hub();
    let (a1, link1) = connect(&hub, hello("a", &["custom"], 1, &[]));
    let s = hub.start_task(task("custom")).expect("start");
    let (mut att, seq) = run_lines(link1.take().pop().expect("assign"), 10).await;
    // Events 13..=15 arrive and are published, but the connection breaks before they are
    // durable (the store holds them).
    let mut sub = hub.subscribe(&s.task_id, 0).await.expect("subscribe");
    store.hold(true);
    let mut batch = Vec::new();
    for q in seq + 1..=seq + 3 {
        att.ingest(&output(q, "unacked"), &mut batch)
            .expect("ingest");
    }
    let _never_awaited = att.persist(batch);
    store.hold(false);
    drop(att);
    drop(a1);
    assert_eq!(hub.task(&s.task_id).expect("live").state, "orphaned");
    // The agent comes back, re-announces the task and resumes it.
    let (a2, _link2) = connect(&hub, hello("a", &["custom"], 1, &[&s.task_id]));
    let Resume::Attached {
        ack,
        attachment: mut att,
    } = a2.resume(&s.task_id, seq + 3).await
    else {
        panic!("resume refused");
    };
    assert_eq!(ack, seq, "resend from the first unacked");
    let mut batch = Vec::new();
    for q in seq + 1..=seq + 3 {
        assert_eq!(
            att.ingest(&output(q, "unacked"), &mut batch)
                .expect("resend"),
            Ingest::Accepted { ack: q }
        );
    }
    att.ingest(&result(seq + 4, v1::ResultStatus::Success), &mut batch)
        .expect("result");
    att.persist(batch).await.expect("durable");
    assert!(att.acked(seq + 4, 4).expect("ack"));
    att.finish();
    // Subscribers saw each seq once; the store has each once.
    let mut got = Vec::new();
    while let Some(SubscriptionItem::Event(e)) = sub.next().await {
        got.push(e.seq);
    }
    assert_eq!(got, (1..=seq + 5).collect::<Vec<_>>());
    let stored: Vec<u64> = store.events(&s.task_id).iter().map(|e| e.seq).collect();
    assert_eq!(stored, (1..=seq + 5).collect::<Vec<_>>());
    assert_eq!(
        store.stored_task(&s.task_id).expect("task").state,
        TaskState::Completed
    );
    // A resume for a task that is over, or unknown: stop it.
    assert!(matches!(
        a2.resume(&s.task_id, 0).await,
        Resume::Stop { .. }
    ));
    assert!(matches!(a2.resume("ghost", 0).await, Resume::Stop { .. }));
}

#[tokio::test(start_paused = true)]
async fn agent_that_does_not_come_back_fails_its_tasks_after_the_grace() {
    let (hub, store) = hub_with(HubConfig {
        reconnect_grace: Duration::from_secs(30),
        ..HubConfig::default()
    });
    let (a1, link) = connect(&hub, hello("a", &["custom"], 2, &[]));
    let s1 = hub.start_task(task("custom")).expect("start");
    let s2 = hub.start_task(task("custom")).expect("start");
    let starts = link.take();
    let (att, _) = run_lines(starts.into_iter().next().expect("first"), 3).await;
    drop(att);
    drop(a1);
    assert_eq!(store.agent_status("a").as_deref(), Some("offline"));
    tokio::time::sleep(Duration::from_secs(29)).await;
    assert_eq!(hub.task(&s1.task_id).expect("live").state, "orphaned");
    tokio::time::sleep(Duration::from_secs(2)).await;
    tokio::task::yield_now().await;
    for id in [&s1.task_id, &s2.task_id] {
        let t = store.stored_task(id).expect("stored");
        assert_eq!(t.state, TaskState::Failed, "{id}");
        let last = store.events(id).pop().expect("event");
        assert_eq!(last.data["status"], "error");
        let reason = last.data["reason"].as_str().expect("reason");
        assert!(
            reason.contains("agent a did not come back within 30 s"),
            "{reason}"
        );
    }
    // An agent that comes back without the task: it fails at once.
    let (a2, link2) = connect(&hub, hello("a", &["custom"], 1, &[]));
    hub.start_task(task("custom")).expect("start");
    let (att, _) = run_lines(link2.take().pop().expect("assign"), 1).await;
    drop(att);
    drop(a2);
    let (_a3, _l3) = connect(&hub, hello("a", &["custom"], 1, &[]));
    tokio::task::yield_now().await;
    assert_eq!(hub.task_counts(), (0, 0, 0, 0));
}

#[tokio::test]
async fn duplicate_id_replaces_the_older_connection() {
    let (hub, _) = hub();
    let (a1, link1) = connect(&hub, hello("a", &["custom"], 1, &[]));
    let (a2, _link2) = connect(&hub, hello("a", &["custom", "claude"], 1, &[]));
    let closed = link1.closed.lock().clone();
    assert_eq!(closed.len(), 1);
    assert_eq!(closed[0].0, "AGENT_001");
    assert!(closed[0].1.contains("replaced"), "{closed:?}");
    // The old session ending does not unregister the new one.
    drop(a1);
    let agents = hub.agents();
    assert_eq!(agents.len(), 1);
    assert_eq!(agents[0].capabilities, ["custom", "claude"]);
    drop(a2);
    assert!(hub.agents().is_empty());
}

#[tokio::test]
async fn stop_input_and_agent_events() {
    let (hub, store) = hub();
    let mut events = hub.agent_events();
    let (_a, link) = connect(&hub, hello("a", &["custom"], 1, &[]));
    assert!(matches!(events.recv().await, Ok(AgentEvent::Connected(i)) if i.id == "a"));
    let running = hub.start_task(task("custom")).expect("start");
    let queued = hub.start_task(task("custom")).expect("queued");
    let start = link.take().pop().expect("assign");
    let (mut att, seq) = run_lines(start, 1).await;
    hub.input(&running.task_id, Bytes::from_static(b"hello\n"), false)
        .expect("input");
    assert_eq!(
        att.command().await,
        Some(TaskCommand::Input {
            data: Bytes::from_static(b"hello\n"),
            close: false
        })
    );
    assert!(hub
        .input(&queued.task_id, Bytes::new(), false)
        .is_err_and(|e| e.code() == "PARAM_001"));
    // Stop a queued task: it ends at once.
    hub.stop(&queued.task_id).expect("stop queued");
    tokio::task::yield_now().await;
    let last = store.events(&queued.task_id).pop().expect("event");
    assert_eq!(last.data["status"], "stopped");
    // Stop a running task: the agent gets TaskStop, its result ends the task as stopped.
    hub.stop(&running.task_id).expect("stop");
    assert!(matches!(
        att.command().await,
        Some(TaskCommand::Stop { .. })
    ));
    let mut batch = Vec::new();
    let mut r = result(seq + 1, v1::ResultStatus::Error);
    if let Some(Body::Result(res)) = &mut r.body {
        res.exit_code = -1;
    }
    att.ingest(&r, &mut batch).expect("result");
    att.persist(batch).await.expect("durable");
    att.acked(seq + 1, 1).expect("ack");
    att.finish();
    let ev = store.events(&running.task_id);
    assert_eq!(ev[ev.len() - 1].data["status"], "stopped");
    assert_eq!(
        store.stored_task(&running.task_id).expect("t").state,
        TaskState::Cancelled
    );
    assert!(matches!(
        hub.stop(&running.task_id),
        Err(HubError::UnknownTask(_))
    ));
}
