//! Active health checks: probe every target on a timer and flip its healthy flag.
//!
//! [`spawn`] starts one tokio task per upstream. Every `interval` it probes all targets
//! concurrently, each probe bounded by `timeout`:
//!
//! * **HTTP** ([`CheckKind::Http`]): connect over TCP, send
//!   `GET {path} HTTP/1.1` with `Host: {addr}` and `Connection: close`, read the status line.
//!   A `2xx` status passes; any other status, a malformed answer, a connect error or the timeout
//!   fails. (Plain HTTP/1.1 over a raw `TcpStream`: the probe needs no HTTP client.)
//! * **TCP** ([`CheckKind::Tcp`]): a completed connect passes.
//!
//! A healthy target becomes **unhealthy** after `unhealthy_after` failed probes in a row; an
//! unhealthy one becomes **healthy** again after `healthy_after` passed probes in a row. Targets
//! start healthy, so traffic flows before the first round; a target that is down at start is
//! marked after `unhealthy_after × interval`. The verdict lives in
//! [`TargetStats::is_healthy`](crate::TargetStats::is_healthy) and strategies skip unhealthy
//! targets (panic mode when none is healthy, see [`crate::pool`]). Transitions are logged.
//!
//! The returned [`HealthChecker`] stops the task when dropped, e.g. when a config reload
//! replaces the upstream.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::MissedTickBehavior;

use crate::Target;

/// What a probe does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckKind {
    /// `GET path` over HTTP/1.1; 2xx passes.
    Http {
        /// Request path, starting with `/`.
        path: String,
    },
    /// A TCP connect passes.
    Tcp,
}

/// Health-check settings for one upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheckConfig {
    /// Probe kind (default `Http { path: "/healthz" }`).
    pub kind: CheckKind,
    /// Time between rounds (default 2 s).
    pub interval: Duration,
    /// Bound on one probe (default 500 ms).
    pub timeout: Duration,
    /// Failed probes in a row that mark a target unhealthy (default 3).
    pub unhealthy_after: u32,
    /// Passed probes in a row that mark a target healthy again (default 2).
    pub healthy_after: u32,
}

impl Default for HealthCheckConfig {
    fn default() -> Self {
        HealthCheckConfig {
            kind: CheckKind::Http {
                path: "/healthz".to_owned(),
            },
            interval: Duration::from_secs(2),
            timeout: Duration::from_millis(500),
            unhealthy_after: 3,
            healthy_after: 2,
        }
    }
}

/// Why a health checker could not start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthError {
    /// The HTTP path is empty, lacks a leading `/`, or contains whitespace or control characters.
    BadPath(String),
    /// `interval` or `timeout` is zero.
    ZeroDuration(&'static str),
    /// `unhealthy_after` or `healthy_after` is zero.
    ZeroThreshold(&'static str),
    /// Called outside a tokio runtime.
    NoRuntime,
}

impl fmt::Display for HealthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HealthError::BadPath(p) => write!(
                f,
                "health check path {p:?} must start with '/' and contain no spaces or control characters"
            ),
            HealthError::ZeroDuration(k) => write!(f, "health check {k} must be greater than zero"),
            HealthError::ZeroThreshold(k) => write!(f, "health check {k} must be at least 1"),
            HealthError::NoRuntime => f.write_str("health checks need a running tokio runtime"),
        }
    }
}

impl std::error::Error for HealthError {}

impl HealthCheckConfig {
    /// Checks the settings (the config compiler can call this to report errors with key paths).
    pub fn validate(&self) -> Result<(), HealthError> {
        if let CheckKind::Http { path } = &self.kind {
            let bad = |c: char| c.is_whitespace() || c.is_control();
            if !path.starts_with('/') || path.chars().any(bad) {
                return Err(HealthError::BadPath(path.clone()));
            }
        }
        if self.interval.is_zero() {
            return Err(HealthError::ZeroDuration("interval"));
        }
        if self.timeout.is_zero() {
            return Err(HealthError::ZeroDuration("timeout"));
        }
        if self.unhealthy_after == 0 {
            return Err(HealthError::ZeroThreshold("unhealthy_after"));
        }
        if self.healthy_after == 0 {
            return Err(HealthError::ZeroThreshold("healthy_after"));
        }
        Ok(())
    }
}

/// A running health checker; dropping it stops the probes.
#[derive(Debug)]
pub struct HealthChecker {
    task: JoinHandle<()>,
}

impl HealthChecker {
    /// Stops the probes now (same as dropping).
    pub fn stop(self) {}
}

impl Drop for HealthChecker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts probing `targets` (clones sharing the balancer's stats, e.g.
/// `balancer.targets().to_vec()`) on the current tokio runtime.
pub fn spawn(targets: Vec<Target>, cfg: HealthCheckConfig) -> Result<HealthChecker, HealthError> {
    cfg.validate()?;
    let rt = tokio::runtime::Handle::try_current().map_err(|_| HealthError::NoRuntime)?;
    let task = rt.spawn(run(targets, Arc::new(cfg)));
    Ok(HealthChecker { task })
}

#[derive(Default, Clone, Copy)]
struct Streak {
    passes: u32,
    failures: u32,
}

async fn run(targets: Vec<Target>, cfg: Arc<HealthCheckConfig>) {
    let mut streaks = vec![Streak::default(); targets.len()];
    let mut ticker = tokio::time::interval(cfg.interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let mut round = JoinSet::new();
        for (i, t) in targets.iter().enumerate() {
            let (addr, cfg) = (t.addr, Arc::clone(&cfg));
            round.spawn(async move { (i, probe(addr, &cfg).await) });
        }
        while let Some(done) = round.join_next().await {
            // A probe task only fails if it panicked or was aborted; skip it this round.
            let Ok((i, result)) = done else { continue };
            if let (Some(t), Some(s)) = (targets.get(i), streaks.get_mut(i)) {
                apply(t, s, result, &cfg);
            }
        }
    }
}

fn apply(t: &Target, s: &mut Streak, result: Result<(), String>, cfg: &HealthCheckConfig) {
    match result {
        Ok(()) => {
            s.failures = 0;
            s.passes = s.passes.saturating_add(1);
            if s.passes >= cfg.healthy_after && !t.stats.is_healthy() {
                t.stats.set_healthy(true);
                tracing::info!(target_addr = %t.addr, passes = s.passes, "upstream target healthy");
            }
        }
        Err(reason) => {
            s.passes = 0;
            s.failures = s.failures.saturating_add(1);
            if s.failures >= cfg.unhealthy_after && t.stats.is_healthy() {
                t.stats.set_healthy(false);
                tracing::warn!(
                    target_addr = %t.addr,
                    failures = s.failures,
                    reason = %reason,
                    "upstream target unhealthy"
                );
            }
        }
    }
}

/// Runs one probe against `addr`; `Err` carries a reason for the log.
async fn probe(addr: SocketAddr, cfg: &HealthCheckConfig) -> Result<(), String> {
    match tokio::time::timeout(cfg.timeout, probe_inner(addr, &cfg.kind)).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer within {:?}", cfg.timeout)),
    }
}

async fn probe_inner(addr: SocketAddr, kind: &CheckKind) -> Result<(), String> {
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let CheckKind::Http { path } = kind else {
        return Ok(());
    };
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: orchestra-health-check\r\n\
         Accept: */*\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("write: {e}"))?;
    let status = read_status(&mut stream).await?;
    if (200..300).contains(&status) {
        Ok(())
    } else {
        Err(format!("status {status}"))
    }
}

/// Reads up to the end of the status line and returns the status code.
async fn read_status(stream: &mut TcpStream) -> Result<u16, String> {
    let mut buf = [0u8; 256];
    let mut len = 0;
    loop {
        if let Some(end) = buf[..len].iter().position(|&b| b == b'\n') {
            return parse_status_line(&buf[..end]);
        }
        if len == buf.len() {
            return Err("status line longer than 256 bytes".to_owned());
        }
        let n = stream
            .read(&mut buf[len..])
            .await
            .map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("connection closed before a status line".to_owned());
        }
        len += n;
    }
}

/// Parses `HTTP/1.x NNN reason` (without the line end) into `NNN`.
fn parse_status_line(line: &[u8]) -> Result<u16, String> {
    let text = std::str::from_utf8(line).map_err(|_| "status line is not UTF-8".to_owned())?;
    let mut parts = text.trim_end_matches('\r').splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    let code = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") || code.len() != 3 {
        return Err(format!("malformed status line {text:?}"));
    }
    code.parse::<u16>()
        .map_err(|_| format!("malformed status line {text:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status_lines() {
        assert_eq!(parse_status_line(b"HTTP/1.1 204 No Content\r"), Ok(204));
        assert_eq!(parse_status_line(b"HTTP/1.0 503"), Ok(503));
        assert!(parse_status_line(b"SSH-2.0-OpenSSH").is_err());
        assert!(parse_status_line(b"HTTP/1.1 20x OK").is_err());
        assert!(parse_status_line(&[0xff, 0xfe]).is_err());
    }

    #[test]
    fn validates_config() {
        assert_eq!(HealthCheckConfig::default().validate(), Ok(()));
        let bad_path = HealthCheckConfig {
            kind: CheckKind::Http {
                path: "/a b\r\nX: y".to_owned(),
            },
            ..HealthCheckConfig::default()
        };
        assert!(matches!(bad_path.validate(), Err(HealthError::BadPath(_))));
        let zero = HealthCheckConfig {
            healthy_after: 0,
            ..HealthCheckConfig::default()
        };
        assert_eq!(
            zero.validate(),
            Err(HealthError::ZeroThreshold("healthy_after"))
        );
        assert_eq!(
            spawn(Vec::new(), HealthCheckConfig::default()).map(|_| ()),
            Err(HealthError::NoRuntime)
        );
    }
}
