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
//! The comparison driver itself is the `bench/compare` shell script; see `bench/README.md`.

pub mod cli;
pub mod runtime;
pub mod upstream;
