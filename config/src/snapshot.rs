//! The compiled, immutable runtime snapshot.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use orchestra_lb::{
    Balancer, CircuitBreaker, HealthCheckConfig, Params, RetryBudget, RetryPolicy, Strategy,
};
use orchestra_plugins::{Plugin, TrustedProxies};

use crate::alerts::{AlertRule, MonitorSettings};
use crate::RouteTable;

/// Everything a request needs, compiled once per config version.
#[derive(Debug)]
pub struct Snapshot {
    /// Listener addresses.
    pub listeners: Listeners,
    /// Process settings.
    pub server: ServerSettings,
    /// Admin API settings.
    pub admin: AdminSettings,
    /// Configured certificate, or `None` for the generated self-signed one.
    pub tls: Option<TlsFiles>,
    /// Upstreams in file order; routes refer to them by index.
    pub upstreams: Vec<Arc<Upstream>>,
    /// Routes in file order.
    pub routes: RouteTable,
    /// `[plugins.*]` definitions by name.
    pub plugins: HashMap<String, PluginDef>,
    /// `[backend]`: where durable state goes (embedded SQLite when no URL is set).
    pub backend: BackendSettings,
    /// `[agents]`: the agent hub (`None` = agents are refused).
    pub agents: Option<AgentSettings>,
    /// `[realtime]`: the browser channel.
    pub realtime: RealtimeSettings,
    /// `[[alerts]]` rules, in file order.
    pub alerts: Vec<AlertRule>,
    /// `[monitor]`: alert evaluation, dashboard sampling, webhook delivery.
    pub monitor: MonitorSettings,
}

/// `[backend]` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendSettings {
    /// A remote `orchestra-backend` (`http://HOST:PORT`, no trailing slash); `None` = the
    /// embedded backend, started in-process on [`BackendSettings::sqlite_path`].
    pub url: Option<String>,
    /// SQLite file of the embedded backend.
    pub sqlite_path: PathBuf,
    /// An event batch is sent when it holds this many events...
    pub batch_max_events: usize,
    /// ... or when its oldest event has waited this long.
    pub batch_max_delay: Duration,
    /// Timeout of one request to the backend.
    pub request_timeout: Duration,
    /// Directory of the on-disk spool used while the backend is unreachable.
    pub spool_dir: PathBuf,
    /// Largest spool size in bytes; appends beyond it are refused.
    pub spool_max_bytes: u64,
}

/// How a task picks among the capable agents with a free slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DispatchPolicy {
    /// Peak-EWMA over the agent's RTT, weighted by its running tasks (power of two choices).
    PeakEwma,
    /// The agent with the most free CPU and memory, as reported in heartbeats.
    ResourceBased,
}

/// `[agents]` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentSettings {
    /// Keys file (agent id -> API key, HMAC secret); re-read on every reload.
    pub keys_file: PathBuf,
    /// Heartbeat period agents are told to use.
    pub heartbeat_interval: Duration,
    /// Missed heartbeats after which an agent is offline and its connection closed.
    pub offline_after_missed: u32,
    /// Dispatch among capable agents.
    pub dispatch: DispatchPolicy,
    /// How long a running task waits for its disconnected agent before it becomes `error`.
    pub reconnect_grace: Duration,
    /// Tasks waiting for a free agent, at most; beyond it `worker:start` is refused.
    pub max_queued: usize,
}

/// `[realtime]` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RealtimeSettings {
    /// Name of the `jwt` plugin instance that authenticates clients (`None` = no auth).
    pub auth: Option<String>,
    /// Events buffered per client before it is cut off with `SYS_001`.
    pub send_queue: usize,
    /// Largest client message in bytes; larger ones get `PARAM_001`.
    pub max_message: usize,
}

impl Default for RealtimeSettings {
    fn default() -> Self {
        RealtimeSettings {
            auth: None,
            send_queue: 1024,
            max_message: 64 * 1024,
        }
    }
}

/// A plugin instance with the definition it was built from (to reuse it across reloads).
#[derive(Debug, Clone)]
pub struct PluginDef {
    /// The `[plugins.NAME]` table as written.
    pub definition: toml::Value,
    /// The shared instance.
    pub plugin: Arc<dyn Plugin>,
}

impl PluginDef {
    /// True when this plugin reads files at build time (`jwt` secrets and JWKS), so a reload
    /// must rebuild it even when its table is unchanged.
    pub fn reads_files(&self) -> bool {
        orchestra_plugins::registry::reads_files(&self.definition)
    }

    /// The plugin's `kind` as written in its table.
    pub fn kind(&self) -> Option<&str> {
        orchestra_plugins::registry::kind_of(&self.definition)
    }
}

/// Listener addresses (`None` = off).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listeners {
    /// HTTP/1.1 + h2c.
    pub http: Option<SocketAddr>,
    /// TLS, ALPN h2 + http/1.1.
    pub https: Option<SocketAddr>,
    /// Admin API.
    pub admin: Option<SocketAddr>,
    /// QUIC endpoint (HTTP/3), UDP.
    pub h3: Option<SocketAddr>,
    /// Advertise HTTP/3 with `Alt-Svc` on responses over TLS (when `h3` is on).
    pub alt_svc: bool,
}

/// `[admin]` settings. `Debug` never shows the token.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct AdminSettings {
    /// Bearer token the admin API requires (`None` = open; bind it to loopback).
    pub token: Option<String>,
}

impl std::fmt::Debug for AdminSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let token = self.token.as_ref().map(|_| crate::secrets::MASK);
        f.debug_struct("AdminSettings")
            .field("token", &token)
            .finish()
    }
}

/// `[server]` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSettings {
    /// Worker threads (before the `ORCHESTRA_THREADS` override).
    pub threads: usize,
    /// Drain bound on SIGTERM.
    pub grace_period: Duration,
    /// Directory for generated files.
    pub data_dir: PathBuf,
    /// What one client connection may hold, on every front.
    pub limits: DownstreamLimits,
    /// Peers whose `X-Forwarded-For`, `-Proto` and `-Host` are kept (and whose forwarded
    /// client address the plugins use); everyone else's are replaced.
    pub trusted_proxies: TrustedProxies,
    /// Whether HTTP/1 header names keep the spelling they were sent with (request heads from
    /// clients to upstreams, response heads from upstreams to clients). Off by default: names
    /// are case-insensitive, HTTP/2 and HTTP/3 already carry them in lower case, and keeping the
    /// spelling costs a second header map per head. Request side bound at start (restart),
    /// response side at once.
    pub preserve_header_case: bool,
}

/// Downstream (client-side) limits of `[server]`, the same on HTTP/1.1, HTTP/2 and HTTP/3.
///
/// | key | HTTP/1.1 | HTTP/2 | HTTP/3 | on reload |
/// |---|---|---|---|---|
/// | `header_read_timeout` | whole head (first request: from accept, also bounds TLS) | preface and SETTINGS | request HEADERS frame | restart |
/// | `keepalive_timeout` | wait for the next request | idle connection | QUIC idle timeout | HTTP/1.1 at once, others restart |
/// | `body_read_timeout` | each body read | each body read | each body read | at once |
/// | `write_timeout` | each response write | each response write | each response write | at once |
/// | `max_connections` | per listener, accept waits | per listener | per endpoint, accept waits | restart |
/// | `max_request_body` | 413 | 413 | 413 | at once |
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DownstreamLimits {
    /// Bound on reading a whole request head.
    pub header_read_timeout: Duration,
    /// Idle time allowed between requests on one connection.
    pub keepalive_timeout: Duration,
    /// Bound on each wait for request body bytes.
    pub body_read_timeout: Duration,
    /// Bound on each wait for the client to take response bytes.
    pub write_timeout: Duration,
    /// Connections held open per listener.
    pub max_connections: usize,
    /// Largest request body in bytes.
    pub max_request_body: u64,
}

impl Default for DownstreamLimits {
    fn default() -> Self {
        DownstreamLimits {
            header_read_timeout: Duration::from_secs(10),
            keepalive_timeout: Duration::from_secs(60),
            body_read_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(30),
            max_connections: 100_000,
            max_request_body: 128 * 1024 * 1024,
        }
    }
}

/// Certificate and key files for the TLS listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// Wire protocol toward an upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamProtocol {
    /// HTTP/1.1 (also what WebSocket upgrades need).
    H1,
    /// HTTP/2 negotiated over TLS.
    H2,
    /// HTTP/2 with prior knowledge over cleartext.
    H2c,
}

/// TLS toward an upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamTls {
    /// SNI and name to verify; empty = the target's IP.
    pub sni: String,
    /// Verify the certificate chain and name.
    pub verify: bool,
}

/// Upstream timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Connect (TCP + TLS).
    pub connect: Duration,
    /// Each read, including waiting for the response head.
    pub read: Duration,
    /// Each write.
    pub write: Duration,
    /// Idle time of a pooled connection.
    pub idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(1),
            read: Duration::from_secs(30),
            write: Duration::from_secs(30),
            idle: Duration::from_secs(60),
        }
    }
}

/// One upstream: its targets behind a balancer, and how to talk to them.
#[derive(Debug)]
pub struct Upstream {
    /// Upstream name.
    pub name: Arc<str>,
    /// Protocol toward the targets.
    pub protocol: UpstreamProtocol,
    /// TLS toward the targets, if any.
    pub tls: Option<UpstreamTls>,
    /// Timeouts.
    pub timeouts: Timeouts,
    /// The balancing strategy, holding the targets.
    pub balancer: Box<dyn Balancer>,
    /// Strategy, retries, breaker, health checks.
    pub policy: UpstreamPolicy,
    /// The `[[upstreams]]` element as written (to reuse the upstream across reloads).
    pub definition: toml::Value,
}

/// What a consistent-hash upstream hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashKey {
    /// A request header's value.
    Header(http::HeaderName),
    /// A cookie's value.
    Cookie(String),
    /// The client's IP address.
    ClientIp,
}

/// An upstream's policies.
#[derive(Debug)]
pub struct UpstreamPolicy {
    /// Balancing strategy.
    pub strategy: Strategy,
    /// Balancer parameters (clock, peak-EWMA, outlier detection).
    pub params: Params,
    /// Affinity key for `consistent_hash`.
    pub hash_key: Option<HashKey>,
    /// Active health checks.
    pub health: Option<HealthCheckConfig>,
    /// Retry policy (`None` = no retries beyond pingora's stale-connection retry).
    pub retry: Option<RetryPolicy>,
    /// Caps retries at a share of active requests.
    pub retry_budget: Arc<RetryBudget>,
    /// Circuit breaker.
    pub breaker: Option<Arc<CircuitBreaker>>,
}
