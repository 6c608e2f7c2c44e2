//! `orchestra-loadtest`: the load generator of Orchestra Gateway, as a library (the binary is a
//! thin `main`).
//!
//! - [`cli`]: command line (one subcommand per mode).
//! - [`engine`]: runs any request/response [`engine::Driver`] open- or closed-loop.
//! - [`open_loop`]: intended send times, the pacer thread, stop rules.
//! - [`stats`]: error kinds and sharded HdrHistogram recording.
//! - [`report`]: percentiles, the human summary and the `--json` object.
//! - [`progress`]: the per-second progress line.
//! - [`net`]: URL targets, TCP/TLS connections.
//! - [`modes`]: `h1`, `h2c`/`h2`, `ws`, `ws-hold`, `sse`.

pub mod cli;
pub mod engine;
pub mod modes;
pub mod net;
pub mod open_loop;
pub mod progress;
pub mod report;
pub mod stats;
