//! A gateway-generated error answer must keep its `Connection` promise: if it does not say
//! `Connection: close`, the client may send its next request on the same connection, and that
//! request must be answered (found while testing carry-over: pooled clients such as reqwest
//! got `ECONNRESET` on the request after a 502).

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use testkit::net::closed_addr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads one HTTP/1.1 response with a `content-length` body: `(status, head, body)`; `None` on
/// EOF, reset or timeout before it is complete.
async fn read_response(stream: &mut TcpStream) -> Option<(u16, String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let read = async {
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                let len = head
                    .lines()
                    .filter_map(|l| l.split_once(':'))
                    .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
                    .and_then(|(_, v)| v.trim().parse::<usize>().ok())?;
                if buf.len() >= end + 4 + len {
                    let status = head.split_whitespace().nth(1)?.parse().ok()?;
                    return Some((status, head, buf[end + 4..end + 4 + len].to_vec()));
                }
            }
            let n = stream.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .ok()
        .flatten()
}

fn says_close(head: &str) -> bool {
    head.lines()
        .filter_map(|l| l.split_once(':'))
        .any(|(k, v)| {
            k.trim().eq_ignore_ascii_case("connection") && v.trim().eq_ignore_ascii_case("close")
        })
}

/// What the first answer may say about the connection.
#[derive(Clone, Copy, PartialEq, Eq)]
enum KeepAlive {
    /// `Connection: close` is an honest answer; only a keep-alive promise must be kept.
    CloseAllowed,
    /// The answer must not say `Connection: close`, and the connection must serve a second request.
    Required,
}

async fn two_requests_on_one_connection(
    addr: SocketAddr,
    path: &str,
    expected: u16,
    keep_alive: KeepAlive,
) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: gw\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("first request");
    let (status, head, _) = read_response(&mut stream)
        .await
        .expect("first response complete");
    assert_eq!(status, expected, "{head}");
    if says_close(&head) {
        assert!(
            keep_alive == KeepAlive::CloseAllowed,
            "the {expected} answer said `Connection: close` but must keep the connection:\n{head}"
        );
        // Honest: the client knows not to reuse the connection.
        return;
    }
    // The answer promised keep-alive: a second request on the same connection is answered.
    let sent = stream.write_all(request.as_bytes()).await;
    let second = read_response(&mut stream).await;
    let Some((second_status, second_head, _)) = second.filter(|_| sent.is_ok()) else {
        panic!(
            "the {expected} answer did not say `Connection: close`:\n{head}\nbut the connection was \
             closed before the next request was answered (write: {sent:?})"
        );
    };
    assert_eq!(second_status, expected, "second answer:\n{second_head}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_502_either_says_connection_close_or_keeps_the_connection() {
    let down = closed_addr().expect("closed addr");
    let gw = start_catch_all(down).await;
    wait_ready(&gw).await;
    two_requests_on_one_connection(gw.http_addr(), "/x", 502, KeepAlive::CloseAllowed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_504_either_says_connection_close_or_keeps_the_connection() {
    let echo = testkit::EchoServer::start("slow").await.expect("echo");
    let gw = start_gateway(format!(
        "{}{}",
        upstream(
            "slow",
            &[echo.addr()],
            "timeouts = { connect = \"1s\", read = \"200ms\", idle = \"60s\" }"
        ),
        route("all", "path_prefix = \"/\"", "slow", "")
    ))
    .await;
    wait_ready(&gw).await;
    two_requests_on_one_connection(
        gw.http_addr(),
        "/slow?ms=2000",
        504,
        KeepAlive::CloseAllowed,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_404_no_route_keeps_the_connection_usable() {
    let down = closed_addr().expect("closed addr");
    let gw = start_gateway(upstream_and_route("down", down, "api", "/api/")).await;
    wait_ready(&gw).await;
    two_requests_on_one_connection(gw.http_addr(), "/nothing-here", 404, KeepAlive::Required).await;
}
