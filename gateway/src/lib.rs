//! Orchestra Gateway: the edge proxy of AI Orchestra.
//!
//! A request's whole path, one file per step (see `ARCHITECTURE.md`):
//!
//! | file | what it does |
//! |---|---|
//! | [`listener`] | binds the sockets (HTTP/1.1 + h2c, TLS with ALPN h2/http/1.1) on pingora's server |
//! | [`front`] | the pingora `ProxyHttp` adapter for HTTP/1.1 (and WebSocket upgrades): translates pingora phases into pipeline calls |
//! | [`streams`] | the stream front for HTTP/2 (on pingora-core's sessions) and HTTP/3: one request per stream through the pipeline and the engine |
//! | [`pipeline`] | the protocol-agnostic request pipeline: admit → route → plugins → [engine] → record |
//! | [`engine`] | the upstream attempt engine every front drives: pick, breaker/budget, error classification, retries and backoff, outcomes, the gateway's own answers |
//! | [`upstream`] | how a picked target becomes a pingora `HttpPeer` (protocol, TLS, timeouts) |
//! | [`ws_tunnel`] | WebSocket upgrades: the handshake and the byte tunnel after `101` |
//! | [`agent_hub`] | the agent path: `orchestra-agent/1` over QUIC and `/agent/ws`, in front of the hub (`orchestra-hub`) |
//! | [`realtime`] | the browser channel: `/ws` and SSE `/api/events/stream` (`serve = "realtime"`) over the hub |
//! | [`ws_server`] | the gateway's own WebSocket endpoints: accept an upgrade on a pingora session, hand over a `WebSocketStream` |
//! | [`h3`] | the HTTP/3 front: QUIC endpoint (quinn, ALPN dispatch), h3 streams through the same pipeline |
//! | [`error`] | gateway errors, their status codes and JSON bodies |
//! | [`request_id`] | `x-request-id` and W3C `traceparent` |
//! | [`access_log`] | one JSON line per request |
//! | [`tls`] | the listener certificate: configured files or a generated self-signed one |
//! | [`state`] | the live state shared by all requests: config snapshot, in-flight count |
//! | [`reload`] | hot-swapped config: validate, carry state over, swap, history, rollback, file watch |
//! | [`backend`] | persistence: the backend client (and the embedded backend), `/readyz` and `/metrics` parts |
//! | [`admin`] | the admin API: config, reload, upstreams, histograms, Prometheus metrics |
//! | [`admin_client`] | the `stats` and `reload` subcommands (clients of the admin API) |
//! | [`health`] | active health checks of the running config's upstreams |
//! | [`shutdown`] | the control plane: signals, graceful drain |
//! | [`monitor`] | the control-plane task that samples the dashboard's time series and evaluates alerts |
//! | [`alerts`] | `[[alerts]]` rules: windows, state machine, readings, webhook delivery |
//! | [`dashboard`] | the `/admin/` page and its embedded assets (uPlot) |
//!
//! Routing, balancing and plugins themselves live in the `orchestra-config`, `orchestra-lb` and
//! `orchestra-plugins` crates; this crate wires them to the network.

pub mod access_log;
pub mod admin;
pub mod admin_agents;
pub mod admin_client;
pub mod agent_hub;
pub mod alerts;
pub mod backend;
pub mod dashboard;
pub mod engine;
pub mod error;
pub mod front;
pub mod h3;
pub mod health;
pub mod listener;
pub mod logging;
pub mod monitor;
pub mod pipeline;
pub mod realtime;
pub mod relay;
pub mod reload;
pub mod request_id;
pub mod shutdown;
pub mod state;
pub mod streams;
pub mod tls;
pub mod upstream;
pub mod ws_server;
pub mod ws_tunnel;
