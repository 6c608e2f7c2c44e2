//! Server-Sent Events stream through the gateway unbuffered: the client reads event 1
//! while the upstream is still holding event 2 back.

mod common;

use bytes::Bytes;
use common::*;
use futures::StreamExt;
use http_body_util::{BodyExt, Full};
use testkit::client::H2Client;
use testkit::upstream::sse::{EVENT_1, EVENT_2};
use testkit::{GatewayProcess, SseServer};

async fn setup() -> (SseServer, GatewayProcess) {
    let sse = SseServer::start().await.expect("sse upstream");
    let gw = start_gateway(upstream_and_route(
        "events",
        sse.addr(),
        "sse",
        "/api/events/",
    ))
    .await;
    (sse, gw)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_client_sees_event_1_before_event_2_is_released() {
    let (sse, gw) = setup().await;
    let resp = http_client()
        .get(gw.http_url("/api/events/stream"))
        .header("accept", "text/event-stream")
        .send()
        .await
        .expect("response head arrives before the stream ends");
    assert_eq!(resp.status(), 200);
    assert_eq!(
        header(&resp, "content-type").as_deref(),
        Some("text/event-stream")
    );

    let mut stream = resp.bytes_stream();
    let mut got = Vec::new();
    while got.len() < EVENT_1.len() {
        let chunk = tokio::time::timeout(WAIT, stream.next())
            .await
            .expect("event 1 must arrive while event 2 is held back (buffering?)")
            .expect("stream still open")
            .expect("chunk");
        got.extend_from_slice(&chunk);
    }
    assert_eq!(String::from_utf8_lossy(&got), EVENT_1);
    assert_eq!(sse.second_events_sent(), 0, "event 2 was not released yet");

    sse.release();
    let mut rest = Vec::new();
    while let Some(chunk) = tokio::time::timeout(WAIT, stream.next())
        .await
        .expect("stream ends after event 2")
    {
        rest.extend_from_slice(&chunk.expect("chunk"));
    }
    assert_eq!(String::from_utf8_lossy(&rest), EVENT_2);
}

/// Sends `GET /api/events/stream` on `h2`; asserts a `200` head and returns the body.
async fn h2c_open_stream(h2: &mut H2Client) -> hyper::body::Incoming {
    let request = h2
        .request(http::Method::GET, "/api/events/stream")
        .body(Full::new(Bytes::new()))
        .expect("request");
    let resp = tokio::time::timeout(WAIT, h2.send(request))
        .await
        .expect("head in time")
        .expect("send");
    assert_eq!(resp.status(), 200);
    resp.into_body()
}

/// Opens the stream on `h2` and reads until [`EVENT_1`] arrived; returns the rest of the body.
async fn h2c_stream_past_event_1(h2: &mut H2Client) -> hyper::body::Incoming {
    let mut body = h2c_open_stream(h2).await;
    let mut got = Vec::new();
    while got.len() < EVENT_1.len() {
        let frame = tokio::time::timeout(WAIT, body.frame())
            .await
            .expect("event 1 must arrive while event 2 is held back (buffering?)")
            .expect("stream still open")
            .expect("frame");
        if let Some(data) = frame.data_ref() {
            got.extend_from_slice(data);
        }
    }
    assert_eq!(String::from_utf8_lossy(&got), EVENT_1);
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_client_sees_event_1_before_event_2_is_released() {
    let (sse, gw) = setup().await;
    let mut h2 = H2Client::connect_h2c(gw.http_addr()).await.expect("h2c");
    let body = h2c_stream_past_event_1(&mut h2).await;
    assert_eq!(sse.second_events_sent(), 0);

    sse.release();
    let rest = tokio::time::timeout(WAIT, body.collect())
        .await
        .expect("stream ends after event 2")
        .expect("body")
        .to_bytes();
    assert_eq!(String::from_utf8_lossy(&rest), EVENT_2);
}

/// Bad input on the HTTP/2 stream front: a client that resets its stream in the middle of a
/// streamed response. The gateway ends that exchange (the half-read upstream connection is
/// closed, not pooled: a pooled one would hand the next request the rest of the old stream) and
/// keeps serving the same connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_client_that_cancels_mid_stream_leaves_the_connection_and_pool_usable() {
    let (sse, mut gw) = setup().await;
    let mut h2 = H2Client::connect_h2c(gw.http_addr()).await.expect("h2c");
    for _ in 0..2 {
        let body = h2c_stream_past_event_1(&mut h2).await;
        // RST_STREAM(CANCEL) from the client, while the upstream still holds event 2.
        drop(body);
    }
    // Both upstream exchanges end once event 2 is let through; a third request on the same
    // client connection gets a whole, fresh stream.
    sse.release();
    sse.release();
    sse.release();
    let whole = tokio::time::timeout(WAIT, h2c_open_stream(&mut h2).await.collect())
        .await
        .expect("the third stream ends")
        .expect("body")
        .to_bytes();
    assert_eq!(
        String::from_utf8_lossy(&whole),
        format!("{EVENT_1}{EVENT_2}")
    );
    assert!(
        gw.try_status().expect("status").is_none(),
        "the gateway exited"
    );
}
