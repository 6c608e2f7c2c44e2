//! Register, heartbeats and ping/pong against a scripted gateway over QUIC.

mod support;

use std::time::Duration;

use orchestra_proto::v1::{frame, Error as ErrorFrame, Frame, Ping, Pong};
use support::agent::AgentBuilder;
use support::frames::f;
use support::peer::{GatewayPeer, AGENT_ID, API_KEY};

#[tokio::test]
async fn registers_with_a_signed_register_and_heartbeats_with_system_information() {
    let peer = GatewayPeer::start();
    let agent = AgentBuilder::new(peer.addr)
        .set("name", "\"build-box\"")
        .set("capabilities", r#"["custom", "claude"]"#)
        .set("metadata", r#"{ region = "eu-west" }"#)
        .set("max_tasks", "3")
        .tool(
            "claude",
            r#"["claude", "-p", "{prompt}", "--output-format", "stream-json"]"#,
        )
        .start(&peer);
    let pending = peer.accept_register().await;
    let r = &pending.register;
    assert_eq!(r.protocol_version, 1);
    assert_eq!(r.agent_id, AGENT_ID);
    assert_eq!(r.api_key, API_KEY);
    assert_eq!(r.name, "build-box");
    assert_eq!(r.capabilities, ["custom", "claude"]);
    assert_eq!(r.max_tasks, 3);
    assert_eq!(r.version, env!("CARGO_PKG_VERSION"));
    assert_eq!(
        r.metadata.get("region").map(String::as_str),
        Some("eu-west")
    );
    assert!(r.running_tasks.is_empty());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!(
        (r.timestamp - now).abs() <= 5,
        "timestamp in seconds: {}",
        r.timestamp
    );
    assert_eq!(r.signature.len(), 64, "hex HMAC-SHA256");
    // The gateway's own verifier accepts it, and refuses it when replayed.
    peer.verify(r).expect("valid signature");
    assert!(
        peer.verify(r).is_err(),
        "the same nonce cannot be used twice"
    );

    let mut session = pending.registered(200).await;
    // Heartbeats come every 200 ms with this machine's figures; the agent pings after each.
    let mut heartbeats = 0;
    let mut agent_ping = None;
    let deadline = tokio::time::Instant::now() + support::WAIT;
    while heartbeats < 2 || agent_ping.is_none() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "heartbeats and a ping"
        );
        match session
            .control
            .next()
            .await
            .expect("control stream open")
            .msg
        {
            Some(frame::Msg::Heartbeat(hb)) => {
                heartbeats += 1;
                assert!(hb.memory_total_bytes > 0);
                assert!(hb.memory_used_bytes <= hb.memory_total_bytes);
                assert!(hb.disk_total_bytes > 0);
                assert!((0.0..=100.0).contains(&hb.cpu_percent));
                assert!(hb.load_average >= 0.0);
                assert_eq!(hb.running_tasks, 0);
            }
            Some(frame::Msg::Ping(p)) => agent_ping = Some(p.id),
            other => panic!("unexpected {other:?}"),
        }
    }
    session
        .control
        .send(&f(frame::Msg::Pong(Pong {
            id: agent_ping.unwrap(),
        })))
        .await;
    // The gateway's ping is answered with the same id.
    session
        .control
        .send(&f(frame::Msg::Ping(Ping { id: 4242 })))
        .await;
    // Heartbeats keep coming: bound the wait as a whole.
    let pong = tokio::time::timeout(support::WAIT, async {
        loop {
            match session
                .control
                .next()
                .await
                .expect("control stream open")
                .msg
            {
                Some(frame::Msg::Pong(p)) => return p.id,
                Some(frame::Msg::Heartbeat(_)) | Some(frame::Msg::Ping(_)) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
    })
    .await
    .expect("a pong");
    assert_eq!(pong, 4242);
    assert!(agent.wait_log("registered", Duration::from_secs(5)).await);
}

#[tokio::test]
async fn every_connection_signs_a_fresh_nonce() {
    let peer = GatewayPeer::start();
    let _agent = AgentBuilder::new(peer.addr).start(&peer);
    let first = peer.accept().await;
    let nonce = first.register.nonce.clone();
    first.drop_connection();
    // The reconnect's register passes the same verifier (no replay) with a new nonce.
    let second = peer.accept().await;
    assert_ne!(second.register.nonce, nonce);
}

#[tokio::test]
async fn a_refused_register_is_logged_and_retried_with_backoff() {
    let peer = GatewayPeer::start();
    let agent = AgentBuilder::new(peer.addr).start(&peer);
    for _ in 0..3 {
        let mut pending = peer.accept_register().await;
        pending
            .control
            .send(&f(frame::Msg::Error(ErrorFrame {
                code: "AUTH_001".into(),
                message: "signature does not match".into(),
            })))
            .await;
        // The agent closes the connection itself.
        let closed = tokio::time::timeout(Duration::from_secs(10), pending.conn.closed()).await;
        assert!(closed.is_ok(), "the agent closes a refused connection");
    }
    let refused = agent.log_lines("refused the register");
    assert!(refused.len() >= 2, "{:?}", agent.logs());
    assert_eq!(refused[0]["level"], "ERROR");
    assert_eq!(refused[0]["code"], "AUTH_001");
    assert_eq!(refused[0]["reason"], "signature does not match");
}

#[tokio::test]
async fn a_silent_gateway_is_detected_and_the_agent_reconnects() {
    let peer = GatewayPeer::start();
    let agent = AgentBuilder::new(peer.addr).start(&peer);
    // Registered with a 200 ms heartbeat, then never a word (no pong): after three intervals of
    // silence the agent drops the connection and dials again.
    let first = peer.accept().await;
    let second = peer.accept().await;
    assert_ne!(first.register.nonce, second.register.nonce);
    assert!(
        agent
            .wait_log("nothing heard from the gateway", Duration::from_secs(5))
            .await,
        "{:?}",
        agent.logs()
    );
    drop(first);
}

#[tokio::test]
async fn frames_that_are_not_protocol_close_the_stream_with_param_001() {
    let peer = GatewayPeer::start();
    let _agent = AgentBuilder::new(peer.addr).start(&peer);
    let session = peer.accept().await;
    // A stream whose first frame is not TaskAssign.
    let (send, recv) = session.conn.open_bi().await.unwrap();
    let mut s = support::peer::PeerStream::new(send, recv);
    s.send(&support::frames::ack(1)).await;
    match s.next().await {
        Some(Frame {
            msg: Some(frame::Msg::Error(e)),
        }) => assert_eq!(e.code, "PARAM_001"),
        other => panic!("expected Error PARAM_001, got {other:?}"),
    }
    // A length prefix above MAX_FRAME.
    let (send, recv) = session.conn.open_bi().await.unwrap();
    let mut s = support::peer::PeerStream::new(send, recv);
    let mut huge = Vec::new();
    prost::encoding::encode_varint(64 << 20, &mut huge);
    s.send_raw(&huge).await;
    match s.next().await {
        Some(Frame {
            msg: Some(frame::Msg::Error(e)),
        }) => {
            assert_eq!(e.code, "PARAM_001");
            assert!(e.message.contains("exceeds the limit"), "{}", e.message);
        }
        other => panic!("expected Error PARAM_001, got {other:?}"),
    }
    // Garbage that is not a protobuf message.
    let (send, recv) = session.conn.open_bi().await.unwrap();
    let mut s = support::peer::PeerStream::new(send, recv);
    s.send_raw(&[5, 0xff, 0xff, 0xff, 0xff, 0xff]).await;
    match s.next().await {
        Some(Frame {
            msg: Some(frame::Msg::Error(e)),
        }) => assert_eq!(e.code, "PARAM_001"),
        other => panic!("expected Error PARAM_001, got {other:?}"),
    }
    // The connection itself is fine: a task still runs.
    let mut t = session
        .assign(support::frames::assign(
            "after-garbage",
            "custom",
            "echo still here",
        ))
        .await;
    let run = t.run_to_result(true).await;
    assert_eq!(
        run.texts(orchestra_proto::v1::OutputKind::Stdout),
        ["still here"]
    );
}

#[tokio::test]
async fn acks_on_a_task_stream_are_signs_of_life_too() {
    let peer = GatewayPeer::start();
    let agent = AgentBuilder::new(peer.addr).start(&peer);
    // Registered with a 200 ms heartbeat, then silent on the control stream (no pong); but a
    // task streams for 2.5 s and every event is acked on its stream. The agent must hear the
    // acks: silence is measured over all streams (1.6 s here), so the connection stays up.
    let session = peer.accept().await;
    let mut task = session
        .assign(support::frames::assign(
            "t-alive",
            "custom",
            "for i in $(seq 1 25); do echo $i; sleep 0.1; done",
        ))
        .await;
    let run = task.run_to_result(true).await;
    let outputs = run
        .frames
        .iter()
        .filter(|f| matches!(f.msg, Some(frame::Msg::Event(_))))
        .count();
    assert!(outputs >= 25, "{outputs} events; {:?}", agent.logs());
    assert!(
        !agent
            .logs()
            .iter()
            .any(|l| l.contains("nothing heard from the gateway")),
        "acked output kept the connection alive: {:?}",
        agent.logs()
    );
    // Once the acks stop, silence is noticed as before.
    assert!(
        agent
            .wait_log("nothing heard from the gateway", Duration::from_secs(5))
            .await,
        "{:?}",
        agent.logs()
    );
}
