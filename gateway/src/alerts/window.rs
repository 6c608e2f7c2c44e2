//! Sliding windows over the gateway's cumulative readings, one per latency or error-rate rule.
//!
//! The registry keeps latency histograms since start and status counters since start; a rule
//! wants "the p99 of the last `window`" and "the share of errors in the last `window`". Each
//! evaluation therefore takes the *difference* between the current cumulative reading and the
//! previous one and keeps these differences, time-stamped, for `window`:
//!
//! - latency: `Δh = total(now) − total(previous)` (HdrHistogram subtraction); the value is the
//!   quantile of the merge of the `Δh` younger than `window`, or `None` when they hold no sample;
//! - error rate: snapshots `(t, requests, errors)`; the value is
//!   `(errors(now) − errors(base)) / (requests(now) − requests(base))` where `base` is the newest
//!   snapshot at least `window` old (or the oldest kept), `None` when no request was answered.
//!
//! Samples recorded before a rule existed never count (its first evaluation only sets the
//! baseline), and time is passed in, so tests are exact without sleeping.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// The last `window` of a cumulative latency histogram.
#[derive(Debug)]
pub struct LatencyWindow {
    quantile: f64,
    window: Duration,
    previous: Option<Histogram<u64>>,
    deltas: VecDeque<(Instant, Histogram<u64>)>,
}

impl LatencyWindow {
    /// A window reporting `quantile` (0.99 = p99) over the last `window`.
    pub fn new(quantile: f64, window: Duration) -> Self {
        LatencyWindow {
            quantile,
            window,
            previous: None,
            deltas: VecDeque::new(),
        }
    }

    /// Feeds the cumulative histogram read at `now`; returns the quantile of the window in the
    /// histogram's unit (µs), `None` without samples.
    pub fn observe(&mut self, total: Histogram<u64>, now: Instant) -> Option<f64> {
        if let Some(previous) = &self.previous {
            let mut delta = total.clone();
            match delta.subtract(previous) {
                Ok(()) if !delta.is_empty() => self.deltas.push_back((now, delta)),
                Ok(()) => {}
                // Cannot happen for a cumulative series; start over rather than report nonsense.
                Err(_) => self.deltas.clear(),
            }
        }
        self.previous = Some(total);
        while self
            .deltas
            .front()
            .is_some_and(|(t, _)| now.saturating_duration_since(*t) >= self.window)
        {
            self.deltas.pop_front();
        }
        let mut merged: Option<Histogram<u64>> = None;
        for (_, d) in &self.deltas {
            match &mut merged {
                Some(m) => {
                    let _ = m.add(d);
                }
                None => merged = Some(d.clone()),
            }
        }
        merged
            .filter(|m| !m.is_empty())
            .map(|m| m.value_at_quantile(self.quantile) as f64)
    }
}

/// The last `window` of cumulative request and error counters.
#[derive(Debug)]
pub struct RateWindow {
    window: Duration,
    snapshots: VecDeque<(Instant, u64, u64)>,
}

impl RateWindow {
    /// An error-rate window of `window`.
    pub fn new(window: Duration) -> Self {
        RateWindow {
            window,
            snapshots: VecDeque::new(),
        }
    }

    /// Feeds the cumulative `(requests, errors)` read at `now`; returns the error share of the
    /// window, `None` when no request was answered in it.
    pub fn observe(&mut self, requests: u64, errors: u64, now: Instant) -> Option<f64> {
        self.snapshots.push_back((now, requests, errors));
        // Keep one snapshot at least `window` old as the base.
        while self.snapshots.len() > 2
            && self
                .snapshots
                .get(1)
                .is_some_and(|(t, _, _)| now.saturating_duration_since(*t) >= self.window)
        {
            self.snapshots.pop_front();
        }
        let (_, base_requests, base_errors) = *self.snapshots.front()?;
        let requests = requests.checked_sub(base_requests)?;
        let errors = errors.saturating_sub(base_errors);
        (requests > 0).then(|| errors as f64 / requests as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hist(values: &[u64]) -> Histogram<u64> {
        let mut h = Histogram::new(3).expect("histogram");
        for v in values {
            h.record(*v).expect("record");
        }
        h
    }

    #[test]
    fn latency_counts_only_the_window() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut w = LatencyWindow::new(0.99, Duration::from_secs(3));
        // Samples before the first observation are the baseline, not part of any window.
        assert_eq!(w.observe(hist(&[900_000; 10]), t0), None);
        let mut total: Vec<u64> = vec![900_000; 10];
        total.extend([300_000; 5]);
        let v = w.observe(hist(&total), t0 + s).expect("slow samples");
        assert!((299_000.0..=301_000.0).contains(&v), "{v}");
        total.extend([1_000; 100]);
        let v = w.observe(hist(&total), t0 + 2 * s).expect("mixed");
        assert!(
            (299_000.0..=301_000.0).contains(&v),
            "p99 still sees the slow ones: {v}"
        );
        // Three seconds after the slow samples arrived they leave the window.
        total.extend([1_000; 10]);
        let v = w.observe(hist(&total), t0 + 4 * s).expect("fast only");
        assert!((999.0..=1_001.0).contains(&v), "{v}");
        // No new sample for a whole window: no data.
        assert_eq!(w.observe(hist(&total), t0 + 8 * s), None);
    }

    #[test]
    fn error_rate_over_the_window() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut w = RateWindow::new(Duration::from_secs(2));
        assert_eq!(w.observe(100, 0, t0), None, "first reading is the base");
        assert_eq!(w.observe(110, 5, t0 + s), Some(0.5));
        assert_eq!(w.observe(120, 5, t0 + 2 * s), Some(0.25));
        // The base moved to t0 + 1 s: 10 requests since, no new error.
        assert_eq!(w.observe(130, 5, t0 + 3 * s), Some(0.0));
        assert_eq!(w.observe(130, 5, t0 + 9 * s), None, "no traffic, no rate");
    }
}
