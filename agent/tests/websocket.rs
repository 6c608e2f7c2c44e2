//! The WebSocket transport (`wss://{gateway}/agent/ws`): the same protocol, one `Envelope` per
//! binary message, against a scripted tokio-tungstenite server with TLS.

mod support;

use std::time::Duration;

use orchestra_proto::v1::{frame, Frame, OutputKind, ResultStatus};
use support::agent::AgentBuilder;
use support::frames::{ack, assign, f, input, stop};
use support::ws_peer::WsPeer;

#[tokio::test]
async fn tasks_run_over_websocket_with_input_stop_and_acks() {
    let peer = WsPeer::start().await;
    let _agent = AgentBuilder::new(peer.addr)
        .set("transport", "\"ws\"")
        .start_with_ca(&peer.cert.cert_pem);
    let mut s = peer.accept().await;
    assert_eq!(s.path, "/agent/ws");
    assert_eq!(s.register.agent_id, support::peer::AGENT_ID);

    // A task with output and an exit code.
    s.send(
        "t-ws",
        Some(f(frame::Msg::Assign(assign(
            "t-ws",
            "custom",
            "for i in $(seq 1 500); do echo \"n $i\"; done; exit 4",
        )))),
        false,
    )
    .await;
    let run = s.run_to_result("t-ws").await;
    assert_eq!(run.seqs().first(), Some(&3));
    let texts = run.texts(OutputKind::Stdout);
    assert_eq!(texts.len(), 500);
    assert_eq!(texts[499], "n 500");
    assert_eq!(run.result().exit_code, 4);
    let end = s.next_for("t-ws").await;
    assert!(
        end.fin && end.frame.is_none(),
        "the agent ends the stream once the result is acked: {end:?}"
    );

    // Input, then stop, on two concurrent tasks.
    s.send(
        "t-in",
        Some(f(frame::Msg::Assign(assign(
            "t-in",
            "custom",
            "read -r x; echo \"got $x\"",
        )))),
        false,
    )
    .await;
    s.send(
        "t-stop",
        Some(f(frame::Msg::Assign(assign(
            "t-stop",
            "custom",
            "echo up; sleep 300",
        )))),
        false,
    )
    .await;
    s.send("t-in", Some(input(b"hi\n", false)), false).await;
    let run = s.run_to_result("t-in").await;
    assert_eq!(run.texts(OutputKind::Stdout), ["got hi"]);
    loop {
        let env = s.next_for("t-stop").await;
        let fr = env.frame.unwrap();
        let seq = support::frames::seq_of(&fr).unwrap();
        s.send("t-stop", Some(ack(seq)), false).await;
        if support::frames::item_of(&fr).is_some_and(|i| i.text == "up") {
            break;
        }
    }
    s.send("t-stop", Some(stop("enough")), false).await;
    let run = s.run_to_result("t-stop").await;
    assert_eq!(
        ResultStatus::try_from(run.result().status),
        Ok(ResultStatus::Stopped)
    );

    // Unknown tool: rejected, with fin.
    s.send(
        "t-bad",
        Some(f(frame::Msg::Assign(assign("t-bad", "nope", "x")))),
        false,
    )
    .await;
    let env = s.next_for("t-bad").await;
    assert!(env.fin);
    match env.frame {
        Some(Frame {
            msg: Some(frame::Msg::Rejected(r)),
        }) => assert_eq!(r.code, "AGENT_001"),
        other => panic!("expected TaskRejected, got {other:?}"),
    }
}

#[tokio::test]
async fn websocket_reconnect_resumes_held_output() {
    let peer = WsPeer::start().await;
    let agent = AgentBuilder::new(peer.addr)
        .set("transport", "\"ws\"")
        .start_with_ca(&peer.cert.cert_pem);
    let mut s = peer.accept().await;
    s.send(
        "t-r",
        Some(f(frame::Msg::Assign(assign(
            "t-r",
            "custom",
            "echo one; echo two",
        )))),
        false,
    )
    .await;
    // Take everything, ack nothing, and hang up.
    let mut seqs = Vec::new();
    while seqs.len() < 4 {
        let env = s.next_for("t-r").await;
        seqs.push(support::frames::seq_of(&env.frame.unwrap()).unwrap());
    }
    assert_eq!(seqs, [3, 4, 5, 6]);
    drop(s);
    assert!(
        agent
            .wait_log("disconnected from the gateway", Duration::from_secs(10))
            .await
    );
    let mut s = peer.accept().await;
    assert_eq!(s.register.running_tasks, ["t-r"]);
    let env = s.next_for("t-r").await;
    match env.frame {
        Some(Frame {
            msg: Some(frame::Msg::Resume(r)),
        }) => {
            assert_eq!(r.task_id, "t-r");
            assert_eq!(r.last_seq, 6);
        }
        other => panic!("expected TaskResume, got {other:?}"),
    }
    s.send("t-r", Some(ack(4)), false).await;
    let run = s.run_to_result("t-r").await;
    assert_eq!(run.seqs(), [5, 6]);
    assert_eq!(run.texts(OutputKind::Stdout), ["two"]);
}
