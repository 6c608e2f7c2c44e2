//! Tests of testkit's own servers and launcher, with real clients on loopback.

use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http_body_util::Full;
use testkit::client::H2Client;
use testkit::grpc::{self, EchoClient, EchoReply, EchoRequest};
use testkit::upstream::{http::pattern_bytes, sse, ws};
use testkit::{EchoServer, GatewayProcess, GrpcServer, LaunchError, SseServer, WsEchoServer};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

const WAIT: Duration = Duration::from_secs(10);

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("reqwest client")
}

#[tokio::test]
async fn echo_describes_an_http1_request() {
    let server = EchoServer::start("alpha").await.expect("start");
    let resp = client()
        .post(server.url("/a/b?x=1"))
        .header("x-test", "yes")
        .body("hello")
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-echo-server"], "alpha");
    assert_eq!(resp.headers()["server"], "testkit-echo");
    let body: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(body["server"], "alpha");
    assert_eq!(body["method"], "POST");
    assert_eq!(body["path"], "/a/b?x=1");
    assert_eq!(body["headers"]["x-test"], "yes");
    assert_eq!(body["body_len"], 5);
    assert_eq!(body["version"], "HTTP/1.1");
    assert_eq!(body["tls"], false);
    assert_eq!(server.count(), 1);
    let recorded = server.requests().last().expect("recorded");
    assert_eq!(recorded.header("X-Test"), Some("yes"));
}

#[tokio::test]
async fn echo_speaks_h2c_prior_knowledge_on_the_same_port() {
    let server = EchoServer::start("h2").await.expect("start");
    let mut h2 = H2Client::connect_h2c(server.addr()).await.expect("h2c");
    let resp = h2.get("/x").await.expect("get");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.version, http::Version::HTTP_2);
    assert_eq!(resp.json().expect("json")["version"], "HTTP/2.0");
}

#[tokio::test]
async fn echo_special_paths() {
    let server = EchoServer::start("s").await.expect("start");
    let c = client();

    let resp = c
        .get(server.url("/status/418"))
        .send()
        .await
        .expect("status");
    assert_eq!(resp.status(), 418);

    let resp = c
        .get(server.url("/bytes/100000"))
        .send()
        .await
        .expect("bytes");
    assert_eq!(
        resp.bytes().await.expect("body").as_ref(),
        pattern_bytes(100_000)
    );

    let payload = pattern_bytes(300_000);
    let resp = c
        .post(server.url("/echo"))
        .body(payload.clone())
        .send()
        .await
        .expect("echo");
    assert_eq!(resp.bytes().await.expect("body").as_ref(), payload);

    let resp = c.get(server.url("/slow?ms=20")).send().await.expect("slow");
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.json::<serde_json::Value>().await.expect("json")["path"],
        "/slow?ms=20"
    );

    tokio::time::timeout(WAIT, server.requests().wait_for(4))
        .await
        .expect("4 requests counted");
}

#[tokio::test]
async fn tls_echo_negotiates_h2_and_http1() {
    let server = EchoServer::start_tls("sec").await.expect("start");
    let pem = server.cert_pem().expect("pem").as_bytes().to_vec();
    let cert = reqwest::Certificate::from_pem(&pem).expect("cert");
    let url = format!("https://localhost:{}/t", server.addr().port());

    let h2 = reqwest::Client::builder()
        .no_proxy()
        .add_root_certificate(cert.clone())
        .resolve("localhost", server.addr())
        .build()
        .expect("client");
    let resp = h2.get(&url).send().await.expect("h2 send");
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    let body: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(body["tls"], true);
    assert_eq!(body["version"], "HTTP/2.0");

    let h1 = reqwest::Client::builder()
        .no_proxy()
        .http1_only()
        .add_root_certificate(cert)
        .resolve("localhost", server.addr())
        .build()
        .expect("client");
    let resp = h1.get(&url).send().await.expect("h1 send");
    assert_eq!(resp.version(), reqwest::Version::HTTP_11);
}

#[tokio::test]
async fn sse_second_event_waits_for_the_gate() {
    let server = SseServer::start().await.expect("start");
    let resp = client()
        .get(format!("http://{}/events", server.addr()))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut stream = resp.bytes_stream();
    let mut seen = Vec::new();
    while seen.len() < sse::EVENT_1.len() {
        let chunk = tokio::time::timeout(WAIT, stream.next())
            .await
            .expect("event 1 in time")
            .expect("stream open")
            .expect("chunk");
        seen.extend_from_slice(&chunk);
    }
    assert_eq!(seen, sse::EVENT_1.as_bytes());
    assert_eq!(server.second_events_sent(), 0);
    server.release();
    let mut rest = Vec::new();
    while let Some(chunk) = tokio::time::timeout(WAIT, stream.next())
        .await
        .expect("in time")
    {
        rest.extend_from_slice(&chunk.expect("chunk"));
    }
    assert_eq!(rest, sse::EVENT_2.as_bytes());
    assert_eq!(server.second_events_sent(), 1);
}

#[tokio::test]
async fn websocket_echoes_and_closes_with_4001() {
    let server = WsEchoServer::start().await.expect("start");
    let (mut socket, _) = tokio_tungstenite::connect_async(server.url("/ws"))
        .await
        .expect("connect");
    socket.send(Message::text("hi")).await.expect("send text");
    assert_eq!(
        socket.next().await.expect("reply").expect("ok"),
        Message::text("hi")
    );
    socket
        .send(Message::binary(vec![0u8, 1, 2, 255]))
        .await
        .expect("send binary");
    assert_eq!(
        socket.next().await.expect("reply").expect("ok"),
        Message::binary(vec![0u8, 1, 2, 255])
    );
    socket
        .send(Message::text(ws::CLOSE_TRIGGER))
        .await
        .expect("send");
    match socket.next().await.expect("close").expect("ok") {
        Message::Close(Some(frame)) => {
            assert_eq!(frame.code, CloseCode::from(ws::CLOSE_CODE));
            assert_eq!(frame.reason.as_str(), ws::CLOSE_REASON);
        }
        other => panic!("expected close frame, got {other:?}"),
    }
    assert_eq!(server.requests().last().expect("handshake").path, "/ws");
}

#[tokio::test]
async fn grpc_unary_stream_and_errors() {
    let server = GrpcServer::start("g").await.expect("start");
    let mut c = EchoClient::connect(&server.url()).await.expect("connect");

    let reply = c
        .unary(EchoRequest {
            message: "ping".into(),
            ..Default::default()
        })
        .await
        .expect("unary")
        .into_inner();
    assert_eq!(reply.message, "ping");
    assert_eq!(reply.server, "g");

    let mut stream = c
        .server_stream(EchoRequest {
            message: "m".into(),
            count: 3,
            fail_after: None,
        })
        .await
        .expect("stream")
        .into_inner();
    let mut got = Vec::new();
    while let Some(item) = stream.message().await.expect("item") {
        got.push(item.message);
    }
    assert_eq!(got, ["m-0", "m-1", "m-2"]);

    let status = c
        .fail(EchoRequest {
            message: "x".into(),
            ..Default::default()
        })
        .await
        .expect_err("must fail");
    assert_eq!(status.code(), tonic::Code::NotFound);
    assert_eq!(status.message(), "no such thing: x");

    let mut stream = c
        .server_stream(EchoRequest {
            message: "m".into(),
            count: 5,
            fail_after: Some(2),
        })
        .await
        .expect("stream")
        .into_inner();
    assert!(stream.message().await.expect("0").is_some());
    assert!(stream.message().await.expect("1").is_some());
    let status = stream.message().await.expect_err("fails after 2");
    assert_eq!(status.code(), tonic::Code::NotFound);
}

#[tokio::test]
async fn grpc_trailers_seen_by_a_raw_h2c_client() {
    let server = GrpcServer::start("g").await.expect("start");
    let mut h2 = H2Client::connect_h2c(server.addr()).await.expect("h2c");
    let body = grpc::encode_frame(&EchoRequest {
        message: "raw".into(),
        count: 2,
        fail_after: None,
    });
    let request = h2
        .request(http::Method::POST, grpc::SERVER_STREAM)
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Full::new(Bytes::from(body)))
        .expect("request");
    let resp = h2.send_full(request).await.expect("send");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.trailer("grpc-status"), Some("0"));
    let replies: Vec<EchoReply> = grpc::decode_frames(&resp.body).expect("frames");
    assert_eq!(replies.len(), 2);
    assert_eq!(replies[1].message, "raw-1");
}

#[tokio::test]
async fn dropping_a_server_stops_it() {
    let server = EchoServer::start("gone").await.expect("start");
    let addr = server.addr();
    drop(server);
    tokio::time::timeout(WAIT, async {
        while tokio::net::TcpStream::connect(addr).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("listener closed after drop");
}

#[tokio::test]
async fn launcher_reports_a_process_that_exits_during_startup() {
    let err = GatewayProcess::builder("/bin/false")
        .start()
        .await
        .expect_err("/bin/false never becomes healthy");
    assert!(matches!(err, LaunchError::Exited { .. }), "{err}");

    let err = GatewayProcess::builder("/nonexistent/orchestra-gateway")
        .start()
        .await
        .expect_err("missing binary");
    assert!(matches!(err, LaunchError::Io(_)), "{err}");
}

#[tokio::test]
async fn websocket_acknowledges_a_client_close() {
    let server = WsEchoServer::start().await.expect("start");
    let (mut socket, _) = tokio_tungstenite::connect_async(server.url("/ws"))
        .await
        .expect("connect");
    socket.close(None).await.expect("send close");
    match socket.next().await.expect("close reply").expect("ok") {
        Message::Close(_) => {}
        other => panic!("expected close, got {other:?}"),
    }
}
