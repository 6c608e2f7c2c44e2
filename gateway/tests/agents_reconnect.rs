//! Reconnects (DELIVERY 8) with a scripted agent: a task survives its agent's connection, the
//! agent resumes it and resends what was not acked, every item is stored exactly once; a task
//! whose agent does not come back in time fails with a clear reason.

mod agent_support;

use std::collections::HashMap;
use std::time::Duration;

use agent_support::*;
use orchestra_proto::v1::{frame::Msg, ResultStatus};
use testkit::agent::hub::AgentKey;
use testkit::agent::AgentClient;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_after_a_lost_connection_stores_every_line_once() {
    let keys = AgentKey::many(&["a"]);
    let gw = start(
        &keys,
        "heartbeat_interval = \"200ms\"\noffline_after_missed = 3",
    )
    .await;
    let mut agent = connect(&gw, &keys[0]).await;
    wait_agents(&gw, &["a"]).await;
    let task = start_custom(&gw, "seq 1 300").await;
    let mut s = agent.next_task(WAIT).await.expect("assign");
    s.accept(1).await.expect("accept");
    let first = s.first_seq();
    let mut seq = first;
    for i in 1..=100 {
        seq += 1;
        s.output(seq, &format!("line {i}")).await.expect("output");
    }
    s.wait_ack(seq, WAIT).await.expect("first 100 acked");
    // 50 more that the agent will not see acked: the connection goes away at once.
    for i in 101..=150 {
        seq += 1;
        s.output(seq, &format!("line {i}")).await.expect("output");
    }
    drop(s);
    drop(agent);
    wait_agents(&gw, &[]).await;
    let t = testkit::agent::hub::admin_json(&gw.admin_url(&format!("/admin/tasks/{task}")))
        .await
        .expect("task");
    assert_eq!(t["state"], "orphaned", "{t}");

    // The agent comes back, re-announces the task and resumes it from what is durable.
    let mut spec = keys[0].spec();
    spec.running_tasks = vec![task.clone()];
    let agent = AgentClient::connect_quic(&endpoint(&gw), &spec)
        .await
        .expect("reconnect");
    let mut r = agent.resume(&task, seq).await.expect("resume");
    let ack = match r.recv(WAIT).await.expect("answer") {
        Some(f) => match f.msg {
            Some(Msg::Ack(a)) => a.seq,
            other => panic!("expected OutputAck, got {other:?}"),
        },
        None => panic!("stream ended"),
    };
    assert!(
        (first + 100..=seq).contains(&ack),
        "ack {ack} within what was sent"
    );
    // Resend everything above the ack (some of it may be in the backend already), then the rest.
    let mut resend = ack;
    while resend < seq {
        resend += 1;
        r.output(resend, &format!("line {}", resend - first))
            .await
            .expect("resend");
    }
    for i in 151..=300 {
        seq += 1;
        r.output(seq, &format!("line {i}")).await.expect("output");
    }
    seq += 1;
    r.result(seq, ResultStatus::Success, 0)
        .await
        .expect("result");
    r.wait_ack(seq, WAIT).await.expect("all acked");
    r.tx.finish().await;
    let ev = events_until_end(&gw, &task, WAIT).await;
    let seqs: Vec<u64> = ev
        .iter()
        .map(|e| e["data"]["seq"].as_u64().expect("seq"))
        .collect();
    assert_eq!(
        seqs,
        (1..=seq + 1).collect::<Vec<_>>(),
        "every seq once, in order"
    );
    let mut lines: HashMap<String, usize> = HashMap::new();
    for e in ev.iter().filter(|e| e["type"] == "worker:output") {
        *lines
            .entry(e["data"]["text"].as_str().expect("text").to_string())
            .or_default() += 1;
    }
    assert_eq!(lines.len(), 300);
    assert!(lines.values().all(|n| *n == 1));
    assert_eq!(ev.last().expect("end")["data"]["status"], "completed");
    assert_no_lost_writes(&gw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_that_does_not_come_back_fails_its_task_after_the_grace() {
    let keys = AgentKey::many(&["a"]);
    let gw = start(&keys, "reconnect_grace = \"500ms\"").await;
    let mut agent = connect(&gw, &keys[0]).await;
    wait_agents(&gw, &["a"]).await;
    let task = start_custom(&gw, "sleep 1000").await;
    let mut s = agent.next_task(WAIT).await.expect("assign");
    s.accept(1).await.expect("accept");
    s.output(s.first_seq() + 1, "started")
        .await
        .expect("output");
    s.wait_ack(s.first_seq() + 1, WAIT).await.expect("ack");
    drop(s);
    drop(agent);
    let ev = events_until_end(&gw, &task, WAIT).await;
    let end = ev.last().expect("end");
    assert_eq!(end["data"]["status"], "error");
    let reason = end["data"]["reason"].as_str().expect("reason");
    assert!(
        reason.contains("agent a did not come back within"),
        "{reason}"
    );
    assert_eq!(
        metric(&gw, "orchestra_agent_grace_expired_total ").await,
        1.0
    );

    // An agent that reconnects without re-announcing its task: the task fails at once.
    let mut agent = connect(&gw, &keys[0]).await;
    let task = start_custom(&gw, "sleep 1000").await;
    agent
        .next_task(WAIT)
        .await
        .expect("assign")
        .accept(1)
        .await
        .expect("accept");
    drop(agent);
    wait_agents(&gw, &[]).await;
    let _again = connect(&gw, &keys[0]).await;
    let ev = events_until_end(&gw, &task, Duration::from_secs(2)).await;
    let reason = ev.last().expect("end")["data"]["reason"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(reason.contains("without the task"), "{reason}");
    assert_no_lost_writes(&gw);
}
