//! The gateway's own pooled upstream client: one pingora [`Connector`] (and its connection
//! pools) per process, used by every attempt the gateway drives itself — today the HTTP/3 front.
//!
//! Peers come from the same builder as the pingora front's (`upstream::http_peer`: ALPN, TLS,
//! SNI, certificate checks, connect/read/write/idle timeouts), so an HTTP/3 request reaches an
//! upstream exactly as an HTTP/2 one does. The pools are **not** those of the pingora front:
//! pingora-proxy's `HttpProxy` builds its own `Connector` in a private field and offers no way to
//! hand it one, so sharing them would take a patch to pingora-proxy. Two pools per target (one
//! for pingora's proxy, one here) cost at most `upstream_keepalive_pool_size` idle connections
//! each.
//!
//! The WebSocket tunnel does not pool: an upgraded connection is never reusable, and the tunnel
//! keeps the plain `TcpStream` (see `ws_tunnel.rs`) so the relay can wait on readiness without
//! holding pingora's per-connection read/write buffers.

use pingora::connectors::http::Connector;
use pingora::protocols::http::client::HttpSession;
use pingora::upstreams::peer::HttpPeer;

/// pingora's HTTP connector with its connection pools, shared by every attempt of the fronts
/// that drive the engine's loop themselves.
pub struct UpstreamClient {
    connector: Connector,
}

impl std::fmt::Debug for UpstreamClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UpstreamClient")
    }
}

impl Default for UpstreamClient {
    fn default() -> Self {
        Self::new()
    }
}

impl UpstreamClient {
    /// A connector with pingora's default pool options (the same defaults pingora's proxy
    /// takes from `ServerConf`: 128 idle connections per pool).
    pub fn new() -> Self {
        UpstreamClient {
            connector: Connector::new(None),
        }
    }

    /// A pooled (or new) session to `peer`, and whether it was reused from the pool. Errors are
    /// marked as the upstream's (see `engine::classify`).
    pub async fn connect(&self, peer: &HttpPeer) -> pingora::Result<(HttpSession, bool)> {
        self.connector
            .get_http_session(peer)
            .await
            .map_err(|e| e.into_up())
    }

    /// Returns a finished session to the pool (closed when it cannot be reused).
    pub async fn release(&self, session: HttpSession, peer: &HttpPeer) {
        let idle = peer.options.idle_timeout;
        self.connector
            .release_http_session(session, peer, idle)
            .await;
    }
}
