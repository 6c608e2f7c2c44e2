//! One HTTP/1 exchange without a request body, which the vendored pingora-proxy runs as a single
//! loop instead of two halves joined by task channels (its "direct exchange", vendor/README.md):
//! a client that hangs up while the upstream has not answered yet ends the request and the
//! gateway closes the upstream connection; an upstream that dies in the middle of a body cuts the
//! client's response, and the next request goes on a new upstream connection. (That the head and
//! first chunk reach the client before the upstream ends its response is `sse.rs`.)
//!
//! `Content-Length` framing both ways (the vendored pingora-core resolves it once per message,
//! with a fast path for a plain number): identical duplicates and lists are reconciled, while
//! conflicting or invalid values are refused — with a 400 for a client's request (which never
//! reaches the upstream), with a 502 for an upstream's response.
//!
//! The upstream is a raw HTTP/1.1 server started by each test, so that the test sees its side of
//! every connection.

mod common;

use common::launch::AdminGateway;
use common::*;
use testkit::upstream::raw::{path_of, RawConn, RawServer};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// What the upstream reports about its connections.
#[derive(Debug, PartialEq)]
enum Seen {
    /// A request head for this path arrived.
    Request(String),
    /// The gateway closed a connection.
    Closed,
}

/// A raw HTTP/1.1 upstream. `/hold` is never answered (the connection is kept until the gateway
/// closes it); `/cut` is answered with a head announcing 100 body bytes, 10 of them, and a close;
/// anything else gets `200` with body `conn=N` (N: the connection's index, from 0).
struct RawUpstream {
    server: RawServer,
    seen: mpsc::UnboundedReceiver<Seen>,
}

impl RawUpstream {
    async fn start() -> Self {
        let (tx, seen) = mpsc::unbounded_channel();
        let server = RawServer::start(move |conn, id| serve(conn, id, tx.clone()))
            .await
            .expect("raw upstream");
        RawUpstream { server, seen }
    }

    /// The next event, bounded by [`WAIT`].
    async fn next(&mut self, waiting_for: &str) -> Seen {
        tokio::time::timeout(WAIT, self.seen.recv())
            .await
            .unwrap_or_else(|_| panic!("upstream: no event within {WAIT:?} ({waiting_for})"))
            .expect("upstream task alive")
    }
}

/// Serves one connection until the gateway closes it (reported) or a path ends it.
async fn serve(mut conn: RawConn, id: usize, seen: mpsc::UnboundedSender<Seen>) {
    loop {
        let Some(head) = conn.next_head().await else {
            let _ = seen.send(Seen::Closed);
            return;
        };
        let path = path_of(&head).to_string();
        let _ = seen.send(Seen::Request(path.clone()));
        let answer = match path.as_str() {
            // Not answered: the next read sees the gateway close the connection.
            "/hold" => continue,
            // Reads the body the forwarded head announces and answers with it.
            "/echo" => {
                let len = head
                    .lines()
                    .find_map(|l| {
                        let (n, v) = l.split_once(':')?;
                        n.trim()
                            .eq_ignore_ascii_case("content-length")
                            .then(|| v.trim())
                    })
                    .and_then(|v| v.split(',').next()?.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                let Some(body) = conn.take(len).await else {
                    return;
                };
                let body = String::from_utf8_lossy(&body).into_owned();
                format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                )
            }
            "/cl-list" => "HTTP/1.1 200 OK\r\ncontent-length: 5, 5\r\n\r\nhello".into(),
            "/cl-twice" => {
                "HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 5\r\n\r\nhello".into()
            }
            "/cl-conflict" => {
                "HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\nhello!".into()
            }
            "/cl-invalid" => "HTTP/1.1 200 OK\r\ncontent-length: 5x\r\n\r\nhello".into(),
            // An informational head, then the final one, in one write.
            "/early-hints" => "HTTP/1.1 103 Early Hints\r\nlink: </a.css>; rel=preload\r\n\r\n\
                 HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
                .into(),
            // A body delimited by the end of the connection, in pieces.
            "/until-close" => {
                let _ = conn
                    .stream
                    .write_all(b"HTTP/1.1 200 OK\r\n\r\nfirst,")
                    .await;
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                let _ = conn.stream.write_all(b"second").await;
                return;
            }
            "/cut" => {
                let _ = conn
                    .stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n0123456789")
                    .await;
                return;
            }
            "/cut-chunked" => {
                let _ = conn
                    .stream
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\na\r\n0123456789\r\n",
                    )
                    .await;
                return;
            }
            _ => {
                let body = format!("conn={id}");
                format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                )
            }
        };
        if conn.stream.write_all(answer.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// One worker and `upstream` behind a catch-all route. The upstream read timeout (60 s) is far
/// beyond [`WAIT`]: nothing a test waits for can come from it.
async fn gateway_to(upstream: &RawUpstream) -> AdminGateway {
    let body = ConfigBody::new()
        .upstream(Upstream::new("up", &[upstream.server.addr()]).timeouts("1s", "60s", "60s"))
        .route(Route::prefix("all", "/", "up"));
    AdminGateway::start_from(gateway().threads(1).config(body)).await
}

/// `GET path` through `gw`: the response, once its head arrived.
async fn get(gw: &AdminGateway, path: &str) -> reqwest::Response {
    gw.client
        .get(gw.url(path))
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

/// `GET path` through `gw`: asserts `status` and returns the whole body (bounded by [`WAIT`]).
async fn body_of(gw: &AdminGateway, path: &str, status: u16) -> String {
    let resp = get(gw, path).await;
    assert_eq!(resp.status(), status, "GET {path}");
    tokio::time::timeout(WAIT, resp.text())
        .await
        .unwrap_or_else(|_| panic!("GET {path}: the body did not end within {WAIT:?}"))
        .unwrap_or_else(|e| panic!("GET {path}: body: {e}"))
}

#[tokio::test]
async fn a_client_that_hangs_up_before_the_answer_makes_the_gateway_close_the_upstream() {
    let mut upstream = RawUpstream::start().await;
    let gw = gateway_to(&upstream).await;
    let mut client = TcpStream::connect(gw.gw.http_addr())
        .await
        .expect("connect");
    client
        .write_all(b"GET /hold HTTP/1.1\r\nhost: exchange.test\r\n\r\n")
        .await
        .expect("request");
    assert_eq!(
        upstream.next("the request").await,
        Seen::Request("/hold".into())
    );
    // The request is waiting on the upstream; the client goes away.
    drop(client);
    // Only the gateway noticing the client can close the upstream connection this soon: the
    // upstream never answers and the read timeout is 60 s.
    assert_eq!(upstream.next("the upstream closed").await, Seen::Closed);
    // The gateway still serves (on a new upstream connection: the held one is gone).
    assert_eq!(body_of(&gw, "/", 200).await, "conn=1");
}

#[tokio::test]
async fn an_upstream_that_dies_mid_body_cuts_the_response_and_is_not_reused() {
    let mut upstream = RawUpstream::start().await;
    let gw = gateway_to(&upstream).await;
    let resp = get(&gw, "/cut").await;
    // The head went out before the body failed; the body must not read as complete.
    assert_eq!(resp.status(), 200);
    let body = tokio::time::timeout(WAIT, resp.bytes())
        .await
        .unwrap_or_else(|_| panic!("the cut body neither ended nor failed within {WAIT:?}"));
    assert!(
        body.is_err(),
        "a body cut at 10 of 100 bytes read as complete: {body:?}"
    );
    assert_eq!(upstream.next("/cut").await, Seen::Request("/cut".into()));
    // The next request goes on a new upstream connection and is answered whole.
    assert_eq!(body_of(&gw, "/", 200).await, "conn=1");
    assert_eq!(upstream.server.accepted(), 2);
}

/// The same with a chunked body: the client must not see the terminating chunk of a body the
/// upstream never finished (the connection is closed instead).
#[tokio::test]
async fn an_upstream_that_dies_mid_chunked_body_cuts_the_response() {
    let mut upstream = RawUpstream::start().await;
    let gw = gateway_to(&upstream).await;
    let resp = testkit::raw_http::send(
        gw.gw.http_addr(),
        b"GET /cut-chunked HTTP/1.1\r\nhost: exchange.test\r\n\r\n",
        b"",
        WAIT,
    )
    .await
    .expect("request sent");
    assert_eq!(
        resp.status,
        Some(200),
        "{}",
        String::from_utf8_lossy(&resp.raw)
    );
    assert!(
        !resp.complete,
        "a chunked body cut by the upstream read as complete:\n{}",
        String::from_utf8_lossy(&resp.raw)
    );
    assert_eq!(
        upstream.next("/cut-chunked").await,
        Seen::Request("/cut-chunked".into())
    );
}

/// A raw request with `content_length` header line(s) and body `hello` to `gw`.
async fn post_with(gw: &AdminGateway, content_length: &str) -> testkit::raw_http::RawResponse {
    let head = format!("POST /echo HTTP/1.1\r\nhost: exchange.test\r\n{content_length}\r\n");
    testkit::raw_http::send(gw.gw.http_addr(), head.as_bytes(), b"hello", WAIT)
        .await
        .expect("raw request")
}

#[tokio::test]
async fn request_content_length_is_reconciled_or_refused() {
    let mut upstream = RawUpstream::start().await;
    let gw = gateway_to(&upstream).await;
    for good in [
        "content-length: 5\r\n",
        "content-length: 005\r\n",
        "content-length: 5, 5\r\n",
        "content-length: 5\r\ncontent-length: 5\r\n",
    ] {
        let resp = post_with(&gw, good).await;
        assert_eq!(resp.status, Some(200), "{good:?}: {resp:?}");
        assert_eq!(resp.body, b"hello", "{good:?}");
        assert_eq!(upstream.next(good).await, Seen::Request("/echo".into()));
    }
    for bad in [
        "content-length: 5\r\ncontent-length: 6\r\n",
        "content-length: 5, 6\r\n",
        "content-length: 5x\r\n",
        "content-length: -5\r\n",
        "content-length: +5\r\n",
        "content-length: 99999999999999999999999\r\n",
    ] {
        let resp = post_with(&gw, bad).await;
        assert_eq!(resp.status, Some(400), "{bad:?}: {resp:?}");
    }
    // None of the refused requests reached the upstream: the next event is this request.
    body_of(&gw, "/after", 200).await;
    assert_eq!(
        upstream.next("/after").await,
        Seen::Request("/after".into())
    );
}

#[tokio::test]
async fn response_content_length_is_reconciled_or_refused() {
    let upstream = RawUpstream::start().await;
    let gw = gateway_to(&upstream).await;
    for good in ["/cl-list", "/cl-twice"] {
        assert_eq!(body_of(&gw, good, 200).await, "hello", "{good}");
    }
    for bad in ["/cl-conflict", "/cl-invalid"] {
        // An ambiguous upstream framing is not forwarded.
        body_of(&gw, bad, 502).await;
    }
}

#[tokio::test]
async fn informational_heads_and_close_delimited_bodies_pass_through() {
    let upstream = RawUpstream::start().await;
    let gw = gateway_to(&upstream).await;
    // The 103 goes before the final head (or is dropped); the client ends with the 200.
    assert_eq!(body_of(&gw, "/early-hints", 200).await, "ok");
    // A body the upstream ends by closing arrives whole, re-framed for the client.
    assert_eq!(body_of(&gw, "/until-close", 200).await, "first,second");
    // The connection still serves.
    body_of(&gw, "/", 200).await;
}
