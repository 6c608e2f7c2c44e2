//! Reconnects: exponential backoff with jitter while the gateway refuses or is away, and a
//! new session once it is back.

mod support;

use std::time::Duration;

use support::agent::AgentBuilder;
use support::peer::GatewayPeer;

#[tokio::test]
async fn backoff_grows_to_its_cap_with_jitter_while_the_gateway_drops_every_connection() {
    let peer = GatewayPeer::start();
    let agent = AgentBuilder::new(peer.addr)
        .reconnect("base", "\"100ms\"")
        .reconnect("max", "\"400ms\"")
        .start(&peer);
    // The "gateway" closes every connection as soon as it is made, for 3 seconds.
    let window = tokio::time::Instant::now() + Duration::from_secs(3);
    let mut attempts = 0;
    while tokio::time::Instant::now() < window {
        let Ok(Some(incoming)) =
            tokio::time::timeout_at(window, async { Some(peer_accept(&peer).await) }).await
        else {
            break;
        };
        attempts += 1;
        incoming.close(0u32.into(), b"go away");
    }
    // Without backoff this would be hundreds; with 50-400 ms delays it is a handful.
    assert!((4..=40).contains(&attempts), "{attempts} attempts in 3 s");
    // Each delay lies in [ceiling / 2, ceiling], the ceiling doubling from 100 ms to 400 ms.
    let delays: Vec<(u64, u64)> = agent
        .log_lines("reconnecting after a backoff delay")
        .iter()
        .map(|l| {
            (
                l["delay_ms"].as_u64().unwrap(),
                l["ceiling_ms"].as_u64().unwrap(),
            )
        })
        .collect();
    assert!(delays.len() >= 4, "{delays:?}");
    let ceilings: Vec<u64> = delays.iter().map(|d| d.1).collect();
    assert_eq!(&ceilings[..4], [100, 200, 400, 400]);
    for (delay, ceiling) in &delays {
        assert!(*delay >= ceiling / 2 && delay <= ceiling, "{delays:?}");
    }
}

async fn peer_accept(peer: &GatewayPeer) -> quinn::Connection {
    peer.accept_register().await.conn
}

#[tokio::test]
async fn the_agent_comes_back_when_the_gateway_does() {
    let peer = GatewayPeer::start();
    let addr = peer.addr;
    let cert = peer.cert.clone();
    let agent = AgentBuilder::new(peer.addr).start(&peer);
    let session = peer.accept().await;
    let mut t = session
        .assign(support::frames::assign(
            "t-long",
            "custom",
            "echo $$ > pid; sleep 300",
        ))
        .await;
    let _ = t.next().await;
    // The gateway goes away entirely (its endpoint closes)...
    peer.shut();
    peer.wait_idle().await;
    drop(t);
    drop(session);
    drop(peer);
    assert!(
        agent
            .wait_log("disconnected from the gateway", Duration::from_secs(10))
            .await,
        "{:?}",
        agent.logs()
    );
    assert!(
        agent
            .wait_log("connection failed", Duration::from_secs(10))
            .await
    );
    // ...and comes back on the same port: the agent registers again with its running task.
    let peer = GatewayPeer::start_on(addr, cert).await;
    let session = peer.accept().await;
    assert_eq!(session.register.running_tasks, ["t-long"]);
    let (mut t, _) = session.accept_resume().await;
    t.send(&support::frames::stop("done testing")).await;
    assert!(t.next().await.is_none());
}
