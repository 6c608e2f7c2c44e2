//! `GET /sse`: a Server-Sent Events stream. Each event carries its sequence number and the
//! sender's wall clock in microseconds since the Unix epoch, so a subscriber on the same machine
//! can compute per-event latency:
//!
//! ```text
//! id: 7
//! event: tick
//! data: {"seq":7,"ts_us":1718000000123456}
//! ```

use std::convert::Infallible;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt, Either, StreamBody};
use hyper::body::Frame;
use tokio::time::MissedTickBehavior;

use super::routes::Body;

/// A `200 text/event-stream` response emitting one event per `interval`, forever (until the
/// client goes away).
pub fn response(interval: Duration) -> Response<Body> {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let events = futures::stream::unfold((0u64, ticker), |(seq, mut ticker)| async move {
        ticker.tick().await;
        let frame = Frame::data(Bytes::from(event(seq, now_us())));
        Some((Ok::<_, Infallible>(frame), (seq + 1, ticker)))
    });
    let mut resp = Response::new(Either::Right(BodyExt::boxed(StreamBody::new(events))));
    *resp.status_mut() = StatusCode::OK;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

/// One event in wire format.
pub fn event(seq: u64, ts_us: u64) -> String {
    format!("id: {seq}\nevent: tick\ndata: {{\"seq\":{seq},\"ts_us\":{ts_us}}}\n\n")
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn event_format() {
        assert_eq!(
            super::event(3, 42),
            "id: 3\nevent: tick\ndata: {\"seq\":3,\"ts_us\":42}\n\n"
        );
    }
}
