//! Consistent hashing on a ketama ring.
//!
//! Requests that carry the same affinity key (a user id header, a session cookie, the client IP)
//! go to the same target, and changing the target set moves as few keys as possible.
//!
//! **Ring.** Each target owns `160 × weight` points on a ring of `u64` values. Point `v` of a
//! target is `hash("{addr}-{v}")`, e.g. `hash("10.0.0.1:8080-17")`, so a target's points depend on
//! its address only — never on its position in the list or on the other targets. The points are
//! sorted once at build time into an immutable array.
//!
//! **Pick.** For a key hash `k` the owner is the target of the first point `≥ k`, wrapping to the
//! first point past the end. A bucket index on the top bits of the point values (about one point
//! per bucket) narrows the binary search to a handful of points, so a lookup touches two or
//! three cache lines instead of `log2(P)` scattered ones. If that target is unavailable (unhealthy or
//! ejected) the walk continues clockwise to the next point whose target is available, so only the
//! keys of the missing target move, spread over the others. With no available target at all
//! (panic mode, see [`crate::pool`]) the key's owner is used as is.
//!
//! **Stability.** Removing one of `N` equally weighted targets moves only the keys it owned,
//! `≈ 1/N` of them; every other key keeps its target. Adding one takes `≈ 1/(N+1)` from the
//! others.
//!
//! **Hash.** [`hash_key`] is fixed and documented so the mapping is stable across releases and
//! processes: FNV-1a 64 over the bytes, then the MurmurHash3 64-bit finaliser (`fmix64`) to
//! spread FNV's weak high bits:
//!
//! ```text
//!     h = 0xcbf29ce484222325;  for b in bytes { h = (h ^ b) · 0x100000001b3 }
//!     h ^= h >> 33; h ·= 0xff51afd7ed558ccd; h ^= h >> 33; h ·= 0xc4ceb9fe1a85ec53; h ^= h >> 33
//! ```
//!
//! The pipeline hashes the configured key (`header:NAME`, `cookie:NAME`, `client_ip`) with the
//! same function and passes it as [`PickContext::hash_key`].
//!
//! **No key.** A request without a key (header or cookie absent) falls back to peak-EWMA P2C
//! ([`crate::peak_ewma`]) over the same targets: it has no affinity to keep, so it goes where it
//! will be served fastest.
//!
//! **Size.** The ring holds at most [`MAX_RING_POINTS`] points; beyond that every target's share
//! is scaled down proportionally (at least one point each). Weights are not divided by their gcd:
//! doing so would reshuffle the ring when a target joins or leaves.

use std::fmt::Write;
use std::sync::Arc;

use crate::clock::LazyNow;
use crate::peak_ewma;
use crate::pool::Pool;
use crate::{Balancer, PickContext, Target};

/// Ring points per unit of weight (ketama's 160).
pub const POINTS_PER_WEIGHT: u64 = 160;

/// Upper bound on ring points (about 12 MiB of ring).
pub const MAX_RING_POINTS: u64 = 1 << 20;

/// Ring points walked before checking whether any target is available at all.
const WALK_PROBE: usize = 64;

/// The crate's fixed 64-bit hash (module doc): FNV-1a 64 then `fmix64`.
pub fn hash_key(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    fmix64(h)
}

/// [`hash_key`] of a string's UTF-8 bytes.
pub fn hash_str(key: &str) -> u64 {
    hash_key(key.as_bytes())
}

fn fmix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    h
}

/// Ketama consistent hashing over a [`Pool`].
#[derive(Debug)]
pub struct ConsistentHash {
    pool: Arc<Pool>,
    /// Sorted ring point values.
    points: Vec<u64>,
    /// `owners[i]` is the target index of `points[i]`.
    owners: Vec<u32>,
    /// `index[k]` is the first point whose top `index_bits` bits are `≥ k` (`2^index_bits + 1`
    /// entries), so a lookup binary-searches only the points sharing the key's top bits.
    index: Vec<u32>,
    index_bits: u32,
}

impl ConsistentHash {
    /// Builds the ring for `pool`'s targets.
    pub fn new(pool: Arc<Pool>) -> Self {
        let targets = pool.targets();
        let wanted: Vec<u64> = targets
            .iter()
            .map(|t| POINTS_PER_WEIGHT * u64::from(t.weight.max(1)))
            .collect();
        let total: u64 = wanted.iter().sum();
        let mut ring: Vec<(u64, u32)> = Vec::new();
        let mut label = String::new();
        for (i, (t, want)) in targets.iter().zip(&wanted).enumerate() {
            let count = if total > MAX_RING_POINTS {
                // u128: want · MAX ≤ 2^32·160 · 2^20 fits, but be explicit about it.
                ((u128::from(*want) * u128::from(MAX_RING_POINTS) / u128::from(total)) as u64)
                    .max(1)
            } else {
                *want
            };
            for v in 0..count {
                label.clear();
                let _ = write!(label, "{}-{}", t.addr, v);
                ring.push((hash_str(&label), i as u32));
            }
        }
        ring.sort_unstable();
        let (points, owners): (Vec<u64>, Vec<u32>) = ring.into_iter().unzip();
        // About one point per index bucket, between 2^4 and 2^20 buckets.
        let index_bits = (usize::BITS - points.len().leading_zeros()).clamp(4, 20);
        let index = (0..=(1u64 << index_bits))
            .map(|k| {
                let first = points.partition_point(|&p| (p >> (64 - index_bits)) < k);
                first as u32
            })
            .collect();
        ConsistentHash {
            pool,
            points,
            owners,
            index,
            index_bits,
        }
    }

    /// Number of points on the ring.
    pub fn ring_len(&self) -> usize {
        self.points.len()
    }

    /// The owner of `key` on the ring, ignoring availability; `None` for an empty ring.
    pub fn owner(&self, key: u64) -> Option<usize> {
        let start = self.position(key)?;
        Some(self.owners[start] as usize)
    }

    fn position(&self, key: u64) -> Option<usize> {
        if self.points.is_empty() {
            return None;
        }
        let k = (key >> (64 - self.index_bits)) as usize;
        let (lo, hi) = match (self.index.get(k), self.index.get(k + 1)) {
            (Some(&lo), Some(&hi)) => (lo as usize, hi as usize),
            _ => (0, self.points.len()),
        };
        let i = lo + self.points[lo..hi].partition_point(|&p| p < key);
        Some(if i == self.points.len() { 0 } else { i })
    }

    fn pick_key(&self, key: u64) -> Option<usize> {
        let start = self.position(key)?;
        let len = self.points.len();
        let mut now = LazyNow::new(&**self.pool.clock());
        let mut probe = |k: usize| {
            let idx = self.owners[(start + k) % len] as usize;
            self.pool.available_at(idx, &mut now).then_some(idx)
        };
        if let Some(idx) = (0..WALK_PROBE.min(len)).find_map(&mut probe) {
            return Some(idx);
        }
        let mut now2 = LazyNow::new(&**self.pool.clock());
        if len > WALK_PROBE && self.pool.available_count_at(&mut now2) > 0 {
            if let Some(idx) = (WALK_PROBE..len).find_map(probe) {
                return Some(idx);
            }
        }
        // Panic mode: nothing available, keep the key's owner.
        Some(self.owners[start] as usize)
    }
}

impl Balancer for ConsistentHash {
    fn pick(&self, ctx: &PickContext) -> Option<usize> {
        match ctx.hash_key {
            Some(key) => self.pick_key(key),
            None => peak_ewma::pick(&self.pool),
        }
    }

    fn targets(&self) -> &[Target] {
        self.pool.targets()
    }

    fn strategy(&self) -> &'static str {
        "consistent_hash"
    }

    fn pool(&self) -> Option<&Arc<Pool>> {
        Some(&self.pool)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(ports: &[u16]) -> ConsistentHash {
        let targets = ports
            .iter()
            .map(|p| Target::new(([10, 0, 0, 1], *p).into(), 1))
            .collect();
        ConsistentHash::new(Pool::with_defaults(targets))
    }

    fn key(i: u32) -> PickContext {
        PickContext {
            hash_key: Some(hash_str(&format!("user-{i}"))),
        }
    }

    #[test]
    fn hash_is_fixed() {
        // Pinned values: changing the hash would remap every key in production.
        assert_eq!(hash_key(b""), fmix64(0xcbf2_9ce4_8422_2325));
        assert_eq!(hash_str("a"), fmix64(0xaf63_dc4c_8601_ec8c));
        assert_ne!(hash_str("user-1"), hash_str("user-2"));
    }

    #[test]
    fn indexed_lookup_matches_plain_binary_search() {
        let r = ring(&[1, 2, 3, 4, 5, 6, 7]);
        let plain = |key: u64| {
            let i = r.points.partition_point(|&p| p < key);
            if i == r.points.len() {
                0
            } else {
                i
            }
        };
        let edges = [0, 1, u64::MAX, r.points[0], r.points[r.points.len() - 1]];
        for key in edges
            .into_iter()
            .chain((0..20_000).map(|_| fastrand::u64(..)))
        {
            assert_eq!(r.position(key), Some(plain(key)), "key {key:#x}");
        }
    }

    #[test]
    fn same_key_same_target() {
        let r = ring(&[1, 2, 3, 4, 5]);
        for i in 0..1000 {
            let a = r.pick(&key(i));
            assert_eq!(a, r.pick(&key(i)));
            assert!(a.is_some());
        }
    }

    #[test]
    fn removing_one_of_ten_moves_about_a_tenth() {
        let ports: Vec<u16> = (1..=10).collect();
        let before = ring(&ports);
        let after = ring(&ports[..9]); // target with port 10 removed
        let mut moved = 0;
        let mut counts = [0u32; 10];
        for i in 0..10_000 {
            let a = before.pick(&key(i)).expect("pick");
            let b = after.pick(&key(i)).expect("pick");
            counts[a] += 1;
            if before.targets()[a].addr != after.targets()[b].addr {
                moved += 1;
                // Only keys of the removed target move.
                assert_eq!(a, 9);
            }
        }
        assert!(moved <= 1_500, "moved {moved} of 10000");
        assert!(moved >= 500, "moved {moved} of 10000");
        // 160 points per target keep the shares balanced.
        for c in counts {
            assert!((600..=1_400).contains(&c), "{counts:?}");
        }
    }

    #[test]
    fn unavailable_owner_moves_only_its_keys() {
        let r = ring(&[1, 2, 3, 4]);
        let owners: Vec<usize> = (0..2000).map(|i| r.pick(&key(i)).expect("pick")).collect();
        r.targets()[2].stats.set_healthy(false);
        for (i, &o) in owners.iter().enumerate() {
            let now = r.pick(&key(i as u32)).expect("pick");
            if o == 2 {
                assert_ne!(now, 2);
            } else {
                assert_eq!(now, o);
            }
        }
        for t in r.targets() {
            t.stats.set_healthy(false);
        }
        assert_eq!(r.pick(&key(7)), r.owner(key(7).hash_key.expect("key")));
    }

    #[test]
    fn weight_scales_points_and_missing_key_falls_back() {
        let targets = vec![
            Target::new(([10, 0, 0, 1], 1).into(), 1),
            Target::new(([10, 0, 0, 1], 2).into(), 3),
        ];
        let r = ConsistentHash::new(Pool::with_defaults(targets));
        assert_eq!(r.ring_len(), 4 * 160);
        assert!(r.pick(&PickContext::default()).is_some());
        let empty = ConsistentHash::new(Pool::with_defaults(Vec::new()));
        assert_eq!(empty.pick(&key(1)), None);
        assert_eq!(empty.pick(&PickContext::default()), None);
    }
}
