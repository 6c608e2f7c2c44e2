//! Recording of results while a run is in flight.
//!
//! Workers record into a few mutex-guarded [`Shard`]s (worker `w` uses shard `w % shards`), so
//! the hot path takes one uncontended lock per request and no histogram is shared across
//! threads; the shards are merged once at the end. Latencies are recorded in **nanoseconds** in
//! HdrHistograms with 3 significant digits (reports convert to µs).

use std::collections::BTreeMap;
use std::fmt::Display;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Why a request failed. Every failure is counted under exactly one kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// TCP connect (or name resolution) failed.
    Connect,
    /// No complete response within `--timeout`.
    Timeout,
    /// The response status was 4xx.
    Status4xx,
    /// The response status was 5xx.
    Status5xx,
    /// The peer closed or reset the connection mid-exchange.
    Reset,
    /// Anything else the peer got wrong: bad HTTP, TLS or WebSocket handshake, ALPN mismatch,
    /// a WebSocket echo of the wrong size.
    Protocol,
}

impl ErrorKind {
    /// The kind's name, as in the `--json` `errors` object.
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Connect => "connect",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Status4xx => "status_4xx",
            ErrorKind::Status5xx => "status_5xx",
            ErrorKind::Reset => "reset",
            ErrorKind::Protocol => "protocol",
        }
    }
}

static NOTED: AtomicU8 = AtomicU8::new(0);
static FIRST_ERRORS: Mutex<Vec<(ErrorKind, String)>> = Mutex::new(Vec::new());

/// Remembers the first failure of each kind with its detail (e.g. the TLS alert), so the user
/// learns *why* requests failed, not only how many. Costs one atomic load once noted.
pub fn note_error(kind: ErrorKind, detail: &dyn Display) -> ErrorKind {
    let bit = 1u8 << (kind as u8);
    if NOTED.load(Ordering::Relaxed) & bit == 0 && NOTED.fetch_or(bit, Ordering::Relaxed) & bit == 0
    {
        if let Ok(mut v) = FIRST_ERRORS.lock() {
            v.push((kind, detail.to_string()));
        }
    }
    kind
}

/// The first failure of each kind seen so far, with its detail.
pub fn first_errors() -> Vec<(ErrorKind, String)> {
    FIRST_ERRORS.lock().map(|v| v.clone()).unwrap_or_default()
}

/// Failure counts by kind; field names are part of the `--json` schema.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ErrorCounts {
    /// Sum of all kinds.
    pub total: u64,
    /// See [`ErrorKind::Connect`].
    pub connect: u64,
    /// See [`ErrorKind::Timeout`].
    pub timeout: u64,
    /// See [`ErrorKind::Status4xx`].
    pub status_4xx: u64,
    /// See [`ErrorKind::Status5xx`].
    pub status_5xx: u64,
    /// See [`ErrorKind::Reset`].
    pub reset: u64,
    /// See [`ErrorKind::Protocol`].
    pub protocol: u64,
}

impl ErrorCounts {
    /// Counts one failure.
    pub fn add(&mut self, kind: ErrorKind) {
        self.total += 1;
        match kind {
            ErrorKind::Connect => self.connect += 1,
            ErrorKind::Timeout => self.timeout += 1,
            ErrorKind::Status4xx => self.status_4xx += 1,
            ErrorKind::Status5xx => self.status_5xx += 1,
            ErrorKind::Reset => self.reset += 1,
            ErrorKind::Protocol => self.protocol += 1,
        }
    }

    /// Adds another set of counts.
    pub fn merge(&mut self, other: &ErrorCounts) {
        self.total += other.total;
        self.connect += other.connect;
        self.timeout += other.timeout;
        self.status_4xx += other.status_4xx;
        self.status_5xx += other.status_5xx;
        self.reset += other.reset;
        self.protocol += other.protocol;
    }
}

/// A new latency histogram: 1 ns to 1 hour, 3 significant digits, growing if needed.
pub fn new_histogram() -> Histogram<u64> {
    let mut h = Histogram::new_with_bounds(1, 3_600_000_000_000, 3)
        .expect("constant histogram bounds are valid");
    h.auto(true);
    h
}

/// Records `d` (in ns) into `h`, clamping to the histogram's range.
pub fn record(h: &mut Histogram<u64>, d: Duration) {
    let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX).max(1);
    h.saturating_record(ns);
}

/// The outcome of one measured request, as the engine records it.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// Time from the request's start (its intended time in open loop) to the end of its
    /// response; `None` when no response arrived.
    pub latency: Option<Duration>,
    /// Open loop only: how late the request was sent relative to its intended time.
    pub send_delay: Option<Duration>,
    /// Response status, when there was one (WebSocket messages have none).
    pub status: Option<u16>,
    /// Payload bytes received.
    pub bytes: u64,
    /// The failure, if the request failed.
    pub error: Option<ErrorKind>,
}

/// One shard of results (and, after [`Recorder::merge`], the totals).
#[derive(Debug, Clone)]
pub struct Shard {
    /// Latency of every request that got a response (including 4xx/5xx), in ns.
    pub latency: Histogram<u64>,
    /// Open loop: intended-to-actual send delay, in ns.
    pub send_delay: Histogram<u64>,
    /// Requests that succeeded.
    pub ok: u64,
    /// Failures by kind.
    pub errors: ErrorCounts,
    /// Payload bytes received.
    pub bytes: u64,
    /// Responses by status code.
    pub status: BTreeMap<u16, u64>,
}

impl Shard {
    /// An empty shard.
    pub fn new() -> Self {
        Self {
            latency: new_histogram(),
            send_delay: new_histogram(),
            ok: 0,
            errors: ErrorCounts::default(),
            bytes: 0,
            status: BTreeMap::new(),
        }
    }

    /// Adds one sample.
    pub fn add(&mut self, s: &Sample) {
        if let Some(lat) = s.latency {
            record(&mut self.latency, lat);
        }
        if let Some(d) = s.send_delay {
            record(&mut self.send_delay, d);
        }
        if let Some(code) = s.status {
            *self.status.entry(code).or_insert(0) += 1;
        }
        self.bytes += s.bytes;
        match s.error {
            None => self.ok += 1,
            Some(kind) => self.errors.add(kind),
        }
    }

    /// Adds another shard.
    pub fn merge(&mut self, other: &Shard) {
        // Both histograms auto-resize, so adding cannot fail on range.
        let _ = self.latency.add(&other.latency);
        let _ = self.send_delay.add(&other.send_delay);
        self.ok += other.ok;
        self.errors.merge(&other.errors);
        self.bytes += other.bytes;
        for (code, n) in &other.status {
            *self.status.entry(*code).or_insert(0) += n;
        }
    }

    /// Requests finished, successful or not.
    pub fn requests(&self) -> u64 {
        self.ok + self.errors.total
    }
}

impl Default for Shard {
    fn default() -> Self {
        Self::new()
    }
}

/// Sharded results of a run, plus a cheap counter of every finished request (warm-up included)
/// for the progress line.
#[derive(Debug)]
pub struct Recorder {
    shards: Vec<Mutex<Shard>>,
    finished_all: AtomicU64,
}

impl Recorder {
    /// A recorder with `shards` shards (at least one).
    pub fn new(shards: usize) -> Self {
        Self {
            shards: (0..shards.max(1))
                .map(|_| Mutex::new(Shard::new()))
                .collect(),
            finished_all: AtomicU64::new(0),
        }
    }

    /// Records a measured sample from worker `worker`.
    pub fn add(&self, worker: usize, sample: &Sample) {
        let shard = &self.shards[worker % self.shards.len()];
        if let Ok(mut s) = shard.lock() {
            s.add(sample);
        }
    }

    /// Counts a finished request, measured or warm-up (progress line only).
    pub fn tick(&self) {
        self.finished_all.fetch_add(1, Ordering::Relaxed);
    }

    /// Requests finished so far, warm-up included.
    pub fn finished_all(&self) -> u64 {
        self.finished_all.load(Ordering::Relaxed)
    }

    /// (successful, failed) measured requests so far.
    pub fn counts(&self) -> (u64, u64) {
        self.shards
            .iter()
            .fold((0, 0), |(ok, err), s| match s.lock() {
                Ok(s) => (ok + s.ok, err + s.errors.total),
                Err(_) => (ok, err),
            })
    }

    /// All shards added together.
    pub fn merge(&self) -> Shard {
        let mut total = Shard::new();
        for s in &self.shards {
            if let Ok(s) = s.lock() {
                total.merge(&s);
            }
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(us: u64) -> Sample {
        Sample {
            latency: Some(Duration::from_micros(us)),
            send_delay: None,
            status: Some(200),
            bytes: 10,
            error: None,
        }
    }

    #[test]
    fn shards_merge() {
        let r = Recorder::new(3);
        for w in 0..10 {
            r.add(w, &ok(100 + w as u64));
        }
        r.add(
            1,
            &Sample {
                latency: None,
                send_delay: None,
                status: None,
                bytes: 0,
                error: Some(ErrorKind::Reset),
            },
        );
        let t = r.merge();
        assert_eq!(t.ok, 10);
        assert_eq!(t.errors.reset, 1);
        assert_eq!(t.errors.total, 1);
        assert_eq!(t.requests(), 11);
        assert_eq!(t.bytes, 100);
        assert_eq!(t.status.get(&200), Some(&10));
        assert_eq!(t.latency.len(), 10);
        assert_eq!(r.counts(), (10, 1));
    }
}
