//! One structured access-log line per request, on the `access` tracing target (level info).
//!
//! `RUST_LOG=access=off` silences it; the JSON logger prints its fields at the top level.

use std::time::Duration;

/// Everything one access-log line records.
#[derive(Debug)]
pub struct AccessRecord<'a> {
    /// Request id.
    pub request_id: &'a str,
    /// Front protocol (`h1`, `h2`, `ws`, `h3`).
    pub protocol: &'a str,
    /// Method.
    pub method: &'a str,
    /// Path as received.
    pub path: &'a str,
    /// Matched route, or `-`.
    pub route: &'a str,
    /// Upstream name, or `-`.
    pub upstream: &'a str,
    /// Target address, or `-`.
    pub target: &'a str,
    /// Status sent to the client (0 when none could be sent).
    pub status: u16,
    /// Response body bytes sent to the client.
    pub bytes: usize,
    /// Time from the request head to the end of the response.
    pub duration: Duration,
    /// Gateway error code when the gateway answered itself.
    pub error: &'a str,
}

/// True when access lines are wanted (so callers can skip preparing them).
pub fn enabled() -> bool {
    tracing::enabled!(target: "access", tracing::Level::INFO)
}

/// Writes the access-log line.
pub fn write(r: &AccessRecord<'_>) {
    tracing::info!(
        target: "access",
        log = "access",
        request_id = r.request_id,
        protocol = r.protocol,
        method = r.method,
        path = r.path,
        route = r.route,
        upstream = r.upstream,
        target = r.target,
        status = r.status,
        bytes = r.bytes,
        duration_us = r.duration.as_micros() as u64,
        error = r.error,
    );
}
