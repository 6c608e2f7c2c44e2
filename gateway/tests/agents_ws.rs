//! The agent protocol over WebSocket (`/agent/ws`, binary messages carrying `Envelope`s): the
//! same register, task stream and acks as QUIC, and bad input on the WebSocket itself.

mod agent_support;

use agent_support::*;
use futures::{SinkExt, StreamExt};
use orchestra_proto::v1::{frame::Msg, Envelope, Frame};
use orchestra_proto::{decode_frame, encode_frame};
use testkit::agent::hub::{self, AgentKey};
use testkit::agent::{AgentClient, ConnectError};
use tokio_tungstenite::tungstenite::Message;

async fn ws_agent(
    gw: &testkit::GatewayProcess,
    key: &AgentKey,
) -> Result<AgentClient, ConnectError> {
    let pem = gw.self_signed_cert_pem().expect("cert");
    AgentClient::connect_ws(&hub::ws_url(gw), Some(&pem), &key.spec()).await
}

/// The next `Error` envelope on the control stream of a raw WebSocket.
async fn error_envelope(ws: &mut testkit::agent::ws::Ws) -> (String, String) {
    loop {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("answer in time");
        match msg {
            Some(Ok(Message::Binary(b))) => {
                let env: Envelope = decode_frame(&b, 1 << 20).expect("envelope");
                if let Some(Frame {
                    msg: Some(Msg::Error(e)),
                }) = env.frame
                {
                    return (e.code, e.message);
                }
            }
            other => panic!("expected an Error envelope, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_over_websocket() {
    let keys = AgentKey::many(&["ws-1"]);
    let gw = start(&keys, "").await;
    let mut agent = ws_agent(&gw, &keys[0]).await.expect("registers over ws");
    let listed = wait_agents(&gw, &["ws-1"]).await;
    assert_eq!(listed["agents"][0]["transport"], "ws");
    let task = start_custom(&gw, "over ws").await;
    let mut s = agent.next_task(WAIT).await.expect("assign");
    assert_eq!(s.task_id, task);
    let last = run_to_end(&mut s, 500).await;
    let ev = events_until_end(&gw, &task, WAIT).await;
    assert_eq!(ev.len() as u64, last + 1);
    for (i, e) in ev.iter().enumerate() {
        assert_eq!(e["data"]["seq"], i as u64 + 1);
    }
    assert_eq!(
        metric(&gw, "orchestra_agents_connected{transport=\"ws\"} ").await,
        1.0
    );
    // Bad credentials over WebSocket too.
    let mut bad = keys[0].spec();
    bad.api_key = "nope".into();
    let pem = gw.self_signed_cert_pem().expect("cert");
    match AgentClient::connect_ws(&hub::ws_url(&gw), Some(&pem), &bad).await {
        Err(ConnectError::Refused { code, .. }) => assert_eq!(code, "AUTH_001"),
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("registered with a bad key"),
    }
    assert_no_lost_writes(&gw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_and_malformed_messages_close_the_websocket() {
    let keys = AgentKey::many(&["ws-1"]);
    let gw = start(&keys, "").await;
    let pem = gw.self_signed_cert_pem().expect("cert");
    let mut ws = testkit::agent::ws::connect(&hub::ws_url(&gw), Some(&pem))
        .await
        .expect("upgrade");
    ws.send(Message::Text("hello".into())).await.expect("send");
    let (code, message) = error_envelope(&mut ws).await;
    assert_eq!(code, "PARAM_001");
    assert!(message.contains("binary"), "{message}");

    let mut ws = testkit::agent::ws::connect(&hub::ws_url(&gw), Some(&pem))
        .await
        .expect("upgrade");
    ws.send(Message::Binary(vec![0x05, 1, 2].into()))
        .await
        .expect("send");
    let (code, message) = error_envelope(&mut ws).await;
    assert_eq!(code, "PARAM_001");
    assert!(message.contains("malformed envelope"), "{message}");
    // The close follows.
    loop {
        match tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("closed in time")
        {
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
            Some(Ok(_)) => {}
        }
    }
    // A register envelope that is fine except for being sent as a task stream.
    let mut ws = testkit::agent::ws::connect(&hub::ws_url(&gw), Some(&pem))
        .await
        .expect("upgrade");
    let env = Envelope {
        task_id: "t".into(),
        frame: Some(keys[0].spec().register()),
        fin: false,
    };
    ws.send(Message::Binary(encode_frame(&env).into()))
        .await
        .expect("send");
    // Dropped (no such stream); then nothing registers and the first control frame decides.
    let env = Envelope {
        task_id: String::new(),
        frame: Some(testkit::agent::frame(Msg::Ping(Default::default()))),
        fin: false,
    };
    ws.send(Message::Binary(encode_frame(&env).into()))
        .await
        .expect("send");
    let (code, message) = error_envelope(&mut ws).await;
    assert_eq!(code, "PARAM_001");
    assert!(message.contains("must be Register"), "{message}");
    // A plain GET on the route is not an upgrade: 400.
    let (status, body) = hub::simple_request("GET", &gw.http_url("/agent/ws"), None)
        .await
        .expect("get");
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("PARAM_001"));
    wait_agents(&gw, &[]).await;
    assert_no_lost_writes(&gw);
}
