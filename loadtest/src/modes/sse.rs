//! `sse`: N Server-Sent Events subscribers for `--duration`.
//!
//! Counts events and bytes; when an event's data carries `"ts_us":<unix µs>` (or
//! `"ts_ms":<unix ms>`) stamped by the sender on this machine, records `now − ts` as that
//! event's delivery latency. A subscriber whose stream ends reconnects after 100 ms (counted as
//! a `reset` error).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{HeaderValue, ACCEPT};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use serde::Serialize;

use super::http::{classify, RequestTemplate};
use crate::net::Connector;
use crate::progress::Progress;
use crate::report::{errors_line, fmt_bytes, LatencySummary, Report, ReportHeader};
use crate::stats::{record, ErrorCounts, ErrorKind, Shard};

/// Settings of an `sse` run.
#[derive(Debug, Clone)]
pub struct SseConfig {
    /// Target URL.
    pub url: String,
    /// Subscribers.
    pub connections: usize,
    /// Listening time.
    pub duration: Duration,
    /// Connect + response head time limit.
    pub timeout: Duration,
    /// Progress line on stderr.
    pub progress: bool,
}

/// Report of an `sse` run.
#[derive(Debug, Clone, Serialize)]
pub struct SseReport {
    /// `tool`, `version` and `mode` (`"sse"`).
    #[serde(flatten)]
    pub header: ReportHeader,
    /// Target URL.
    pub url: String,
    /// Subscribers.
    pub connections: usize,
    /// Seconds listened.
    pub duration_s: f64,
    /// Events received.
    pub events: u64,
    /// Events per second, all subscribers together.
    pub events_per_s: f64,
    /// Body bytes received.
    pub bytes: u64,
    /// Successful subscriptions (a 200 response head), reconnections included.
    pub subscriptions: u64,
    /// Failures by kind.
    pub errors: ErrorCounts,
    /// Per-event latency from the event's timestamp, µs (count 0 if events carry none).
    pub latency_us: LatencySummary,
}

impl Report for SseReport {
    fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }

    fn to_text(&self) -> String {
        let lat = if self.latency_us.count > 0 {
            self.latency_us.line()
        } else {
            "(events carry no ts_us/ts_ms)".to_string()
        };
        format!(
            "orchestra-loadtest sse {}  ({} subscribers)\n  duration    {:.2}s  events {}  ({:.1}/s)  received {}\n  latency     {lat}\n  errors      {}\n",
            self.url,
            self.connections,
            self.duration_s,
            self.events,
            self.events_per_s,
            fmt_bytes(self.bytes as f64),
            errors_line(&self.errors)
        )
    }
}

/// Splits a byte stream into SSE events (blocks ended by a blank line; CR is ignored).
#[derive(Debug, Default)]
pub struct EventParser {
    buf: Vec<u8>,
}

impl EventParser {
    /// Feeds `data`; calls `on_event` with each complete event block.
    pub fn push(&mut self, data: &[u8], mut on_event: impl FnMut(&[u8])) {
        self.buf
            .extend(data.iter().copied().filter(|&b| b != b'\r'));
        let mut start = 0;
        while let Some(pos) = find(&self.buf[start..], b"\n\n") {
            let block = &self.buf[start..start + pos];
            // A block of only comments (":keep-alive") is not an event.
            if block
                .split(|&b| b == b'\n')
                .any(|l| !l.is_empty() && l[0] != b':')
            {
                on_event(block);
            }
            start += pos + 2;
        }
        self.buf.drain(..start);
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The sender's timestamp of an event in µs since the Unix epoch, from `"ts_us":N` or
/// `"ts_ms":N` in its data.
pub fn event_timestamp_us(block: &[u8]) -> Option<u64> {
    let number_after = |key: &[u8]| -> Option<u64> {
        let at = find(block, key)? + key.len();
        let digits: Vec<u8> = block[at..]
            .iter()
            .copied()
            .skip_while(|b| *b == b' ')
            .take_while(u8::is_ascii_digit)
            .collect();
        std::str::from_utf8(&digits).ok()?.parse().ok()
    };
    number_after(b"\"ts_us\":").or_else(|| number_after(b"\"ts_ms\":").map(|ms| ms * 1000))
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

struct Counters {
    events: AtomicU64,
    bytes: AtomicU64,
    subscriptions: AtomicU64,
    shard: Mutex<Shard>,
}

/// Runs `sse`.
pub async fn run(
    cfg: SseConfig,
    connector: Connector,
    mut template: RequestTemplate,
) -> Result<SseReport, String> {
    template.insert_header(ACCEPT, HeaderValue::from_static("text/event-stream"));
    let counters = Arc::new(Counters {
        events: AtomicU64::new(0),
        bytes: AtomicU64::new(0),
        subscriptions: AtomicU64::new(0),
        shard: Mutex::new(Shard::new()),
    });
    let start = Instant::now();
    let deadline = start + cfg.duration;
    let progress = cfg.progress.then(|| {
        let c = counters.clone();
        let mut last = 0;
        Progress::spawn(move |t| {
            let n = c.events.load(Ordering::Relaxed);
            let rate = n - last;
            last = n;
            format!("[{:6.1}s] {rate:>8} events/s  total {n}", t.as_secs_f64())
        })
    });
    let connector = Arc::new(connector);
    let template = Arc::new(template);
    let mut tasks = Vec::with_capacity(cfg.connections);
    for _ in 0..cfg.connections {
        let (c, conn, tpl, timeout) = (
            counters.clone(),
            connector.clone(),
            template.clone(),
            cfg.timeout,
        );
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let sub = subscribe(&conn, &tpl, &c, timeout);
                let res = tokio::time::timeout_at(deadline.into(), sub).await;
                match res {
                    Err(_) => break, // deadline while streaming: done
                    Ok(Ok(())) => add_error(&c, ErrorKind::Reset),
                    Ok(Err(kind)) => add_error(&c, kind),
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    drop(progress);
    let secs = start.elapsed().as_secs_f64().max(1e-9);
    let events = counters.events.load(Ordering::Relaxed);
    let shard = counters.shard.lock().map(|s| s.clone()).unwrap_or_default();
    Ok(SseReport {
        header: ReportHeader::new("sse"),
        url: cfg.url,
        connections: cfg.connections,
        duration_s: (secs * 1000.0).round() / 1000.0,
        events,
        events_per_s: (events as f64 / secs * 10.0).round() / 10.0,
        bytes: counters.bytes.load(Ordering::Relaxed),
        subscriptions: counters.subscriptions.load(Ordering::Relaxed),
        errors: shard.errors,
        latency_us: LatencySummary::from_ns(&shard.latency),
    })
}

fn add_error(c: &Counters, kind: ErrorKind) {
    if let Ok(mut s) = c.shard.lock() {
        s.errors.add(kind);
    }
}

/// One subscription: returns `Ok(())` when the server ended the stream.
async fn subscribe(
    connector: &Connector,
    template: &RequestTemplate,
    c: &Counters,
    timeout: Duration,
) -> Result<(), ErrorKind> {
    let head = async {
        let stream = connector.connect().await?;
        let (mut sender, conn) = http1::Builder::new()
            .handshake::<_, Empty<Bytes>>(TokioIo::new(stream))
            .await
            .map_err(|e| classify(&e))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let (parts, _) = template.build().into_parts();
        let req = http::Request::from_parts(parts, Empty::<Bytes>::new());
        let resp = sender.send_request(req).await.map_err(|e| classify(&e))?;
        Ok::<_, ErrorKind>((sender, resp))
    };
    let (_sender, resp) = tokio::time::timeout(timeout, head)
        .await
        .map_err(|_| ErrorKind::Timeout)??;
    let status = resp.status();
    if status.is_server_error() {
        return Err(ErrorKind::Status5xx);
    }
    if !status.is_success() {
        return Err(ErrorKind::Status4xx);
    }
    c.subscriptions.fetch_add(1, Ordering::Relaxed);
    let mut body = resp.into_body();
    let mut parser = EventParser::default();
    let mut latencies = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| classify(&e))?;
        let Some(data) = frame.data_ref() else {
            continue;
        };
        c.bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
        let now = now_us();
        let mut n = 0;
        parser.push(data, |ev| {
            n += 1;
            if let Some(ts) = event_timestamp_us(ev) {
                latencies.push(Duration::from_micros(now.saturating_sub(ts)));
            }
        });
        c.events.fetch_add(n, Ordering::Relaxed);
        if !latencies.is_empty() {
            if let Ok(mut s) = c.shard.lock() {
                for l in latencies.drain(..) {
                    record(&mut s.latency, l);
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_events_across_chunks() {
        let mut p = EventParser::default();
        let mut got: Vec<String> = Vec::new();
        let mut sink = |ev: &[u8]| got.push(String::from_utf8_lossy(ev).into_owned());
        p.push(b"id: 1\ndata: {\"seq\":1,\"ts_us\":100}\n", &mut sink);
        p.push(b"\nid: 2\r\ndata: x\r\n\r\n:keep-alive\n\n", &mut sink);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0], "id: 1\ndata: {\"seq\":1,\"ts_us\":100}");
        assert_eq!(got[1], "id: 2\ndata: x");
    }

    #[test]
    fn timestamps() {
        assert_eq!(
            event_timestamp_us(b"data: {\"seq\":1,\"ts_us\":1234}"),
            Some(1234)
        );
        assert_eq!(event_timestamp_us(b"data: {\"ts_ms\": 5}"), Some(5000));
        assert_eq!(event_timestamp_us(b"data: hello"), None);
    }
}
