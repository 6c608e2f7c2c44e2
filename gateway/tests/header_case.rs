//! `server.preserve_header_case`: how HTTP/1 header names are spelled on the way through.
//!
//! By default a request head reaches the upstream with a few common fields (`Host`,
//! `Content-Length`, ...) in their usual capitalization and every other field in lower case, and a
//! response head reaches the client the same way; with `preserve_header_case = true` both keep
//! the spelling they were sent with. Both are checked on the first and on a later request of one keep-alive client connection
//! (pingora makes a new session per request, and each must get the listener's setting).

mod common;

use std::sync::{Arc, Mutex};

use common::launch::AdminGateway;
use common::*;
use testkit::upstream::raw::RawServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The upstream's answer, with a field in mixed case.
const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nX-UpStream-CaSe: v\r\ncontent-length: 2\r\n\r\nok";

/// A raw upstream that records every request head it reads and answers [`RESPONSE`].
async fn recording_upstream() -> (RawServer, Arc<Mutex<Vec<String>>>) {
    let heads = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&heads);
    let server = RawServer::start(move |mut conn, _id| {
        let seen = Arc::clone(&seen);
        async move {
            while let Some(head) = conn.next_head().await {
                seen.lock().expect("heads").push(head);
                if conn.stream.write_all(RESPONSE).await.is_err() {
                    return;
                }
            }
        }
    })
    .await
    .expect("raw upstream");
    (server, heads)
}

/// Sends two requests with mixed-case field names on one connection; returns the two raw
/// responses.
async fn two_requests(gw: &testkit::GatewayProcess) -> [String; 2] {
    let mut conn = TcpStream::connect(gw.http_addr()).await.expect("connect");
    let mut out = [String::new(), String::new()];
    for (i, answer) in out.iter_mut().enumerate() {
        let head = format!(
            "GET /case/{i} HTTP/1.1\r\nHost: gw\r\nuser-AGENT: case-test\r\nX-CuStOm-FiElD: {i}\r\n\r\n"
        );
        conn.write_all(head.as_bytes()).await.expect("request");
        let mut raw = Vec::new();
        let mut buf = [0u8; 4096];
        while !raw.ends_with(b"\r\n\r\nok") {
            let n = tokio::time::timeout(WAIT, conn.read(&mut buf))
                .await
                .expect("response in time")
                .expect("read");
            assert!(
                n > 0,
                "connection closed after {:?}",
                String::from_utf8_lossy(&raw)
            );
            raw.extend_from_slice(&buf[..n]);
        }
        *answer = String::from_utf8_lossy(&raw).into_owned();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
    out
}

/// The lines of a head, without the request or status line.
fn fields(head: &str) -> Vec<&str> {
    head.split("\r\n")
        .skip(1)
        .filter(|l| !l.is_empty())
        .collect()
}

/// How the two exchanges of [`two_requests`] must be spelled on the other side.
struct Spelling {
    /// The request's `user-AGENT: case-test` line, at the upstream.
    user_agent: &'static str,
    /// The name of the request's `X-CuStOm-FiElD` (its value is the request's index).
    custom: &'static str,
    /// The upstream's `X-UpStream-CaSe: v` line, at the client.
    upstream_field: &'static str,
    /// The upstream's `content-length: 2` line, at the client.
    content_length: &'static str,
}

/// Asserts `spelling` on both request heads the upstream read and both answers the client got.
fn assert_spelled(heads: &[String], answers: &[String; 2], spelling: &Spelling) {
    assert_eq!(heads.len(), 2, "{heads:?}");
    for (i, head) in heads.iter().enumerate() {
        let lines = fields(head);
        assert!(lines.contains(&spelling.user_agent), "{i}: {head}");
        let custom = format!("{}: {i}", spelling.custom);
        assert!(lines.contains(&custom.as_str()), "{i}: {head}");
    }
    for (i, answer) in answers.iter().enumerate() {
        let lines = fields(answer);
        assert!(lines.contains(&spelling.upstream_field), "{i}: {answer}");
        assert!(lines.contains(&spelling.content_length), "{i}: {answer}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_names_are_lower_case_by_default() {
    let (upstream, heads) = recording_upstream().await;
    let gw = start_catch_all(upstream.addr()).await;
    let answers = two_requests(&gw).await;
    let heads = heads.lock().expect("heads").clone();
    let spelling = Spelling {
        user_agent: "user-agent: case-test",
        custom: "x-custom-field",
        upstream_field: "x-upstream-case: v",
        content_length: "Content-Length: 2",
    };
    assert_spelled(&heads, &answers, &spelling);
    for head in &heads {
        let lines = fields(head);
        assert!(lines.contains(&"Host: gw"), "{head}");
        // What the gateway adds is spelled the same way.
        assert!(
            lines.iter().any(|l| l.starts_with("x-request-id: ")),
            "{head}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preserve_header_case_keeps_every_spelling() {
    let (upstream, heads) = recording_upstream().await;
    let gw = gateway()
        .server("preserve_header_case = true")
        .config(catch_all_echo(upstream.addr()))
        .start()
        .await
        .unwrap_or_else(|e| panic!("gateway starts: {e}"));
    let answers = two_requests(&gw).await;
    let heads = heads.lock().expect("heads").clone();
    let spelling = Spelling {
        user_agent: "user-AGENT: case-test",
        custom: "X-CuStOm-FiElD",
        upstream_field: "X-UpStream-CaSe: v",
        content_length: "content-length: 2",
    };
    assert_spelled(&heads, &answers, &spelling);
}

/// Not a boolean: a config error naming the key, and the gateway does not start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preserve_header_case_must_be_a_boolean() {
    let started = gateway()
        .server("preserve_header_case = \"yes\"")
        .config("")
        .start()
        .await;
    let err = match started {
        Ok(_) => panic!("the gateway started with preserve_header_case = \"yes\""),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("server.preserve_header_case") && err.contains("boolean"),
        "{err}"
    );
}

/// A reload that turns `preserve_header_case` on reports it as `restart_needed`: request heads
/// are parsed by the listeners, which keep the setting they started with, while the response
/// side (the upstream peers, rebuilt on every reload) follows at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloading_preserve_header_case_applies_to_responses_and_asks_for_a_restart() {
    let (upstream, heads) = recording_upstream().await;
    let body = catch_all_echo(upstream.addr());
    let AdminGateway { gw, admin, .. } = AdminGateway::start(body.clone()).await;
    let text = gw
        .config_text(&body)
        .replace("[server]\n", "[server]\npreserve_header_case = true\n");
    admin
        .put_config_needing_restart(&text, &["server.preserve_header_case"])
        .await;
    let answers = two_requests(&gw).await;
    for head in heads.lock().expect("heads").iter() {
        assert!(fields(head).contains(&"user-agent: case-test"), "{head}");
    }
    for answer in &answers {
        assert!(fields(answer).contains(&"X-UpStream-CaSe: v"), "{answer}");
    }
}
