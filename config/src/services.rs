//! The sections of the gateway's own services: `[backend]` (persistence), `[agents]` (the agent
//! hub), `[realtime]` (the browser channel), and a route's `serve` key.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::compile::Compiler;
use crate::parse::{join, typed};
use crate::route::{RouteTarget, Service};
use crate::schema::{RawAgents, RawBackend, RawRealtime, RawRoute};
use crate::snapshot::{
    AgentSettings, BackendSettings, DispatchPolicy, PluginDef, RealtimeSettings, ServerSettings,
};
use crate::ErrorKind;
use orchestra_config_core::Problem;

/// `[backend]`; absent = the embedded backend on `{data_dir}/orchestra.db`.
pub(crate) fn backend(
    c: &mut Compiler<'_>,
    raw: Option<toml::Value>,
    server: &ServerSettings,
) -> BackendSettings {
    let raw = match raw {
        Some(v) => typed::<RawBackend>(v, "backend", c.file, c.errors).unwrap_or_default(),
        None => RawBackend::default(),
    };
    let url = raw.url.and_then(|u| {
        let ok = (u.starts_with("http://") || u.starts_with("https://"))
            && u.parse::<http::Uri>().is_ok_and(|p| p.host().is_some());
        if ok {
            Some(u.trim_end_matches('/').to_string())
        } else {
            c.invalid("backend.url", &u, "expected http://HOST:PORT");
            None
        }
    });
    let sqlite_path = match raw.sqlite_path {
        Some(p) if p.is_empty() => {
            c.invalid("backend.sqlite_path", "", "must not be empty");
            server.data_dir.join("orchestra.db")
        }
        Some(p) => PathBuf::from(p),
        None => server.data_dir.join("orchestra.db"),
    };
    let batch_max_events = c.count("backend.batch_max_events", raw.batch_max_events, 10_000, 50);
    let batch_max_delay = c.positive_duration(
        "backend.batch_max_delay",
        raw.batch_max_delay.as_deref(),
        Duration::from_millis(50),
    );
    let request_timeout = c.positive_duration(
        "backend.request_timeout",
        raw.request_timeout.as_deref(),
        Duration::from_secs(5),
    );
    let spool_dir = raw
        .spool_dir
        .map(PathBuf::from)
        .unwrap_or_else(|| server.data_dir.join("spool"));
    let spool_max_bytes = c
        .size("backend.spool_max_bytes", raw.spool_max_bytes.as_ref())
        .unwrap_or(1 << 30);
    BackendSettings {
        url,
        sqlite_path,
        batch_max_events,
        batch_max_delay,
        request_timeout,
        spool_dir,
        spool_max_bytes,
    }
}

/// `[agents]`; absent = no agent hub (agents are refused).
pub(crate) fn agents(c: &mut Compiler<'_>, raw: Option<toml::Value>) -> Option<AgentSettings> {
    let raw = typed::<RawAgents>(raw?, "agents", c.file, c.errors)?;
    let keys_file = match raw.keys_file {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        Some(_) => {
            c.invalid("agents.keys_file", "", "must not be empty");
            return None;
        }
        None => {
            c.err(
                "agents.keys_file",
                Problem::Shape {
                    message: "missing key `keys_file` (the agents' API keys and secrets)".into(),
                }
                .into(),
            );
            return None;
        }
    };
    let heartbeat_interval = c.positive_duration(
        "agents.heartbeat_interval",
        raw.heartbeat_interval.as_deref(),
        Duration::from_secs(10),
    );
    let offline_after_missed = match raw.offline_after_missed {
        None => 3,
        Some(n) if (1..=1000).contains(&n) => n as u32,
        Some(n) => {
            c.invalid(
                "agents.offline_after_missed",
                &n.to_string(),
                "must be between 1 and 1000",
            );
            3
        }
    };
    let dispatch = match raw.dispatch.as_deref() {
        None | Some("peak_ewma") => DispatchPolicy::PeakEwma,
        Some("resource_based") => DispatchPolicy::ResourceBased,
        Some(other) => {
            c.invalid(
                "agents.dispatch",
                other,
                "expected peak_ewma or resource_based",
            );
            DispatchPolicy::PeakEwma
        }
    };
    let reconnect_grace = c.positive_duration(
        "agents.reconnect_grace",
        raw.reconnect_grace.as_deref(),
        Duration::from_secs(300),
    );
    let max_queued = match raw.max_queued {
        None => 10_000,
        Some(n) if (0..=10_000_000).contains(&n) => n as usize,
        Some(n) => {
            c.invalid(
                "agents.max_queued",
                &n.to_string(),
                "must be between 0 and 10000000",
            );
            10_000
        }
    };
    Some(AgentSettings {
        keys_file,
        heartbeat_interval,
        offline_after_missed,
        dispatch,
        reconnect_grace,
        max_queued,
    })
}

/// `[realtime]`; absent = defaults without authentication.
pub(crate) fn realtime(
    c: &mut Compiler<'_>,
    raw: Option<toml::Value>,
    plugins: &HashMap<String, PluginDef>,
) -> RealtimeSettings {
    let raw = match raw {
        Some(v) => typed::<RawRealtime>(v, "realtime", c.file, c.errors).unwrap_or_default(),
        None => RawRealtime::default(),
    };
    let auth = raw.auth.and_then(|name| match plugins.get(&name) {
        Some(def) if def.kind() == Some("jwt") => Some(name),
        Some(_) => {
            c.invalid("realtime.auth", &name, "must name a plugin of kind \"jwt\"");
            None
        }
        None => {
            c.err(
                "realtime.auth",
                ErrorKind::UnknownReference {
                    what: "plugin",
                    name,
                },
            );
            None
        }
    });
    let send_queue = match raw.send_queue {
        None => 1024,
        Some(n) if (1..=1_000_000).contains(&n) => n as usize,
        Some(n) => {
            c.invalid(
                "realtime.send_queue",
                &n.to_string(),
                "must be between 1 and 1000000",
            );
            1024
        }
    };
    let max_message = c
        .size("realtime.max_message", raw.max_message.as_ref())
        .unwrap_or(64 * 1024) as usize;
    RealtimeSettings {
        auth,
        send_queue,
        max_message,
    }
}

/// A route's `upstream` or `serve`: exactly one of them.
pub(crate) fn route_target(
    c: &mut Compiler<'_>,
    path: &str,
    r: &RawRoute,
    upstreams: &HashMap<String, usize>,
    agents_on: bool,
) -> Option<RouteTarget> {
    match (&r.upstream, &r.serve) {
        (Some(_), Some(s)) => {
            c.invalid(
                join(path, "serve"),
                s,
                "set either upstream or serve, not both",
            );
            None
        }
        (None, None) => {
            c.err(
                path.to_string(),
                Problem::Shape {
                    message: "missing key `upstream` (or `serve` for a gateway service)".into(),
                }
                .into(),
            );
            None
        }
        (Some(u), None) => match upstreams.get(u) {
            Some(i) => Some(RouteTarget::Upstream(*i)),
            None => {
                c.err(
                    join(path, "upstream"),
                    ErrorKind::UnknownReference {
                        what: "upstream",
                        name: u.clone(),
                    },
                );
                None
            }
        },
        (None, Some(s)) => match s.as_str() {
            "realtime" => Some(RouteTarget::Service(Service::Realtime)),
            "agents" if agents_on => Some(RouteTarget::Service(Service::Agents)),
            "agents" => {
                c.invalid(join(path, "serve"), s, "needs an [agents] section");
                None
            }
            other => {
                c.invalid(join(path, "serve"), other, "expected realtime or agents");
                None
            }
        },
    }
}
