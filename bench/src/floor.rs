//! What the comparison floors share: `bench-pingora` (a no-op pingora proxy) and `bench-hyper`
//! (the same on hyper). Both forward every request to one upstream and do nothing else; these
//! are their common flags, their access log and their `tracing` setting, so that the two differ
//! only in the HTTP stack they measure.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use clap::Args;
use pingora::upstreams::peer::HttpPeer;

/// How long an idle upstream connection stays in a floor's pool.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// The upstream peer of the pingora-core upstream half every floor mode uses (bench-pingora's
/// proxy and core modes, `bench-hyper --pingora-upstream`): plain HTTP/1.1, a 1 s connect
/// timeout, [`IDLE_TIMEOUT`], header names without case when `discard_header_case`.
pub fn upstream_peer(upstream: SocketAddr, discard_header_case: bool) -> HttpPeer {
    let mut peer = HttpPeer::new(upstream, false, String::new());
    peer.options.discard_h1_header_case = discard_header_case;
    peer.options.connection_timeout = Some(Duration::from_secs(1));
    peer.options.idle_timeout = Some(IDLE_TIMEOUT);
    peer
}

/// The flags every floor takes besides its `--listen` address.
#[derive(Debug, Args)]
pub struct FloorArgs {
    #[command(flatten)]
    pub tls: crate::cli::TlsListen,
    /// The upstream every request goes to (plain HTTP/1.1, pooled keep-alive connections).
    #[arg(long, default_value = "127.0.0.1:19000")]
    pub upstream: SocketAddr,
    /// Worker threads (one runtime per thread, no work stealing; 1 for the comparisons).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Append one access-log line per request to this file (buffered).
    #[arg(long)]
    pub access_log: Option<PathBuf>,
}

/// A buffered access-log file, flushed when the 64 KiB buffer fills and on the first line written
/// a second or more after the last flush — how nginx writes `access_log ... buffer=`: the
/// cheapest honest access log, written on the worker.
#[derive(Debug)]
pub struct AccessLog {
    out: Mutex<(BufWriter<File>, Instant)>,
}

impl AccessLog {
    /// Opens (creates, appends to) the log file at `path`.
    ///
    /// # Errors
    /// The file cannot be opened for appending.
    pub fn open(path: &Path) -> io::Result<Self> {
        let file = File::options().create(true).append(true).open(path)?;
        Ok(Self {
            out: Mutex::new((BufWriter::with_capacity(64 * 1024, file), Instant::now())),
        })
    }

    /// Appends `METHOD PATH STATUS BYTES MICROS`: the response's body bytes and the time since
    /// `started`. Write errors are dropped (a full disk must not stop the proxy).
    pub fn write(&self, method: &str, path: &str, status: u16, bytes: usize, started: Instant) {
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        let (w, last_flush) = &mut *out;
        let _ = writeln!(
            w,
            "{method} {path} {status} {bytes} {}",
            started.elapsed().as_micros()
        );
        if last_flush.elapsed() >= Duration::from_secs(1) {
            let _ = w.flush();
            *last_flush = Instant::now();
        }
    }
}

/// Turns `tracing` off for the process: installs a subscriber that enables nothing.
///
/// The floors log nothing through `tracing`, but without a subscriber they would still pay for
/// the h2 crate's spans: `tracing` is built with its `log` feature in this workspace (sqlx and
/// quinn ask for it), and with no subscriber set every span is offered to the `log` facade —
/// thousands of instructions per HTTP/2 request that the gateway, which installs its subscriber
/// at `info`, never pays. With this subscriber every `tracing` callsite is disabled once and
/// skipped after.
pub fn quiet_tracing() {
    // Only fails if a subscriber is already set, which is then the one to keep.
    let _ = tracing::subscriber::set_global_default(tracing::subscriber::NoSubscriber::default());
}
