//! Latency histograms and request counters for Orchestra Gateway.
//!
//! The request pipeline records, for every request, the total latency and the upstream latency
//! (time to the upstream's response head) into *series*: one per route, per upstream target and
//! per front protocol. SREs read them through the admin API as percentiles over a window (last
//! minute, last five minutes, since start), as raw HdrHistogram V2 logs, or as Prometheus text.
//!
//! Recording never contends across threads: each worker thread records into its own shard of
//! HdrHistograms (3 significant digits) behind a mutex that only that thread takes on the hot
//! path; readers and the rotation tick merge shards into central state. See [`registry`] for the
//! windowing scheme and [`export`] for the encodings.

pub mod export;
pub mod registry;

pub use registry::{
    Metric, Registry, SeriesId, SeriesKey, SeriesKind, StatusCounters, Summary, Window,
};
