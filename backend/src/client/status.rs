//! The client's counters (atomics, written by the writer, read by `status()`).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};

use super::breaker::BreakerState;

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub queued: AtomicU64,
    pub writes: AtomicU64,
    pub events: AtomicU64,
    pub batches: AtomicU64,
    pub requests_failed: AtomicU64,
    pub rejected: AtomicU64,
    pub spooled_records: AtomicU64,
    pub spool_bytes: AtomicU64,
    pub spool_records: AtomicU64,
    pub replayed: AtomicU64,
    pub refused: AtomicU64,
    pub corrupt: AtomicU64,
    pub breaker: AtomicU8,
    pub reachable: AtomicBool,
    pub spooling: AtomicBool,
}

/// A point-in-time view of the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientStatus {
    /// The backend URL.
    pub url: String,
    /// The last request (or health probe) reached the backend.
    pub reachable: bool,
    /// Writes go to the spool (backend unreachable, or the spool is still being replayed).
    pub spooling: bool,
    /// Circuit breaker state.
    pub breaker: BreakerState,
    /// Writes queued in memory, not yet sent or spooled.
    pub queued: u64,
    /// Writes the backend committed (sent directly or replayed).
    pub writes: u64,
    /// Events the backend committed (inserted or duplicate).
    pub events: u64,
    /// Requests that carried writes (a batch of events counts once).
    pub batches: u64,
    /// Requests that failed (and were retried or spooled).
    pub requests_failed: u64,
    /// Writes the backend refused for good.
    pub rejected: u64,
    /// Writes ever written to the spool.
    pub spooled_records: u64,
    /// Spool size on disk now.
    pub spool_bytes: u64,
    /// Spooled writes not yet replayed.
    pub spool_records: u64,
    /// Spooled writes replayed to the backend.
    pub replayed: u64,
    /// Writes refused because the spool was full.
    pub refused: u64,
    /// Corrupt spool records skipped.
    pub corrupt_records: u64,
}

impl Counters {
    pub(crate) fn snapshot(&self, url: &str) -> ClientStatus {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ClientStatus {
            url: url.to_string(),
            reachable: self.reachable.load(Ordering::Relaxed),
            spooling: self.spooling.load(Ordering::Relaxed),
            breaker: BreakerState::from_u8(self.breaker.load(Ordering::Relaxed)),
            queued: l(&self.queued),
            writes: l(&self.writes),
            events: l(&self.events),
            batches: l(&self.batches),
            requests_failed: l(&self.requests_failed),
            rejected: l(&self.rejected),
            spooled_records: l(&self.spooled_records),
            spool_bytes: l(&self.spool_bytes),
            spool_records: l(&self.spool_records),
            replayed: l(&self.replayed),
            refused: l(&self.refused),
            corrupt_records: l(&self.corrupt),
        }
    }
}
