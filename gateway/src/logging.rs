//! Process logging: JSON lines (default) or human-readable text on stderr, level from `RUST_LOG`
//! (default `info`). pingora's own `log` records are captured too. Access-log lines take their
//! own path to stderr, formatted and written on a dedicated thread (see [`crate::access_log`]).

use tracing_subscriber::EnvFilter;

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line.
    Json,
    /// Human-readable text.
    Text,
}

/// Installs the global logger. Safe to call once per process.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_target(false)
            .with_current_span(false)
            .try_init(),
        LogFormat::Text => builder.try_init(),
    };
    if let Err(e) = result {
        eprintln!("logger already installed: {e}");
    }
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
