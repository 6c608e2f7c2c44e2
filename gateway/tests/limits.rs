//! `[server]` downstream limits through real sockets: a head trickled byte by byte is cut at
//! `header_read_timeout` (2,000 such connections while normal traffic is served), a reader that
//! stops reading is cut at `write_timeout` and the upstream connection released, and
//! `max_connections` holds further connections in the backlog.
//!
//! The tests assert what a client observes (closed before the head was sent, released upstream),
//! never how long it took; the cost of the trickling connections on latency is measured with
//! `orchestra-loadtest` in `bench/RESULTS.md`.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::launch::AdminGateway;
use common::*;
use testkit::{EchoServer, FirehoseServer, GatewayProcess};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A head that takes 20 s to send at one byte per [`TRICKLE`].
const SLOW_HEAD: &[u8] =
    b"GET /trickle HTTP/1.1\r\nHost: gw.test\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
const TRICKLE: Duration = Duration::from_millis(250);

async fn start(echo: &EchoServer, server: &[&str]) -> GatewayProcess {
    let mut b = gateway().config(catch_all_echo(echo.addr()));
    for line in server {
        b = b.server(*line);
    }
    b.start()
        .await
        .unwrap_or_else(|e| panic!("gateway starts: {e}"))
}

/// How a trickling connection ended.
#[derive(Debug, PartialEq, Eq)]
enum Trickled {
    /// The gateway closed it after this many head bytes.
    Cut(usize),
    /// The whole head went out: nothing stopped it.
    Sent,
    /// The client could not connect.
    NoConnect(String),
}

/// Sends `burst` bytes of [`SLOW_HEAD`] at once, then one byte per [`TRICKLE`], watching for the
/// gateway closing the connection.
async fn trickle(addr: SocketAddr, burst: usize) -> Trickled {
    let mut conn = match TcpStream::connect(addr).await {
        Ok(c) => c,
        Err(e) => return Trickled::NoConnect(e.to_string()),
    };
    let _ = conn.set_nodelay(true);
    let (mut rd, mut wr) = conn.split();
    let mut sent = 0;
    let mut buf = [0u8; 1024];
    if wr.write_all(&SLOW_HEAD[..burst]).await.is_err() {
        return Trickled::Cut(sent);
    }
    sent = burst;
    while sent < SLOW_HEAD.len() {
        tokio::select! {
            r = rd.read(&mut buf) => match r {
                // A close, a reset, or anything the gateway answered (a 4xx) then a close.
                Ok(0) | Err(_) => return Trickled::Cut(sent),
                Ok(_) => {}
            },
            () = tokio::time::sleep(TRICKLE) => {
                if wr.write_all(&SLOW_HEAD[sent..sent + 1]).await.is_err() {
                    return Trickled::Cut(sent);
                }
                sent += 1;
            }
        }
    }
    Trickled::Sent
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trickled_heads_are_cut_at_header_read_timeout_while_traffic_is_served() {
    const CONNECTIONS: usize = 2000;
    let echo = EchoServer::start("e").await.expect("echo");
    let gw = start(&echo, &["header_read_timeout = \"1s\""]).await;
    let addr = gw.http_addr();

    let mut tasks = Vec::with_capacity(CONNECTIONS);
    for i in 0..CONNECTIONS {
        // Half send nothing ahead (held in the h2c preface peek), half send 30 bytes at once
        // (past the peek, into the HTTP/1 head reader), then all trickle.
        let burst = if i % 2 == 0 { 0 } else { 30 };
        tasks.push(tokio::spawn(trickle(addr, burst)));
        if i % 200 == 199 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    // Normal traffic meanwhile, on fresh connections and on one kept-alive client.
    let client = http_client();
    let mut served = 0;
    for i in 0..40 {
        let resp = client
            .get(gw.http_url(&format!("/normal/{i}")))
            .send()
            .await
            .unwrap_or_else(|e| panic!("normal request {i}: {e}"));
        assert_eq!(resp.status(), 200);
        served += 1;
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(served, 40);

    let results = tokio::time::timeout(Duration::from_secs(30), futures::future::join_all(tasks))
        .await
        .expect("every trickling connection ended");
    let mut cut = 0;
    for (i, r) in results.into_iter().enumerate() {
        match r.expect("task") {
            Trickled::Cut(n) => {
                assert!(n < SLOW_HEAD.len(), "connection {i}");
                cut += 1;
            }
            other => panic!("connection {i}: {other:?}"),
        }
    }
    assert_eq!(cut, CONNECTIONS);
    // None of them reached the upstream; the normal requests all did.
    let paths: Vec<String> = echo
        .requests()
        .requests()
        .into_iter()
        .map(|r| r.path)
        .collect();
    assert!(
        !paths.iter().any(|p| p == "/trickle"),
        "a trickled head got through"
    );
    assert_eq!(
        paths.iter().filter(|p| p.starts_with("/normal/")).count(),
        40
    );
}

/// On a kept-alive connection the bound starts with the next head's first byte: a complete first
/// request is answered, a trickled second one is cut.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trickled_second_request_on_a_kept_alive_connection_is_cut() {
    let echo = EchoServer::start("e").await.expect("echo");
    let gw = start(&echo, &["header_read_timeout = \"1s\""]).await;
    let mut conn = TcpStream::connect(gw.http_addr()).await.expect("connect");
    conn.write_all(b"GET /first HTTP/1.1\r\nHost: gw.test\r\n\r\n")
        .await
        .expect("write");
    let mut buf = vec![0u8; 64 * 1024];
    let n = tokio::time::timeout(WAIT, conn.read(&mut buf))
        .await
        .expect("answer")
        .expect("read");
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    // Idle for longer than the header timeout: only keep-alive applies before the first byte.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut sent = 0;
    let outcome = loop {
        if sent == SLOW_HEAD.len() {
            break Trickled::Sent;
        }
        if conn.write_all(&SLOW_HEAD[sent..sent + 1]).await.is_err() {
            break Trickled::Cut(sent);
        }
        sent += 1;
        match tokio::time::timeout(TRICKLE, conn.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break Trickled::Cut(sent),
            Ok(Ok(_)) | Err(_) => {}
        }
    };
    assert!(
        matches!(outcome, Trickled::Cut(n) if n > 0 && n < SLOW_HEAD.len()),
        "{outcome:?}"
    );
    assert_eq!(
        echo.count(),
        1,
        "only the first request reached the upstream"
    );
}

/// A client that stops reading a 100 MB response is cut at `write_timeout`; the gateway then
/// closes its upstream connection (the upstream's writes fail before the body is complete).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reader_that_stops_reading_is_cut_and_the_upstream_released() {
    const LEN: u64 = 100 * 1024 * 1024;
    let fire = FirehoseServer::start(LEN).await.expect("firehose");
    let gw = gateway()
        .server("write_timeout = \"1s\"")
        .config(upstream_and_route("fire", fire.addr(), "all", "/"))
        .start()
        .await
        .expect("gateway");
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(8 * 1024).expect("rcvbuf");
    let mut conn = socket.connect(gw.http_addr()).await.expect("connect");
    conn.write_all(b"GET /big HTTP/1.1\r\nHost: gw.test\r\n\r\n")
        .await
        .expect("write");
    let mut head = [0u8; 1024];
    let n = tokio::time::timeout(WAIT, conn.read(&mut head))
        .await
        .expect("response starts")
        .expect("read");
    assert!(String::from_utf8_lossy(&head[..n]).starts_with("HTTP/1.1 200"));
    // Stop reading. The gateway's writes stall, time out, and the upstream side is released.
    tokio::time::timeout(WAIT, fire.wait_cut(1))
        .await
        .expect("the upstream saw its connection closed");
    assert!(fire.bytes_written() < LEN, "the whole body went out");
    // What is left for the client ends well before 100 MB: the connection was cut.
    let mut received = n as u64;
    let mut buf = vec![0u8; 256 * 1024];
    let ended = tokio::time::timeout(WAIT, async {
        loop {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(k) => received += k as u64,
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the client connection was not closed");
    assert!(received < LEN, "client received {received} bytes");
}

/// At `max_connections` the listener stops accepting: a further connection waits (its request
/// unanswered) until a held one closes, then it is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections_holds_new_connections_until_one_closes() {
    let echo = EchoServer::start("e").await.expect("echo");
    let gw = start(&echo, &["max_connections = 2"]).await;
    let addr = gw.http_addr();
    let mut held = Vec::new();
    for i in 0..2 {
        let mut c = TcpStream::connect(addr).await.expect("connect");
        c.write_all(format!("GET /held/{i} HTTP/1.1\r\nHost: gw.test\r\n\r\n").as_bytes())
            .await
            .expect("write");
        let mut buf = vec![0u8; 16 * 1024];
        let n = tokio::time::timeout(WAIT, c.read(&mut buf))
            .await
            .expect("answer")
            .expect("read");
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
        held.push(c); // kept alive, idle: each holds a slot
    }
    let mut third = TcpStream::connect(addr)
        .await
        .expect("the kernel completes the handshake");
    third
        .write_all(b"GET /third HTTP/1.1\r\nHost: gw.test\r\n\r\n")
        .await
        .expect("write");
    let mut buf = vec![0u8; 16 * 1024];
    let early = tokio::time::timeout(Duration::from_millis(800), third.read(&mut buf)).await;
    assert!(early.is_err(), "answered beyond max_connections: {early:?}");
    assert_eq!(echo.count(), 2);
    drop(held.pop());
    let n = tokio::time::timeout(WAIT, third.read(&mut buf))
        .await
        .expect("served once a slot is free")
        .expect("read");
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    assert_eq!(echo.count(), 3);
}

/// A request body that stops arriving is cut at `body_read_timeout`: on HTTP/1.1 the connection
/// is closed, on HTTP/2 (h2c) the stream ends in an error, while the client still holds its
/// side open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_request_bodies_are_cut_at_body_read_timeout() {
    use bytes::Bytes;
    use http_body_util::{BodyExt, StreamBody};
    use hyper::body::Frame;
    use hyper_util::rt::{TokioExecutor, TokioIo};

    let echo = EchoServer::start("e").await.expect("echo");
    let gw = start(&echo, &["body_read_timeout = \"1s\""]).await;

    // HTTP/1.1: 10 of 100 announced bytes, then nothing.
    let mut conn = TcpStream::connect(gw.http_addr()).await.expect("connect");
    conn.write_all(
        b"POST /upload HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 100\r\n\r\n0123456789",
    )
    .await
    .expect("write");
    let mut buf = vec![0u8; 16 * 1024];
    let closed = tokio::time::timeout(WAIT, async {
        loop {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "h1: the stalled body was not cut");

    // HTTP/2 (h2c): one chunk, then the body stays open.
    let stream = TcpStream::connect(gw.http_addr()).await.expect("connect");
    let (mut sender, h2) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("h2c handshake");
    let driver = tokio::spawn(h2);
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(4);
    let body = StreamBody::new(tokio_stream_from(rx));
    let req = http::Request::builder()
        .method("POST")
        .uri(format!("http://{}/echo", gw.http_addr()))
        .body(body)
        .expect("request");
    tx.send(Ok(Frame::data(Bytes::from_static(b"first chunk"))))
        .await
        .expect("send chunk");
    let outcome = tokio::time::timeout(WAIT, async {
        match sender.send_request(req).await {
            Err(e) => Err(e.to_string()),
            Ok(resp) => match resp.into_body().collect().await {
                Ok(b) => Ok(b.to_bytes()),
                Err(e) => Err(e.to_string()),
            },
        }
    })
    .await
    .expect("h2: the stalled body was not cut");
    assert!(outcome.is_err(), "h2: the exchange completed: {outcome:?}");
    drop(tx);
    driver.abort();
}

/// A `Stream` over an mpsc receiver (no tokio-stream dependency).
fn tokio_stream_from<T>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures::Stream<Item = T> + Send + Unpin + 'static
where
    T: Send + 'static,
{
    Box::pin(futures::stream::poll_fn(move |cx| rx.poll_recv(cx)))
}

/// A reload applies the per-request limits at once (`max_request_body` here) and reports the
/// ones bound into the listeners as `restart_needed`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_applies_request_limits_and_reports_listener_limits() {
    let echo = EchoServer::start("e").await.expect("echo");
    let body = catch_all_echo(echo.addr());
    let AdminGateway { gw, admin, client } = AdminGateway::start(body.clone()).await;
    let post = || {
        client
            .post(gw.http_url("/echo"))
            .body(vec![b'a'; 4096])
            .send()
    };
    assert_eq!(post().await.expect("post").status(), 200);

    let text = gw.config_text(&body).replace(
        "[server]\n",
        "[server]\nmax_request_body = \"1KiB\"\nheader_read_timeout = \"3s\"\nmax_connections = 10\nwrite_timeout = \"5s\"\n",
    );
    admin
        .put_config_needing_restart(
            &text,
            &["server.header_read_timeout", "server.max_connections"],
        )
        .await;
    let resp = post().await.expect("post");
    assert_eq!(resp.status(), 413, "max_request_body applies at once");
}

/// The send-stall rule on HTTP/3: a client that stops reading a 100 MB response (its stream
/// window is small, so the gateway's sends block) is cut at `write_timeout`, and the gateway
/// releases the upstream connection, as on HTTP/1.1 above.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http3_reader_that_stops_reading_is_cut_and_the_upstream_released() {
    const LEN: u64 = 100 * 1024 * 1024;
    let fire = FirehoseServer::start(LEN).await.expect("firehose");
    let gw = gateway()
        .h3(true)
        .server("write_timeout = \"1s\"")
        .config(format!(
            "{}{}",
            upstream("fire", &[fire.addr()], ""),
            route("all", "path_prefix = \"/\"", "fire", "")
        ))
        .start()
        .await
        .expect("gateway");
    let pem = gw.self_signed_cert_pem().expect("cert");
    let addr = gw.https_addr().expect("h3");
    let (endpoint, mut send, driver) = stalling_h3_client(addr, &pem).await;
    let req = http::Request::get(format!("https://localhost:{}/big", addr.port()))
        .body(())
        .expect("request");
    let mut stream = send.send_request(req).await.expect("send request");
    stream.finish().await.expect("finish request");
    let resp = tokio::time::timeout(WAIT, stream.recv_response())
        .await
        .expect("response head in time")
        .expect("response head");
    assert_eq!(resp.status(), 200);
    // Stop reading: the stream window fills, the gateway's sends stall and time out.
    tokio::time::timeout(WAIT, fire.wait_cut(1))
        .await
        .expect("the upstream saw its connection closed");
    assert!(fire.bytes_written() < LEN, "the whole body went out");
    // The stream was reset by the gateway: reading on ends with an error before 100 MB.
    let mut received = 0u64;
    let ended = tokio::time::timeout(WAIT, async {
        // Ends on the stream's end or its reset alike.
        while let Ok(Some(mut chunk)) = stream.recv_data().await {
            use bytes::Buf;
            let n = chunk.remaining();
            chunk.advance(n);
            received += n as u64;
        }
    })
    .await;
    assert!(ended.is_ok(), "the response stream was not ended");
    assert!(received < LEN, "client received {received} bytes");
    driver.abort();
    endpoint.close(0u32.into(), b"done");
}

/// An HTTP/3 client whose per-stream receive window is 64 KiB, so a reader that stops reading
/// stalls the sender quickly.
async fn stalling_h3_client(
    addr: SocketAddr,
    pem: &[u8],
) -> (
    quinn::Endpoint,
    h3::client::SendRequest<h3_quinn::OpenStreams, bytes::Bytes>,
    tokio::task::JoinHandle<()>,
) {
    let tls = testkit::tls::client_config(pem, &[b"h3"]).expect("tls");
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls).expect("quic tls");
    let mut config = quinn::ClientConfig::new(std::sync::Arc::new(quic));
    let mut transport = quinn::TransportConfig::default();
    transport.stream_receive_window(quinn::VarInt::from_u32(64 * 1024));
    transport.receive_window(quinn::VarInt::from_u32(256 * 1024));
    config.transport_config(std::sync::Arc::new(transport));
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().expect("addr")).expect("udp");
    endpoint.set_default_client_config(config);
    let mut last = None;
    for _ in 0..40 {
        match endpoint.connect(addr, "localhost").expect("connect").await {
            Ok(conn) => {
                let (mut driver, send) = h3::client::new(h3_quinn::Connection::new(conn))
                    .await
                    .expect("h3 handshake");
                let driver = tokio::spawn(async move {
                    let _ = std::future::poll_fn(|cx| driver.poll_close(cx)).await;
                });
                return (endpoint, send, driver);
            }
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("h3 connect: {last:?}");
}
