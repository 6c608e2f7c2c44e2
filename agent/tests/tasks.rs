//! Tasks end to end: the real agent runs real processes assigned by a scripted gateway.

mod support;

use std::time::Duration;

use orchestra_proto::v1::{frame, Frame, OutputKind, ResultStatus, TaskAssign};
use support::agent::AgentBuilder;
use support::frames::{assign, input, stop};
use support::peer::{GatewayPeer, PeerStream};
use support::{pid_gone, poll_until};

fn status(run: &support::frames::TaskRun) -> ResultStatus {
    ResultStatus::try_from(run.result().status).unwrap()
}

async fn rejection(s: &mut PeerStream) -> (String, String) {
    match s.next().await {
        Some(Frame {
            msg: Some(frame::Msg::Rejected(r)),
        }) => {
            assert!(
                s.next().await.is_none(),
                "the agent ends the stream after a rejection"
            );
            (r.code, r.reason)
        }
        other => panic!("expected TaskRejected, got {other:?}"),
    }
}

#[tokio::test]
async fn ten_thousand_lines_arrive_complete_and_in_seq_order() {
    let peer = GatewayPeer::start();
    let _agent = AgentBuilder::new(peer.addr).start(&peer);
    let session = peer.accept().await;
    let mut t = session
        .assign(assign(
            "t-10k",
            "custom",
            "for i in $(seq 1 10000); do echo \"line $i\"; done",
        ))
        .await;
    let run = t.run_to_result(true).await;
    // TaskAccepted is the `running` event with seq = first_seq; then one item per line.
    let Some(frame::Msg::Accepted(accepted)) = &run.frames[0].msg else {
        panic!("first frame is TaskAccepted: {:?}", run.frames[0]);
    };
    assert_eq!(accepted.seq, 3);
    assert!(accepted.pid > 0);
    let items = run.items();
    assert_eq!(items.len(), 10_000);
    for (i, (seq, item)) in items.iter().enumerate() {
        assert_eq!(*seq, 4 + i as u64);
        assert_eq!(support::frames::kind(item), OutputKind::Stdout);
        assert_eq!(item.text, format!("line {}", i + 1));
    }
    assert_eq!(run.seqs().last(), Some(&10_004));
    assert_eq!(status(&run), ResultStatus::Success);
    assert_eq!(run.result().exit_code, 0);
    assert_eq!(run.result().error, "");
    // The result was acked: the agent ends its side of the stream.
    assert!(t.next().await.is_none());
}

#[tokio::test]
async fn stderr_lines_and_a_failing_exit_code() {
    let peer = GatewayPeer::start();
    let _agent = AgentBuilder::new(peer.addr).start(&peer);
    let session = peer.accept().await;
    let mut t = session
        .assign(assign(
            "t-err",
            "custom",
            "echo out; echo err >&2; printf 'no newline' >&2; exit 3",
        ))
        .await;
    let run = t.run_to_result(true).await;
    assert_eq!(run.texts(OutputKind::Stdout), ["out"]);
    assert_eq!(run.texts(OutputKind::Stderr), ["err", "no newline"]);
    assert_eq!(status(&run), ResultStatus::Error);
    assert_eq!(run.result().exit_code, 3);
    assert_eq!(run.result().error, "exited with code 3");
}

#[tokio::test]
async fn claude_stream_json_is_mapped_to_items_and_the_result() {
    let scripts = tempfile::tempdir().unwrap();
    let script = scripts.path().join("fake-claude");
    std::fs::write(
        &script,
        r#"#!/bin/bash
# Claude Code's stream-json shape; $2 is the prompt (claude -p PROMPT --output-format stream-json).
echo '{"type":"system","subtype":"init","session_id":"sess-42","model":"claude-test","tools":["Bash"]}'
echo '{"type":"assistant","message":{"id":"m1","role":"assistant","content":[{"type":"text","text":"I will list the files."},{"type":"tool_use","id":"toolu_1","name":"Bash","input":{"command":"ls"}}]},"session_id":"sess-42"}'
echo '{"type":"user","message":{"role":"user","content":[{"tool_use_id":"toolu_1","type":"tool_result","content":"a.txt","is_error":false}]},"session_id":"sess-42"}'
printf '{"type":"assistant","message":{"content":[{"type":"text","text":"Prompt was: %s"}]},"session_id":"sess-42"}\n' "$2"
echo 'a line that is not JSON'
echo 'progress on stderr' >&2
echo '{"type":"result","subtype":"success","is_error":false,"duration_ms":12,"num_turns":2,"result":"Done.","session_id":"sess-42","total_cost_usd":0.001,"usage":{"input_tokens":11,"cache_creation_input_tokens":5,"cache_read_input_tokens":7,"output_tokens":22}}'
"#,
    )
    .unwrap();
    let peer = GatewayPeer::start();
    let argv = format!(
        r#"["bash", {:?}, "-p", "{{prompt}}", "--output-format", "stream-json", "--verbose"]"#,
        script.display().to_string()
    );
    let _agent = AgentBuilder::new(peer.addr)
        .tool("claude", &argv)
        .start(&peer);
    let session = peer.accept().await;
    let mut t = session
        .assign(assign("t-claude", "claude", "list files"))
        .await;
    let run = t.run_to_result(true).await;
    let items: Vec<(OutputKind, &str)> = run
        .items()
        .into_iter()
        .map(|(_, i)| (support::frames::kind(i), i.text.as_str()))
        .filter(|(k, _)| *k != OutputKind::Stderr)
        .collect();
    assert_eq!(
        items,
        [
            (OutputKind::System, "system: init"),
            (OutputKind::Assistant, "I will list the files."),
            (OutputKind::Tool, r#"Bash {"command":"ls"}"#),
            (OutputKind::ToolResult, "a.txt"),
            (OutputKind::Assistant, "Prompt was: list files"),
            (OutputKind::Stdout, "a line that is not JSON"),
            (OutputKind::System, "Done."),
        ]
    );
    assert_eq!(run.texts(OutputKind::Stderr), ["progress on stderr"]);
    // Each item keeps its JSON; a two-block message is split into one message per block.
    let tool = run
        .items()
        .into_iter()
        .find(|(_, i)| support::frames::kind(i) == OutputKind::Tool)
        .unwrap()
        .1;
    let json: serde_json::Value = serde_json::from_str(&tool.json).unwrap();
    assert_eq!(json["type"], "assistant");
    assert_eq!(json["message"]["content"][0]["name"], "Bash");
    assert_eq!(json["message"]["content"].as_array().unwrap().len(), 1);
    let result = run.result();
    assert_eq!(status(&run), ResultStatus::Success);
    assert_eq!(result.session_id, "sess-42");
    let usage = result.usage.unwrap();
    assert_eq!(
        (
            usage.input_tokens,
            usage.output_tokens,
            usage.cache_read_tokens,
            usage.cache_write_tokens
        ),
        (11, 22, 7, 5)
    );
}

#[tokio::test]
async fn input_reaches_stdin_and_close_ends_it() {
    let peer = GatewayPeer::start();
    let _agent = AgentBuilder::new(peer.addr).start(&peer);
    let session = peer.accept().await;
    let mut t = session
        .assign(assign(
            "t-stdin",
            "custom",
            "while read -r line; do echo \"got: $line\"; done; echo eof",
        ))
        .await;
    // The task is running (accepted) before input is sent.
    match t.next().await {
        Some(Frame {
            msg: Some(frame::Msg::Accepted(a)),
        }) => t.send(&support::frames::ack(a.seq)).await,
        other => panic!("expected TaskAccepted, got {other:?}"),
    }
    t.send(&input(b"hello\nwor", false)).await;
    t.send(&input(b"ld\n", false)).await;
    t.send(&input(b"", true)).await;
    let run = t.run_to_result(true).await;
    assert_eq!(
        run.texts(OutputKind::Stdout),
        ["got: hello", "got: world", "eof"]
    );
    assert_eq!(status(&run), ResultStatus::Success);
}

#[tokio::test]
async fn stop_terms_then_kills_the_whole_process_group() {
    let peer = GatewayPeer::start();
    let agent = AgentBuilder::new(peer.addr).start(&peer);
    let session = peer.accept().await;
    // The task and its child both ignore SIGTERM: only the SIGKILL after the grace ends them.
    let mut t = session
        .assign(assign(
            "t-stop",
            "custom",
            "trap '' TERM; sleep 300 & echo $! > child.pid; echo started; wait",
        ))
        .await;
    loop {
        let frame = t.next().await.expect("task output");
        let seq = support::frames::seq_of(&frame).unwrap();
        t.send(&support::frames::ack(seq)).await;
        if support::frames::item_of(&frame).is_some_and(|i| i.text == "started") {
            break;
        }
    }
    let pid_file = agent.workdir().join("t-stop").join("child.pid");
    let grandchild: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(!pid_gone(grandchild));
    t.send(&stop("user pressed stop")).await;
    let run = t.run_to_result(true).await;
    assert_eq!(status(&run), ResultStatus::Stopped);
    assert_eq!(run.result().exit_code, -1);
    assert_eq!(run.result().error, "stopped: user pressed stop");
    assert!(
        poll_until(Duration::from_secs(10), || pid_gone(grandchild)).await,
        "the grandchild {grandchild} outlived its task"
    );
    assert!(
        agent
            .wait_log("stop grace period over", Duration::from_secs(1))
            .await
    );
}

#[tokio::test]
async fn what_a_task_leaves_running_is_killed_when_it_exits() {
    let peer = GatewayPeer::start();
    let agent = AgentBuilder::new(peer.addr).start(&peer);
    let session = peer.accept().await;
    // The background sleep keeps stdout open: the agent kills the group once the shell exits.
    let mut t = session
        .assign(assign(
            "t-orphan",
            "custom",
            "sleep 300 & echo $! > child.pid; echo done",
        ))
        .await;
    let run = t.run_to_result(true).await;
    assert_eq!(run.texts(OutputKind::Stdout), ["done"]);
    assert_eq!(status(&run), ResultStatus::Success);
    let pid: i32 = std::fs::read_to_string(agent.workdir().join("t-orphan/child.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(poll_until(Duration::from_secs(10), || pid_gone(pid)).await);
}

#[tokio::test]
async fn max_tasks_is_enforced_and_a_slot_frees_when_a_task_ends() {
    let peer = GatewayPeer::start();
    let _agent = AgentBuilder::new(peer.addr)
        .set("max_tasks", "1")
        .start(&peer);
    let session = peer.accept().await;
    assert_eq!(session.register.max_tasks, 1);
    let mut first = session
        .assign(assign("t-a", "custom", "read -r x; echo \"$x\""))
        .await;
    assert!(matches!(
        first.next().await.and_then(|f| f.msg),
        Some(frame::Msg::Accepted(_))
    ));
    let mut second = session.assign(assign("t-b", "custom", "echo b")).await;
    let (code, reason) = rejection(&mut second).await;
    assert_eq!(code, "AGENT_001");
    assert!(reason.contains("busy"), "{reason}");
    // The same id twice is refused too.
    let mut again = session.assign(assign("t-a", "custom", "echo a")).await;
    let (code, reason) = rejection(&mut again).await;
    assert_eq!(code, "AGENT_001");
    assert!(reason.contains("already"), "{reason}");
    first.send(&input(b"go\n", true)).await;
    let run = first.run_to_result(true).await;
    assert_eq!(run.texts(OutputKind::Stdout), ["go"]);
    let mut third = session.assign(assign("t-c", "custom", "echo c")).await;
    let run = third.run_to_result(true).await;
    assert_eq!(run.texts(OutputKind::Stdout), ["c"]);
}

#[tokio::test]
async fn bad_assignments_are_rejected_with_a_reason() {
    let peer = GatewayPeer::start();
    let _agent = AgentBuilder::new(peer.addr)
        .tool("missing", r#"["/nonexistent/bin/tool", "{prompt}"]"#)
        .start(&peer);
    let session = peer.accept().await;
    let cases: Vec<(TaskAssign, &str, &str)> = vec![
        (
            assign("t-1", "qwcoder", "x"),
            "AGENT_001",
            "unknown tool \"qwcoder\"",
        ),
        (assign("../escape", "custom", "x"), "PARAM_001", "task id"),
        (assign("", "custom", "x"), "PARAM_001", "task id"),
        (
            TaskAssign {
                first_seq: 0,
                ..assign("t-2", "custom", "x")
            },
            "PARAM_001",
            "first_seq",
        ),
        (
            TaskAssign {
                env: [("A=B".to_string(), "c".to_string())].into(),
                ..assign("t-3", "custom", "x")
            },
            "PARAM_001",
            "environment variable",
        ),
        (
            TaskAssign {
                resume_session_id: "s-1".into(),
                ..assign("t-4", "custom", "x")
            },
            "PARAM_001",
            "cannot resume",
        ),
        (assign("t-5", "missing", "x"), "AGENT_001", "cannot start"),
    ];
    for (a, want_code, want_reason) in cases {
        let mut s = session.assign(a.clone()).await;
        let (code, reason) = rejection(&mut s).await;
        assert_eq!(code, want_code, "{a:?}: {reason}");
        assert!(reason.contains(want_reason), "{a:?}: {reason}");
    }
}

#[tokio::test]
async fn argv_templates_never_go_through_a_shell() {
    let peer = GatewayPeer::start();
    let agent = AgentBuilder::new(peer.addr)
        .tool("print", r#"["printf", "%s|%s\n", "{prompt}", "{cwd}"]"#)
        .start(&peer);
    let session = peer.accept().await;
    let prompt = "$(touch pwned) `id` ; echo {cwd} > x";
    let mut t = session.assign(assign("t-literal", "print", prompt)).await;
    let run = t.run_to_result(true).await;
    let cwd = agent.workdir().join("t-literal");
    assert_eq!(
        run.texts(OutputKind::Stdout),
        [format!("{prompt}|{}", cwd.display()).as_str()]
    );
    assert!(!cwd.join("pwned").exists());
}

#[tokio::test]
async fn working_directory_and_environment() {
    let peer = GatewayPeer::start();
    let agent = AgentBuilder::new(peer.addr).start(&peer);
    let session = peer.accept().await;
    let mut t = session
        .assign(TaskAssign {
            cwd: "projects/site".into(),
            env: [("GREETING".to_string(), "hi there".to_string())].into(),
            ..assign(
                "t-env",
                "custom",
                "pwd; echo \"$GREETING $ORCHESTRA_TASK_ID\"",
            )
        })
        .await;
    let run = t.run_to_result(true).await;
    let dir = std::fs::canonicalize(agent.workdir().join("projects/site")).unwrap();
    assert_eq!(
        run.texts(OutputKind::Stdout),
        [dir.display().to_string().as_str(), "hi there t-env"]
    );
    let mut t = session
        .assign(assign("t-default-dir", "custom", "pwd"))
        .await;
    let run = t.run_to_result(true).await;
    let dir = std::fs::canonicalize(agent.workdir().join("t-default-dir")).unwrap();
    assert_eq!(
        run.texts(OutputKind::Stdout),
        [dir.display().to_string().as_str()]
    );
}

#[tokio::test]
async fn long_lines_are_split_and_invalid_utf8_replaced() {
    let peer = GatewayPeer::start();
    let _agent = AgentBuilder::new(peer.addr).start(&peer);
    let session = peer.accept().await;
    let mut t = session
        .assign(assign(
            "t-long",
            "custom",
            "head -c 600000 /dev/zero | tr '\\0' a; echo; printf 'ok \\377 end\\n'",
        ))
        .await;
    let run = t.run_to_result(true).await;
    let texts = run.texts(OutputKind::Stdout);
    assert_eq!(texts.len(), 4, "three pieces and one line");
    assert!(texts[..3]
        .iter()
        .all(|p| p.len() <= 256 * 1024 && p.bytes().all(|b| b == b'a')));
    assert_eq!(texts[..3].iter().map(|p| p.len()).sum::<usize>(), 600_000);
    assert_eq!(texts[3], "ok \u{fffd} end");
}

#[tokio::test]
async fn sigterm_stops_the_tasks_delivers_their_results_and_exits_zero() {
    let peer = GatewayPeer::start();
    let mut agent = AgentBuilder::new(peer.addr).start(&peer);
    let session = peer.accept().await;
    let mut t = session
        .assign(assign(
            "t-shutdown",
            "custom",
            "echo $$ > leader.pid; echo up; sleep 300",
        ))
        .await;
    loop {
        let frame = t.next().await.expect("task output");
        t.send(&support::frames::ack(
            support::frames::seq_of(&frame).unwrap(),
        ))
        .await;
        if support::frames::item_of(&frame).is_some_and(|i| i.text == "up") {
            break;
        }
    }
    let leader: i32 = std::fs::read_to_string(agent.workdir().join("t-shutdown/leader.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    agent.signal(nix::sys::signal::Signal::SIGTERM);
    // Still connected: the stopped result reaches the gateway before the agent leaves.
    let run = t.run_to_result(true).await;
    assert_eq!(status(&run), ResultStatus::Stopped);
    assert_eq!(run.result().error, "stopped: agent shutting down");
    let exit = agent
        .wait_exit(Duration::from_secs(15))
        .await
        .expect("the agent exits");
    assert!(exit.success(), "{exit:?}");
    assert!(pid_gone(leader));
}
