//! `fanout`: one task's output fanned out by the gateway to N `/ws` subscribers.
//!
//! N connections of one user join one session; then a `custom` task prints `--events` lines
//! `"<i> <unix µs>"` (python3, unbuffered, as fast as it can or at `--rate`). Every subscriber
//! counts the task's `worker:output` events and records, per event, its receive time minus the
//! timestamp in the line (same machine, same clock): the latency from the agent's process to
//! the browser, through the agent, QUIC, the hub, the per-client queues and the WebSocket.
//! Reported: events delivered in total and per second (first to last delivery), subscribers
//! that missed events, and latency percentiles.

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::Semaphore;

use super::realtime::{auth_headers, RtClient};
use crate::cli::FanoutArgs;
use crate::net::Connector;
use crate::report::{LatencySummary, Report};
use crate::stats::new_histogram;

/// Histograms merged from the subscribers' tasks (taken once per subscriber, at its end).
#[derive(Default)]
struct Merge(std::sync::Mutex<Option<Histogram<u64>>>);

impl Merge {
    fn add(&self, h: &Histogram<u64>) {
        let mut g = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match g.as_mut() {
            Some(m) => {
                let _ = m.add(h);
            }
            None => *g = Some(h.clone()),
        }
    }
}

/// What `fanout` reports.
#[derive(Debug, Serialize)]
pub struct FanoutReport {
    /// Subscribers.
    pub subscribers: usize,
    /// Events the task printed.
    pub events_per_subscriber: u64,
    /// Events delivered, all subscribers together.
    pub delivered: u64,
    /// Subscribers that did not get every event.
    pub incomplete_subscribers: usize,
    /// First to last delivery, seconds.
    pub seconds: f64,
    /// delivered / seconds.
    pub events_per_second: f64,
    /// Line printed → event received.
    pub latency: LatencySummary,
}

impl Report for FanoutReport {
    fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    fn to_text(&self) -> String {
        format!(
            "fan-out: {} subscribers x {} events\ndelivered {} events in {:.2} s = {:.0} events/s ({} subscribers incomplete)\nlatency (printed -> received): {}\n",
            self.subscribers,
            self.events_per_subscriber,
            self.delivered,
            self.seconds,
            self.events_per_second,
            self.incomplete_subscribers,
            self.latency.line()
        )
    }
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// `"text":"<i> <ts>` → ts (µs), without parsing the whole message.
fn stamp(text: &str) -> Option<u64> {
    let at = text.find("\"text\":\"")? + 8;
    let rest = &text[at..];
    let sp = rest.find(' ')?;
    let end = rest[sp + 1..].find(|c: char| !c.is_ascii_digit())? + sp + 1;
    rest[sp + 1..end].parse().ok()
}

struct Sub {
    delivered: u64,
    first: Option<Instant>,
    last: Option<Instant>,
}

/// Runs the mode.
pub async fn run(a: FanoutArgs, connector: Connector, url: String) -> Result<FanoutReport, String> {
    let headers = auth_headers(&a.auth)?;
    let mut lead = RtClient::connect(&connector, &url, &headers).await?;
    let session = lead.join(None).await?;
    let open = Arc::new(Semaphore::new(64));
    let mut opening = Vec::with_capacity(a.subscribers);
    for _ in 0..a.subscribers {
        let (connector, url, headers, session, open) = (
            connector.clone(),
            url.clone(),
            headers.clone(),
            session.clone(),
            Arc::clone(&open),
        );
        opening.push(tokio::spawn(async move {
            let _permit = open.acquire().await;
            let mut c = RtClient::connect(&connector, &url, &headers).await?;
            c.join(Some(&session)).await?;
            Ok::<_, String>(c)
        }));
    }
    let mut clients = Vec::with_capacity(a.subscribers);
    for h in opening {
        clients.push(h.await.map_err(|e| e.to_string())??);
    }
    if !a.common.quiet {
        eprintln!(
            "fanout: {} subscribers joined session {session}",
            clients.len()
        );
    }
    let merged = Arc::new(Merge::default());
    let events = a.events;
    let timeout = a.timeout;
    let mut readers = Vec::with_capacity(clients.len());
    for mut c in clients {
        let merged = Arc::clone(&merged);
        readers.push(tokio::spawn(async move {
            let mut h: Histogram<u64> = new_histogram();
            let mut s = Sub {
                delivered: 0,
                first: None,
                last: None,
            };
            while let Some(text) = c.next_text(timeout).await {
                if text.starts_with("{\"type\":\"worker:output\"") {
                    if let Some(ts) = stamp(&text) {
                        let now = Instant::now();
                        s.first.get_or_insert(now);
                        s.last = Some(now);
                        s.delivered += 1;
                        let lat = now_us().saturating_sub(ts).max(1) * 1000;
                        h.saturating_record(lat);
                    }
                } else if text.starts_with("{\"type\":\"task:result\"")
                    || text.contains("\"code\":\"SYS_001\"")
                {
                    break;
                }
            }
            merged.add(&h);
            s
        }));
    }
    let pace = match a.rate {
        Some(r) if r > 0.0 => format!("time.sleep({})", 1.0 / r),
        _ => "pass".to_string(),
    };
    let prompt = format!(
        "python3 -u -c 'import time\nfor i in range({events}):\n    print(i + 1, time.time_ns() // 1000)\n    {pace}'"
    );
    let started = lead
        .start(&session, "custom", &prompt, a.agent.as_deref())
        .await?;
    if !a.common.quiet {
        eprintln!(
            "fanout: task {} started",
            started["data"]["task_id"].as_str().unwrap_or("?")
        );
    }
    let mut delivered = 0;
    let mut incomplete = 0;
    let (mut first, mut last): (Option<Instant>, Option<Instant>) = (None, None);
    for r in readers {
        let s = r.await.map_err(|e| e.to_string())?;
        delivered += s.delivered;
        if s.delivered < events {
            incomplete += 1;
        }
        first = match (first, s.first) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        last = match (last, s.last) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }
    let seconds = match (first, last) {
        (Some(f), Some(l)) => l.duration_since(f).as_secs_f64().max(1e-6),
        _ => 0.0,
    };
    let h = merged
        .0
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
        .unwrap_or_else(new_histogram);
    Ok(FanoutReport {
        subscribers: a.subscribers,
        events_per_subscriber: events,
        delivered,
        incomplete_subscribers: incomplete,
        seconds,
        events_per_second: if seconds > 0.0 {
            delivered as f64 / seconds
        } else {
            0.0
        },
        latency: LatencySummary::from_ns(&h),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_the_stamp() {
        let t = r#"{"type":"worker:output","data":{"kind":"stdout","seq":3,"task_id":"t","text":"12 1700000000123456\n"}}"#;
        assert_eq!(super::stamp(t), Some(1_700_000_000_123_456));
        assert_eq!(super::stamp(r#"{"text":"x"}"#), None);
    }
}
