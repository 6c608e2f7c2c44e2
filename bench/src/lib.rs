//! Benchmark support for Orchestra Gateway.
//!
//! - [`upstream`]: the fast upstream (`bench-upstream` binary) that side-by-side comparisons put
//!   behind the gateway, nginx and HAProxy. It must never be the bottleneck: fixed bodies are
//!   preallocated once and handed out as cheap [`bytes::Bytes`] clones.
//!
//! - [`cli`]: command-line pieces the benchmark binaries share (the TLS listener flags).
//!
//! - [`accept`]: the accept loop of the hyper-based servers (`bench-upstream`, `bench-hyper`).
//!
//! - [`floor`]: what the comparison floors (`bench-pingora`, `bench-hyper`) share: their common
//!   flags, their buffered access log, no `tracing` work.
//!
//! - [`runtime`]: the tokio runtime of the benchmark binaries, sized by `--threads`.

//!
//! The comparison driver itself is the `bench/compare` shell script; see `bench/README.md`.

pub mod accept;
pub mod cli;
pub mod floor;
pub mod runtime;
pub mod upstream;
