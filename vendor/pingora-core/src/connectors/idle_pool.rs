// ORCHESTRA PATCH (lazy idle pool): this file is new; see vendor/README.md.
//
// Licensed under the Apache License, Version 2.0, like the rest of this crate.

//! A keep-alive pool that checks idle connections when they are taken and on a per-pool sweep,
//! instead of one watcher task per returned connection.
//!
//! [`pingora_pool::ConnectionPool`], which [`TransportConnector`](super::TransportConnector)
//! uses by default, spawns a task for every connection returned to it: an `Arc<Mutex<_>>`
//! around the stream, a `oneshot`, a `Notify` from its LRU, a timer for the idle timeout, and
//! two polls of that task (one to start waiting, one to hand the stream back). On a busy
//! keep-alive pool that is paid once per proxied request. This pool keeps the same guarantees
//! with none of it on the request path:
//!
//! - a connection the server closed (or sent unexpected bytes on) while idle is never handed
//!   out: [`IdlePool::take`]'s caller checks it with the same non-blocking read the default
//!   pool uses before reuse, and tries the next one;
//! - a connection idle past its timeout is never handed out: its deadline is checked when it is
//!   taken;
//! - neither lingers: one sweeper task per pool (started when the pool gains its first
//!   connection, stopped when it is empty) closes expired and closed connections every
//!   [`SWEEP_EVERY`], so a connection outlives its idle timeout, or its server's close, by at
//!   most that long. The sweep only looks at readiness the reactor already has; a healthy idle
//!   connection costs it no system call.
//! - the pool holds at most `capacity` connections; a connection returned to a full pool is
//!   closed (the default pool evicts its least recently used one instead).
//!
//! Connections are taken most recently returned first, so under a steady load the same few stay
//! warm and the rest reach their idle timeout.
//!
//! Tested from the gateway (`gateway/tests/upstream_pool.rs`: this pool directly over real
//! sockets, and through the gateway), where the workspace's CI runs them.

use super::test_reusable_stream;
use crate::protocols::Stream;
use parking_lot::{Mutex, RwLock};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

/// How often the sweeper closes expired and closed idle connections.
pub const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// One idle connection and when it stops being reusable.
struct Idle {
    stream: Stream,
    expires: Option<Instant>,
}

impl Idle {
    fn expired(&self, now: Instant) -> bool {
        self.expires.is_some_and(|at| at <= now)
    }
}

/// The keys are already hashes ([`Peer::reuse_hash`](crate::upstreams::peer::Peer::reuse_hash)):
/// hashing them again would only cost time.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type Nodes = HashMap<u64, Mutex<Vec<Idle>>, BuildHasherDefault<KeyHasher>>;

/// Idle keep-alive connections by pool key, checked lazily (see the module docs).
pub struct IdlePool {
    nodes: RwLock<Nodes>,
    len: AtomicUsize,
    capacity: usize,
    sweeping: AtomicBool,
    unexpected_data: Arc<AtomicU64>,
}

impl IdlePool {
    /// A pool of at most `capacity` idle connections; connections found carrying unexpected
    /// data are counted in `unexpected_data`.
    pub fn new(capacity: usize, unexpected_data: Arc<AtomicU64>) -> Arc<Self> {
        Arc::new(IdlePool {
            nodes: RwLock::new(Nodes::default()),
            len: AtomicUsize::new(0),
            capacity,
            sweeping: AtomicBool::new(false),
            unexpected_data,
        })
    }

    /// How many idle connections the pool holds.
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    /// Whether the pool holds no idle connection.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Keep `stream` for reuse under `key` until `idle_timeout` (forever with `None`) has
    /// passed. Returns `false`, and drops (closes) the stream, when the pool is full.
    ///
    /// The caller checks that the stream is reusable first, as for the default pool.
    pub fn put(self: &Arc<Self>, key: u64, stream: Stream, idle_timeout: Option<Duration>) -> bool {
        if self.len.fetch_add(1, Ordering::Relaxed) >= self.capacity {
            self.len.fetch_sub(1, Ordering::Relaxed);
            return false;
        }
        let idle = Idle {
            stream,
            expires: idle_timeout.map(|t| Instant::now() + t),
        };
        let idle = {
            let nodes = self.nodes.read();
            match nodes.get(&key) {
                Some(node) => {
                    node.lock().push(idle);
                    None
                }
                None => Some(idle),
            }
        };
        if let Some(idle) = idle {
            self.nodes
                .write()
                .entry(key)
                .or_default()
                .get_mut()
                .push(idle);
        }
        self.ensure_sweeper();
        true
    }

    /// The most recently returned connection under `key` whose idle timeout has not passed, if
    /// any. Expired ones met on the way are closed. The caller still checks that the server has
    /// not closed it (see the module docs).
    pub fn take(&self, key: u64) -> Option<Stream> {
        let mut now = None;
        loop {
            let idle = {
                let nodes = self.nodes.read();
                let idle = nodes.get(&key)?.lock().pop()?;
                self.len.fetch_sub(1, Ordering::Relaxed);
                idle
            };
            if idle.expires.is_none() {
                return Some(idle.stream);
            }
            let now = *now.get_or_insert_with(Instant::now);
            if !idle.expired(now) {
                return Some(idle.stream);
            }
            // expired: dropped (closed) here, outside the locks; try the next one
        }
    }

    /// Closes every expired connection and every connection its server closed or wrote to
    /// while idle; forgets keys left without connections. Returns how many were closed.
    pub fn sweep(&self, now: Instant) -> usize {
        let mut closed = Vec::new();
        let mut empty_nodes = false;
        {
            let nodes = self.nodes.read();
            for node in nodes.values() {
                let mut node = node.lock();
                let mut i = 0;
                while i < node.len() {
                    let idle = &mut node[i];
                    if idle.expired(now)
                        || !test_reusable_stream(&mut idle.stream, &self.unexpected_data)
                    {
                        closed.push(node.swap_remove(i));
                    } else {
                        i += 1;
                    }
                }
                empty_nodes |= node.is_empty();
            }
        }
        if empty_nodes {
            self.nodes
                .write()
                .retain(|_, node| !node.get_mut().is_empty());
        }
        self.len.fetch_sub(closed.len(), Ordering::Relaxed);
        closed.len()
        // `closed` dropped here: the connections are closed outside the locks
    }

    /// Starts the sweeper unless one runs.
    fn ensure_sweeper(self: &Arc<Self>) {
        if self.sweeping.load(Ordering::Acquire) || self.sweeping.swap(true, Ordering::AcqRel) {
            return;
        }
        let pool = Arc::downgrade(self);
        pingora_runtime::current_handle().spawn(sweeper(pool));
    }
}

/// Sweeps `pool` every [`SWEEP_EVERY`] while it holds connections; ends when the pool is
/// empty (the next [`IdlePool::put`] starts a new one) or gone.
async fn sweeper(pool: Weak<IdlePool>) {
    /// Marks the sweeper stopped however it ends (its runtime may drop it mid-sleep), unless
    /// it already handed the flag on.
    struct Running {
        pool: Weak<IdlePool>,
        armed: bool,
    }
    impl Drop for Running {
        fn drop(&mut self) {
            if let (true, Some(pool)) = (self.armed, self.pool.upgrade()) {
                pool.sweeping.store(false, Ordering::Release);
            }
        }
    }
    let mut running = Running {
        pool: pool.clone(),
        armed: true,
    };
    loop {
        pingora_timeout::sleep(SWEEP_EVERY).await;
        let Some(pool) = pool.upgrade() else {
            return;
        };
        pool.sweep(Instant::now());
        if pool.is_empty() {
            pool.sweeping.store(false, Ordering::Release);
            // A put that saw the flag still set before the store above counted on this
            // sweeper: keep going if one slipped in and no other sweeper took over.
            if pool.is_empty() || pool.sweeping.swap(true, Ordering::AcqRel) {
                running.armed = false;
                return;
            }
        }
    }
}
