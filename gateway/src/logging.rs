//! Process logging of the gateway: the shared logger of every Orchestra binary
//! ([`orchestra_logging`]: JSON lines by default or text on stderr, level from `RUST_LOG`,
//! default `info`; pingora's own `log` records are captured too), then the access-log writer.
//! Access-log lines take their own path to stderr, formatted and written on a dedicated thread
//! (see [`crate::access_log`]).

pub use orchestra_logging::LogFormat;

/// Installs the global logger and starts the access-log writer thread. Safe to call once per
/// process.
pub fn init(format: LogFormat) {
    orchestra_logging::init(format, orchestra_logging::DEFAULT_FILTER);
    let lines = match format {
        LogFormat::Json => crate::access_log::LineFormat::Json,
        LogFormat::Text => crate::access_log::LineFormat::Text,
    };
    // `ORCHESTRA_ACCESS_LOG_INLINE=1`: lines go through the logger above on the request's own
    // thread, unbatched (the behaviour before the writer thread; kept for A/B measurements).
    if std::env::var_os("ORCHESTRA_ACCESS_LOG_INLINE").is_some_and(|v| v == "1") {
        return;
    }
    if let Err(e) = crate::access_log::install(lines) {
        // Access lines then go through the logger above, on the request's thread.
        tracing::warn!(error = %e, "access log writer not started");
    }
}
