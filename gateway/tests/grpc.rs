//! gRPC through the gateway: h2c (http port) or h2 over TLS (https port) in front,
//! `protocol = "h2c"` toward the upstream; messages, streams and trailers pass through.

mod common;

use bytes::Bytes;
use common::*;
use http_body_util::Full;
use testkit::client::H2Client;
use testkit::grpc::{self, EchoClient, EchoReply, EchoRequest};
use testkit::{GatewayProcess, GrpcServer};

async fn setup(https: bool) -> (GrpcServer, GatewayProcess) {
    let server = GrpcServer::start("grpc-up").await.expect("grpc upstream");
    let gw = gateway()
        .https(https)
        .config(format!(
            "{}{}",
            upstream("grpc", &[server.addr()], "protocol = \"h2c\""),
            route("grpc", "path_prefix = \"/testkit.Echo/\"", "grpc", "")
        ))
        .start()
        .await
        .expect("gateway");
    (server, gw)
}

fn req(message: &str, count: u32, fail_after: Option<u32>) -> EchoRequest {
    EchoRequest {
        message: message.to_string(),
        count,
        fail_after,
    }
}

async fn exercise(client: &mut EchoClient) {
    // Unary.
    let mut request = tonic::Request::new(req("ping", 0, None));
    request
        .metadata_mut()
        .insert("x-request-id", "grpc-rid-1".parse().expect("metadata"));
    let response = client
        .unary(request)
        .await
        .expect("unary through the gateway");
    assert_eq!(
        response
            .metadata()
            .get("x-grpc-server")
            .and_then(|v| v.to_str().ok()),
        Some("testkit"),
        "upstream response metadata lost"
    );
    let reply = response.into_inner();
    assert_eq!(reply.message, "ping");
    assert_eq!(reply.server, "grpc-up");
    assert_eq!(reply.request_id, "grpc-rid-1");
    assert!(
        is_valid_traceparent(&reply.traceparent),
        "traceparent {:?}",
        reply.traceparent
    );

    // Server streaming.
    let mut stream = client
        .server_stream(req("s", 5, None))
        .await
        .expect("stream")
        .into_inner();
    let mut got = Vec::new();
    while let Some(item) = tokio::time::timeout(WAIT, stream.message())
        .await
        .expect("item in time")
        .expect("stream item (status OK in trailers)")
    {
        got.push(item.message);
    }
    assert_eq!(got, ["s-0", "s-1", "s-2", "s-3", "s-4"]);

    // Error status (trailers-only response).
    let status = client
        .fail(req("ghost", 0, None))
        .await
        .expect_err("NOT_FOUND");
    assert_eq!(status.code(), tonic::Code::NotFound, "{status:?}");
    assert_eq!(status.message(), "no such thing: ghost");

    // Error status in trailers after data.
    let mut stream = client
        .server_stream(req("f", 5, Some(2)))
        .await
        .expect("stream")
        .into_inner();
    assert_eq!(
        stream.message().await.expect("0").expect("some").message,
        "f-0"
    );
    assert_eq!(
        stream.message().await.expect("1").expect("some").message,
        "f-1"
    );
    let status = stream.message().await.expect_err("NOT_FOUND in trailers");
    assert_eq!(status.code(), tonic::Code::NotFound, "{status:?}");
    assert_eq!(status.message(), "stream stopped after 2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_over_h2c_unary_streaming_and_errors() {
    let (_server, gw) = setup(false).await;
    let mut client = EchoClient::connect(&gw.http_url(""))
        .await
        .expect("h2c channel to the gateway");
    exercise(&mut client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_over_tls_h2_unary_streaming_and_errors() {
    let (_server, gw) = setup(true).await;
    let pem = gw.self_signed_cert_pem().expect("generated cert");
    let addr = gw.https_addr().expect("https");
    let mut client = EchoClient::connect_tls(
        &format!("https://127.0.0.1:{}", addr.port()),
        &pem,
        "localhost",
    )
    .await
    .expect("TLS h2 channel to the gateway");
    exercise(&mut client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_http2_client_sees_grpc_trailers() {
    let (_server, gw) = setup(false).await;
    let mut h2 = H2Client::connect_h2c(gw.http_addr()).await.expect("h2c");

    let request = h2
        .request(http::Method::POST, grpc::SERVER_STREAM)
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Full::new(Bytes::from(grpc::encode_frame(&req(
            "raw", 3, None,
        )))))
        .expect("request");
    let resp = h2.send_full(request).await.expect("send");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("content-type"), Some("application/grpc"));
    assert_eq!(
        resp.trailer("grpc-status"),
        Some("0"),
        "trailers: {:?}",
        resp.trailers
    );
    let replies: Vec<EchoReply> = grpc::decode_frames(&resp.body).expect("gRPC frames");
    assert_eq!(replies.len(), 3);
    assert_eq!(replies[2].message, "raw-2");

    let request = h2
        .request(http::Method::POST, grpc::SERVER_STREAM)
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Full::new(Bytes::from(grpc::encode_frame(&req(
            "raw",
            3,
            Some(1),
        )))))
        .expect("request");
    let resp = h2.send_full(request).await.expect("send");
    assert_eq!(
        resp.trailer("grpc-status"),
        Some("5"),
        "trailers: {:?}",
        resp.trailers
    );
    assert_eq!(
        resp.trailer("grpc-message").map(grpc::decode_grpc_message),
        Some("stream stopped after 1".to_string())
    );
    let replies: Vec<EchoReply> = grpc::decode_frames(&resp.body).expect("gRPC frames");
    assert_eq!(replies.len(), 1);
}
