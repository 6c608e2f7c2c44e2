//! Test support for `orchestra-agent`'s end-to-end tests: the real agent binary as a child
//! process ([`agent`]), and scripted gateway peers — a test double of the *gateway*, never of
//! the agent under test — over QUIC ([`peer`]) and WebSocket ([`ws_peer`]) that speak
//! `orchestra-agent/1`, check the register's HMAC with the gateway's own verifier
//! (`orchestra_plugins::agent_auth`), assign tasks, ack, and send input and stop.

#![allow(dead_code)]

pub mod agent;
pub mod frames;
pub mod peer;
pub mod ws_peer;

use std::time::Duration;

/// How long a test waits for any single thing the agent should do.
pub const WAIT: Duration = Duration::from_secs(30);

/// Polls `f` every 20 ms until it returns true or `timeout` passes.
pub async fn poll_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// True when no live process has this pid (a zombie counts as gone: it no longer runs).
pub fn pid_gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state == "Z" || state == "X"),
    }
}
