//! Series, sharded recording and the rotating windows.
//!
//! **Recording.** A series is interned once (at config compile time) into a [`SeriesId`], an index
//! into per-shard vectors of histograms. A thread is bound to one shard on its first record
//! (round robin over `shards`); with at least as many shards as worker threads the shard mutex is
//! uncontended except for the moments a reader or the rotation tick drains it.
//!
//! **Windows.** Time is cut into slots of [`Registry::slot`] (10 s by default). [`Registry::rotate`]
//! drains every shard and adds what it took to the central slot of the current time and to the
//! series' since-start total; it runs on a 1 s tick and before every read, so a sample lands at most
//! one tick away from its true slot. A window of `w` is the merge of the slots overlapping the last
//! `w` (`1m` = the current slot and the 5 before it with the default slot), so it covers between
//! `w − slot` and `w` of history. Central slots older than the longest window are dropped.
//!
//! **Memory.** Histograms are created lazily and auto-resize to the largest value seen: with
//! 3 significant digits a series whose latencies stay under 100 ms holds ≈ 7 × 1024 counters.
//! Each shard has two sets (the one recorded into and the one emptied at the last rotation), so a
//! rotation never makes the request path allocate or resize.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// Significant decimal digits of every histogram.
pub const SIGFIG: u8 = 3;

/// What a series is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SeriesKind {
    /// A route, by name.
    Route,
    /// An upstream target, named `upstream/addr`.
    Target,
    /// A front protocol (`h1`, `h2`, `h3`, `ws`, `agent`).
    Protocol,
}

impl SeriesKind {
    /// Lowercase label (`route`, `target`, `protocol`).
    pub fn as_str(self) -> &'static str {
        match self {
            SeriesKind::Route => "route",
            SeriesKind::Target => "target",
            SeriesKind::Protocol => "protocol",
        }
    }
}

/// Which latency a series measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Metric {
    /// From the request head to the end of the response.
    Total,
    /// From the request head to the upstream's response head (time to first byte).
    Upstream,
}

impl Metric {
    /// Lowercase label (`total`, `upstream`).
    pub fn as_str(self) -> &'static str {
        match self {
            Metric::Total => "total",
            Metric::Upstream => "upstream",
        }
    }
}

/// The identity of a series.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeriesKey {
    /// Route, target or protocol.
    pub kind: SeriesKind,
    /// Its name.
    pub name: String,
    /// Total or upstream latency.
    pub metric: Metric,
}

impl SeriesKey {
    /// `kind:name:metric`, the series' name in the admin API (`route:api:total`).
    pub fn path(&self) -> String {
        format!(
            "{}:{}:{}",
            self.kind.as_str(),
            self.name,
            self.metric.as_str()
        )
    }
}

/// Handle of an interned series: an index valid for the registry's lifetime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SeriesId(u32);

/// A reading window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// The last minute.
    OneMinute,
    /// The last five minutes.
    FiveMinutes,
    /// Since the gateway started.
    Total,
}

impl Window {
    /// Parses `1m`, `5m` or `total`.
    pub fn parse(s: &str) -> Option<Window> {
        match s {
            "1m" => Some(Window::OneMinute),
            "5m" => Some(Window::FiveMinutes),
            "total" => Some(Window::Total),
            _ => None,
        }
    }

    /// The label `1m`, `5m` or `total`.
    pub fn as_str(self) -> &'static str {
        match self {
            Window::OneMinute => "1m",
            Window::FiveMinutes => "5m",
            Window::Total => "total",
        }
    }

    fn span(self) -> Option<Duration> {
        match self {
            Window::OneMinute => Some(Duration::from_secs(60)),
            Window::FiveMinutes => Some(Duration::from_secs(300)),
            Window::Total => None,
        }
    }
}

/// Percentiles of one series over a window, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Summary {
    /// Samples.
    pub count: u64,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Largest sample.
    pub max: u64,
    /// Mean.
    pub mean: f64,
}

impl Summary {
    /// Summarizes a histogram.
    pub fn of(h: &Histogram<u64>) -> Summary {
        if h.is_empty() {
            return Summary::default();
        }
        Summary {
            count: h.len(),
            p50: h.value_at_quantile(0.5),
            p90: h.value_at_quantile(0.9),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
            mean: h.mean(),
        }
    }
}

/// Response counts of one route by status code, lock-free.
#[derive(Debug)]
pub struct StatusCounters {
    counts: Box<[AtomicU64]>,
}

impl Default for StatusCounters {
    fn default() -> Self {
        StatusCounters {
            counts: (0..600).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

impl StatusCounters {
    /// Counts one response; codes outside 100..=599 (e.g. 0 for no response) count as 0.
    pub fn add(&self, status: u16) {
        let i = if (100..600).contains(&status) {
            status as usize
        } else {
            0
        };
        self.counts[i].fetch_add(1, Ordering::Relaxed);
    }

    /// Non-zero `(status, count)` pairs; status 0 means "no response sent".
    pub fn nonzero(&self) -> Vec<(u16, u64)> {
        self.counts
            .iter()
            .enumerate()
            .filter_map(|(i, c)| {
                let n = c.load(Ordering::Relaxed);
                (n > 0).then_some((i as u16, n))
            })
            .collect()
    }
}

type Shard = Vec<Option<Histogram<u64>>>;

#[derive(Debug, Default)]
struct Central {
    totals: Vec<Option<Histogram<u64>>>,
    /// (slot index, histograms by series)
    slots: VecDeque<(u64, Vec<Option<Histogram<u64>>>)>,
}

#[derive(Debug, Default)]
struct Names {
    keys: Vec<SeriesKey>,
    index: HashMap<SeriesKey, SeriesId>,
    routes: HashMap<String, Arc<StatusCounters>>,
}

/// All series of one gateway process.
#[derive(Debug)]
pub struct Registry {
    names: RwLock<Names>,
    shards: Box<[Mutex<Shard>]>,
    /// Per shard, the histograms swapped out at the last rotation, emptied: the next rotation
    /// swaps them in (see [`Registry::rotate`]). Their lock also serializes rotations of a shard.
    spares: Box<[Mutex<Shard>]>,
    central: Mutex<Central>,
    start: Instant,
    slot: Duration,
    next_shard: AtomicUsize,
}

thread_local! {
    static SHARD: std::cell::Cell<Option<usize>> = const { std::cell::Cell::new(None) };
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a shard cannot leave a histogram half-updated in a way that matters
    // for statistics; keep serving.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn new_histogram() -> Option<Histogram<u64>> {
    Histogram::new(SIGFIG).ok()
}

fn add_into(dst: &mut Option<Histogram<u64>>, src: &Histogram<u64>) {
    match dst {
        Some(d) => {
            let _ = d.add(src);
        }
        None => *dst = Some(src.clone()),
    }
}

impl Registry {
    /// A registry with `shards` recording shards and 10 s slots.
    pub fn new(shards: usize) -> Registry {
        Registry::with_slot(shards, Duration::from_secs(10))
    }

    /// A registry with a custom slot length (tests use short slots).
    pub fn with_slot(shards: usize, slot: Duration) -> Registry {
        Registry {
            names: RwLock::new(Names::default()),
            shards: (0..shards.max(1)).map(|_| Mutex::new(Vec::new())).collect(),
            spares: (0..shards.max(1)).map(|_| Mutex::new(Vec::new())).collect(),
            central: Mutex::new(Central::default()),
            start: Instant::now(),
            slot: slot.max(Duration::from_millis(1)),
            next_shard: AtomicUsize::new(0),
        }
    }

    /// Slot length.
    pub fn slot(&self) -> Duration {
        self.slot
    }

    /// Returns the id of `key`, creating the series on first use. Not for the hot path.
    pub fn intern(&self, key: SeriesKey) -> SeriesId {
        if let Some(id) = self
            .names
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .index
            .get(&key)
        {
            return *id;
        }
        let mut names = self.names.write().unwrap_or_else(|e| e.into_inner());
        if let Some(id) = names.index.get(&key) {
            return *id;
        }
        let id = SeriesId(names.keys.len() as u32);
        names.keys.push(key.clone());
        names.index.insert(key, id);
        id
    }

    /// The status counters of route `name`, created on first use. Not for the hot path.
    pub fn route_counters(&self, name: &str) -> Arc<StatusCounters> {
        let mut names = self.names.write().unwrap_or_else(|e| e.into_inner());
        Arc::clone(names.routes.entry(name.to_string()).or_default())
    }

    /// All route counters by route name.
    pub fn all_route_counters(&self) -> Vec<(String, Arc<StatusCounters>)> {
        let names = self.names.read().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<_> = names
            .routes
            .iter()
            .map(|(k, c)| (k.clone(), Arc::clone(c)))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    fn shard(&self) -> &Mutex<Shard> {
        let i = SHARD.with(|s| match s.get() {
            Some(i) => i,
            None => {
                let i = self.next_shard.fetch_add(1, Ordering::Relaxed) % self.shards.len();
                s.set(Some(i));
                i
            }
        });
        &self.shards[i % self.shards.len()]
    }

    /// Records `micros` into every series of `ids` (one shard lock for all of them).
    pub fn record(&self, ids: &[SeriesId], micros: u64) {
        let v = micros.max(1);
        let mut shard = lock(self.shard());
        for id in ids {
            let i = id.0 as usize;
            if shard.len() <= i {
                shard.resize_with(i + 1, || None);
            }
            if shard[i].is_none() {
                shard[i] = new_histogram();
            }
            if let Some(h) = shard[i].as_mut() {
                let _ = h.record(v);
            }
        }
    }

    fn slot_index(&self, now: Instant) -> u64 {
        (now.saturating_duration_since(self.start).as_nanos() / self.slot.as_nanos()) as u64
    }

    fn slots_kept(&self) -> u64 {
        (Window::FiveMinutes.span().unwrap_or_default().as_nanos() / self.slot.as_nanos()) as u64
            + 1
    }

    /// Drains every shard into the central slot of `now` and the since-start totals.
    pub fn rotate(&self, now: Instant) {
        let idx = self.slot_index(now);
        let mut central = lock(&self.central);
        let keep = self.slots_kept();
        while central.slots.front().is_some_and(|(i, _)| i + keep <= idx) {
            central.slots.pop_front();
        }
        if central.slots.back().is_none_or(|(i, _)| *i != idx) {
            central.slots.push_back((idx, Vec::new()));
        }
        for (shard, spare) in self.shards.iter().zip(self.spares.iter()) {
            // Double buffering: the shard's lock is held only for a swap with the set emptied at
            // the last rotation, so a worker never waits for the merge, and it records into
            // histograms already grown to the series' range (no allocation, no resize on the
            // request path once every series has been seen twice).
            let mut taken = lock(spare);
            std::mem::swap(&mut *lock(shard), &mut *taken);
            for (i, h) in taken.iter_mut().enumerate() {
                let Some(h) = h else { continue };
                if h.is_empty() {
                    continue;
                }
                let central = &mut *central;
                if central.totals.len() <= i {
                    central.totals.resize_with(i + 1, || None);
                }
                add_into(&mut central.totals[i], h);
                if let Some((_, slot)) = central.slots.back_mut() {
                    if slot.len() <= i {
                        slot.resize_with(i + 1, || None);
                    }
                    add_into(&mut slot[i], h);
                }
                // Emptied here, off the worker, for the next swap.
                h.reset();
            }
        }
    }

    /// The merged histogram of one series over `window` (after a rotation at `now`).
    pub fn histogram(&self, id: SeriesId, window: Window, now: Instant) -> Histogram<u64> {
        self.rotate(now);
        self.merged(id, window, now)
    }

    fn merged(&self, id: SeriesId, window: Window, now: Instant) -> Histogram<u64> {
        let central = lock(&self.central);
        let i = id.0 as usize;
        let mut out = new_histogram().unwrap_or_else(central_fallback);
        match window.span() {
            None => {
                if let Some(Some(h)) = central.totals.get(i) {
                    let _ = out.add(h);
                }
            }
            Some(span) => {
                let n = (span.as_nanos() / self.slot.as_nanos()).max(1) as u64;
                let idx = self.slot_index(now);
                for (si, slot) in central.slots.iter() {
                    if si + n > idx {
                        if let Some(Some(h)) = slot.get(i) {
                            let _ = out.add(h);
                        }
                    }
                }
            }
        }
        out
    }

    /// Every series with its key, in key order.
    pub fn series(&self) -> Vec<(SeriesKey, SeriesId)> {
        let names = self.names.read().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<_> = names.index.iter().map(|(k, id)| (k.clone(), *id)).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Finds a series by its path (`route:api:total`).
    pub fn find(&self, path: &str) -> Option<SeriesId> {
        self.series()
            .into_iter()
            .find(|(k, _)| k.path() == path)
            .map(|(_, id)| id)
    }

    /// Summaries of every series over `window`.
    pub fn summaries(&self, window: Window, now: Instant) -> Vec<(SeriesKey, Summary)> {
        self.rotate(now);
        self.series()
            .into_iter()
            .map(|(k, id)| {
                let h = self.merged(id, window, now);
                (k, Summary::of(&h))
            })
            .collect()
    }
}

fn central_fallback() -> Histogram<u64> {
    // Histogram::new(3) cannot fail for sigfig 3; this keeps the type total without unwrap.
    Histogram::new_with_bounds(1, 2, 0).unwrap_or_else(|_| unreachable!("valid bounds"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> SeriesKey {
        SeriesKey {
            kind: SeriesKind::Route,
            name: name.into(),
            metric: Metric::Total,
        }
    }

    #[test]
    fn counts_and_percentiles() {
        let r = Registry::new(4);
        let a = r.intern(key("a"));
        for v in 1..=1000 {
            r.record(&[a], v);
        }
        let s = Summary::of(&r.histogram(a, Window::Total, Instant::now()));
        assert_eq!(s.count, 1000);
        assert!((499..=501).contains(&s.p50), "{s:?}");
        assert!((989..=991).contains(&s.p99), "{s:?}");
        assert_eq!(s.max, 1000);
    }

    #[test]
    fn rotations_reuse_grown_histograms_and_lose_nothing() {
        let r = Registry::new(1);
        let a = r.intern(key("a"));
        r.record(&[a], 50_000);
        r.rotate(Instant::now());
        r.record(&[a], 7);
        r.rotate(Instant::now());
        {
            // The histogram of the first rotation, emptied, is recorded into again.
            let shard = lock(&r.shards[0]);
            let h = shard[a.0 as usize].as_ref().expect("swapped back in");
            assert!(h.is_empty());
            assert!(h.high() >= 50_000, "kept its range: {}", h.high());
        }
        r.record(&[a], 9);
        let s = Summary::of(&r.histogram(a, Window::Total, Instant::now()));
        assert_eq!(s.count, 3);
        // 3 significant digits: the maximum is reported within its bucket.
        assert!((50_000..=50_100).contains(&s.max), "{s:?}");
    }

    #[test]
    fn intern_is_stable() {
        let r = Registry::new(1);
        assert_eq!(r.intern(key("a")), r.intern(key("a")));
        assert_ne!(r.intern(key("a")), r.intern(key("b")));
        assert_eq!(r.find("route:b:total"), Some(r.intern(key("b"))));
    }

    #[test]
    fn windows_forget_old_slots_total_does_not() {
        let r = Registry::with_slot(2, Duration::from_millis(100));
        let a = r.intern(key("a"));
        let t0 = r.start;
        r.record(&[a], 10);
        r.rotate(t0);
        // 70 s later (700 slots), the 1m window no longer holds the sample; 5m and total do.
        let later = t0 + Duration::from_secs(70);
        r.record(&[a], 20);
        assert_eq!(r.histogram(a, Window::OneMinute, later).len(), 1);
        assert_eq!(r.histogram(a, Window::FiveMinutes, later).len(), 2);
        assert_eq!(r.histogram(a, Window::Total, later).len(), 2);
        let much_later = t0 + Duration::from_secs(400);
        assert_eq!(r.histogram(a, Window::FiveMinutes, much_later).len(), 0);
        assert_eq!(r.histogram(a, Window::Total, much_later).len(), 2);
    }

    #[test]
    fn threads_record_without_losing_samples() {
        let r = Arc::new(Registry::new(2));
        let a = r.intern(key("a"));
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let r = Arc::clone(&r);
                std::thread::spawn(move || {
                    for v in 0..10_000u64 {
                        r.record(&[a], v % 500 + 1);
                        if v % 1000 == 0 {
                            r.rotate(Instant::now());
                        }
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().expect("recorder thread");
        }
        assert_eq!(r.histogram(a, Window::Total, Instant::now()).len(), 40_000);
    }

    #[test]
    fn status_counters() {
        let c = StatusCounters::default();
        c.add(200);
        c.add(200);
        c.add(503);
        c.add(0);
        c.add(999);
        assert_eq!(c.nonzero(), vec![(0, 2), (200, 2), (503, 1)]);
    }
}
