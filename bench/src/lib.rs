//! Benchmark support for Orchestra Gateway.
//!
//! - [`upstream`]: the fast upstream (`bench-upstream` binary) that side-by-side comparisons put
//!   behind the gateway, nginx and HAProxy. It must never be the bottleneck: fixed bodies are
//!   preallocated once and handed out as cheap [`bytes::Bytes`] clones.
//!
//! - [`cli`]: command-line pieces the benchmark binaries share (the TLS listener flags).
//!
//! - [`runtime`]: the tokio runtime of the benchmark binaries, sized by `--threads`.
//!
//! - [`quiet_tracing`]: no `tracing` work in the comparison floors.
//!
//! The comparison driver itself is the `bench/compare` shell script; see `bench/README.md`.

pub mod cli;
pub mod runtime;
pub mod upstream;

/// Turns `tracing` off for the process: installs a subscriber that enables nothing.
///
/// The comparison floors (`bench-pingora`, `bench-hyper`) log nothing through `tracing`, but
/// without a subscriber they would still pay for the h2 crate's spans: `tracing` is built with
/// its `log` feature in this workspace (quinn asks for it), and with no subscriber set every span
/// is offered to the `log` facade — thousands of instructions per HTTP/2 request that the gateway,
/// which installs its subscriber at `info`, never pays. With this subscriber every `tracing`
/// callsite below `OFF` is disabled once and skipped after.
pub fn quiet_tracing() {
    // Only fails if a subscriber is already set, which is then the one to keep.
    let _ = tracing::subscriber::set_global_default(tracing::subscriber::NoSubscriber::default());
}
