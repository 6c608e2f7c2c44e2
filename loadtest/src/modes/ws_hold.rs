//! `ws-hold`: how much memory does the target spend per idle WebSocket?
//!
//! 1. Read the target's VmRSS (`/proc/PID/status`, summed over every `--pid`).
//! 2. Open `-c` WebSockets, `--open-concurrency` handshakes at a time.
//! 3. Wait `--settle`, read VmRSS again: `(after − before) / opened` is the cost per connection.
//! 4. Hold them all for `--duration` (answering pings, optionally sending our own), read VmRSS
//!    a third time, then close them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use http::HeaderMap;
use serde::Serialize;
use tokio::sync::{watch, Semaphore};
use tokio_tungstenite::tungstenite::Message;

use super::ws::{open, WsConn};
use crate::net::Connector;
use crate::progress::Progress;
use crate::report::{errors_line, fmt_bytes, LatencySummary, Report, ReportHeader};
use crate::stats::{new_histogram, record, ErrorCounts, ErrorKind};

/// Settings of a `ws-hold` run.
#[derive(Debug, Clone)]
pub struct HoldConfig {
    /// Target URL.
    pub url: String,
    /// Extra handshake headers.
    pub headers: HeaderMap,
    /// Connections to open.
    pub connections: usize,
    /// Hold time once all are open.
    pub duration: Duration,
    /// Processes whose VmRSS is summed.
    pub pids: Vec<u32>,
    /// Concurrent handshakes while opening.
    pub open_concurrency: usize,
    /// Pause between the last open and the second RSS reading.
    pub settle: Duration,
    /// Ping period while holding (zero: none).
    pub ping_interval: Duration,
    /// Per-handshake time limit.
    pub timeout: Duration,
    /// Progress line on stderr.
    pub progress: bool,
}

/// Memory of the target processes.
#[derive(Debug, Clone, Serialize)]
pub struct RssReport {
    /// The processes read.
    pub pids: Vec<u32>,
    /// Before opening, KiB.
    pub before_kib: u64,
    /// After opening and settling, KiB.
    pub after_open_kib: u64,
    /// At the end of the hold, KiB.
    pub after_hold_kib: u64,
    /// `after_open - before`, KiB (may be negative if memory was returned).
    pub delta_kib: i64,
    /// `delta * 1024 / opened`, bytes.
    pub per_connection_bytes: Option<f64>,
}

/// Report of a `ws-hold` run.
#[derive(Debug, Clone, Serialize)]
pub struct HoldReport {
    /// `tool`, `version` and `mode` (`"ws-hold"`).
    #[serde(flatten)]
    pub header: ReportHeader,
    /// Target URL.
    pub url: String,
    /// Connections asked for.
    pub requested: usize,
    /// Handshakes that succeeded.
    pub opened: u64,
    /// Handshakes that failed, by kind.
    pub errors: ErrorCounts,
    /// Handshake latency (TCP + TLS + upgrade), µs.
    pub connect_latency_us: LatencySummary,
    /// Seconds it took to open them all.
    pub open_s: f64,
    /// Seconds held.
    pub hold_s: f64,
    /// Connections the peer closed during the hold.
    pub closed_early: u64,
    /// Target memory, when `--pid` was given.
    pub rss: Option<RssReport>,
}

impl Report for HoldReport {
    fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }

    fn to_text(&self) -> String {
        let mut s = format!(
            "orchestra-loadtest ws-hold {}\n  opened      {}/{} in {:.2}s  held {:.1}s  closed early {}\n  handshake   {}\n  errors      {}\n",
            self.url,
            self.opened,
            self.requested,
            self.open_s,
            self.hold_s,
            self.closed_early,
            self.connect_latency_us.line(),
            errors_line(&self.errors),
        );
        match &self.rss {
            Some(r) => {
                s.push_str(&format!(
                    "  target RSS  before {}  after open {}  after hold {}  (pids {:?})\n",
                    fmt_bytes(r.before_kib as f64 * 1024.0),
                    fmt_bytes(r.after_open_kib as f64 * 1024.0),
                    fmt_bytes(r.after_hold_kib as f64 * 1024.0),
                    r.pids
                ));
                if let Some(per) = r.per_connection_bytes {
                    s.push_str(&format!("  per conn    {} \n", fmt_bytes(per)));
                }
            }
            None => s.push_str("  target RSS  (no --pid given)\n"),
        }
        s
    }
}

/// VmRSS in KiB of one process, from `/proc/PID/status`.
pub fn read_rss_kib(pid: u32) -> Result<u64, String> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    parse_vmrss(&text).ok_or_else(|| format!("{path}: no VmRSS line"))
}

/// Extracts `VmRSS:  1234 kB` from a `/proc/PID/status` text.
pub fn parse_vmrss(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

fn total_rss(pids: &[u32]) -> Result<u64, String> {
    pids.iter().map(|&p| read_rss_kib(p)).sum()
}

/// Runs `ws-hold`.
pub async fn run(cfg: HoldConfig, connector: Connector) -> Result<HoldReport, String> {
    let before = if cfg.pids.is_empty() {
        None
    } else {
        Some(total_rss(&cfg.pids)?)
    };
    let (release_tx, release_rx) = watch::channel(false);
    let opened = Arc::new(AtomicU64::new(0));
    let closed_early = Arc::new(AtomicU64::new(0));
    let gate = Arc::new(Semaphore::new(cfg.open_concurrency.max(1)));
    let connector = Arc::new(connector);
    let cfg = Arc::new(cfg);

    let progress = cfg.progress.then(|| {
        let opened = opened.clone();
        let want = cfg.connections;
        Progress::spawn(move |t| {
            format!(
                "[{:6.1}s] open {}/{want}",
                t.as_secs_f64(),
                opened.load(Ordering::Relaxed)
            )
        })
    });

    let open_start = Instant::now();
    let mut handshakes = Vec::with_capacity(cfg.connections);
    let mut holders = Vec::with_capacity(cfg.connections);
    for _ in 0..cfg.connections {
        let gate = gate.clone();
        let connector = connector.clone();
        let cfg = cfg.clone();
        let opened = opened.clone();
        let closed_early = closed_early.clone();
        let mut release = release_rx.clone();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        handshakes.push(done_rx);
        holders.push(tokio::spawn(async move {
            let result = {
                let _permit = gate.acquire().await;
                let t = Instant::now();
                match tokio::time::timeout(cfg.timeout, open(&connector, &cfg.url, &cfg.headers))
                    .await
                {
                    Ok(Ok(ws)) => Ok((ws, t.elapsed())),
                    Ok(Err(kind)) => Err(kind),
                    Err(_) => Err(ErrorKind::Timeout),
                }
            };
            match result {
                Ok((ws, took)) => {
                    opened.fetch_add(1, Ordering::Relaxed);
                    let _ = done_tx.send(Ok(took));
                    if !hold(ws, &mut release, cfg.ping_interval).await {
                        closed_early.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Err(kind) => {
                    let _ = done_tx.send(Err(kind));
                }
            }
        }));
    }

    let mut hist = new_histogram();
    let mut errors = ErrorCounts::default();
    for rx in handshakes {
        match rx.await {
            Ok(Ok(took)) => record(&mut hist, took),
            Ok(Err(kind)) => errors.add(kind),
            Err(_) => errors.add(ErrorKind::Protocol),
        }
    }
    let open_s = open_start.elapsed().as_secs_f64();
    tokio::time::sleep(cfg.settle).await;
    let after_open = before.map(|_| total_rss(&cfg.pids)).transpose()?;
    let hold_start = Instant::now();
    tokio::time::sleep(cfg.duration).await;
    let after_hold = before.map(|_| total_rss(&cfg.pids)).transpose()?;
    let hold_s = hold_start.elapsed().as_secs_f64();
    let _ = release_tx.send(true);
    for h in holders {
        let _ = h.await;
    }
    drop(progress);

    let opened = opened.load(Ordering::Relaxed);
    let rss = match (before, after_open, after_hold) {
        (Some(b), Some(a), Some(h)) => {
            let delta = a as i64 - b as i64;
            Some(RssReport {
                pids: cfg.pids.clone(),
                before_kib: b,
                after_open_kib: a,
                after_hold_kib: h,
                delta_kib: delta,
                per_connection_bytes: (opened > 0)
                    .then(|| (delta as f64 * 1024.0 / opened as f64).round()),
            })
        }
        _ => None,
    };
    Ok(HoldReport {
        header: ReportHeader::new("ws-hold"),
        url: cfg.url.clone(),
        requested: cfg.connections,
        opened,
        errors,
        connect_latency_us: LatencySummary::from_ns(&hist),
        open_s: (open_s * 1000.0).round() / 1000.0,
        hold_s: (hold_s * 1000.0).round() / 1000.0,
        closed_early: closed_early.load(Ordering::Relaxed),
        rss,
    })
}

/// Keeps `ws` open until `release` flips, reading (so pings get answered) and optionally
/// pinging. Returns false if the peer closed it first.
async fn hold(mut ws: WsConn, release: &mut watch::Receiver<bool>, ping: Duration) -> bool {
    let mut ticker = (!ping.is_zero()).then(|| tokio::time::interval(ping));
    let survived = loop {
        let tick = async {
            match ticker.as_mut() {
                Some(t) => {
                    t.tick().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = async { release.wait_for(|r| *r).await.is_ok() } => break true,
            msg = ws.next() => match msg {
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => break false,
            },
            _ = tick => {
                if ws.send(Message::Ping(bytes::Bytes::new())).await.is_err() {
                    break false;
                }
            }
        }
    };
    if survived {
        let _ = tokio::time::timeout(Duration::from_secs(2), ws.close(None)).await;
    }
    survived
}

#[cfg(test)]
mod tests {
    use super::parse_vmrss;

    #[test]
    fn vmrss() {
        let status = "Name:\tnginx\nVmPeak:\t  9000 kB\nVmRSS:\t    5120 kB\nThreads:\t1\n";
        assert_eq!(parse_vmrss(status), Some(5120));
        assert_eq!(parse_vmrss("Name: x\n"), None);
    }

    #[test]
    fn own_process_has_rss() {
        let kib = super::read_rss_kib(std::process::id()).expect("own VmRSS");
        assert!(kib > 0);
    }
}
