//! The request engine: runs any [`Driver`] closed-loop or open-loop over `workers` concurrent
//! workers, with warm-up, duration/count limits, per-request timeout and recording.
//!
//! A driver knows one protocol (HTTP/1.1, h2, WebSocket echo, later HTTP/3 or simulated agents):
//! how to open a connection and how to perform one exchange on it. The engine knows everything
//! else — pacing ([`crate::open_loop`]), timing, error accounting, reconnecting — so a new
//! protocol is a new driver and nothing here changes.
//!
//! Latency of one request runs from its start (closed loop: when the worker began it; open loop:
//! its intended time, see [`crate::open_loop`]) to the end of its response body, and includes
//! opening a connection when the worker had none (always, with `--new-conn`).

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::open_loop::{ClosedLoop, Next, Pacer, Schedule};
use crate::progress::Progress;
use crate::stats::{note_error, ErrorKind, Recorder, Sample, Shard};

/// What one successful exchange returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// HTTP status, if the protocol has one; 4xx and 5xx are counted as errors by the engine.
    pub status: Option<u16>,
    /// Payload bytes received.
    pub bytes: u64,
}

/// One protocol, as the engine drives it.
///
/// Implementations must not panic on anything the peer sends; every failure maps to an
/// [`ErrorKind`].
pub trait Driver: Send + Sync + 'static {
    /// A connection (or a handle on a shared one) owned by one worker.
    type Conn: Send + 'static;

    /// Opens a connection for worker `worker` (drivers that multiplex may hand several workers
    /// handles on the same connection).
    fn connect(&self, worker: usize) -> impl Future<Output = Result<Self::Conn, ErrorKind>> + Send;

    /// Performs one exchange (request and full response) on `conn`.
    fn request(
        &self,
        conn: &mut Self::Conn,
    ) -> impl Future<Output = Result<Outcome, ErrorKind>> + Send;

    /// Whether `conn` can carry another exchange after a successful one. The engine drops it
    /// (and connects again) when this is false, and always after a failure.
    fn reusable(&self, conn: &Self::Conn) -> bool {
        let _ = conn;
        true
    }
}

/// How requests are paced.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pacing {
    /// Back to back on every worker.
    Closed,
    /// A constant `rate` requests/s overall.
    Open {
        /// Requests per second.
        rate: f64,
    },
}

/// Settings of one engine run.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Concurrent workers (each has at most one request in flight).
    pub workers: usize,
    /// Closed or open loop.
    pub pacing: Pacing,
    /// Not recorded.
    pub warmup: Duration,
    /// Measured duration, if bounded by time.
    pub duration: Option<Duration>,
    /// Measured requests, if bounded by count.
    pub requests: Option<u64>,
    /// Per-request time limit (connect included).
    pub timeout: Duration,
    /// Print a progress line on stderr every second.
    pub progress: bool,
    /// Shards of the recorder (about 4 per runtime thread).
    pub shards: usize,
}

/// Results of an engine run.
#[derive(Debug)]
pub struct EngineResult {
    /// Merged recordings of the measured requests.
    pub totals: Shard,
    /// Wall time of the measured part (from the end of warm-up to the last response).
    pub elapsed: Duration,
}

/// Pause after a failed connect before the worker tries again, so a dead target does not turn
/// the run into a tight loop of connect errors.
const CONNECT_BACKOFF: Duration = Duration::from_millis(10);

enum Pace {
    Closed(ClosedLoop),
    Open(Arc<Pacer>),
}

/// Runs `driver` according to `cfg` and returns the merged results.
pub async fn run<D: Driver>(driver: Arc<D>, cfg: &EngineConfig) -> std::io::Result<EngineResult> {
    let start = Instant::now();
    let pace = Arc::new(match cfg.pacing {
        Pacing::Closed => Pace::Closed(ClosedLoop::new(
            start,
            cfg.warmup,
            cfg.duration,
            cfg.requests,
        )),
        Pacing::Open { rate } => Pace::Open(Pacer::start(Schedule::new(
            start,
            rate,
            cfg.warmup,
            cfg.duration,
            cfg.requests,
        ))?),
    });
    let recorder = Arc::new(Recorder::new(cfg.shards.min(cfg.workers)));
    let progress = cfg
        .progress
        .then(|| Progress::requests(recorder.clone(), start, cfg.warmup));

    let mut tasks = Vec::with_capacity(cfg.workers);
    for w in 0..cfg.workers {
        let driver = driver.clone();
        let pace = pace.clone();
        let recorder = recorder.clone();
        let timeout = cfg.timeout;
        tasks.push(tokio::spawn(async move {
            worker(w, &*driver, &pace, &recorder, timeout).await;
        }));
    }
    for t in tasks {
        // A panicking worker is a bug in a driver; its requests are simply missing.
        let _ = t.await;
    }
    let finished = Instant::now();
    drop(progress);
    Ok(EngineResult {
        totals: recorder.merge(),
        elapsed: finished.saturating_duration_since(start + cfg.warmup),
    })
}

async fn worker<D: Driver>(
    w: usize,
    driver: &D,
    pace: &Pace,
    recorder: &Recorder,
    timeout: Duration,
) {
    let mut conn: Option<D::Conn> = None;
    // One timer per worker, pushed forward for each request: extending a tokio timer's deadline
    // does not touch the timer wheel, so a timeout costs almost nothing per request.
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    loop {
        // When this request's clock starts, whether it is measured, and (open loop) its
        // intended time.
        let (base, measured, intended) = match pace {
            Pace::Closed(c) => {
                let now = Instant::now();
                match c.next(now) {
                    Next::Stop => break,
                    Next::Warmup => (now, false, None),
                    Next::Measured => (now, true, None),
                }
            }
            Pace::Open(p) => match p.claim().await {
                None => break,
                Some(claim) => {
                    let now = Instant::now();
                    let intended = claim.slot.intended;
                    if intended > now {
                        // Never early (the pacer releases on time); guard anyway.
                        tokio::time::sleep_until(intended.into()).await;
                    }
                    let base = if claim.waited {
                        Instant::now().max(intended)
                    } else {
                        intended
                    };
                    (base, claim.slot.measured, Some(intended))
                }
            },
        };
        let sent = Instant::now();

        let exchange = async {
            let c = match &mut conn {
                Some(c) => c,
                None => conn.insert(driver.connect(w).await?),
            };
            driver.request(c).await
        };
        deadline.as_mut().reset((sent + timeout).into());
        let result = tokio::select! {
            biased;
            r = exchange => r,
            () = &mut deadline => Err(note_error(
                ErrorKind::Timeout,
                &format_args!("no complete response within {timeout:?}"),
            )),
        };
        let done = Instant::now();

        let sample = match result {
            Ok(out) => {
                if conn.as_ref().is_some_and(|c| !driver.reusable(c)) {
                    conn = None;
                }
                let error = match out.status {
                    Some(s) if s >= 500 => Some(ErrorKind::Status5xx),
                    Some(s) if s >= 400 => Some(ErrorKind::Status4xx),
                    _ => None,
                };
                if let (Some(kind), Some(s)) = (error, out.status) {
                    note_error(kind, &format_args!("HTTP status {s}"));
                }
                Sample {
                    latency: Some(done.saturating_duration_since(base)),
                    send_delay: intended.map(|i| sent.saturating_duration_since(i)),
                    status: out.status,
                    bytes: out.bytes,
                    error,
                }
            }
            Err(kind) => {
                conn = None;
                Sample {
                    latency: None,
                    send_delay: intended.map(|i| sent.saturating_duration_since(i)),
                    status: None,
                    bytes: 0,
                    error: Some(kind),
                }
            }
        };
        recorder.tick();
        if measured {
            recorder.add(w, &sample);
        }
        if sample.error == Some(ErrorKind::Connect) {
            tokio::time::sleep(CONNECT_BACKOFF).await;
        }
    }
}
