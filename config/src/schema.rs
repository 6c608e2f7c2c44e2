//! The raw TOML schema, as serde types. Values stay as written (strings for durations and
//! addresses) so that [`compile`](crate) can report each bad one with its key path.
//!
//! Sections that hold lists or maps of elements (`upstreams`, `routes`, `plugins`) are first read
//! as untyped TOML and then deserialized one element at a time.

use std::collections::BTreeMap;

use serde::Deserialize;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawConfig {
    /// `[listeners]`.
    pub listeners: RawListeners,
    /// `[server]`.
    pub server: RawServer,
    /// `[tls]`.
    pub tls: Option<RawTls>,
    /// `[admin]`.
    pub admin: Option<RawAdmin>,
    /// `[backend]`, read later as [`RawBackend`].
    pub backend: Option<toml::Value>,
    /// `[agents]`, read later as [`RawAgents`].
    pub agents: Option<toml::Value>,
    /// `[realtime]`, read later as [`RawRealtime`].
    pub realtime: Option<toml::Value>,
    /// `[[upstreams]]`, each read later as [`RawUpstream`].
    pub upstreams: Vec<toml::Value>,
    /// `[[routes]]`, each read later as [`RawRoute`].
    pub routes: Vec<toml::Value>,
    /// `[plugins.NAME]`, each read later according to its `kind`.
    pub plugins: BTreeMap<String, toml::Value>,
    /// `[[alerts]]`, each read later as [`RawAlert`](crate::alerts::RawAlert).
    pub alerts: Vec<toml::Value>,
    /// `[monitor]`, read later as [`RawMonitor`](crate::alerts::RawMonitor).
    pub monitor: Option<toml::Value>,
}

/// `[listeners]`: socket addresses; an omitted listener is off, except `http`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawListeners {
    /// HTTP/1.1 and h2c; default `0.0.0.0:8080`.
    pub http: Option<String>,
    /// TLS with ALPN h2 and http/1.1.
    pub https: Option<String>,
    /// QUIC / HTTP/3 (UDP; may share the https port number).
    pub h3: Option<String>,
    /// `Alt-Svc: h3=...` on responses over TLS when `h3` is on; default true.
    pub alt_svc: Option<bool>,
    /// Admin API; off when omitted (the shipped config sets `127.0.0.1:9901`).
    pub admin: Option<String>,
}

/// `[server]`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawServer {
    /// Worker threads; env `ORCHESTRA_THREADS` overrides.
    pub threads: Option<i64>,
    /// Drain bound on SIGTERM.
    pub grace_period: Option<String>,
    /// Directory for generated files (self-signed certificate); default `data`.
    pub data_dir: Option<String>,
    /// Bound on reading a whole request head (default `10s`).
    pub header_read_timeout: Option<String>,
    /// Idle time allowed between requests on one connection (default `60s`).
    pub keepalive_timeout: Option<String>,
    /// Bound on each wait for request body bytes (default `30s`).
    pub body_read_timeout: Option<String>,
    /// Bound on each wait for the client to take response bytes (default `30s`).
    pub write_timeout: Option<String>,
    /// Connections held open per listener; beyond it new ones wait (default 100000).
    pub max_connections: Option<i64>,
    /// Largest request body accepted (default `128MiB`).
    pub max_request_body: Option<toml::Value>,
    /// Peers whose `X-Forwarded-*` headers are believed (CIDRs or addresses).
    pub trusted_proxies: Option<Vec<String>>,
    /// Keep the spelling of HTTP/1 header names as clients and upstreams send them (default
    /// `false`: a few common fields in their usual capitalization, others in lower case).
    pub preserve_header_case: Option<bool>,
}

/// `[admin]`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawAdmin {
    /// Bearer token required by the admin API.
    pub token: Option<String>,
    /// Name of an environment variable holding the token (used when `token` is absent).
    pub token_env: Option<String>,
}

/// `[tls]`: PEM certificate chain and private key.
#[derive(Debug, Deserialize)]
pub struct RawTls {
    /// Certificate chain file.
    pub cert: String,
    /// Private key file.
    pub key: String,
}

/// One `[[upstreams]]` element.
#[derive(Debug, Deserialize)]
pub struct RawUpstream {
    /// Unique name routes refer to.
    pub name: String,
    /// Balancing strategy.
    pub balancer: Option<String>,
    /// Affinity key for `balancer = "consistent_hash"`: `"header:NAME"`, `"cookie:NAME"` or
    /// `"client_ip"` (required by that balancer, refused by the others).
    pub hash_key: Option<String>,
    /// `h1`, `h2` or `h2c` toward the targets.
    pub protocol: Option<String>,
    /// TLS toward the targets.
    #[serde(default)]
    pub tls: bool,
    /// SNI and certificate name for upstream TLS; default: the target's IP.
    pub sni: Option<String>,
    /// Verify the upstream certificate (default true).
    pub verify: Option<bool>,
    /// The endpoints.
    pub targets: Vec<RawTarget>,
    /// Connect, read, write and idle timeouts.
    #[serde(default)]
    pub timeouts: RawTimeouts,
    /// Active health checks.
    pub health_check: Option<RawHealthCheck>,
    /// Retry policy.
    pub retries: Option<RawRetries>,
    /// Circuit breaker.
    pub circuit_breaker: Option<RawBreaker>,
    /// Peak-EWMA decay (default `10s`).
    pub ewma_decay: Option<String>,
}

/// `health_check = { ... }`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawHealthCheck {
    /// `http` (default when `path` is set) or `tcp`.
    pub kind: Option<String>,
    /// Path probed with `GET` (default `/healthz`).
    pub path: Option<String>,
    /// Time between probes (default `2s`).
    pub interval: Option<String>,
    /// Probe timeout (default `500ms`).
    pub timeout: Option<String>,
    /// Consecutive failures that mark a target unhealthy (default 3).
    pub unhealthy_after: Option<i64>,
    /// Consecutive passes that mark it healthy again (default 2).
    pub healthy_after: Option<i64>,
}

/// `retries = { ... }`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawRetries {
    /// Retries after the first try (default 2).
    pub attempts: Option<i64>,
    /// Conditions: `connect-failure`, `reset`, `timeout`, or a 5xx status such as `503`.
    pub on: Option<Vec<String>>,
    /// Retries in flight at most this percentage of active requests (default 20).
    pub budget_percent: Option<i64>,
    /// Retry only idempotent methods (default true; a connect failure is always safe).
    pub idempotent_only: Option<bool>,
    /// First backoff ceiling (default `25ms`).
    pub backoff_base: Option<String>,
    /// Largest backoff (default `250ms`).
    pub backoff_max: Option<String>,
}

/// `circuit_breaker = { ... }`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawBreaker {
    /// Requests in flight beyond which new ones get 503 (default 1024; 0 = no cap).
    pub max_in_flight: Option<i64>,
    /// Consecutive failures that open the breaker (default 5).
    pub consecutive_failures: Option<i64>,
    /// How long it stays open before a probe (default `10s`).
    pub eject_for: Option<String>,
}

/// One target of an upstream.
#[derive(Debug, Deserialize)]
pub struct RawTarget {
    /// `IP:PORT` or `HOST:PORT` (resolved when the config is loaded).
    pub addr: String,
    /// Relative weight, default 1.
    pub weight: Option<i64>,
}

/// Upstream timeouts, as duration strings.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawTimeouts {
    /// TCP (and TLS) connect.
    pub connect: Option<String>,
    /// Each read from the upstream, including the wait for the response head.
    pub read: Option<String>,
    /// Each write to the upstream.
    pub write: Option<String>,
    /// How long a pooled idle connection is kept.
    pub idle: Option<String>,
}

/// One `[[routes]]` element.
#[derive(Debug, Deserialize)]
pub struct RawRoute {
    /// Name used in logs and histograms; default `route-N`.
    pub name: Option<String>,
    /// Match conditions; all given conditions must hold.
    #[serde(rename = "match", default)]
    pub matcher: RawMatch,
    /// Name of the upstream to proxy to (exactly one of `upstream` and `serve`).
    pub upstream: Option<String>,
    /// A service the gateway answers itself: `realtime` (WebSocket `/ws` and SSE) or `agents`
    /// (the agent protocol over WebSocket, `/agent/ws`).
    pub serve: Option<String>,
    /// Plugin names, applied in order.
    #[serde(default)]
    pub plugins: Vec<String>,
    /// Remove the matched `path_prefix` before forwarding.
    #[serde(default)]
    pub strip_prefix: bool,
}

/// Route match conditions.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawMatch {
    /// `*`, `exact.host`, or `*.suffix`.
    pub host: Option<String>,
    /// Path prefix (starts with `/`).
    pub path_prefix: Option<String>,
    /// Exact path (starts with `/`).
    pub path: Option<String>,
    /// Allowed methods; absent = any.
    pub methods: Option<Vec<String>>,
    /// Headers that must be present with exactly these values.
    pub headers: BTreeMap<String, String>,
}

/// `[backend]`: where durable state goes.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawBackend {
    /// `http://HOST:PORT` of an `orchestra-backend`; absent = embedded on `sqlite_path`.
    pub url: Option<String>,
    /// SQLite file of the embedded backend (default `{data_dir}/orchestra.db`).
    pub sqlite_path: Option<String>,
    /// Flush an event batch at this many events (default 50).
    pub batch_max_events: Option<i64>,
    /// Flush an event batch after this long (default `50ms`).
    pub batch_max_delay: Option<String>,
    /// Per-request timeout toward the backend (default `5s`).
    pub request_timeout: Option<String>,
    /// Directory of the on-disk spool used while the backend is unreachable
    /// (default `{data_dir}/spool`).
    pub spool_dir: Option<String>,
    /// Largest spool size; beyond it appends are refused (default `1GiB`).
    pub spool_max_bytes: Option<toml::Value>,
}

/// `[agents]`: the agent hub.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawAgents {
    /// Keys file: agent id -> API key and HMAC secret (required).
    pub keys_file: Option<String>,
    /// Heartbeat period agents are told to use (default `10s`).
    pub heartbeat_interval: Option<String>,
    /// Missed heartbeats after which an agent is offline and disconnected (default 3).
    pub offline_after_missed: Option<i64>,
    /// `peak_ewma` (default) or `resource_based`.
    pub dispatch: Option<String>,
    /// How long a running task waits for its disconnected agent before it fails (default `5m`).
    pub reconnect_grace: Option<String>,
    /// Tasks waiting for a free agent, at most (default 10000).
    pub max_queued: Option<i64>,
}

/// `[realtime]`: the browser channel (`/ws`, SSE).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawRealtime {
    /// Name of a `jwt` plugin instance; absent = no authentication (a warning at start).
    pub auth: Option<String>,
    /// Events buffered per client before it is cut off (default 1024).
    pub send_queue: Option<i64>,
    /// Largest client message accepted (default `64KiB`).
    pub max_message: Option<toml::Value>,
}
