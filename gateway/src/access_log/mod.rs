//! One access-log line per request, written off the proxy's worker threads.
//!
//! A request ends in [`crate::pipeline::Pipeline::finish`], which moves what the line records
//! into an [`AccessLine`] (no formatting, no copy of the path, no syscall) and hands it to the
//! installed [`AccessLogger`]: a bounded channel to one dedicated writer thread that formats the
//! lines (JSON by default, the same shape the process logger prints) and writes them in batches.
//! When the channel is full — the sink (stderr) stalls, or lines arrive faster than it takes them
//! — the line is dropped and counted ([`dropped`], `orchestra_access_log_dropped_total` in
//! `/metrics`): a request never waits for the log.
//!
//! Lines are wanted when the `access` target is enabled at level info (the default `info`;
//! `RUST_LOG=warn` or `RUST_LOG=access=off` silences them, see [`enabled`]). Without an installed
//! logger (the library used without [`crate::logging::init`]), lines go through `tracing` as an
//! event on the `access` target, as they always did.

mod format;
mod writer;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use http::{HeaderValue, Method};

pub use format::LineFormat;

/// Lines the channel to the writer holds by default (≈ 200 bytes each). At 10 ms between
/// batches this absorbs bursts of hundreds of thousands of requests per second.
pub const DEFAULT_CAPACITY: usize = 16 * 1024;

/// How long the writer sleeps after a batch before it takes the next one: lines are written at
/// most this late, and a loaded gateway pays one write per interval instead of one per request.
pub const DEFAULT_BATCH_INTERVAL: Duration = Duration::from_millis(10);

/// Everything one access-log line records, owned so it can cross to the writer thread.
#[derive(Debug)]
pub struct AccessLine {
    /// Request id (`x-request-id`), empty when the request ended before it had one.
    pub request_id: Option<HeaderValue>,
    /// Front protocol (`h1`, `h2`, `ws`, `h3`).
    pub protocol: &'static str,
    /// Method.
    pub method: Method,
    /// Normalized path, without the query (it may carry tokens).
    pub path: String,
    /// Matched route.
    pub route: Option<Arc<str>>,
    /// Upstream name.
    pub upstream: Option<Arc<str>>,
    /// Target address.
    pub target: Option<SocketAddr>,
    /// Status sent to the client (0 when none could be sent).
    pub status: u16,
    /// Response body bytes sent to the client.
    pub bytes: usize,
    /// Time from the request head to the end of the response.
    pub duration: Duration,
    /// When the request ended (the clock read that gave `duration`); the line's timestamp.
    pub ended: Instant,
    /// Gateway error code when the gateway answered itself, else empty.
    pub error: &'static str,
}

/// Messages to the writer thread.
// Lines travel by value: the channel's slots are allocated once, so a large variant costs a copy
// of ~230 bytes per request where a `Box` would cost an allocation.
#[allow(clippy::large_enum_variant)]
enum Msg {
    Line(AccessLine),
    /// Write everything received so far, then answer.
    Flush(mpsc::Sender<()>),
}

/// Sender half of the access log: cheap to submit to from any thread, never blocks.
#[derive(Debug)]
pub struct AccessLogger {
    tx: SyncSender<Msg>,
    dropped: Arc<AtomicU64>,
}

/// Why the access-log writer could not start.
#[derive(Debug, thiserror::Error)]
pub enum AccessLogError {
    /// The OS refused the writer thread.
    #[error("cannot spawn the access-log writer thread: {0} (raise the process's thread limit)")]
    Spawn(std::io::Error),
    /// [`install`] was called twice.
    #[error("an access logger is already installed for this process")]
    AlreadyInstalled,
}

impl AccessLogger {
    /// Starts a writer thread that writes lines to `sink` in `format`, holding at most `capacity`
    /// lines in flight and sleeping `interval` between batches. The thread ends when the logger
    /// is dropped (after writing what it holds).
    pub fn start(
        sink: Box<dyn std::io::Write + Send>,
        format: LineFormat,
        capacity: usize,
        interval: Duration,
    ) -> Result<(AccessLogger, std::thread::JoinHandle<()>), AccessLogError> {
        let (tx, rx) = mpsc::sync_channel(capacity.max(1));
        let anchor = (Instant::now(), SystemTime::now());
        let handle = std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || writer::run(rx, sink, format, interval, anchor))
            .map_err(AccessLogError::Spawn)?;
        Ok((
            AccessLogger {
                tx,
                dropped: Arc::new(AtomicU64::new(0)),
            },
            handle,
        ))
    }

    /// Queues a line; drops and counts it when the writer is behind. Never blocks, never
    /// allocates: the channel's slots are allocated once, when the logger starts.
    pub fn submit(&self, line: AccessLine) {
        match self.tx.try_send(Msg::Line(line)) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Lines dropped because the writer was behind (or gone).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Waits until every line submitted before this call is written, at most `timeout`. False on
    /// timeout (the sink is stalled).
    pub fn flush(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let (done_tx, done_rx) = mpsc::channel();
        let mut msg = Msg::Flush(done_tx);
        loop {
            match self.tx.try_send(msg) {
                Ok(()) => break,
                Err(TrySendError::Disconnected(_)) => return false,
                Err(TrySendError::Full(back)) => {
                    if Instant::now() >= deadline {
                        return false;
                    }
                    msg = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        done_rx.recv_timeout(left).is_ok()
    }
}

static LOGGER: OnceLock<AccessLogger> = OnceLock::new();

/// Installs the process's access logger (called by [`crate::logging::init`]): lines to stderr.
pub fn install(format: LineFormat) -> Result<(), AccessLogError> {
    if LOGGER.get().is_some() {
        return Err(AccessLogError::AlreadyInstalled);
    }
    let (logger, _handle) = AccessLogger::start(
        Box::new(std::io::stderr()),
        format,
        DEFAULT_CAPACITY,
        DEFAULT_BATCH_INTERVAL,
    )?;
    LOGGER
        .set(logger)
        .map_err(|_| AccessLogError::AlreadyInstalled)
}

/// True when access lines are wanted (so callers can skip preparing them).
pub fn enabled() -> bool {
    tracing::enabled!(target: "access", tracing::Level::INFO)
}

/// Lines the process's access logger dropped because its writer was behind.
pub fn dropped() -> u64 {
    LOGGER.get().map_or(0, AccessLogger::dropped)
}

/// Writes what is queued before the process exits (bounded by `timeout`).
pub fn flush(timeout: Duration) -> bool {
    LOGGER.get().is_none_or(|l| l.flush(timeout))
}

/// Hands the line to the installed logger, or (none installed) emits it through `tracing`.
pub fn submit(line: AccessLine) {
    match LOGGER.get() {
        Some(logger) => logger.submit(line),
        None => emit_event(&line),
    }
}

/// The line as a `tracing` event on the `access` target (no logger installed).
fn emit_event(r: &AccessLine) {
    let target = r.target.map(|a| a.to_string());
    tracing::info!(
        target: "access",
        log = "access",
        request_id = r.request_id.as_ref().and_then(|v| v.to_str().ok()).unwrap_or(""),
        protocol = r.protocol,
        method = r.method.as_str(),
        path = r.path.as_str(),
        route = r.route.as_deref().unwrap_or("-"),
        upstream = r.upstream.as_deref().unwrap_or("-"),
        target = target.as_deref().unwrap_or("-"),
        status = r.status,
        bytes = r.bytes,
        duration_us = r.duration.as_micros() as u64,
        error = r.error,
    );
}
