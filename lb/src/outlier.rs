//! Passive outlier detection: eject targets that keep failing real requests.
//!
//! Active health checks only see a probe endpoint; outlier detection watches the traffic itself.
//! The rules follow Envoy's `consecutive_5xx` detector with its defaults:
//!
//! * **Failure** is any attempt completed with `success = false` (connect failure, timeout,
//!   reset, 5xx). A success resets the target's run of failures to zero.
//! * **Ejection**: when a target's run reaches `consecutive_failures` (default 5) it is ejected,
//!   i.e. no strategy picks it (except in panic mode, see [`crate::pool`]). Outcomes of requests
//!   that were already in flight when it was ejected are ignored.
//! * **Duration**: `min(base_ejection × m, max_ejection)` where `m` is the ejection multiplier
//!   after incrementing it (default `base_ejection` 30 s, `max_ejection` 300 s). The multiplier
//!   starts at 0, grows by one per ejection and shrinks by one for every full `clean_interval`
//!   (default 10 s) the target spent readmitted before its next ejection — so a target that
//!   fails again right after readmission stays out twice as long, one that behaved for a while
//!   starts over.
//! * **Limit**: at most `L = max(1, ⌊N × max_ejection_percent / 100⌋)` of the `N` targets are
//!   ejected at once (default 10 %): with 10 targets one may be ejected, with 20 two, and with
//!   fewer than 10 still one ("unless that would be less than one target, allow one"). A target
//!   that reaches the threshold while `L` targets are out is not ejected; it keeps its run of
//!   failures and is reconsidered on its next failure. `max_ejection_percent = 0` or
//!   `consecutive_failures = 0` disables ejection.
//! * **Readmission** is lazy: an ejection stores the clock reading at which it ends
//!   (`ejected_until_ns`); whoever next checks the target after that instant (a pick, a snapshot,
//!   another ejection decision) clears it. No timer task is needed and tests drive it with a
//!   [`ManualClock`](crate::clock::ManualClock).
//!
//! The count of ejected targets is an atomic reserved with compare-and-swap before a target is
//! ejected, so concurrent failures on different targets cannot exceed the limit.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::clock::nanos;
use crate::target::{Target, TargetStats};

/// Outlier-detection settings; the defaults are Envoy's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutlierConfig {
    /// Failed attempts in a row that eject a target; `0` disables ejection.
    pub consecutive_failures: u32,
    /// Ejection time per unit of the ejection multiplier.
    pub base_ejection: Duration,
    /// Upper bound of one ejection.
    pub max_ejection: Duration,
    /// Largest share of targets ejected at once, in percent (at least one target may always be
    /// ejected unless this is `0`).
    pub max_ejection_percent: u32,
    /// Readmitted time that lowers the ejection multiplier by one.
    pub clean_interval: Duration,
}

impl Default for OutlierConfig {
    fn default() -> Self {
        OutlierConfig {
            consecutive_failures: 5,
            base_ejection: Duration::from_secs(30),
            max_ejection: Duration::from_secs(300),
            max_ejection_percent: 10,
            clean_interval: Duration::from_secs(10),
        }
    }
}

impl OutlierConfig {
    /// Ejection disabled.
    pub fn disabled() -> Self {
        OutlierConfig {
            consecutive_failures: 0,
            ..Self::default()
        }
    }

    /// How many of `n` targets may be ejected at the same time.
    pub fn max_ejected(&self, n: usize) -> usize {
        if self.max_ejection_percent == 0 || self.consecutive_failures == 0 {
            return 0;
        }
        let pct = self.max_ejection_percent.min(100) as usize;
        (n.saturating_mul(pct) / 100).max(1).min(n)
    }
}

/// Per-pool outlier detector: the settings and the number of targets currently ejected.
#[derive(Debug)]
pub(crate) struct OutlierDetector {
    cfg: OutlierConfig,
    ejected: AtomicUsize,
}

impl OutlierDetector {
    pub(crate) fn new(cfg: OutlierConfig) -> Self {
        OutlierDetector {
            cfg,
            ejected: AtomicUsize::new(0),
        }
    }

    pub(crate) fn config(&self) -> &OutlierConfig {
        &self.cfg
    }

    /// Targets whose ejection was recorded and not yet seen to expire.
    pub(crate) fn ejected_count(&self) -> usize {
        self.ejected.load(Ordering::Relaxed)
    }

    /// Whether `stats` is ejected at `now_ns`, readmitting it if its ejection has expired.
    pub(crate) fn is_ejected(&self, stats: &TargetStats, now_ns: u64) -> bool {
        let until = stats.ejected_until_ns.load(Ordering::Relaxed);
        if until == 0 {
            return false;
        }
        if now_ns < until {
            return true;
        }
        // Expired: exactly one observer wins the swap to 0 and releases the slot.
        if stats
            .ejected_until_ns
            .compare_exchange(until, 0, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            stats.consecutive_failures.store(0, Ordering::Relaxed);
            self.ejected.fetch_sub(1, Ordering::Relaxed);
        }
        false
    }

    /// Accounts one completed attempt on `targets[idx]`; may eject it.
    pub(crate) fn on_outcome(&self, targets: &[Target], idx: usize, success: bool, now_ns: u64) {
        let Some(target) = targets.get(idx) else {
            return;
        };
        let stats = &*target.stats;
        if self.is_ejected(stats, now_ns) {
            return;
        }
        if success {
            if stats.consecutive_failures.load(Ordering::Relaxed) != 0 {
                stats.consecutive_failures.store(0, Ordering::Relaxed);
            }
            return;
        }
        let run = stats.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        if self.cfg.consecutive_failures != 0 && run >= self.cfg.consecutive_failures {
            self.try_eject(targets, stats, now_ns);
        }
    }

    fn try_eject(&self, targets: &[Target], stats: &TargetStats, now_ns: u64) {
        let limit = self.cfg.max_ejected(targets.len());
        if limit == 0 {
            return;
        }
        // Readmit expired ejections first so they do not count against the limit.
        for t in targets {
            if t.stats.ejection_pending() {
                self.is_ejected(&t.stats, now_ns);
            }
        }
        let reserved = self
            .ejected
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < limit).then_some(n + 1)
            })
            .is_ok();
        if !reserved {
            return;
        }
        let until = now_ns
            .saturating_add(self.ejection_ns(stats, now_ns))
            .max(1);
        if stats
            .ejected_until_ns
            .compare_exchange(0, until, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            stats.last_ejection_end_ns.store(until, Ordering::Relaxed);
            stats.consecutive_failures.store(0, Ordering::Relaxed);
        } else {
            // Another thread ejected this target first.
            self.ejected.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Updates the multiplier for a new ejection at `now_ns` and returns its length.
    fn ejection_ns(&self, stats: &TargetStats, now_ns: u64) -> u64 {
        let last_end = stats.last_ejection_end_ns.load(Ordering::Relaxed);
        let clean_ns = nanos(self.cfg.clean_interval).max(1);
        let clean_intervals = if last_end == 0 {
            0
        } else {
            now_ns.saturating_sub(last_end) / clean_ns
        };
        let prev = u64::from(stats.times_ejected.load(Ordering::Relaxed));
        let m = prev.saturating_sub(clean_intervals).saturating_add(1);
        stats
            .times_ejected
            .store(u32::try_from(m).unwrap_or(u32::MAX), Ordering::Relaxed);
        nanos(self.cfg.base_ejection)
            .saturating_mul(m)
            .min(nanos(self.cfg.max_ejection))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_rule() {
        let c = OutlierConfig::default();
        assert_eq!(c.max_ejected(0), 0);
        assert_eq!(c.max_ejected(1), 1);
        assert_eq!(c.max_ejected(3), 1);
        assert_eq!(c.max_ejected(10), 1);
        assert_eq!(c.max_ejected(19), 1);
        assert_eq!(c.max_ejected(20), 2);
        assert_eq!(c.max_ejected(1000), 100);
        let all = OutlierConfig {
            max_ejection_percent: 250,
            ..c
        };
        assert_eq!(all.max_ejected(4), 4);
        assert_eq!(OutlierConfig::disabled().max_ejected(10), 0);
        let zero = OutlierConfig {
            max_ejection_percent: 0,
            ..c
        };
        assert_eq!(zero.max_ejected(10), 0);
    }
}
