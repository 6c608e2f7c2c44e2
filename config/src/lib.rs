//! Configuration of Orchestra Gateway: the TOML schema of `SPEC.md`, its validation, and the
//! compiled runtime [`Snapshot`] every request reads.
//!
//! The flow is `text → parse → compile → Snapshot`:
//! - [`parse`](crate::parse) reads TOML into the raw serde [`schema`], element by element, so that an
//!   unknown key or a wrong type in one route does not hide the errors of the next;
//! - [`compile`](crate::compile) validates values and cross references (durations, addresses, upstream
//!   names, plugin kinds) and builds the immutable snapshot: the route table, upstreams with their
//!   balancers, and each route's plugin chain;
//! - every problem found on the way is a [`ConfigError`] naming the file, the key path
//!   (`routes[2].upstream`) and what is wrong; [`load`] returns all of them at once;
//! - [`secrets`] knows which values are secret: errors never quote them and
//!   [`secrets::mask_config_text`] hides them wherever a config text is shown;
//! - [`alerts`] compiles `[[alerts]]` rules and the `[monitor]` section the gateway evaluates.
//!
//! `harness` holds the invariants the fuzz targets (`fuzz/`) and property tests check.
//!
//! The gateway keeps the snapshot behind an `ArcSwap`; nothing in it is mutated after compile
//! except the atomics inside balancers.

pub mod alerts;
mod compile;
mod error;
#[doc(hidden)]
pub mod harness;
mod parse;
pub mod route;
pub mod schema;
pub mod secrets;
mod services;
mod snapshot;
mod upstream_policy;

pub use orchestra_config_core::{duration, report, size, Problem};

pub use alerts::{
    AlertMetric, AlertRule, AlertSubject, Comparison, LatencyKind, MonitorSettings, Webhook,
};
pub use error::{ConfigError, ConfigErrors, ErrorKind};
pub use route::{HostMatch, PathMatch, Route, RouteRequest, RouteTable, RouteTarget, Service};
pub use snapshot::{
    AdminSettings, AgentSettings, BackendSettings, DispatchPolicy, DownstreamLimits, HashKey,
    Listeners, PluginDef, RealtimeSettings, ServerSettings, Snapshot, Timeouts, TlsFiles, Upstream,
    UpstreamPolicy, UpstreamProtocol, UpstreamTls,
};

use std::path::Path;

/// Default config file path used by `run` and `check` when `-c` is not given.
pub const DEFAULT_CONFIG_PATH: &str = "config/gateway.toml";

/// Reads, parses and compiles the config file at `path`.
///
/// Returns every error found, each naming `path` and the key path.
pub fn load(path: &Path) -> Result<Snapshot, ConfigErrors> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors::from(ConfigError::new(
            &file,
            "",
            ErrorKind::Io {
                reason: e.to_string(),
            },
        ))
    })?;
    from_str(&text, &file)
}

/// Parses and compiles config `text`; `file` is the name used in error messages.
pub fn from_str(text: &str, file: &str) -> Result<Snapshot, ConfigErrors> {
    compile_with(text, file, None)
}

/// Like [`from_str`], reusing from `previous` every upstream and plugin whose definition is
/// unchanged, so their live state (balancer statistics, health, ejections, rate-limit buckets)
/// carries over a reload. Changed and new ones start fresh.
pub fn compile_with(
    text: &str,
    file: &str,
    previous: Option<&Snapshot>,
) -> Result<Snapshot, ConfigErrors> {
    let mut errors = Vec::new();
    let raw = parse::parse(text, file, &mut errors);
    let snapshot = raw.and_then(|raw| compile::compile(raw, file, &mut errors, previous));
    match snapshot {
        Some(s) if errors.is_empty() => Ok(s),
        _ => Err(ConfigErrors(errors)),
    }
}
