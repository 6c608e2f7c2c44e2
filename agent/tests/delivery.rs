//! Delivery across reconnects (DELIVERY.md invariants 1, 2 and 8): events are held until
//! acked, spilled to disk past the memory cap, and resent exactly above the gateway's ack after
//! a reconnect.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use orchestra_proto::v1::{Frame, OutputKind, ResultStatus};
use support::agent::AgentBuilder;
use support::frames::{ack, assign, item_of, result_of, seq_of, stop};
use support::peer::GatewayPeer;
use support::{pid_gone, poll_until};

fn spill_bytes(dir: &std::path::Path, task: &str) -> u64 {
    std::fs::metadata(dir.join(".spill").join(task))
        .map(|m| m.len())
        .unwrap_or(0)
}

#[tokio::test]
async fn withheld_acks_spill_to_disk_and_a_resume_resends_exactly_the_unacked_events() {
    let peer = GatewayPeer::start();
    let agent = AgentBuilder::new(peer.addr)
        .output("memory_per_task", "\"64KiB\"")
        .start(&peer);
    let session = peer.accept().await;
    let mut t = session
        .assign(assign(
            "t-resume",
            "custom",
            "for i in $(seq 1 10000); do echo \"line $i\"; done",
        ))
        .await;
    // Receive without acking: the agent sends what its memory holds (64 KiB ≈ 1,000 events)
    // and spills the rest.
    let mut first: BTreeMap<u64, Frame> = BTreeMap::new();
    while let Some(frame) = t.next_within(Duration::from_millis(500)).await {
        first.insert(seq_of(&frame).unwrap(), frame);
    }
    let received = first.len() as u64;
    assert!(received > 100, "{received} events before the window closed");
    assert!(
        received < 5_000,
        "unacked events in flight are bounded by the memory cap: {received}"
    );
    assert_eq!(
        first.keys().copied().collect::<Vec<_>>(),
        (3..3 + received).collect::<Vec<_>>()
    );
    let workdir = agent.workdir();
    assert!(
        poll_until(Duration::from_secs(10), || spill_bytes(
            &workdir, "t-resume"
        ) > 100_000)
        .await,
        "the rest of the output is spilled to {}",
        workdir.join(".spill/t-resume").display()
    );
    // Ack part of what arrived, then drop the connection.
    let acked = 3 + received / 2;
    t.send(&ack(acked)).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    session.drop_connection();

    // The agent reconnects, re-announces the task and resumes it on a stream of its own.
    let session = peer.accept().await;
    assert_eq!(session.register.running_tasks, ["t-resume"]);
    let (mut t, resume) = session.accept_resume().await;
    assert_eq!(resume.task_id, "t-resume");
    assert!(
        resume.last_seq >= 2 + received,
        "last_seq {} covers what was sent",
        resume.last_seq
    );
    t.send(&ack(acked)).await;
    let run = t.run_to_result(true).await;
    let seqs = run.seqs();
    assert_eq!(
        seqs[0],
        acked + 1,
        "the resend starts right above the gateway's ack"
    );
    assert_eq!(*seqs.last().unwrap(), 10_004);
    // Together: every line exactly once, in order.
    let mut lines: Vec<String> = first
        .range(..=acked)
        .filter_map(|(_, f)| item_of(f).map(|i| i.text.clone()))
        .collect();
    lines.extend(run.items().into_iter().map(|(_, i)| i.text.clone()));
    assert_eq!(lines.len(), 10_000);
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(l, &format!("line {}", i + 1));
    }
    assert_eq!(
        ResultStatus::try_from(run.result().status),
        Ok(ResultStatus::Success)
    );
    // Acked to the end: the spill file is gone, the stream ends.
    assert!(t.next().await.is_none());
    assert!(
        poll_until(Duration::from_secs(5), || !workdir
            .join(".spill/t-resume")
            .exists())
        .await
    );
}

#[tokio::test]
async fn a_result_is_kept_until_acked_even_across_a_reconnect() {
    let peer = GatewayPeer::start();
    let agent = AgentBuilder::new(peer.addr).start(&peer);
    let session = peer.accept().await;
    let mut t = session
        .assign(assign("t-keep", "custom", "echo one; echo two"))
        .await;
    // Read to the result, acking everything but the result.
    let result_seq = loop {
        let f = t.next().await.unwrap();
        let seq = seq_of(&f).unwrap();
        if result_of(&f).is_some() {
            break seq;
        }
        t.send(&ack(seq)).await;
    };
    assert_eq!(result_seq, 6, "accepted 3, one 4, two 5, result 6");
    session.drop_connection();
    let session = peer.accept().await;
    assert_eq!(session.register.running_tasks, ["t-keep"]);
    let (mut t, resume) = session.accept_resume().await;
    assert_eq!(resume.last_seq, 6);
    t.send(&ack(5)).await;
    let f = t.next().await.unwrap();
    assert_eq!(seq_of(&f), Some(6));
    assert_eq!(
        ResultStatus::try_from(result_of(&f).unwrap().status),
        Ok(ResultStatus::Success)
    );
    t.send(&ack(6)).await;
    // Acked: the task is forgotten — its stream ends, and the next register does not name it.
    assert!(t.next().await.is_none());
    assert!(
        agent
            .wait_log("task forgotten", Duration::from_secs(5))
            .await
    );
    session.drop_connection();
    let session = peer.accept().await;
    assert!(session.register.running_tasks.is_empty());
}

#[tokio::test]
async fn a_task_keeps_running_while_disconnected_and_a_stop_answer_drops_it() {
    let peer = GatewayPeer::start();
    let agent = AgentBuilder::new(peer.addr).start(&peer);
    let session = peer.accept().await;
    let mut t = session
        .assign(assign(
            "t-drop",
            "custom",
            "echo $$ > leader.pid; echo up; sleep 300",
        ))
        .await;
    loop {
        let f = t.next().await.unwrap();
        t.send(&ack(seq_of(&f).unwrap())).await;
        if item_of(&f).is_some_and(|i| i.text == "up") {
            break;
        }
    }
    let leader: i32 = std::fs::read_to_string(agent.workdir().join("t-drop/leader.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    session.drop_connection();
    let session = peer.accept().await;
    assert_eq!(session.register.running_tasks, ["t-drop"]);
    assert!(
        !pid_gone(leader),
        "the task runs on while the agent reconnects"
    );
    let (mut t, _) = session.accept_resume().await;
    t.send(&stop("task was cancelled while the agent was away"))
        .await;
    assert!(
        t.next().await.is_none(),
        "the agent drops the task and ends the stream"
    );
    assert!(poll_until(Duration::from_secs(10), || pid_gone(leader)).await);
}

#[tokio::test]
async fn output_produced_while_disconnected_is_delivered_after_the_resume() {
    let peer = GatewayPeer::start();
    let agent = AgentBuilder::new(peer.addr).start(&peer);
    let session = peer.accept().await;
    let mut t = session
        .assign(assign(
            "t-offline",
            "custom",
            "echo before; sleep 0.3; for i in 1 2 3; do echo \"after $i\"; done",
        ))
        .await;
    loop {
        let f = t.next().await.unwrap();
        t.send(&ack(seq_of(&f).unwrap())).await;
        if item_of(&f).is_some_and(|i| i.text == "before") {
            break;
        }
    }
    session.drop_connection();
    // The gateway is unreachable for a while (the agent's handshakes wait): the task finishes
    // meanwhile, its output and result held by the agent.
    assert!(
        agent
            .wait_log("task finished", Duration::from_secs(10))
            .await
    );
    let session = peer.accept().await;
    assert_eq!(session.register.running_tasks, ["t-offline"]);
    let (mut t, resume) = session.accept_resume().await;
    assert_eq!(
        resume.last_seq, 8,
        "accepted 3, before 4, after 5-7, result 8"
    );
    t.send(&ack(4)).await;
    let run = t.run_to_result(true).await;
    assert_eq!(run.seqs(), [5, 6, 7, 8]);
    assert_eq!(
        run.texts(OutputKind::Stdout),
        ["after 1", "after 2", "after 3"]
    );
    assert_eq!(
        ResultStatus::try_from(run.result().status),
        Ok(ResultStatus::Success)
    );
}
