//! The once-per-second progress line on stderr. It stops when the [`Progress`] is dropped.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use crate::stats::Recorder;

/// A running progress printer; dropping it stops it.
#[derive(Debug)]
pub struct Progress {
    task: JoinHandle<()>,
}

impl Progress {
    /// Prints `line(elapsed)` on stderr once per second.
    pub fn spawn<F>(mut line: F) -> Self
    where
        F: FnMut(Duration) -> String + Send + 'static,
    {
        let start = Instant::now();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            tick.tick().await;
            loop {
                tick.tick().await;
                eprintln!("{}", line(start.elapsed()));
            }
        });
        Self { task }
    }

    /// The request engine's line: rate over the last second, totals and errors.
    pub fn requests(recorder: Arc<Recorder>, start: Instant, warmup: Duration) -> Self {
        let mut last = 0u64;
        Self::spawn(move |_| {
            let all = recorder.finished_all();
            let rate = all - last;
            last = all;
            let t = start.elapsed();
            if t < warmup {
                format!("[{:6.1}s] warm-up  {rate:>8} req/s", t.as_secs_f64())
            } else {
                let (ok, err) = recorder.counts();
                format!(
                    "[{:6.1}s] {rate:>8} req/s  ok {ok}  errors {err}",
                    t.as_secs_f64()
                )
            }
        })
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.task.abort();
    }
}
