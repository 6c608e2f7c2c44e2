//! The agent protocol end to end with scripted agents (testkit): register, a task's stream
//! (assign, accept, output, result, acks), events through the hub, bad input on every stream.

mod agent_support;

use std::time::Duration;

use agent_support::*;
use orchestra_proto::v1::{frame::Msg, ResultStatus};
use serde_json::json;
use testkit::agent::hub::AgentKey;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_run_a_task_and_read_its_events() {
    let keys = AgentKey::many(&["worker-1"]);
    let gw = start(&keys, "").await;
    let mut agent = connect(&gw, &keys[0]).await;
    assert!(!agent.registered.connection_id.is_empty());
    assert_eq!(agent.registered.heartbeat_interval_ms, 10_000);
    let listed = wait_agents(&gw, &["worker-1"]).await;
    assert_eq!(listed["agents"][0]["transport"], "quic");
    assert_eq!(listed["agents"][0]["capabilities"], json!(["custom"]));

    let task = start_custom(&gw, "seq 1 100").await;
    let mut stream = agent.next_task(WAIT).await.expect("assignment");
    let assign = stream.assign.clone().expect("TaskAssign");
    assert_eq!(assign.task_id, task);
    assert_eq!(assign.prompt, "seq 1 100");
    assert_eq!(
        assign.first_seq, 2,
        "the gateway's `starting` event is seq 1"
    );
    stream.accept(4242).await.expect("accept");
    let mut seq = assign.first_seq;
    for i in 1..=100 {
        seq += 1;
        stream
            .output(seq, &format!("line {i}"))
            .await
            .expect("output");
    }
    seq += 1;
    stream
        .result(seq, ResultStatus::Success, 0)
        .await
        .expect("result");
    stream.wait_ack(seq, WAIT).await.expect("result acked");
    stream.tx.finish().await;
    // The gateway finishes its side once everything is durable.
    loop {
        match stream.recv(WAIT).await {
            Ok(None) => break,
            Ok(Some(f)) => assert!(matches!(f.msg, Some(Msg::Ack(_))), "{f:?}"),
            Err(e) => panic!("{e}"),
        }
    }
    let events = events_until_end(&gw, &task, WAIT).await;
    let seqs: Vec<u64> = events
        .iter()
        .map(|e| e["data"]["seq"].as_u64().expect("seq"))
        .collect();
    assert_eq!(seqs, (1..=seq + 1).collect::<Vec<_>>());
    assert_eq!(events[0]["data"]["status"], "starting");
    assert_eq!(events[1]["data"]["status"], "running");
    assert_eq!(events[2]["type"], "worker:output");
    assert_eq!(events[2]["data"]["text"], "line 1");
    assert_eq!(events[2]["data"]["kind"], "stdout");
    assert_eq!(events[seqs.len() - 2]["type"], "task:result");
    assert_eq!(events[seqs.len() - 1]["data"]["status"], "completed");
    assert!(metric(&gw, "orchestra_agent_events_acked_total ").await >= 102.0);
    assert_eq!(
        metric(&gw, "orchestra_agents_connected{transport=\"quic\"} ").await,
        1.0
    );
    drop(agent);
    wait_agents(&gw, &[]).await;
    let _ = Duration::ZERO;
    assert_no_lost_writes(&gw);
}

/// The error a stream or connection ended with.
async fn error_on(rx: &mut testkit::agent::StreamRx) -> (String, String) {
    loop {
        match tokio::time::timeout(WAIT, rx.recv()).await {
            Ok(Ok(Some(f))) => {
                if let Some(Msg::Error(e)) = f.msg {
                    return (e.code, e.message);
                }
            }
            other => panic!("expected an Error frame, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_first_frames_and_garbage_close_the_connection() {
    let keys = AgentKey::many(&["worker-1"]);
    let gw = start(&keys, "").await;
    let ep = endpoint(&gw);
    // A heartbeat before Register.
    let conn = ep.raw().await.expect("connect");
    let (tx, rx) = conn.open_bi().await.expect("stream");
    let mut tx = testkit::agent::StreamTx::Quic(tx);
    let mut rx = testkit::agent::StreamRx::Quic(orchestra_proto::FrameReader::new(rx));
    tx.send(&testkit::agent::frame(Msg::Heartbeat(Default::default())))
        .await
        .expect("send");
    let (code, message) = error_on(&mut rx).await;
    assert_eq!(code, "PARAM_001");
    assert!(message.contains("must be Register"), "{message}");
    conn.closed().await;
    // Garbage bytes (a length prefix that never ends).
    let conn = ep.raw().await.expect("connect");
    let (tx, rx) = conn.open_bi().await.expect("stream");
    let mut tx = testkit::agent::StreamTx::Quic(tx);
    let mut rx = testkit::agent::StreamRx::Quic(orchestra_proto::FrameReader::new(rx));
    tx.send_raw(&[0xff; 12]).await.expect("send");
    let (code, message) = error_on(&mut rx).await;
    assert_eq!(code, "PARAM_001");
    assert!(message.contains("length prefix"), "{message}");
    conn.closed().await;
    // An oversized frame is refused from its length prefix, before its body is buffered.
    let conn = ep.raw().await.expect("connect");
    let (tx, rx) = conn.open_bi().await.expect("stream");
    let mut tx = testkit::agent::StreamTx::Quic(tx);
    let mut rx = testkit::agent::StreamRx::Quic(orchestra_proto::FrameReader::new(rx));
    let mut prefix = Vec::new();
    prost::encoding::encode_varint(64 * 1024 * 1024, &mut prefix);
    tx.send_raw(&prefix).await.expect("send");
    let (code, message) = error_on(&mut rx).await;
    assert_eq!(code, "PARAM_001");
    assert!(message.contains("exceeds the limit"), "{message}");
    conn.closed().await;
    // A valid frame of the wrong kind on the control stream after registering.
    let mut agent = connect(&gw, &keys[0]).await;
    agent
        .send_control(testkit::agent::frame(Msg::Accepted(Default::default())))
        .await
        .expect("send");
    let f = agent
        .control_frame(WAIT)
        .await
        .expect("frame")
        .expect("some");
    assert!(
        matches!(f.msg, Some(Msg::Error(ref e)) if e.code == "PARAM_001" && e.message.contains("TaskAccepted")),
        "{f:?}"
    );
    agent.closed(WAIT).await.expect("closed");
    wait_agents(&gw, &[]).await;
    assert!(metric(&gw, "orchestra_agent_bad_frames_total ").await >= 4.0);
    // The gateway is fine: a good agent still registers.
    let _ok = connect(&gw, &keys[0]).await;
    wait_agents(&gw, &["worker-1"]).await;
    assert_no_lost_writes(&gw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_stream_rule_breaks_fail_the_task_with_a_clear_error() {
    let keys = AgentKey::many(&["worker-1"]);
    let gw = start(&keys, "").await;
    let mut agent = connect(&gw, &keys[0]).await;
    wait_agents(&gw, &["worker-1"]).await;

    // An event before TaskAccepted.
    let t1 = start_custom(&gw, "one").await;
    let mut s = agent.next_task(WAIT).await.expect("assign");
    s.output(s.first_seq() + 1, "early").await.expect("send");
    let (code, message) = error_on(&mut s.rx).await;
    assert_eq!(code, "PARAM_001");
    assert!(message.contains("before TaskAccepted"), "{message}");
    let ev = events_until_end(&gw, &t1, WAIT).await;
    let last = ev.last().expect("final event");
    assert_eq!(last["data"]["status"], "error");
    assert!(
        last["data"]["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("protocol error"),
        "{last}"
    );

    // A seq gap after accepting.
    let t2 = start_custom(&gw, "two").await;
    let mut s = agent.next_task(WAIT).await.expect("assign");
    s.accept(1).await.expect("accept");
    s.output(s.first_seq() + 1, "ok").await.expect("send");
    s.output(s.first_seq() + 3, "skipped one")
        .await
        .expect("send");
    let (code, message) = error_on(&mut s.rx).await;
    assert_eq!(code, "PARAM_001");
    assert!(message.contains("seq gap"), "{message}");
    let ev = events_until_end(&gw, &t2, WAIT).await;
    assert!(ev.iter().any(|e| e["data"]["text"] == "ok"));
    assert!(!ev.iter().any(|e| e["data"]["text"] == "skipped one"));

    // A duplicate is dropped and acked again (not an error); a frame of the wrong direction is.
    let t3 = start_custom(&gw, "three").await;
    let mut s = agent.next_task(WAIT).await.expect("assign");
    s.accept(1).await.expect("accept");
    let seq = s.first_seq() + 1;
    s.output(seq, "once").await.expect("send");
    s.wait_ack(seq, WAIT).await.expect("ack");
    s.output(seq, "once").await.expect("resend");
    s.acked = 0;
    s.wait_ack(seq, WAIT).await.expect("acked again");
    s.tx.send(&testkit::agent::frame(Msg::Assign(Default::default())))
        .await
        .expect("send");
    let (code, message) = error_on(&mut s.rx).await;
    assert_eq!(code, "PARAM_001");
    assert!(message.contains("TaskAssign"), "{message}");
    let ev = events_until_end(&gw, &t3, WAIT).await;
    assert_eq!(ev.iter().filter(|e| e["data"]["text"] == "once").count(), 1);

    // A stream the agent opens must start with TaskResume; a resume of an unknown task is
    // answered with TaskStop.
    let (mut tx, mut rx) = agent.open_stream("x").await.expect("stream");
    tx.send(&testkit::agent::output_event(1, "stray"))
        .await
        .expect("send");
    let (code, message) = error_on(&mut rx).await;
    assert_eq!(code, "PARAM_001");
    assert!(message.contains("TaskResume"), "{message}");
    let mut r = agent.resume("no-such-task", 5).await.expect("resume");
    match r.recv(WAIT).await.expect("answer") {
        Some(f) => assert!(
            matches!(f.msg, Some(Msg::Stop(ref s)) if s.reason.contains("unknown task")),
            "{f:?}"
        ),
        None => panic!("no answer"),
    }
    // The connection survived all of it.
    wait_agents(&gw, &["worker-1"]).await;
    assert!(metric(&gw, "orchestra_agent_protocol_errors_total ").await >= 3.0);
    assert_no_lost_writes(&gw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missed_heartbeats_close_the_connection_and_a_duplicate_id_replaces() {
    let keys = AgentKey::many(&["worker-1"]);
    let gw = start(
        &keys,
        "heartbeat_interval = \"200ms\"\noffline_after_missed = 2",
    )
    .await;
    let mut agent = connect(&gw, &keys[0]).await;
    assert_eq!(agent.registered.heartbeat_interval_ms, 200);
    wait_agents(&gw, &["worker-1"]).await;
    agent.pause_heartbeats(true);
    let f = agent
        .control_frame(WAIT)
        .await
        .expect("frame")
        .expect("some");
    match f.msg {
        Some(Msg::Error(e)) => {
            assert_eq!(e.code, "AGENT_001");
            assert!(e.message.contains("no heartbeat"), "{}", e.message);
        }
        other => panic!("{other:?}"),
    }
    agent.closed(WAIT).await.expect("closed");
    wait_agents(&gw, &[]).await;
    assert_eq!(metric(&gw, "orchestra_agent_offline_total ").await, 1.0);

    // A second connection with the same id replaces the first, which is told why.
    let mut first = connect(&gw, &keys[0]).await;
    let second = connect(&gw, &keys[0]).await;
    let f = first
        .control_frame(WAIT)
        .await
        .expect("frame")
        .expect("some");
    assert!(
        matches!(f.msg, Some(Msg::Error(ref e)) if e.code == "AGENT_001" && e.message.contains("replaced")),
        "{f:?}"
    );
    first.closed(WAIT).await.expect("closed");
    let listed = wait_agents(&gw, &["worker-1"]).await;
    assert_eq!(
        listed["agents"][0]["connection_id"],
        second.registered.connection_id.as_str()
    );
    assert_eq!(metric(&gw, "orchestra_agent_replaced_total ").await, 1.0);
    // The replaced connection going away later does not unregister the new one.
    drop(first);
    tokio::time::sleep(Duration::from_millis(300)).await;
    wait_agents(&gw, &["worker-1"]).await;
    assert_no_lost_writes(&gw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_lines_arrive_complete_and_in_order_on_two_tasks_at_once() {
    let keys = AgentKey::many(&["worker-1"]);
    let gw = start(&keys, "").await;
    let mut agent = connect(&gw, &keys[0]).await;
    wait_agents(&gw, &["worker-1"]).await;
    let t1 = start_custom(&gw, "seq 1 10000").await;
    let t2 = start_custom(&gw, "seq 1 10000").await;
    let s1 = agent.next_task(WAIT).await.expect("assign 1");
    let s2 = agent.next_task(WAIT).await.expect("assign 2");
    // Both tasks stream at the same time on their own streams.
    let run = |mut s: testkit::agent::TaskStream| async move {
        s.accept(1).await.expect("accept");
        let mut seq = s.first_seq();
        for i in 1..=10_000 {
            seq += 1;
            s.output(seq, &i.to_string()).await.expect("output");
        }
        seq += 1;
        s.result(seq, ResultStatus::Success, 0)
            .await
            .expect("result");
        s.wait_ack(seq, Duration::from_secs(60))
            .await
            .expect("acked");
        s.tx.finish().await;
    };
    tokio::join!(run(s1), run(s2));
    for task in [t1, t2] {
        let ev = events_until_end(&gw, &task, Duration::from_secs(60)).await;
        let lines: Vec<&str> = ev
            .iter()
            .filter(|e| e["type"] == "worker:output")
            .map(|e| e["data"]["text"].as_str().expect("text"))
            .collect();
        let want: Vec<String> = (1..=10_000).map(|i| i.to_string()).collect();
        assert_eq!(lines, want);
        let seqs: Vec<u64> = ev
            .iter()
            .map(|e| e["data"]["seq"].as_u64().expect("seq"))
            .collect();
        assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    }
    assert_no_lost_writes(&gw);
}
