//! The agent's configuration: one TOML file (SPEC "Agents"), overridden by command-line flags,
//! validated all at once.
//!
//! [`load`] reads the file, applies the [`Overrides`] and returns an [`AgentConfig`] or every
//! problem found, each naming the file (or `command line`), the key path (or the flag) and the
//! bad value. Unknown keys are errors. The keys, their defaults and the extensions of the SPEC
//! are listed in the README ("orchestra-agent").

mod endpoint;
mod error;
mod raw;
mod secret;
pub mod tools;

pub use endpoint::{GatewayAddr, Transport, Trust};
pub use error::{ConfigError, ConfigErrors, ErrorKind, COMMAND_LINE};
pub use secret::Secret;
pub use tools::{OutputFormat, StdinMode, TaskVars, Template, Tool};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustls::pki_types::ServerName;

use secret::{SecretEnv, SecretKeys};

/// Default config file of `run` and `check`.
pub const DEFAULT_CONFIG_PATH: &str = "config/agent.toml";

/// Largest `max_tasks`.
pub const MAX_TASKS_LIMIT: u32 = 1024;

/// `[reconnect]`: exponential backoff with jitter between connection attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReconnectPolicy {
    /// First delay (before jitter).
    pub base: Duration,
    /// Largest delay.
    pub max: Duration,
    /// A connection that stayed up this long resets the backoff.
    pub stable_after: Duration,
}

/// `[output]`: how much unacknowledged output a task may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputLimits {
    /// Held events kept in memory, per task; beyond it they go to the spill file.
    pub memory_per_task: usize,
    /// Spill file size per task; beyond it the task's output is no longer read (the process
    /// blocks on its pipe) until acks free room. Nothing is dropped.
    pub spill_per_task: u64,
}

/// A validated agent configuration.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The config file, as given.
    pub file: PathBuf,
    /// The gateway's address.
    pub gateway: GatewayAddr,
    /// TLS name verified in the gateway's certificate (default: the gateway's host).
    pub server_name: ServerName<'static>,
    /// Certificates trusted for the gateway.
    pub trust: Trust,
    /// QUIC or WebSocket.
    pub transport: Transport,
    /// Agent id (the keys file's).
    pub id: String,
    /// API key.
    pub api_key: String,
    /// HMAC secret.
    pub secret: Secret,
    /// Display name (default: the host name).
    pub name: String,
    /// Tools announced to the gateway (default: every tool of the table).
    pub capabilities: Vec<String>,
    /// Sent as `Register.metadata` — extension.
    pub metadata: BTreeMap<String, String>,
    /// Tasks run at most at once.
    pub max_tasks: u32,
    /// Parent of the tasks' working directories and of `.spill/`.
    pub workdir: PathBuf,
    /// The tool table.
    pub tools: BTreeMap<String, Tool>,
    /// QUIC keep-alive interval (below the gateway's 30 s idle timeout) — extension.
    pub keep_alive: Duration,
    /// Bound of one connection attempt, handshake and register included — extension.
    pub connect_timeout: Duration,
    /// Between SIGTERM and SIGKILL when a task is stopped — extension.
    pub stop_grace: Duration,
    /// Backoff between connection attempts — extension.
    pub reconnect: ReconnectPolicy,
    /// Held output bounds — extension.
    pub output: OutputLimits,
}

/// Command-line flags that override the file (SPEC: `--gateway`, `--id`, `--api-key`,
/// `--secret-env`, `--ca`, `--insecure`, `--transport`).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--gateway HOST:PORT`.
    pub gateway: Option<String>,
    /// `--id`.
    pub id: Option<String>,
    /// `--api-key`.
    pub api_key: Option<String>,
    /// `--secret-env VAR`.
    pub secret_env: Option<String>,
    /// `--ca FILE` (turns `insecure` off).
    pub ca: Option<String>,
    /// `--insecure` (drops `ca`).
    pub insecure: bool,
    /// `--transport quic|ws`.
    pub transport: Option<String>,
}

/// Reads and validates the config file at `path` with `overrides` applied.
pub fn load(path: &Path, overrides: &Overrides) -> Result<AgentConfig, ConfigErrors> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError::new(
            &file,
            "",
            ErrorKind::Io {
                reason: e.to_string(),
            },
        )])
    })?;
    let mode = secret::file_mode(path).ok();
    let var = |name: &str| std::env::var(name).ok();
    let env = SecretEnv {
        var: &var,
        mode: &secret::file_mode,
        read: &secret::read_file,
    };
    validate(&text, path, mode, overrides, &env)
}

/// Where a value came from, for error messages.
struct Origin<'a> {
    file: &'a str,
    key: &'a str,
    flag: Option<&'static str>,
}

impl Origin<'_> {
    fn error(&self, value: &str, reason: impl Into<String>) -> ConfigError {
        match self.flag {
            Some(flag) => ConfigError::invalid(COMMAND_LINE, flag, value, reason),
            None => ConfigError::invalid(self.file, self.key, value, reason),
        }
    }
}

/// Picks the flag's value over the file's, remembering which one it was.
fn pick<'a>(
    file: &'a str,
    key: &'a str,
    flag_name: &'static str,
    flag: Option<&'a str>,
    value: Option<&'a str>,
) -> Option<(&'a str, Origin<'a>)> {
    let origin = |flag| Origin { file, key, flag };
    match (flag, value) {
        (Some(v), _) => Some((v, origin(Some(flag_name)))),
        (None, Some(v)) => Some((v, origin(None))),
        (None, None) => None,
    }
}

pub(crate) fn missing(file: &str, key: &str, hint: &str, errors: &mut Vec<ConfigError>) {
    errors.push(ConfigError::new(
        file,
        key,
        ErrorKind::Missing { hint: hint.into() },
    ));
}

fn duration(
    file: &str,
    key: &str,
    value: Option<&str>,
    default: Duration,
    range: (Duration, Duration),
    errors: &mut Vec<ConfigError>,
) -> Duration {
    let Some(v) = value else { return default };
    match orchestra_config_core::duration::parse_duration(v) {
        Ok(d) if d >= range.0 && d <= range.1 => d,
        Ok(_) => {
            errors.push(ConfigError::invalid(
                file,
                key,
                v,
                format!("must be between {:?} and {:?}", range.0, range.1),
            ));
            default
        }
        Err(reason) => {
            errors.push(ConfigError::invalid(file, key, v, reason));
            default
        }
    }
}

fn size(
    file: &str,
    key: &str,
    value: Option<&str>,
    default: u64,
    min: u64,
    errors: &mut Vec<ConfigError>,
) -> u64 {
    let Some(v) = value else { return default };
    match orchestra_config_core::size::parse_size(v) {
        Ok(n) if n >= min => n,
        Ok(_) => {
            errors.push(ConfigError::invalid(
                file,
                key,
                v,
                format!("must be at least {min} bytes"),
            ));
            default
        }
        Err(reason) => {
            errors.push(ConfigError::invalid(file, key, v, reason));
            default
        }
    }
}

fn validate(
    text: &str,
    path: &Path,
    config_mode: Option<u32>,
    ov: &Overrides,
    env: &SecretEnv<'_>,
) -> Result<AgentConfig, ConfigErrors> {
    let file = &path.display().to_string();
    let mut errors = Vec::new();
    let Some(mut raw) = raw::parse(text, file, &mut errors) else {
        return Err(ConfigErrors(errors));
    };

    let gateway = match pick(
        file,
        "gateway",
        "--gateway",
        ov.gateway.as_deref(),
        raw.gateway.as_deref(),
    ) {
        Some((v, origin)) => GatewayAddr::parse(v)
            .map_err(|reason| errors.push(origin.error(v, reason)))
            .ok(),
        None => {
            missing(file, "gateway", "gateway = \"127.0.0.1:8443\"", &mut errors);
            None
        }
    };
    let server_name = match (&raw.server_name, &gateway) {
        (Some(name), _) => ServerName::try_from(name.clone())
            .map_err(|_| {
                errors.push(ConfigError::invalid(
                    file,
                    "server_name",
                    name,
                    "not a valid DNS name or IP address",
                ))
            })
            .ok(),
        (None, Some(g)) => ServerName::try_from(g.host.clone()).ok(),
        (None, None) => None,
    };
    let trust = endpoint::trust(file, &raw, ov, &mut errors);
    let transport = match pick(
        file,
        "transport",
        "--transport",
        ov.transport.as_deref(),
        raw.transport.as_deref(),
    ) {
        Some((v, origin)) => Transport::parse(v)
            .map_err(|reason| errors.push(origin.error(v, reason)))
            .unwrap_or(Transport::Quic),
        None => Transport::Quic,
    };
    let id = match pick(file, "id", "--id", ov.id.as_deref(), raw.id.as_deref()) {
        Some((v, origin)) => {
            if v.is_empty()
                || v.contains(':')
                || v.len() > 128
                || !v.bytes().all(|b| b.is_ascii_graphic())
            {
                errors.push(origin.error(v, "1-128 visible ASCII characters without ':'"));
            }
            v.to_string()
        }
        None => {
            missing(file, "id", "id = \"worker-1\"", &mut errors);
            String::new()
        }
    };
    let api_key = match pick(
        file,
        "api_key",
        "--api-key",
        ov.api_key.as_deref(),
        raw.api_key.as_deref(),
    ) {
        Some((v, origin)) => {
            if v.is_empty() {
                errors.push(origin.error(v, "must not be empty"));
            }
            v.to_string()
        }
        None => {
            missing(file, "api_key", "api_key = \"ak_worker1\"", &mut errors);
            String::new()
        }
    };
    let secret = secret::resolve(
        SecretKeys {
            inline: raw.secret.as_deref(),
            env: raw.secret_env.as_deref(),
            file: raw.secret_file.as_deref(),
            env_flag: ov.secret_env.as_deref(),
        },
        file,
        config_mode,
        env,
        &mut errors,
    );

    let tools = tools::build(file, raw.tools.take(), &mut errors);
    let capabilities = match raw.capabilities.take() {
        Some(caps) => {
            for (i, c) in caps.iter().enumerate() {
                if !tools.contains_key(c) {
                    errors.push(ConfigError::invalid(
                        file,
                        format!("capabilities[{i}]"),
                        c,
                        "no [tools] entry of that name: add one, or remove the capability",
                    ));
                }
            }
            caps
        }
        None => tools.keys().cloned().collect(),
    };
    let max_tasks = match raw.max_tasks {
        Some(n) if (1..=i64::from(MAX_TASKS_LIMIT)).contains(&n) => n as u32,
        Some(n) => {
            errors.push(ConfigError::invalid(
                file,
                "max_tasks",
                n.to_string(),
                format!("must be between 1 and {MAX_TASKS_LIMIT}"),
            ));
            1
        }
        None => 4,
    };
    let workdir = PathBuf::from(raw.workdir.as_deref().unwrap_or("work"));
    if workdir.as_os_str().is_empty() {
        errors.push(ConfigError::invalid(
            file,
            "workdir",
            "",
            "must not be empty",
        ));
    }
    let name = raw
        .name
        .clone()
        .or_else(sysinfo::System::host_name)
        .unwrap_or_else(|| "orchestra-agent".to_string());

    let secs = Duration::from_secs;
    let keep_alive = duration(
        file,
        "keep_alive",
        raw.keep_alive.as_deref(),
        secs(10),
        (Duration::from_millis(100), secs(25)),
        &mut errors,
    );
    let connect_timeout = duration(
        file,
        "connect_timeout",
        raw.connect_timeout.as_deref(),
        secs(10),
        (Duration::from_millis(100), secs(300)),
        &mut errors,
    );
    let stop_grace = duration(
        file,
        "stop_grace",
        raw.stop_grace.as_deref(),
        secs(5),
        (Duration::ZERO, secs(3600)),
        &mut errors,
    );
    let rc = raw.reconnect.take().unwrap_or_default();
    let reconnect = ReconnectPolicy {
        base: duration(
            file,
            "reconnect.base",
            rc.base.as_deref(),
            secs(1),
            (Duration::from_millis(10), secs(3600)),
            &mut errors,
        ),
        max: duration(
            file,
            "reconnect.max",
            rc.max.as_deref(),
            secs(30),
            (Duration::from_millis(10), secs(3600)),
            &mut errors,
        ),
        stable_after: duration(
            file,
            "reconnect.stable_after",
            rc.stable_after.as_deref(),
            secs(60),
            (Duration::ZERO, secs(86400)),
            &mut errors,
        ),
    };
    if reconnect.max < reconnect.base {
        errors.push(ConfigError::invalid(
            file,
            "reconnect.max",
            rc.max.unwrap_or_default(),
            format!("must not be below reconnect.base ({:?})", reconnect.base),
        ));
    }
    let out = raw.output.take().unwrap_or_default();
    let output = OutputLimits {
        memory_per_task: size(
            file,
            "output.memory_per_task",
            out.memory_per_task.as_deref(),
            4 << 20,
            16 << 10,
            &mut errors,
        ) as usize,
        spill_per_task: size(
            file,
            "output.spill_per_task",
            out.spill_per_task.as_deref(),
            1 << 30,
            1 << 20,
            &mut errors,
        ),
    };

    match (errors.is_empty(), gateway, server_name, trust, secret) {
        (true, Some(gateway), Some(server_name), Some(trust), Some(secret)) => Ok(AgentConfig {
            file: path.to_path_buf(),
            gateway,
            server_name,
            trust,
            transport,
            id,
            api_key,
            secret,
            name,
            capabilities,
            metadata: raw.metadata.take().unwrap_or_default(),
            max_tasks,
            workdir,
            tools,
            keep_alive,
            connect_timeout,
            stop_grace,
            reconnect,
            output,
        }),
        _ => Err(ConfigErrors(errors)),
    }
}

#[cfg(test)]
mod tests;
