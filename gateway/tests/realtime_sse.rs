//! SSE `/api/events/stream` end to end with a real agent: a 10,000-line task complete and in
//! order over HTTP/1.1 with a disconnect and a `Last-Event-ID` resume in the middle, over
//! HTTP/2 (h2c and TLS), a session stream, and HTTP/3 with the aioquic client.

mod common;
mod realtime_support;

use common::aioquic_fetch;
use realtime_support::*;

/// A client of `user`, a new session, and a task counting to `n` in it: (client, session, task).
async fn start_counting(stack: &Stack, user: &str, n: usize) -> (Ws, String, String) {
    let mut ws = stack.ws_user(user).await;
    let session = ws.new_session().await;
    let reply = ws.start(&session, &count_prompt(n)).await;
    let task = reply["data"]["task_id"].as_str().expect("task").to_string();
    (ws, session, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_over_http1_resumes_with_last_event_id_without_gap_or_duplicate() {
    let stack = Stack::start(Opts::default()).await;
    let (_ws, _, task) = start_counting(&stack, "erin", 10_000).await;
    let url = format!(
        "http://{}/api/events/stream?task_id={task}",
        stack.gw.http_addr()
    );
    let auth = ("authorization", format!("Bearer {}", token("erin")));
    let mut sse = Sse::get(&url, std::slice::from_ref(&auth), false).await;
    assert_eq!(sse.status, 200);
    assert_eq!(sse.headers["content-type"], "text/event-stream");
    assert_eq!(sse.headers["cache-control"], "no-cache");
    assert!(sse.headers.get("x-request-id").is_some());
    let mut seen = Seen::default();
    let last = watch_sse(&mut sse, &task, &mut seen, Some(2_500))
        .await
        .expect("an id");
    assert_eq!(last, format!("{task}:{}", seen.last_seq()));
    drop(sse);
    let mut sse = Sse::get(&url, &[auth, ("last-event-id", last)], false).await;
    assert_eq!(sse.status, 200);
    watch_sse(&mut sse, &task, &mut seen, None).await;
    seen.assert_complete(10_000);
    // A task stream ends after the task's last event.
    assert!(sse.next(std::time::Duration::from_secs(10)).await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_over_h2c_delivers_every_line_and_a_session_stream_with_the_token_in_the_query() {
    let stack = Stack::start(Opts::default()).await;
    let (mut ws, session, task) = start_counting(&stack, "fay", 10_000).await;
    let url = format!(
        "http://{}/api/events/stream?task_id={task}",
        stack.gw.http_addr()
    );
    let auth = ("authorization", format!("Bearer {}", token("fay")));
    let mut sse = Sse::get(&url, &[auth], true).await;
    assert_eq!(sse.status, 200);
    let mut seen = Seen::default();
    watch_sse(&mut sse, &task, &mut seen, None).await;
    seen.assert_complete(10_000);

    // HTTP/2 over TLS, from the ring and the backend after the end.
    let url = format!(
        "https://localhost:{}/api/events/stream?task_id={task}&token={}",
        hub::quic_addr(&stack.gw).port(),
        token("fay")
    );
    let pem = stack.gw.self_signed_cert_pem().expect("cert");
    let (mut sse, version) = Sse::get_tls(&url, &[], &pem).await;
    assert_eq!((sse.status, version), (200, http::Version::HTTP_2));
    let mut tls = Seen::default();
    watch_sse(&mut sse, &task, &mut tls, None).await;
    tls.assert_complete(10_000);

    // The session's stream (token in the query) replays the ended task, then shows a task
    // started afterwards in the same session.
    let url = format!(
        "http://{}/api/events/stream?session_id={session}&token={}",
        stack.gw.http_addr(),
        token("fay")
    );
    let mut sse = Sse::get(&url, &[], true).await;
    assert_eq!(sse.status, 200);
    let mut replay = Seen::default();
    watch_sse(&mut sse, &task, &mut replay, None).await;
    replay.assert_complete(10_000);
    let reply = ws.start(&session, &count_prompt(3)).await;
    let second = reply["data"]["task_id"].as_str().expect("task").to_string();
    let mut live = Seen::default();
    watch_sse(&mut sse, &second, &mut live, None).await;
    live.assert_complete(3);
    // Another user cannot open it.
    let url = format!(
        "http://{}/api/events/stream?session_id={session}&token={}",
        stack.gw.http_addr(),
        token("mallory")
    );
    let r = Sse::get(&url, &[], true).await;
    assert_eq!(r.status, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_over_http3_with_the_aioquic_client() {
    let stack = Stack::start(Opts::default()).await;
    let (mut ws, _, task) = start_counting(&stack, "gus", 2_000).await;
    ws.until(std::time::Duration::from_secs(30), |v| {
        v["type"] == "task:result" && v["data"]["task_id"] == task
    })
    .await;
    let ca = stack.gw.self_signed_cert_path();
    let port = hub::quic_addr(&stack.gw).port();
    let path = format!("/api/events/stream?task_id={task}&token={}", token("gus"));
    let v = aioquic_fetch(port, &path, &ca, &[]).await;
    assert_eq!(v["status"], 200, "{v}");
    assert_eq!(v["headers"]["content-type"], "text/event-stream", "{v}");
    let mut body = v["body"].as_str().expect("body").to_string();
    let mut seen = Seen::default();
    for e in parse_sse(&mut body) {
        seen.take(&task, &e.event, &e.data);
        if let Some(id) = &e.id {
            assert_eq!(*id, format!("{task}:{}", seen.last_seq()));
        }
    }
    seen.assert_complete(2_000);
}
