//! `/ws` end to end: gateway (embedded backend, agent hub) + a real `orchestra-agent` + a
//! tokio-tungstenite client. Output complete and in order, resume with `since`, input, stop,
//! ownership, no agent, busy agents.

mod realtime_support;

use std::time::Duration;

use realtime_support::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_lines_arrive_complete_and_in_order_and_a_rejoin_with_since_sees_each_once() {
    let stack = Stack::start(Opts::default()).await;
    let mut a = stack.ws_user("alice").await;
    let session = a.new_session().await;
    let reply = a.start(&session, &count_prompt(10_000)).await;
    assert_eq!(reply["type"], "worker:status", "{reply}");
    assert_eq!(reply["data"]["status"], "starting", "{reply}");
    assert_eq!(reply["data"]["agent_id"], "worker-1", "{reply}");
    let task = reply["data"]["task_id"]
        .as_str()
        .expect("task_id")
        .to_string();

    // The starting client reads the stream as it comes (a client that stops reading is cut
    // once its send queue fills, by design: this test is not about how much the gateway buffers
    // for one).
    let watch_a = {
        let task = task.clone();
        tokio::spawn(async move {
            let mut seen_a = Seen::default();
            watch_ws(&mut a, &task, &mut seen_a, None).await;
            seen_a
        })
    };

    // A second client of the same user joins the session, reads part of the stream, leaves
    // mid-stream, and rejoins with `since`.
    let mut b = stack.ws_user("alice").await;
    let id = b.send("session:join", json!({"session_id": session})).await;
    assert_eq!(b.reply(&id).await["type"], "session:joined");
    let mut seen_b = Seen::default();
    watch_ws(&mut b, &task, &mut seen_b, Some(3_000)).await;
    drop(b);
    let mut b = stack.ws_user("alice").await;
    let since = seen_b.last_seq();
    let id = b
        .send(
            "session:join",
            json!({"session_id": session, "since": {&task: since}}),
        )
        .await;
    assert_eq!(b.reply(&id).await["type"], "session:joined");
    watch_ws(&mut b, &task, &mut seen_b, None).await;

    let seen_a = watch_a.await.expect("client a's reader");
    seen_a.assert_complete(10_000);
    seen_b.assert_complete(10_000);
    assert_eq!(seen_a.seqs, seen_b.seqs);
    let result = seen_a.result.expect("result");
    assert_eq!(result["status"], "success", "{result}");
    assert_eq!(result["exit_code"], 0, "{result}");
    assert_eq!(
        seen_a.statuses.first().map(String::as_str),
        Some("starting")
    );
    assert!(
        seen_a.statuses.iter().any(|s| s == "running"),
        "{:?}",
        seen_a.statuses
    );

    // After the end: a subscribe from 0 replays everything from the backend.
    let mut c = stack.ws_user("alice").await;
    c.send("task:subscribe", json!({"task_id": task, "since": 0}))
        .await;
    let mut seen_c = Seen::default();
    watch_ws(&mut c, &task, &mut seen_c, None).await;
    seen_c.assert_complete(10_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn input_reaches_stdin_and_stop_ends_the_task() {
    let stack = Stack::start(Opts::default()).await;
    let mut ws = stack.ws_user("bob").await;
    let session = ws.new_session().await;
    // A cat-like task: echoes each line of stdin with a prefix until stdin closes.
    let reply = ws
        .start(
            &session,
            "while IFS= read -r l; do echo \"got:$l\"; done; echo eof",
        )
        .await;
    let task = reply["data"]["task_id"].as_str().expect("task").to_string();
    ws.until(WAIT, |v| {
        v["type"] == "worker:status" && v["data"]["status"] == "running"
    })
    .await;
    ws.send("worker:input", json!({"task_id": task, "text": "hello\n"}))
        .await;
    let out = ws.until(WAIT, |v| v["type"] == "worker:output").await;
    assert_eq!(
        out["data"]["text"].as_str().map(str::trim_end),
        Some("got:hello"),
        "{out}"
    );
    ws.send(
        "worker:input",
        json!({"task_id": task, "text": "x\n", "close": true}),
    )
    .await;
    let mut lines = Vec::new();
    let result = ws
        .until(WAIT, |v| {
            if v["type"] == "worker:output" {
                lines.push(
                    v["data"]["text"]
                        .as_str()
                        .unwrap_or("")
                        .trim_end()
                        .to_string(),
                );
            }
            v["type"] == "task:result"
        })
        .await;
    assert_eq!(lines, ["got:x", "eof"]);
    assert_eq!(result["data"]["status"], "success", "{result}");

    // worker:stop on a task that would run for a minute.
    let reply = ws.start(&session, "echo started; sleep 60").await;
    let task = reply["data"]["task_id"].as_str().expect("task").to_string();
    ws.until(WAIT, |v| {
        v["type"] == "worker:output" && v["data"]["task_id"] == task
    })
    .await;
    let id = ws.send("worker:stop", json!({"task_id": task})).await;
    let stopped = ws
        .until(WAIT, |v| {
            assert_ne!(v["id"], id, "worker:stop answered with an error: {v}");
            v["type"] == "worker:status" && v["data"]["status"] == "stopped"
        })
        .await;
    assert_eq!(stopped["data"]["task_id"], task);
    // Input to the ended task is refused, the connection stays usable.
    let id = ws
        .send("worker:input", json!({"task_id": task, "text": "late\n"}))
        .await;
    let err = ws.reply(&id).await;
    assert_eq!(err["type"], "error", "{err}");
    assert_eq!(err["data"]["code"], "PARAM_001", "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_users_session_and_task_are_refused() {
    let stack = Stack::start(Opts::default()).await;
    let mut alice = stack.ws_user("alice").await;
    let session = alice.new_session().await;
    let reply = alice.start(&session, "echo mine; sleep 30").await;
    let task = reply["data"]["task_id"].as_str().expect("task").to_string();

    let mut eve = stack.ws_user("eve").await;
    for (kind, data) in [
        ("session:join", json!({"session_id": session})),
        ("task:subscribe", json!({"task_id": task})),
        ("worker:input", json!({"task_id": task, "text": "x\n"})),
        ("worker:stop", json!({"task_id": task})),
        (
            "worker:start",
            json!({"session_id": session, "tool": "custom", "prompt": "id"}),
        ),
    ] {
        let id = eve.send(kind, data).await;
        let r = eve.reply(&id).await;
        assert_eq!(r["type"], "error", "{kind}: {r}");
        assert_eq!(r["data"]["code"], "AUTH_001", "{kind}: {r}");
    }
    // SSE refuses too (403 AUTH_001).
    let url = format!(
        "http://{}/api/events/stream?task_id={task}",
        stack.gw.http_addr()
    );
    let sse = Sse::get(
        &url,
        &[("authorization", format!("Bearer {}", token("eve")))],
        false,
    )
    .await;
    assert_eq!(sse.status, 403);
    assert_eq!(sse.body().await["error"]["code"], "AUTH_001");
    // Unknown ids are PARAM_001.
    let id = eve
        .send("task:subscribe", json!({"task_id": "no-such-task"}))
        .await;
    assert_eq!(eve.reply(&id).await["data"]["code"], "PARAM_001");
    // Alice still controls her task.
    let id = alice.send("worker:stop", json!({"task_id": task})).await;
    alice
        .until(WAIT, |v| {
            assert_ne!(v["id"], id, "stop refused: {v}");
            v["type"] == "worker:status" && v["data"]["status"] == "stopped"
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_agent_is_agent_001_and_busy_agents_queue_the_task() {
    let mut stack = Stack::start(Opts {
        agents: vec![("worker-1".into(), 1)],
        ..Opts::default()
    })
    .await;
    let mut ws = stack.ws_user("carol").await;
    let session = ws.new_session().await;
    // A tool nobody offers.
    let id = ws
        .send(
            "worker:start",
            json!({"session_id": session, "tool": "claude", "prompt": "hi"}),
        )
        .await;
    let r = ws.reply(&id).await;
    assert_eq!(r["type"], "error", "{r}");
    assert_eq!(r["data"]["code"], "AGENT_001", "{r}");

    // agents:list shows the one agent.
    let id = ws.send("agents:list", json!({})).await;
    let r = ws.reply(&id).await;
    assert_eq!(r["type"], "agents:updated", "{r}");
    assert_eq!(r["data"]["agents"][0]["id"], "worker-1", "{r}");

    // One slot: the second task waits in the queue, then runs when the first ends.
    let first = ws.start(&session, "sleep 1; echo first").await;
    assert_eq!(first["data"]["status"], "starting", "{first}");
    let second = ws.start(&session, "echo second").await;
    assert_eq!(second["data"]["status"], "queued", "{second}");
    let second_id = second["data"]["task_id"]
        .as_str()
        .expect("task")
        .to_string();
    let mut statuses = Vec::new();
    ws.until(Duration::from_secs(30), |v| {
        if v["type"] == "worker:status" && v["data"]["task_id"] == second_id {
            statuses.push(v["data"]["status"].as_str().unwrap_or("").to_string());
        }
        v["type"] == "task:result" && v["data"]["task_id"] == second_id
    })
    .await;
    assert_eq!(statuses, ["queued", "starting", "running"]);

    // The agent goes away: no agent at all is AGENT_001.
    stack.agents.clear();
    hub::admin_until(&stack.gw, "/admin/agents", WAIT, |v| {
        v["agents"].as_array().is_some_and(|a| a.is_empty())
    })
    .await
    .expect("agent gone");
    let id = ws
        .send(
            "worker:start",
            json!({"session_id": session, "tool": "custom", "prompt": "echo"}),
        )
        .await;
    let r = ws.reply(&id).await;
    assert_eq!(r["data"]["code"], "AGENT_001", "{r}");
}

/// A browser that only listens sends nothing for longer than `server.body_read_timeout`: that
/// timeout bounds request bodies, not an upgraded connection, so the socket stays usable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_client_outlives_body_read_timeout() {
    let stack = Stack::start(Opts {
        agents: Vec::new(),
        server: vec!["body_read_timeout = \"1s\"".into()],
        ..Opts::default()
    })
    .await;
    let mut ws = stack.ws_user("alice").await;
    // Silent for well past the 1 s body read timeout.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let id = ws.send("agents:list", serde_json::json!({})).await;
    let reply = ws.reply(&id).await;
    assert_eq!(
        reply["type"], "agents:updated",
        "reply after silence: {reply}"
    );
}
