//! The browser realtime channel (SPEC "Browser realtime"): WebSocket `/ws` and SSE
//! `/api/events/stream`, served by the gateway itself on routes with `serve = "realtime"`.
//!
//! ```text
//! pingora front ─(route serve = "realtime", after Pipeline::on_request)─┬─ upgrade ─► ws.rs ──┐
//!                                                                       └─ GET ─────► sse.rs ─┤
//! HTTP/3 front ──(same route, same plugin chain)──────────────────────────► sse.rs ───────────┤
//!                                                                                             ▼
//!         auth.rs (jwt plugin) ─► client.rs (messages, ownership) ─► hub: start / input / stop / subscribe
//!                                      │                                        │ Arc<Event> (serialized once)
//!                                      └── fanout.rs: bounded Outbox per client ◄┘ ─► the front's writer
//! ```
//!
//! One implementation for every front: the fronts hand over after the route's plugin chain ran
//! (rate limit, CORS, IP rules apply as on any route); [`ws`] and [`sse`] only adapt the wire
//! (a WebSocket text message, or an SSE `id:`/`event:`/`data:` block) around the same
//! [`client::Client`] and [`fanout::Outbox`].
//!
//! | file | what |
//! |---|---|
//! | `mod.rs` | [`RealtimeService`]: the hub, the backend client, the per-session new-task notices |
//! | [`auth`] | the token's three carriers and the `jwt` plugin named in `[realtime] auth` |
//! | [`protocol`] | client messages parsed and checked; replies and `error` |
//! | [`client`] | one client: what each message does, ownership (`AUTH_001`), subscriptions |
//! | [`fanout`] | the bounded per-client queue, the cut-off of slow clients (`SYS_001`), dedup by seq |
//! | [`ws`] | `/ws` over a pingora session (HTTP/1.1 upgrade) |
//! | [`sse`] | SSE framing, resume (`Last-Event-ID`), keep-alives |
//! | [`fronts`] | the hand-over from the pingora front (WS or SSE) and the HTTP/3 front (SSE) |

pub mod auth;
pub mod client;
pub mod fanout;
pub mod fronts;
pub mod protocol;
pub mod sse;
pub mod ws;

use std::collections::HashMap;
use std::sync::Arc;

use orchestra_backend::client::BackendClient;
use orchestra_hub::Hub;
use parking_lot::Mutex;
use tokio::sync::broadcast;

/// New-task notices buffered per joined session.
const SESSION_NOTICES: usize = 64;

/// The realtime channel's shared state.
pub struct RealtimeService {
    hub: Hub,
    backend: BackendClient,
    /// Per session with joined clients: new task ids (taken per task start and per join,
    /// never per event).
    sessions: Mutex<HashMap<String, broadcast::Sender<Arc<str>>>>,
}

impl std::fmt::Debug for RealtimeService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RealtimeService")
            .field("hub", &self.hub)
            .finish_non_exhaustive()
    }
}

impl RealtimeService {
    /// The channel over `hub`, reading history and sessions through `backend`.
    pub fn new(hub: Hub, backend: BackendClient) -> Arc<RealtimeService> {
        Arc::new(RealtimeService {
            hub,
            backend,
            sessions: Mutex::new(HashMap::new()),
        })
    }

    /// The hub.
    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    /// The backend client.
    pub fn backend(&self) -> &BackendClient {
        &self.backend
    }

    /// New tasks of `session_id` from now on.
    pub fn session_notices(&self, session_id: &str) -> broadcast::Receiver<Arc<str>> {
        let mut map = self.sessions.lock();
        map.retain(|_, tx| tx.receiver_count() > 0);
        map.entry(session_id.to_string())
            .or_insert_with(|| broadcast::channel(SESSION_NOTICES).0)
            .subscribe()
    }

    /// Tells the clients that joined `session_id` about a new task.
    pub fn task_started(&self, session_id: &str, task_id: &str) {
        if let Some(tx) = self.sessions.lock().get(session_id) {
            let _ = tx.send(Arc::from(task_id));
        }
    }
}

/// Installs the realtime channel when the agent hub runs; warns when routes serve it without
/// the hub, and (once, at start) when clients are not authenticated (`[realtime] auth` absent).
pub fn install(state: &crate::state::GatewayState, backend: &BackendClient) {
    let live = state.live();
    let routed = live
        .routes
        .routes()
        .iter()
        .any(|r| r.service() == Some(orchestra_config::Service::Realtime));
    match state.agents() {
        Some(agents) => {
            let hub = agents.hub().clone();
            // The hub's queue per subscription is the client's live buffer (see `fanout`).
            hub.set_config(orchestra_hub::HubConfig {
                subscriber_queue: live.realtime.send_queue,
                ..(*hub.config()).clone()
            });
            state.set_realtime(RealtimeService::new(hub, backend.clone()));
            if routed && live.realtime.auth.is_none() {
                tracing::warn!("[realtime] auth is not set: every /ws and event-stream client is the anonymous user and sees every session; set it to a jwt plugin");
            }
        }
        None if routed => {
            tracing::warn!("routes with serve = \"realtime\" answer 503 without [agents] (the realtime channel drives the agent hub)");
        }
        None => {}
    }
}
