//! Process logging for every Orchestra binary (`orchestra-gateway`, `orchestra-agent`,
//! `orchestra-backend` and its load tool): one JSON object per line on stderr by default, or
//! human-readable text (`--log-format text`), the level from `RUST_LOG`.
//!
//! Each binary calls [`init`] once at start with its `--log-format` flag (a [`LogFormat`], a
//! `clap::ValueEnum`) and the filter to use when `RUST_LOG` is unset ([`DEFAULT_FILTER`], or a
//! quieter one such as the backend's `info,sqlx=warn`). What a binary adds on top stays in that
//! binary: the gateway starts its access-log writer thread after this logger
//! (`orchestra_gateway::logging`).

use tracing_subscriber::EnvFilter;

/// The filter when `RUST_LOG` is unset: `info` for every target.
pub const DEFAULT_FILTER: &str = "info";

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line.
    Json,
    /// Human-readable text.
    Text,
}

/// Installs the global logger writing `format` lines to stderr, filtered by `RUST_LOG` or, when
/// it is unset or unreadable, by `default_filter` (an `EnvFilter` directive such as
/// `info,sqlx=warn`). A second call reports on stderr and keeps the first logger.
pub fn init(format: LogFormat, default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
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
}
