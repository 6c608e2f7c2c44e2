//! Delivery under stress, end to end with a real agent: a slow `/ws` client is cut with
//! `SYS_001` (and its last seq) while a fast one gets everything, and resumes with `since`;
//! an agent frozen with SIGSTOP past the offline limit and thawed still gives the browser
//! every line exactly once.

mod realtime_support;

use std::time::Duration;

use realtime_support::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_client_is_cut_with_its_last_seq_while_a_fast_one_gets_everything() {
    // The default send_queue (1024 events).
    let stack = Stack::start(Opts::default()).await;
    let mut fast = stack.ws_user("hana").await;
    let session = fast.new_session().await;
    let mut slow = stack.ws_user("hana").await;
    let id = slow
        .send("session:join", json!({"session_id": session}))
        .await;
    assert_eq!(slow.reply(&id).await["type"], "session:joined");
    // ~12 MB of output: more than the socket buffers between the gateway and a client that
    // does not read.
    let n = 40_000;
    let pad = "x".repeat(300);
    let reply = fast
        .start(
            &session,
            &format!("for i in $(seq 1 {n}); do echo \"$i {pad}\"; done"),
        )
        .await;
    let task = reply["data"]["task_id"].as_str().expect("task").to_string();
    let mut seen = Seen::default();
    watch_ws(&mut fast, &task, &mut seen, None).await;
    assert_eq!(seen.lines.len(), n);
    for (i, s) in seen.seqs.iter().enumerate() {
        assert_eq!(*s, i as u64 + 1);
    }

    // The slow client reads now: what it was sent, then the error, then the close.
    let mut slow_seen = Seen::default();
    let mut cut = None;
    while let Some(v) = slow.recv(Duration::from_secs(10)).await {
        if v["type"] == "error" {
            cut = Some(v);
            break;
        }
        slow_seen.take(&task, v["type"].as_str().unwrap_or(""), &v["data"]);
    }
    let cut = cut.expect("the slow client got an error before the close");
    assert_eq!(cut["data"]["code"], "SYS_001", "{cut}");
    let last = cut["data"]["last_seq"][&task]
        .as_u64()
        .expect("last_seq of the task");
    assert_eq!(
        last,
        slow_seen.last_seq(),
        "last_seq is the last event it was sent"
    );
    assert!(
        (last as usize) < seen.seqs.len(),
        "cut before the end ({last})"
    );
    assert!(
        slow.recv(Duration::from_secs(5)).await.is_none(),
        "closed after the error"
    );

    // It resumes with since = last_seq and gets the rest exactly once.
    let mut again = stack.ws_user("hana").await;
    again
        .send("task:subscribe", json!({"task_id": task, "since": last}))
        .await;
    watch_ws(&mut again, &task, &mut slow_seen, None).await;
    assert_eq!(slow_seen.seqs, seen.seqs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_frozen_past_offline_then_thawed_loses_and_repeats_nothing() {
    let stack = Stack::start(Opts {
        agents_section: "offline_after_missed = 2".into(),
        ..Opts::default()
    })
    .await;
    let mut ws = stack.ws_user("ivan").await;
    let session = ws.new_session().await;
    let n = 3_000;
    let reply = ws
        .start(
            &session,
            &format!("for i in $(seq 1 {n}); do echo $i; sleep 0.001; done"),
        )
        .await;
    let task = reply["data"]["task_id"].as_str().expect("task").to_string();
    let mut seen = Seen::default();
    watch_ws(&mut ws, &task, &mut seen, Some(300)).await;
    let agent = stack.agent("worker-1");
    agent.freeze().expect("SIGSTOP");
    // Past offline_after_missed × heartbeat_interval (2 × 300 ms): the gateway drops it.
    hub::admin_until(&stack.gw, "/admin/agents", WAIT, |v| {
        v["agents"].as_array().is_some_and(|a| a.is_empty())
    })
    .await
    .expect("the frozen agent is marked offline");
    agent.thaw().expect("SIGCONT");
    watch_ws(&mut ws, &task, &mut seen, None).await;
    seen.assert_complete(n);
    assert_eq!(seen.result.as_ref().expect("result")["status"], "success");
}
