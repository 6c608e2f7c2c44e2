//! Request pacing: when each request is due, and when a run stops.
//!
//! **Closed loop** (no `--rate`): every worker sends its next request as soon as the previous
//! one finished; [`ClosedLoop`] only decides whether a request is warm-up, measured, or past the
//! end (`--duration` elapsed or `--requests` issued).
//!
//! **Open loop** (`--rate R`): request *i* is due at the intended time
//! `t0 + i / R`, independent of how fast the target answers ([`Schedule`]). A dedicated pacer
//! thread ([`Pacer`]) releases slot *i* at its intended time (an OS sleep with 1 µs timer slack,
//! much finer than tokio's 1 ms timer wheel); any free worker claims it. When every connection
//! is busy, released slots queue up and each one's latency is measured from its **intended**
//! time, so the time it waited for a connection counts: this is the coordinated-omission
//! correction (a slow target cannot make the load generator politely send less). When a worker
//! was *idle* and waiting for the slot, latency starts when it got the slot instead: the
//! microseconds the pacer and the wake-up took are the tool's, not the target's (they still
//! show in the `send_delay` histogram).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// One open-loop request slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    /// When the request is due.
    pub intended: Instant,
    /// False during `--warmup`: sent but not recorded.
    pub measured: bool,
}

/// The open-loop timetable: slot *i* is due at `start + i / rate`. Pure arithmetic, no clock.
#[derive(Debug, Clone)]
pub struct Schedule {
    start: Instant,
    interval_ns: f64,
    warmup_slots: u64,
    end: Option<Instant>,
    limit: Option<u64>,
}

impl Schedule {
    /// A schedule of `rate` requests/s from `start`; the first `warmup` is not measured; the
    /// measured part stops after `duration` or `limit` requests, whichever comes first.
    pub fn new(
        start: Instant,
        rate: f64,
        warmup: Duration,
        duration: Option<Duration>,
        limit: Option<u64>,
    ) -> Self {
        let interval_ns = 1e9 / rate;
        let warmup_slots = (warmup.as_nanos() as f64 / interval_ns).ceil() as u64;
        Self {
            start,
            interval_ns,
            warmup_slots,
            end: duration.map(|d| start + warmup + d),
            limit,
        }
    }

    /// When slot `i` is due.
    pub fn intended(&self, i: u64) -> Instant {
        self.start + Duration::from_nanos((i as f64 * self.interval_ns) as u64)
    }

    /// Slot `i`, or `None` if the run is over by then.
    pub fn slot(&self, i: u64) -> Option<Slot> {
        let intended = self.intended(i);
        if self.end.is_some_and(|end| intended >= end) {
            return None;
        }
        let measured = i >= self.warmup_slots;
        if measured && self.limit.is_some_and(|n| i - self.warmup_slots >= n) {
            return None;
        }
        Some(Slot { intended, measured })
    }
}

/// A claimed open-loop slot.
#[derive(Debug, Clone, Copy)]
pub struct Claim {
    /// The slot.
    pub slot: Slot,
    /// True if the claiming worker was idle, waiting for the pacer to release this slot.
    pub waited: bool,
}

/// Releases [`Schedule`] slots at their intended times from an OS thread; workers claim them.
#[derive(Debug)]
pub struct Pacer {
    schedule: Schedule,
    released: AtomicU64,
    claimed: AtomicU64,
    done: AtomicBool,
    notify: Notify,
}

impl Pacer {
    /// Starts the pacer thread. It ends by itself when the schedule is exhausted.
    pub fn start(schedule: Schedule) -> std::io::Result<Arc<Pacer>> {
        let pacer = Arc::new(Pacer {
            schedule,
            released: AtomicU64::new(0),
            claimed: AtomicU64::new(0),
            done: AtomicBool::new(false),
            notify: Notify::new(),
        });
        let p = pacer.clone();
        std::thread::Builder::new()
            .name("loadtest-pacer".into())
            .spawn(move || p.run())?;
        Ok(pacer)
    }

    fn run(&self) {
        set_fine_timer_slack();
        let mut i = 0u64;
        while let Some(slot) = self.schedule.slot(i) {
            let now = Instant::now();
            if slot.intended > now {
                std::thread::sleep(slot.intended - now);
            }
            // Release every slot that is due by now in one go.
            let now = Instant::now();
            let mut j = i + 1;
            while self
                .schedule
                .slot(j)
                .is_some_and(|s| s.intended <= now && j - i < 1024)
            {
                j += 1;
            }
            self.released.store(j, Ordering::Release);
            for _ in i..j {
                self.notify.notify_one();
            }
            i = j;
        }
        self.done.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }

    fn try_claim(&self) -> Option<u64> {
        let mut c = self.claimed.load(Ordering::Acquire);
        loop {
            if c >= self.released.load(Ordering::Acquire) {
                return None;
            }
            match self
                .claimed
                .compare_exchange_weak(c, c + 1, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Some(c),
                Err(now) => c = now,
            }
        }
    }

    /// Claims the next released slot, waiting for the pacer if none is due yet; `None` when the
    /// schedule is exhausted.
    pub async fn claim(&self) -> Option<Claim> {
        let mut waited = false;
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(i) = self.try_claim() {
                let slot = self.schedule.slot(i)?;
                return Some(Claim { slot, waited });
            }
            if self.done.load(Ordering::Acquire) {
                // The pacer may have released the last slots just before finishing.
                let i = self.try_claim()?;
                let slot = self.schedule.slot(i)?;
                return Some(Claim { slot, waited });
            }
            waited = true;
            notified.await;
        }
    }
}

/// Closed-loop stop rules: warm-up, then measured requests until `end` or `limit`.
#[derive(Debug)]
pub struct ClosedLoop {
    warmup_end: Instant,
    end: Option<Instant>,
    limit: Option<u64>,
    issued: AtomicU64,
}

/// What a closed-loop worker should do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Send a warm-up request (not recorded).
    Warmup,
    /// Send a measured request.
    Measured,
    /// Stop.
    Stop,
}

impl ClosedLoop {
    /// Rules for a run starting at `start`.
    pub fn new(
        start: Instant,
        warmup: Duration,
        duration: Option<Duration>,
        limit: Option<u64>,
    ) -> Self {
        let warmup_end = start + warmup;
        Self {
            warmup_end,
            end: duration.map(|d| warmup_end + d),
            limit,
            issued: AtomicU64::new(0),
        }
    }

    /// Decides the next request of a worker at time `now`.
    pub fn next(&self, now: Instant) -> Next {
        if self.end.is_some_and(|end| now >= end) {
            return Next::Stop;
        }
        if now < self.warmup_end {
            return Next::Warmup;
        }
        let i = self.issued.fetch_add(1, Ordering::Relaxed);
        if self.limit.is_some_and(|n| i >= n) {
            Next::Stop
        } else {
            Next::Measured
        }
    }
}

/// Asks the kernel for 1 µs timer slack on this thread so sleeps end close to their deadline.
fn set_fine_timer_slack() {
    // SAFETY: PR_SET_TIMERSLACK takes an unsigned long and touches only this thread's state.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1000 as libc::c_ulong);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_intended_times() {
        let t0 = Instant::now();
        let s = Schedule::new(t0, 1000.0, Duration::ZERO, None, Some(5));
        assert_eq!(s.intended(0), t0);
        assert_eq!(s.intended(1), t0 + Duration::from_millis(1));
        assert_eq!(s.intended(250), t0 + Duration::from_millis(250));
        // -n 5: slots 0..5 then stop.
        assert!(s.slot(4).is_some());
        assert_eq!(s.slot(5), None);
    }

    #[test]
    fn schedule_warmup_and_duration() {
        let t0 = Instant::now();
        // 100 req/s, 1 s warm-up, 2 s measured.
        let s = Schedule::new(
            t0,
            100.0,
            Duration::from_secs(1),
            Some(Duration::from_secs(2)),
            None,
        );
        assert_eq!(s.slot(0).map(|x| x.measured), Some(false));
        assert_eq!(s.slot(99).map(|x| x.measured), Some(false));
        assert_eq!(s.slot(100).map(|x| x.measured), Some(true));
        assert_eq!(s.slot(299).map(|x| x.measured), Some(true));
        assert_eq!(s.slot(300), None);
    }

    #[test]
    fn schedule_limit_counts_measured_only() {
        let t0 = Instant::now();
        let s = Schedule::new(t0, 10.0, Duration::from_secs(1), None, Some(3));
        // 10 warm-up slots, then exactly 3 measured ones.
        let measured: Vec<u64> = (0..100)
            .filter(|&i| s.slot(i).is_some_and(|x| x.measured))
            .collect();
        assert_eq!(measured, vec![10, 11, 12]);
    }

    #[test]
    fn closed_loop_rules() {
        let t0 = Instant::now();
        let c = ClosedLoop::new(t0, Duration::from_secs(1), None, Some(2));
        assert_eq!(c.next(t0), Next::Warmup);
        let later = t0 + Duration::from_secs(2);
        assert_eq!(c.next(later), Next::Measured);
        assert_eq!(c.next(later), Next::Measured);
        assert_eq!(c.next(later), Next::Stop);

        let d = ClosedLoop::new(t0, Duration::ZERO, Some(Duration::from_secs(1)), None);
        assert_eq!(d.next(t0), Next::Measured);
        assert_eq!(d.next(t0 + Duration::from_secs(1)), Next::Stop);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pacer_releases_on_time_and_stops() {
        let start = Instant::now() + Duration::from_millis(20);
        let schedule = Schedule::new(start, 2000.0, Duration::ZERO, None, Some(200));
        let pacer = Pacer::start(schedule).expect("spawn pacer");
        let mut handles = Vec::new();
        for _ in 0..4 {
            let p = pacer.clone();
            handles.push(tokio::spawn(async move {
                let mut n = 0u64;
                let mut max_early = Duration::ZERO;
                while let Some(c) = p.claim().await {
                    let now = Instant::now();
                    if c.slot.intended > now {
                        max_early = max_early.max(c.slot.intended - now);
                    }
                    n += 1;
                }
                (n, max_early)
            }));
        }
        let mut total = 0;
        for h in handles {
            let (n, early) = h.await.expect("worker");
            total += n;
            // A slot is never handed out before its intended time.
            assert_eq!(early, Duration::ZERO);
        }
        assert_eq!(total, 200);
        // 200 slots at 2000/s take ~100 ms.
        assert!(start.elapsed() >= Duration::from_millis(99));
    }
}
