//! The tokio runtime of the benchmark binaries (`bench-upstream`, `orchestra-loadtest`): one
//! worker thread per `--threads` (default: the machine's parallelism), a current-thread runtime
//! for one.

use tokio::runtime::{Builder, Runtime};

/// Builds the runtime for `threads` workers (`None`: one per available CPU); returns it with
/// the worker count it got.
///
/// # Errors
/// The runtime could not start (threads or the I/O driver could not be created).
pub fn build(threads: Option<usize>) -> std::io::Result<(Runtime, usize)> {
    let threads = threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let runtime = if threads == 1 {
        Builder::new_current_thread().enable_all().build()
    } else {
        Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    }?;
    Ok((runtime, threads))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_threads_means_one_and_none_means_every_cpu() {
        let (rt, n) = build(Some(0)).expect("runtime");
        assert_eq!(n, 1);
        assert_eq!(rt.block_on(async { 7 }), 7);
        let (_, n) = build(None).expect("runtime");
        assert_eq!(
            n,
            std::thread::available_parallelism().map_or(1, |n| n.get())
        );
        let (rt, n) = build(Some(2)).expect("runtime");
        assert_eq!(n, 2);
        assert_eq!(rt.metrics().num_workers(), 2);
    }
}
