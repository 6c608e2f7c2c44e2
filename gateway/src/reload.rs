//! Hot-swapped config: validate, compile with carry-over, swap, remember.
//!
//! Every trigger — SIGHUP, the file watch, `POST /admin/reload`, `PUT /admin/config`,
//! `POST /admin/config/rollback` — ends in [`apply`]: the text is parsed and compiled in full
//! against the running config (unchanged upstreams and plugins are reused with their state, see
//! `orchestra_config::compile_with`), and only a config without a single error is swapped in.
//! Applies are serialized by one lock (never taken by requests). Each applied config gets the next
//! version number and its sha256; the last [`HISTORY_LEN`] are kept for rollback.
//!
//! Settings bound at process start (listener addresses, TLS files, worker threads, data dir,
//! `server.header_read_timeout`, `keepalive_timeout` for HTTP/2 and HTTP/3, `max_connections`,
//! `preserve_header_case` for request heads, `[backend]`) are compared too: a change is applied
//! to everything else and reported as `restart_needed`, never silently ignored.

use std::collections::VecDeque;
use std::fmt::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use orchestra_config::{ConfigErrors, Snapshot};
use orchestra_metrics::Registry;
use sha2::{Digest, Sha256};

use crate::state::{GatewayState, Live, SeriesIndex};

/// How many applied versions are kept.
pub const HISTORY_LEN: usize = 20;

/// A remembered config version.
#[derive(Debug, Clone)]
pub struct Version {
    /// Version number.
    pub version: u64,
    /// sha256 of the text, hex.
    pub sha256: String,
    /// The text.
    pub text: Arc<str>,
    /// What applied it.
    pub source: &'static str,
    /// When.
    pub applied_at: SystemTime,
}

/// The config file path, the applied versions and the apply lock.
#[derive(Debug)]
pub struct History {
    inner: Mutex<HistoryInner>,
}

#[derive(Debug)]
struct HistoryInner {
    path: Option<PathBuf>,
    /// What the process bound at start: listener, TLS, thread and data-dir settings.
    bound: Bound,
    versions: VecDeque<Version>,
    next_version: u64,
}

/// Settings fixed at process start; a config that changes them needs a restart.
#[derive(Debug, Clone, PartialEq)]
struct Bound {
    listeners: orchestra_config::Listeners,
    tls: Option<orchestra_config::TlsFiles>,
    threads: usize,
    data_dir: PathBuf,
    backend: orchestra_config::BackendSettings,
    /// Bound into pingora's listeners and the QUIC endpoint at start.
    header_read_timeout: Duration,
    keepalive_timeout: Duration,
    max_connections: usize,
    /// Request side; the response side follows a reload (peers are rebuilt).
    preserve_header_case: bool,
}

impl Bound {
    fn of(s: &Snapshot) -> Bound {
        Bound {
            listeners: s.listeners.clone(),
            tls: s.tls.clone(),
            threads: s.server.threads,
            data_dir: s.server.data_dir.clone(),
            backend: s.backend.clone(),
            header_read_timeout: s.server.limits.header_read_timeout,
            keepalive_timeout: s.server.limits.keepalive_timeout,
            max_connections: s.server.limits.max_connections,
            preserve_header_case: s.server.preserve_header_case,
        }
    }
}

impl History {
    pub(crate) fn new(first: &Live) -> History {
        let mut versions = VecDeque::new();
        versions.push_back(version_of(first));
        History {
            inner: Mutex::new(HistoryInner {
                path: None,
                bound: Bound::of(&first.snapshot),
                versions,
                next_version: first.version + 1,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HistoryInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets the file that `reload` and the file watch read.
    pub fn set_path(&self, path: &Path) {
        self.lock().path = Some(path.to_path_buf());
    }

    /// The config file path, if the gateway was started from a file.
    pub fn path(&self) -> Option<PathBuf> {
        self.lock().path.clone()
    }

    /// Applied versions, oldest first.
    pub fn versions(&self) -> Vec<Version> {
        self.lock().versions.iter().cloned().collect()
    }
}

fn version_of(live: &Live) -> Version {
    Version {
        version: live.version,
        sha256: live.sha256.clone(),
        text: Arc::clone(&live.text),
        source: live.source,
        applied_at: live.applied_at,
    }
}

/// sha256 of `text`, hex.
pub fn sha256_hex(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    let mut out = String::with_capacity(64);
    for b in digest {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// Builds the [`Live`] for a compiled snapshot of `text`, whose SHA-256 is `sha256` (the caller
/// has it already: hashing the text again costs ~30k instructions per reload).
pub(crate) fn make_live(
    registry: &Registry,
    snapshot: Snapshot,
    text: &str,
    sha256: String,
    version: u64,
    source: &'static str,
) -> Live {
    let series = SeriesIndex::build(registry, &snapshot);
    let peers = crate::upstream::PeerIndex::build(&snapshot);
    Live {
        peers,
        snapshot,
        version,
        sha256,
        text: Arc::from(text),
        source,
        applied_at: SystemTime::now(),
        series,
    }
}

/// The result of a successful apply.
#[derive(Debug, Clone)]
pub struct Applied {
    /// The version now running.
    pub version: u64,
    /// Its sha256.
    pub sha256: String,
    /// False when the text equals the running config (nothing was swapped).
    pub changed: bool,
    /// Settings that changed but only take effect after a restart.
    pub restart_needed: Vec<String>,
}

/// Why a reload was not applied.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The new config has errors; the running one is kept.
    #[error("invalid config, running config kept:\n{0}")]
    Invalid(ConfigErrors),
    /// The config file could not be read.
    #[error("cannot read {path}: {reason}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The gateway was not started from a file.
    #[error("the gateway was not started from a config file")]
    NoFile,
    /// There is no older version to roll back to.
    #[error("no previous config version to roll back to")]
    NoPrevious,
    /// The agents' keys file (`[agents] keys_file`) could not be read; the running config and
    /// keys are kept.
    #[error("{0}; the running config and agent keys are kept")]
    AgentKeys(orchestra_plugins::agent_auth::KeysFileError),
}

/// Settings of `new` that differ from what the process bound at start (not from the previous
/// config: a pending restart stays reported until the process restarts).
fn restart_needed(bound: &Bound, new: &Snapshot) -> Vec<String> {
    let new = Bound::of(new);
    let mut out = Vec::new();
    for (name, changed) in [
        ("listeners.http", bound.listeners.http != new.listeners.http),
        (
            "listeners.https",
            bound.listeners.https != new.listeners.https,
        ),
        (
            "listeners.admin",
            bound.listeners.admin != new.listeners.admin,
        ),
        ("tls", bound.tls != new.tls),
        ("server.threads", bound.threads != new.threads),
        ("server.data_dir", bound.data_dir != new.data_dir),
        ("backend", bound.backend != new.backend),
        (
            "server.header_read_timeout",
            bound.header_read_timeout != new.header_read_timeout,
        ),
        (
            // HTTP/1.1 keep-alive follows at once; HTTP/2 and QUIC idle timeouts need a restart.
            "server.keepalive_timeout",
            bound.keepalive_timeout != new.keepalive_timeout,
        ),
        (
            "server.max_connections",
            bound.max_connections != new.max_connections,
        ),
        (
            // Request heads are parsed by the listeners; responses follow at once.
            "server.preserve_header_case",
            bound.preserve_header_case != new.preserve_header_case,
        ),
    ] {
        if changed {
            out.push(name.to_string());
        }
    }
    out
}

/// True when the running config reads files at build time (`jwt` secrets and JWKS, the agents'
/// keys file): a reload re-reads them even when the config text is unchanged, so rotated keys
/// apply and removed agents are disconnected.
fn rereads_files(live: &Live) -> bool {
    live.snapshot.plugins.values().any(|d| d.reads_files()) || live.snapshot.agents.is_some()
}

/// Validates `text` fully and swaps it in; on any error the running config stays.
pub fn apply(
    state: &GatewayState,
    text: &str,
    file: &str,
    source: &'static str,
) -> Result<Applied, ReloadError> {
    let mut history = state.history.lock();
    let current = state.live();
    let sha = sha256_hex(text);
    if sha == current.sha256 && !rereads_files(&current) {
        return Ok(Applied {
            version: current.version,
            sha256: sha,
            changed: false,
            restart_needed: Vec::new(),
        });
    }
    let snapshot = orchestra_config::compile_with(text, file, Some(&current.snapshot))
        .map_err(ReloadError::Invalid)?;
    // The agents' keys file is read (and validated) before anything is swapped.
    let agents = match (state.agents(), snapshot.agents.as_ref()) {
        (Some(_), Some(settings)) => {
            let keys = crate::agent_hub::AgentService::load_keys(settings)
                .map_err(ReloadError::AgentKeys)?;
            Some((settings.clone(), keys))
        }
        _ => None,
    };
    let mut restart = restart_needed(&history.bound, &snapshot);
    if state.agents().is_some() != snapshot.agents.is_some() {
        restart.push("agents".to_string());
    }
    let version = history.next_version;
    history.next_version += 1;
    let live = make_live(
        &state.registry,
        snapshot,
        text,
        sha.clone(),
        version,
        source,
    );
    history.versions.push_back(version_of(&live));
    while history.versions.len() > HISTORY_LEN {
        history.versions.pop_front();
    }
    state.swap(live);
    if let (Some(svc), Some((settings, keys))) = (state.agents(), agents) {
        svc.apply(&settings, keys);
    }
    if !restart.is_empty() {
        tracing::warn!(version, settings = ?restart, "config applied; these settings need a restart to take effect");
    }
    tracing::info!(version, sha256 = %sha, source, "config applied");
    Ok(Applied {
        version,
        sha256: sha,
        changed: true,
        restart_needed: restart,
    })
}

/// Re-reads the config file and applies it.
pub fn reload_file(state: &GatewayState, source: &'static str) -> Result<Applied, ReloadError> {
    let path = state.history.path().ok_or(ReloadError::NoFile)?;
    let text = std::fs::read_to_string(&path).map_err(|e| ReloadError::Read {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    let result = apply(state, &text, &path.display().to_string(), source);
    if let Err(e) = &result {
        tracing::error!(error = %e, source, "config reload rejected");
    }
    result
}

/// Applies the version before the running one again (as a new version).
pub fn rollback(state: &GatewayState) -> Result<Applied, ReloadError> {
    let previous = {
        let history = state.history.lock();
        let current = state.live().version;
        history
            .versions
            .iter()
            .rev()
            .find(|v| v.version < current)
            .cloned()
            .ok_or(ReloadError::NoPrevious)?
    };
    let name = format!("version {}", previous.version);
    apply(state, &previous.text, &name, "rollback")
}

/// Polls the config file and applies it when its content changes.
///
/// Polling `stat` every `interval` (default 500 ms) works the same whether an editor writes in
/// place or writes a new file and renames it over the old one; a change is applied once the file
/// has been stable for one more interval (debounce), and only if its sha256 differs from the
/// running config.
pub async fn watch_file(state: Arc<GatewayState>, interval: Duration) {
    let Some(path) = state.history.path() else {
        return;
    };
    let stamp = |p: &Path| {
        std::fs::metadata(p).ok().map(|m| {
            use std::os::unix::fs::MetadataExt;
            (m.ino(), m.len(), m.modified().ok())
        })
    };
    let mut last = stamp(&path);
    let mut pending = false;
    loop {
        tokio::time::sleep(interval).await;
        let now = stamp(&path);
        if now != last {
            last = now;
            pending = true;
            continue;
        }
        if !pending || now.is_none() {
            continue;
        }
        pending = false;
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        if sha256_hex(&text) != state.live().sha256 {
            let _ = reload_file(&state, "file-watch");
        }
    }
}
