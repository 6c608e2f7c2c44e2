//! Benchmark support for Orchestra Gateway.
//!
//! - [`upstream`]: the fast upstream (`bench-upstream` binary) that side-by-side comparisons put
//!   behind the gateway, nginx and HAProxy. It must never be the bottleneck: fixed bodies are
//!   preallocated once and handed out as cheap [`bytes::Bytes`] clones.
//! - [`duration`]: parsing of `250ms` / `10s` / `5m` style durations shared by the binaries.
//!
//! The comparison driver itself is the `bench/compare` shell script; see `bench/README.md`.

pub mod duration;
pub mod upstream;
