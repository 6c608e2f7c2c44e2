//! Agent authentication end to end: every refusal kind gets `Error { AUTH_001 }` and a closed
//! connection, counted by reason in `/metrics`; the keys file is re-read on reload and a removed
//! agent is disconnected.

mod agent_support;

use std::time::Duration;

use agent_support::*;
use testkit::agent::hub::{self, keys_file, AgentKey};
use testkit::agent::{AgentClient, ConnectError};

fn refused(r: Result<AgentClient, ConnectError>) -> (String, String) {
    match r {
        Err(ConnectError::Refused { code, message }) => (code, message),
        Err(e) => panic!("expected a refusal, got {e}"),
        Ok(_) => panic!("expected a refusal, the agent registered"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_kind_of_bad_credentials_is_auth_001() {
    let keys = AgentKey::many(&["worker-1"]);
    let gw = start(&keys, "").await;
    let ep = endpoint(&gw);
    let good = keys[0].spec();

    let mut unknown = good.clone();
    unknown.id = "ghost".into();
    let mut bad_key = good.clone();
    bad_key.api_key = "ak_wrong".into();
    let mut wrong_secret = good.clone();
    wrong_secret.secret = "another-secret-that-is-at-least-32-bytes".into();
    let mut stale = good.clone();
    stale.timestamp = Some(testkit::agent::unix_now() - 400);
    let mut malformed = good.clone();
    malformed.signature = Some("not a signature".into());
    for (spec, what) in [
        (unknown, "unknown agent"),
        (bad_key, "API key"),
        (wrong_secret, "signature"),
        (stale, "timestamp"),
        (malformed, "malformed"),
    ] {
        let (code, message) = refused(AgentClient::connect_quic(&ep, &spec).await);
        assert_eq!(code, "AUTH_001", "{what}: {message}");
        assert!(message.contains(what), "{what}: {message}");
        assert!(!message.contains(&keys[0].secret), "no secret in {message}");
    }
    // A replayed register (same nonce) is refused even though it is correctly signed.
    let mut once = good.clone();
    once.nonce = Some("nonce-used-once".into());
    once.timestamp = Some(testkit::agent::unix_now());
    let first = AgentClient::connect_quic(&ep, &once)
        .await
        .expect("first use");
    drop(first);
    let (code, message) = refused(AgentClient::connect_quic(&ep, &once).await);
    assert_eq!(code, "AUTH_001");
    assert!(message.contains("nonce already used"), "{message}");
    for reason in [
        "unknown_agent",
        "bad_api_key",
        "bad_signature",
        "stale",
        "replayed",
        "malformed",
    ] {
        let line = format!("orchestra_agent_auth_failures_total{{reason=\"{reason}\"}} ");
        assert_eq!(metric(&gw, &line).await, 1.0, "{reason}");
    }
    // None of them registered.
    let a = AgentClient::connect_quic(&ep, &good)
        .await
        .expect("good agent");
    wait_agents(&gw, &["worker-1"]).await;
    drop(a);
    // The refused connections were closed by the gateway (nothing left registered or open).
    wait_agents(&gw, &[]).await;
    assert_no_lost_writes(&gw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsupported_protocol_version_and_bad_fields_are_param_001() {
    let keys = AgentKey::many(&["worker-1"]);
    let gw = start(&keys, "").await;
    let ep = endpoint(&gw);
    let mut too_many = keys[0].spec();
    too_many.max_tasks = 1_000_000;
    let (code, message) = refused(AgentClient::connect_quic(&ep, &too_many).await);
    assert_eq!(code, "PARAM_001", "{message}");
    assert!(message.contains("max_tasks"), "{message}");
    let mut caps = keys[0].spec();
    caps.capabilities = vec![String::new()];
    let (code, _) = refused(AgentClient::connect_quic(&ep, &caps).await);
    assert_eq!(code, "PARAM_001");
    assert_no_lost_writes(&gw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_rereads_keys_and_disconnects_removed_agents() {
    let keys = AgentKey::many(&["worker-1", "worker-2"]);
    let gw = start(&keys, "").await;
    let mut a1 = connect(&gw, &keys[0]).await;
    let _a2 = connect(&gw, &keys[1]).await;
    wait_agents(&gw, &["worker-1", "worker-2"]).await;
    // A broken keys file: the reload is refused (naming the file), everything stays.
    std::fs::write(hub::keys_path(&gw), "[[agent]]\nid = \"x\"\n").expect("write keys");
    let (status, body) = hub::admin_post(&gw.admin_url("/admin/reload"), b"")
        .await
        .expect("reload");
    assert_eq!(status, 400, "{body}");
    let msg = body["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(msg.contains("agent-keys.toml"), "{msg}");
    wait_agents(&gw, &["worker-1", "worker-2"]).await;
    // worker-1 removed: it is told why and disconnected; worker-2 stays.
    std::fs::write(hub::keys_path(&gw), keys_file(&keys[1..])).expect("write keys");
    let (status, body) = hub::admin_post(&gw.admin_url("/admin/reload"), b"")
        .await
        .expect("reload");
    assert_eq!(status, 200, "{body}");
    wait_agents(&gw, &["worker-2"]).await;
    let f = a1
        .control_frame(WAIT)
        .await
        .expect("error frame")
        .expect("frame");
    match f.msg {
        Some(orchestra_proto::v1::frame::Msg::Error(e)) => {
            assert_eq!(e.code, "AUTH_001");
            assert!(e.message.contains("removed"), "{}", e.message);
        }
        other => panic!("expected Error, got {other:?}"),
    }
    a1.closed(WAIT).await.expect("closed by the gateway");
    // And it cannot come back.
    let (code, _) = refused(AgentClient::connect_quic(&endpoint(&gw), &keys[0].spec()).await);
    assert_eq!(code, "AUTH_001");
    let _ = Duration::ZERO;
    assert_no_lost_writes(&gw);
}
