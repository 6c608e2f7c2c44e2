//! The agent path of the gateway: agents' connections (QUIC ALPN `orchestra-agent/1` on the
//! HTTP/3 endpoint, or WebSocket at `/agent/ws`) in front of the hub (`orchestra-hub`).
//!
//! ```text
//! QUIC endpoint ──(ALPN orchestra-agent/1)──► quic.rs ─┐
//! pingora front ──(route serve = "agents")──► ws.rs ───┴► control.rs ─► hub.connect / heartbeats / pings
//!                                                          ├─► task_stream.rs (assign, resume) ─► hub attachment ─► backend (acks)
//!                                                          └─► link.rs (what the hub asks of a connection)
//! ```
//!
//! | file | what |
//! |---|---|
//! | `mod.rs` | [`AgentService`]: the hub, the key verifier, the `[agents]` settings; start, reload (keys file re-read, removed agents disconnected), shutdown |
//! | [`transport`] | the stream and connection types both transports provide |
//! | [`quic`] | the `orchestra-agent/1` ALPN handler |
//! | [`ws`] | the WebSocket multiplexer (`Envelope`s) |
//! | [`control`] | the control stream: register and authentication, heartbeats, offline detection, ping RTT, agent-opened streams |
//! | [`task_stream`] | one task stream: assignment or resume, events in batches to the backend, acks once durable, input and stop |
//! | [`link`] | the hub's handle on a connection: open task streams, close |
//! | [`store`] | the hub's persistence through the gateway's backend client |
//! | [`report`] | `/admin/agents`, `/admin/tasks` and the agent lines of `/metrics` |

pub mod control;
pub mod link;
pub mod quic;
pub mod report;
pub mod store;
pub mod task_stream;
pub mod transport;
pub mod ws;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use orchestra_config::{AgentSettings, DispatchPolicy};
use orchestra_hub::{Hub, HubConfig, Persist};
use orchestra_metrics::{Metric, Registry, SeriesId, SeriesKey, SeriesKind};
use orchestra_plugins::agent_auth::{AgentKeys, AgentVerifier, AuthError, KeysFileError};
use tokio::sync::watch;

/// Why an agent was refused at register, for `/metrics` (`orchestra_agent_auth_failures_total`).
pub const AUTH_REASONS: [&str; 6] = [
    "unknown_agent",
    "bad_api_key",
    "bad_signature",
    "stale",
    "replayed",
    "malformed",
];

fn auth_reason(e: &AuthError) -> usize {
    match e {
        AuthError::UnknownAgent(_) => 0,
        AuthError::BadApiKey => 1,
        AuthError::BadSignature => 2,
        AuthError::Stale { .. } => 3,
        AuthError::Replayed => 4,
        AuthError::Malformed(_) => 5,
    }
}

/// Counters of the gateway's side of the agent protocol.
#[derive(Debug, Default)]
pub struct AgentMetrics {
    /// Register refusals, by [`AUTH_REASONS`].
    pub auth_failures: [AtomicU64; 6],
    /// Connections closed for missing heartbeats.
    pub offline: AtomicU64,
    /// Connections or streams ended for malformed or out-of-place frames.
    pub bad_frames: AtomicU64,
}

/// The agent hub as the gateway runs it.
pub struct AgentService {
    hub: Hub,
    verifier: AgentVerifier,
    settings: ArcSwap<AgentSettings>,
    metrics: AgentMetrics,
    registry: Arc<Registry>,
    ack_series: SeriesId,
    shutdown: watch::Sender<bool>,
    keys_at_start: usize,
}

impl std::fmt::Debug for AgentService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentService")
            .field("hub", &self.hub)
            .finish()
    }
}

/// The hub's settings for `[agents]`.
pub fn hub_config(s: &AgentSettings) -> HubConfig {
    HubConfig {
        dispatch: match s.dispatch {
            DispatchPolicy::PeakEwma => orchestra_lb::Strategy::PeakEwma,
            DispatchPolicy::ResourceBased => orchestra_lb::Strategy::ResourceBased,
        },
        reconnect_grace: s.reconnect_grace,
        max_queued: s.max_queued,
        ..HubConfig::default()
    }
}

impl AgentService {
    /// Reads the keys file and builds the hub over `persist`.
    pub fn start(
        settings: &AgentSettings,
        persist: Arc<dyn Persist>,
        registry: Arc<Registry>,
    ) -> Result<Arc<AgentService>, KeysFileError> {
        let keys = AgentKeys::load(&settings.keys_file)?;
        let keys_at_start = keys.len();
        tracing::info!(keys_file = %settings.keys_file.display(), agents = keys.len(), "agent keys loaded");
        let ack_series = registry.intern(SeriesKey {
            kind: SeriesKind::Protocol,
            name: "agent".into(),
            metric: Metric::Total,
        });
        Ok(Arc::new(AgentService {
            hub: Hub::new(hub_config(settings), persist),
            verifier: AgentVerifier::new(keys),
            settings: ArcSwap::from_pointee(settings.clone()),
            metrics: AgentMetrics::default(),
            registry,
            ack_series,
            shutdown: watch::channel(false).0,
            keys_at_start,
        }))
    }

    /// The hub (for the realtime channel and the admin API).
    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    /// The current `[agents]` settings.
    pub fn settings(&self) -> Arc<AgentSettings> {
        self.settings.load_full()
    }

    /// Agents in the keys file when the gateway started (sizes the QUIC connection limit).
    pub fn keys_at_start(&self) -> usize {
        self.keys_at_start
    }

    /// The counters.
    pub fn metrics(&self) -> &AgentMetrics {
        &self.metrics
    }

    /// Reads the keys file of `settings` (a reload validates it before swapping anything).
    pub fn load_keys(settings: &AgentSettings) -> Result<AgentKeys, KeysFileError> {
        AgentKeys::load(&settings.keys_file)
    }

    /// Applies reloaded settings and keys; agents no longer in the keys are disconnected.
    pub fn apply(&self, settings: &AgentSettings, keys: AgentKeys) {
        self.verifier.set_keys(keys);
        self.settings.store(Arc::new(settings.clone()));
        self.hub.set_config(hub_config(settings));
        for agent in self.hub.agents() {
            if !self.verifier.knows(&agent.id) {
                tracing::info!(agent = %agent.id, "agent removed from the keys file: disconnecting");
                self.hub.disconnect_agent(
                    &agent.id,
                    "AUTH_001",
                    "this agent was removed from the gateway's keys file",
                );
            }
        }
    }

    /// Tells every agent connection to close (graceful shutdown); agents reconnect elsewhere.
    pub fn begin_shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    pub(crate) fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    pub(crate) fn verifier(&self) -> &AgentVerifier {
        &self.verifier
    }

    pub(crate) fn auth_failed(&self, e: &AuthError) {
        self.metrics.auth_failures[auth_reason(e)].fetch_add(1, Ordering::Relaxed);
    }

    /// Records the time from a batch's first event to its ack (`protocol:agent` histogram).
    pub(crate) fn record_ack_latency(&self, d: Duration) {
        self.registry.record(
            &[self.ack_series],
            d.as_micros().min(u64::MAX as u128) as u64,
        );
    }
}

/// Resolves once `rx` holds `true` (or its sender is gone); holds no guard across awaits.
pub(crate) async fn until_true(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|v| *v).await.map(|_| ());
}
