//! Live state shared by every request and every front: the current [`Live`] config behind an
//! `ArcSwap`, the latency registry, the config history, and process-wide counters.
//!
//! A replaced config is handed to a retirer thread ([`GatewayState::swap`]), which holds it until
//! no request uses it and then drops it there: freeing a snapshot (routes, balancers, plugin
//! chains, peers) never lands on the request that happened to hold the last reference.

use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use orchestra_config::Snapshot;
use orchestra_metrics::{Metric, Registry, SeriesId, SeriesKey, SeriesKind, StatusCounters};

use crate::pipeline::Protocol;

/// One applied config version: the compiled snapshot plus what the gateway derives from it.
///
/// Requests load it once (`ArcSwap::load_full`) and keep the `Arc` until they end, so a swap
/// never changes a request midway.
#[derive(Debug)]
pub struct Live {
    /// The compiled config.
    pub snapshot: Snapshot,
    /// Version number, starting at 1 and increasing with every applied config.
    pub version: u64,
    /// sha256 of the config text, hex.
    pub sha256: String,
    /// The config text as applied.
    pub text: Arc<str>,
    /// What triggered it (`startup`, `sighup`, `file-watch`, `admin-put`, `admin-reload`, `rollback`).
    pub source: &'static str,
    /// When it was applied.
    pub applied_at: SystemTime,
    /// Interned metric series for this config's routes and targets.
    pub series: SeriesIndex,
    /// The pingora peer of every target, built once per applied config.
    pub peers: crate::upstream::PeerIndex,
}

impl Deref for Live {
    type Target = Snapshot;
    fn deref(&self) -> &Snapshot {
        &self.snapshot
    }
}

/// The two latency series (total, upstream) of one subject.
#[derive(Debug, Clone, Copy)]
pub struct SeriesPair {
    /// Total latency.
    pub total: SeriesId,
    /// Upstream latency (time to the upstream's response head).
    pub upstream: SeriesId,
}

impl SeriesPair {
    fn intern(registry: &Registry, kind: SeriesKind, name: &str) -> SeriesPair {
        let key = |metric| SeriesKey {
            kind,
            name: name.to_string(),
            metric,
        };
        SeriesPair {
            total: registry.intern(key(Metric::Total)),
            upstream: registry.intern(key(Metric::Upstream)),
        }
    }
}

/// Metric handles resolved at config apply time, indexed like the snapshot.
#[derive(Debug)]
pub struct SeriesIndex {
    /// Per route, in route order.
    pub routes: Vec<(SeriesPair, Arc<StatusCounters>)>,
    /// Requests that matched no route.
    pub no_route: Arc<StatusCounters>,
    /// Per upstream, per target, in config order.
    pub targets: Vec<Vec<(SocketAddr, SeriesPair)>>,
    /// Per front protocol: h1, h2, h3, ws.
    pub protocols: [SeriesPair; 4],
}

impl SeriesIndex {
    /// Interns the series of every route, target and protocol of `snapshot`.
    pub fn build(registry: &Registry, snapshot: &Snapshot) -> SeriesIndex {
        let routes = snapshot
            .routes
            .routes()
            .iter()
            .map(|r| {
                (
                    SeriesPair::intern(registry, SeriesKind::Route, &r.name),
                    registry.route_counters(&r.name),
                )
            })
            .collect();
        let targets = snapshot
            .upstreams
            .iter()
            .map(|u| {
                u.balancer
                    .targets()
                    .iter()
                    .map(|t| {
                        let name = format!("{}/{}", u.name, t.addr);
                        (
                            t.addr,
                            SeriesPair::intern(registry, SeriesKind::Target, &name),
                        )
                    })
                    .collect()
            })
            .collect();
        let p =
            |proto: Protocol| SeriesPair::intern(registry, SeriesKind::Protocol, proto.as_str());
        SeriesIndex {
            routes,
            no_route: registry.route_counters("-"),
            targets,
            protocols: [
                p(Protocol::H1),
                p(Protocol::H2),
                p(Protocol::H3),
                p(Protocol::Ws),
            ],
        }
    }

    /// The series of a front protocol.
    pub fn protocol(&self, p: Protocol) -> SeriesPair {
        self.protocols[match p {
            Protocol::H1 => 0,
            Protocol::H2 => 1,
            Protocol::H3 => 2,
            Protocol::Ws => 3,
        }]
    }

    /// The series of target `addr` of upstream number `upstream`.
    pub fn target(&self, upstream: usize, addr: SocketAddr) -> Option<SeriesPair> {
        self.targets
            .get(upstream)?
            .iter()
            .find(|(a, _)| *a == addr)
            .map(|(_, s)| *s)
    }
}

/// The gateway's shared state.
#[derive(Debug)]
pub struct GatewayState {
    live: ArcSwap<Live>,
    /// Latency histograms and status counters.
    pub registry: Arc<Registry>,
    /// Applied versions, newest last, and the apply lock.
    pub history: crate::reload::History,
    in_flight: AtomicUsize,
    ready: AtomicBool,
    h3_port: std::sync::OnceLock<u16>,
    /// `Alt-Svc` for the bound HTTP/3 port, formatted once.
    alt_svc: std::sync::OnceLock<http::HeaderValue>,
    /// Replaced configs go to the retirer thread (see the module doc).
    retire: Option<mpsc::Sender<Arc<Live>>>,
    agents: std::sync::OnceLock<Arc<crate::agent_hub::AgentService>>,
    backend: std::sync::OnceLock<Arc<crate::backend::Backend>>,
    /// Alert states and the dashboard's time series, maintained by [`crate::monitor`].
    pub monitor: crate::monitor::MonitorState,
    realtime: std::sync::OnceLock<Arc<crate::realtime::RealtimeService>>,
    upstream_client: std::sync::OnceLock<crate::engine::client::UpstreamClient>,
}

impl GatewayState {
    /// Creates the state around the first config (version 1).
    pub fn new(snapshot: Snapshot, text: &str, shards: usize) -> Arc<Self> {
        let registry = Arc::new(Registry::new(shards));
        let sha256 = crate::reload::sha256_hex(text);
        let live = crate::reload::make_live(&registry, snapshot, text, sha256, 1, "startup");
        let history = crate::reload::History::new(&live);
        Arc::new(GatewayState {
            live: ArcSwap::from_pointee(live),
            registry,
            history,
            in_flight: AtomicUsize::new(0),
            ready: AtomicBool::new(false),
            h3_port: std::sync::OnceLock::new(),
            alt_svc: std::sync::OnceLock::new(),
            retire: spawn_retirer(),
            agents: std::sync::OnceLock::new(),
            backend: std::sync::OnceLock::new(),
            monitor: crate::monitor::MonitorState::default(),
            realtime: std::sync::OnceLock::new(),
            upstream_client: std::sync::OnceLock::new(),
        })
    }

    /// The current config.
    pub fn live(&self) -> Arc<Live> {
        self.live.load_full()
    }

    /// Alias of [`GatewayState::live`] for code that only needs the snapshot.
    pub fn snapshot(&self) -> Arc<Live> {
        self.live()
    }

    /// Swaps in a new config; requests already running keep theirs. The old config is released
    /// on the retirer thread once the last request using it ends.
    pub(crate) fn swap(&self, live: Live) {
        let old = self.live.swap(Arc::new(live));
        if let Some(tx) = &self.retire {
            // Fails only when the retirer thread is gone; then `old` drops here, as before.
            let _ = tx.send(old);
        }
    }

    /// Records the UDP port the HTTP/3 endpoint bound (advertised in `Alt-Svc`).
    pub fn set_h3_port(&self, port: u16) {
        let _ = self.h3_port.set(port);
        if let Ok(v) = http::HeaderValue::from_str(&format!("h3=\":{port}\"; ma=86400")) {
            let _ = self.alt_svc.set(v);
        }
    }

    /// `Alt-Svc: h3=":PORT"; ma=86400` for the bound HTTP/3 port, when the endpoint runs.
    pub fn alt_svc(&self) -> Option<&http::HeaderValue> {
        self.alt_svc.get()
    }

    /// The bound HTTP/3 port, when the endpoint runs.
    pub fn h3_port(&self) -> Option<u16> {
        self.h3_port.get().copied()
    }

    /// Installs the agent hub (at start, when `[agents]` is configured).
    pub fn set_agents(&self, svc: Arc<crate::agent_hub::AgentService>) {
        let _ = self.agents.set(svc);
    }

    /// Agents connected right now (0 while no hub runs): the `agents_online` alert metric and
    /// `orchestra_agents_online`.
    pub fn agents_online(&self) -> usize {
        self.agents.get().map_or(0, |a| a.hub().agents_connected())
    }

    /// The agent hub, when `[agents]` was configured at start.
    pub fn agents(&self) -> Option<&Arc<crate::agent_hub::AgentService>> {
        self.agents.get()
    }

    /// Installs the backend (once, at start).
    pub fn set_backend(&self, backend: Arc<crate::backend::Backend>) {
        let _ = self.backend.set(backend);
    }

    /// The backend client and its target, once started.
    pub fn backend(&self) -> Option<&Arc<crate::backend::Backend>> {
        self.backend.get()
    }

    /// Installs the realtime channel (at start, when the agent hub runs).
    pub fn set_realtime(&self, svc: Arc<crate::realtime::RealtimeService>) {
        let _ = self.realtime.set(svc);
    }

    /// The realtime channel, when the agent hub runs.
    pub fn realtime(&self) -> Option<&Arc<crate::realtime::RealtimeService>> {
        self.realtime.get()
    }

    /// The process's one pooled upstream client, shared by the pingora front's proxy and the
    /// HTTP/3 front; built on first use with pools sized for the configured worker threads.
    pub fn upstream_client(&self) -> &crate::engine::client::UpstreamClient {
        self.upstream_client.get_or_init(|| {
            crate::engine::client::UpstreamClient::new(crate::listener::worker_threads(
                &self.snapshot(),
            ))
        })
    }

    /// Counts a request as in flight until the returned token is dropped.
    pub fn enter(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight {
            state: Arc::clone(self),
        }
    }

    /// Requests currently being handled, across all fronts.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Marks the gateway ready (`/readyz` answers 200) once its listeners accept connections.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    /// True once every listener accepts connections and the config is loaded.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }
}

/// How often the retirer looks for retired configs no request uses any more.
const RETIRE_POLL: Duration = Duration::from_millis(100);

/// Starts the thread that drops replaced configs (see the module doc). `None` when the OS
/// refuses a thread: configs are then dropped wherever their last reference goes.
fn spawn_retirer() -> Option<mpsc::Sender<Arc<Live>>> {
    let (tx, rx) = mpsc::channel::<Arc<Live>>();
    let spawned = std::thread::Builder::new()
        .name("config-retire".into())
        .spawn(move || {
            let mut held: Vec<Arc<Live>> = Vec::new();
            loop {
                // Nothing held: sleep until a config is retired.
                let next = if held.is_empty() {
                    rx.recv().map_err(|_| RecvTimeoutError::Disconnected)
                } else {
                    rx.recv_timeout(RETIRE_POLL)
                };
                match next {
                    Ok(old) => held.push(old),
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => break,
                }
                // Only this thread holds it: no request can load it again (it left the
                // `ArcSwap` before it was sent here), so dropping it here is the last drop.
                held.retain(|live| Arc::strong_count(live) > 1);
            }
        });
    match spawned {
        Ok(_) => Some(tx),
        Err(e) => {
            tracing::warn!(error = %e, "cannot spawn the config-retire thread; old configs are dropped inline");
            None
        }
    }
}

/// One in-flight request; decrements the gateway's count on drop, whatever path it took.
#[derive(Debug)]
pub struct InFlight {
    state: Arc<GatewayState>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.state.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}
