//! What `/ws` and the event stream do with bad input: malformed, unknown, incomplete, mistyped
//! and oversized messages (`PARAM_001`, the connection stays usable), a message beyond the
//! hard cap (closed), missing, forged and expired tokens on each of the three carriers, and the
//! route's plugin chain applied before the channel.

mod realtime_support;

use std::time::Duration;

use realtime_support::*;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use futures::SinkExt;

async fn expect_param_error(ws: &mut Ws, what: &str) -> Value {
    let v = ws.until(WAIT, |v| v["type"] == "error").await;
    assert_eq!(v["data"]["code"], "PARAM_001", "{what}: {v}");
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_unknown_incomplete_and_oversized_messages_get_param_001() {
    let stack = Stack::start(Opts {
        realtime: "max_message = \"4KiB\"".into(),
        ..Opts::default()
    })
    .await;
    let mut ws = stack.ws_user("mallory").await;
    let cases: Vec<(&str, String)> = vec![
        ("not JSON", "{not json".into()),
        ("not an object", "[1,2,3]".into()),
        ("no type", r#"{"id":"x","data":{}}"#.into()),
        (
            "unknown type",
            r#"{"type":"worker:explode","id":"u1"}"#.into(),
        ),
        (
            "missing fields",
            r#"{"type":"worker:start","id":"m1","data":{"tool":"custom"}}"#.into(),
        ),
        (
            "wrong types",
            r#"{"type":"task:subscribe","id":"w1","data":{"task_id":7,"since":"x"}}"#.into(),
        ),
        (
            "data not an object",
            r#"{"type":"worker:stop","data":[1]}"#.into(),
        ),
        (
            "id not a scalar",
            r#"{"type":"agents:list","id":{"a":1}}"#.into(),
        ),
        (
            "oversized",
            json!({"type": "worker:input", "data": {"task_id": "t", "text": "x".repeat(6000)}})
                .to_string(),
        ),
    ];
    for (what, text) in &cases {
        ws.send_raw(text).await;
        let v = expect_param_error(&mut ws, what).await;
        if *what == "unknown type" {
            assert_eq!(v["id"], "u1", "the id is echoed: {v}");
        }
    }
    ws.stream
        .send(Message::Binary(vec![1u8, 2, 3].into()))
        .await
        .expect("send binary");
    expect_param_error(&mut ws, "binary").await;
    // Still usable.
    let id = ws.send("agents:list", json!({})).await;
    assert_eq!(ws.reply(&id).await["type"], "agents:updated");

    // Beyond the hard cap (4 × max_message) the connection is closed.
    ws.send_raw(&"y".repeat(20 * 1024)).await;
    assert!(
        ws.recv(Duration::from_secs(5)).await.is_none(),
        "connection closed after a message above the hard cap"
    );
    // The gateway is fine.
    let mut ws = stack.ws_user("mallory").await;
    let id = ws.send("agents:list", json!({})).await;
    assert_eq!(ws.reply(&id).await["type"], "agents:updated");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_token_carrier_accepts_a_valid_token_and_refuses_missing_forged_and_expired_ones() {
    let stack = Stack::start(Opts::default()).await;
    let url = stack.ws_url();
    let good = token("dave");
    let expired = token_exp("dave", now() - 3600);
    let forged = forged("dave");
    let no_sub = {
        use jsonwebtoken::{encode, EncodingKey, Header};
        encode(
            &Header::default(),
            &json!({"exp": now() + 600}),
            &EncodingKey::from_secret(JWT_SECRET.as_bytes()),
        )
        .expect("encode")
    };

    let err = Ws::connect(&url, Carrier::None)
        .await
        .err()
        .expect("refused");
    assert!(err.starts_with("HTTP 401"), "{err}");
    assert!(err.contains("AUTH_001"), "{err}");
    for bad in [&expired, &forged, &no_sub, &"garbage".to_string()] {
        for carrier in [
            Carrier::Header(bad),
            Carrier::Protocol(bad),
            Carrier::Query(bad),
        ] {
            let err = Ws::connect(&url, carrier)
                .await
                .err()
                .unwrap_or_else(|| panic!("{carrier:?} accepted a bad token"));
            assert!(
                err.starts_with("HTTP 401") && err.contains("AUTH_001"),
                "{carrier:?}: {err}"
            );
        }
    }
    for carrier in [
        Carrier::Header(&good),
        Carrier::Protocol(&good),
        Carrier::Query(&good),
    ] {
        let mut ws = Ws::connect(&url, carrier)
            .await
            .unwrap_or_else(|e| panic!("{carrier:?}: {e}"));
        if let Carrier::Protocol(t) = carrier {
            assert_eq!(ws.protocol.as_deref(), Some(format!("bearer.{t}").as_str()));
        } else {
            assert_eq!(ws.protocol, None);
        }
        let s = ws.new_session().await;
        assert!(!s.is_empty());
    }

    // SSE: header and query carriers.
    let sse_url = format!("http://{}/api/events/stream", stack.gw.http_addr());
    let none = Sse::get(&format!("{sse_url}?task_id=x"), &[], false).await;
    assert_eq!(none.status, 401);
    assert_eq!(none.body().await["error"]["code"], "AUTH_001");
    for bad in [&expired, &forged] {
        let r = Sse::get(
            &format!("{sse_url}?task_id=x"),
            &[("authorization", format!("Bearer {bad}"))],
            false,
        )
        .await;
        assert_eq!(r.status, 401);
        let r = Sse::get(&format!("{sse_url}?task_id=x&token={bad}"), &[], false).await;
        assert_eq!(r.status, 401);
    }
    // A valid token, bad parameters: 400 / 404 with PARAM_001.
    let auth = [("authorization", format!("Bearer {good}"))];
    let r = Sse::get(&sse_url, &auth, false).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.body().await["error"]["code"], "PARAM_001");
    let r = Sse::get(&format!("{sse_url}?task_id=nope"), &auth, false).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.body().await["error"]["code"], "PARAM_001");
    let mut h = auth.to_vec();
    h.push(("last-event-id", "garbage".into()));
    let r = Sse::get(&format!("{sse_url}?task_id=nope"), &h, false).await;
    assert_eq!(r.status, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_routes_plugin_chain_runs_before_the_realtime_channel() {
    let stack = Stack::start(Opts {
        agents: Vec::new(),
        route_plugins: vec!["deny-local".into()],
        extra: "[plugins.deny-local]\nkind = \"ip_filter\"\ndeny = [\"127.0.0.1/32\"]\n".into(),
        ..Opts::default()
    })
    .await;
    let err = Ws::connect(&stack.ws_url(), Carrier::Header(&token("zed")))
        .await
        .err()
        .expect("refused by ip_filter");
    assert!(
        err.starts_with("HTTP 403") && err.contains("AUTH_001"),
        "{err}"
    );
    let url = format!(
        "http://{}/api/events/stream?task_id=x",
        stack.gw.http_addr()
    );
    let r = Sse::get(
        &url,
        &[("authorization", format!("Bearer {}", token("zed")))],
        false,
    )
    .await;
    assert_eq!(r.status, 403);
    let body = r.body().await;
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("not allowed"),
        "the ip_filter refusal, not the realtime one: {body}"
    );
}
