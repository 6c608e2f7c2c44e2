//! [`BoundedStore`]: the `rate_limit` plugin's governor state store — a `DashMap` of GCRA
//! states keyed by a 64-bit key hash, with a bound on the number of keys.
//!
//! - Keys are already seeded SipHash outputs (see `rate_limit`), so the map uses an identity
//!   hasher: a lookup is one shard read-lock plus one probe, with no second hash.
//! - Each key costs one `(u64, AtomicU64)` bucket (16 bytes) plus one control byte, at a load
//!   factor between 7/16 and 7/8 (hashbrown grows by doubling): 19–39 bytes per key; at
//!   1,000,000 keys 31 bytes/key counted, 37 bytes/key RSS delta (see `benches/plugins.rs`).
//! - Bound: while the store holds `max_keys` keys, a key that is not in it does not get a state
//!   of its own; it is measured against one shared **overflow** state (the same quota), so a
//!   flood of new keys shares one key's budget instead of growing memory. Keys already present
//!   keep their own state. [`ShrinkableKeyedStateStore::retain_recent`] drops idle keys and
//!   recounts, which makes room again.

use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use dashmap::mapref::entry::Entry;
use dashmap::DashMap;
use governor::nanos::Nanos;
use governor::state::keyed::ShrinkableKeyedStateStore;
use governor::state::{InMemoryState, NotKeyed, StateStore};

/// Hasher for keys that are already uniformly distributed 64-bit hashes.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct IdentityHasher(u64);

impl Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used for `u64` keys; fold anything else for completeness.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type Map = DashMap<u64, InMemoryState, BuildHasherDefault<IdentityHasher>>;

/// The bounded keyed state store (see the module doc). Cloning shares the same state: the
/// limiter owns one handle and the plugin keeps another for counters and maintenance.
#[derive(Debug, Clone)]
pub(crate) struct BoundedStore(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    map: Map,
    overflow: InMemoryState,
    max_keys: usize,
    /// Keys in the map: exact after `retain_recent`, counted up on insert in between.
    len: AtomicUsize,
    /// Checks measured against the overflow state since creation.
    overflowed: AtomicU64,
}

impl BoundedStore {
    /// A store holding at most `max_keys` keys (at least 1).
    pub fn new(max_keys: usize) -> Self {
        BoundedStore(Arc::new(Inner {
            map: Map::default(),
            overflow: InMemoryState::default(),
            max_keys: max_keys.max(1),
            len: AtomicUsize::new(0),
            overflowed: AtomicU64::new(0),
        }))
    }

    /// Keys currently held (cheap: an atomic load).
    pub fn key_count(&self) -> usize {
        self.0.len.load(Ordering::Relaxed)
    }

    /// True when new keys go to the overflow state.
    pub fn is_full(&self) -> bool {
        self.key_count() >= self.0.max_keys
    }

    /// Checks measured against the overflow state so far.
    pub fn overflowed(&self) -> u64 {
        self.0.overflowed.load(Ordering::Relaxed)
    }

    /// Approximate heap bytes of the map: buckets × (entry + control byte).
    pub fn approx_bytes(&self) -> usize {
        self.0.map.capacity() * (std::mem::size_of::<(u64, InMemoryState)>() + 1)
    }
}

impl StateStore for BoundedStore {
    type Key = u64;

    fn measure_and_replace<T, F, E>(&self, key: &u64, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        let s = &*self.0;
        if let Some(state) = s.map.get(key) {
            return state.measure_and_replace(&NotKeyed::NonKey, f);
        }
        if s.len.load(Ordering::Relaxed) >= s.max_keys {
            s.overflowed.fetch_add(1, Ordering::Relaxed);
            return s.overflow.measure_and_replace(&NotKeyed::NonKey, f);
        }
        match s.map.entry(*key) {
            Entry::Occupied(e) => e.get().measure_and_replace(&NotKeyed::NonKey, f),
            Entry::Vacant(v) => {
                s.len.fetch_add(1, Ordering::Relaxed);
                let state = v.insert(InMemoryState::default());
                state.measure_and_replace(&NotKeyed::NonKey, f)
            }
        }
    }
}

impl ShrinkableKeyedStateStore<u64> for BoundedStore {
    fn retain_recent(&self, drop_below: Nanos) {
        ShrinkableKeyedStateStore::retain_recent(&self.0.map, drop_below);
        self.0.len.store(self.0.map.len(), Ordering::Relaxed);
    }

    fn shrink_to_fit(&self) {
        self.0.map.shrink_to_fit();
    }

    fn len(&self) -> usize {
        self.0.map.len()
    }

    fn is_empty(&self) -> bool {
        self.0.map.is_empty()
    }
}
