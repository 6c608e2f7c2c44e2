//! The gateway's one pooled upstream client: one pingora [`Connector`] (and its connection
//! pools) per process, shared by every front. The pingora front's `HttpProxy` is handed this
//! connector at start (`listener.rs`, through the vendored pingora-proxy's
//! `set_client_connector`, see vendor/README.md), and the stream front's attempts use it
//! directly: a keep-alive connection opened for an HTTP/1.1 or HTTP/2 request is reused by an
//! HTTP/3 request to the same target, and the other way round.
//!
//! Peers come from one builder (`upstream::PeerIndex`: ALPN, TLS, SNI, certificate checks,
//! connect/read/write/idle timeouts, built once per target), so the pool key of a target is
//! the same whichever front asks.
//!
//! The WebSocket tunnel does not pool: an upgraded connection is never reusable. To a cleartext
//! target it keeps a plain `TcpStream` (see `ws_tunnel.rs`) so the relay can wait on readiness
//! without holding pingora's per-connection read/write buffers; to a TLS target it takes a new
//! transport stream from [`UpstreamClient::connect_stream`], with the same TLS settings (roots,
//! SNI, certificate checks from the same peer) as the pooled connections.

use std::sync::Arc;

use pingora::connectors::http::Connector;
use pingora::connectors::{ConnectorOptions, TransportConnector};
use pingora::protocols::http::client::HttpSession;
use pingora::protocols::Stream;
use pingora::server::configuration::ServerConf;
use pingora::upstreams::peer::HttpPeer;

/// pingora's HTTP connector with its connection pools, shared by every front.
pub struct UpstreamClient {
    connector: Arc<Connector>,
    /// Unpooled transport streams (TCP + TLS) for upgraded connections.
    transport: TransportConnector,
}

impl std::fmt::Debug for UpstreamClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UpstreamClient")
    }
}

impl UpstreamClient {
    /// A connector with the options pingora's proxy would take from a `ServerConf` with
    /// `threads` workers (`upstream_keepalive_pool_size` = 128 idle connections per worker), with
    /// the lazily checked idle pool (`ConnectorOptions::lazy_idle_pool`).
    pub fn new(threads: usize) -> Self {
        let conf = ServerConf {
            threads: threads.max(1),
            ..ServerConf::default()
        };
        let options = ConnectorOptions::from_server_conf(&conf);
        let pooled = ConnectorOptions {
            // Idle connections checked when taken and by one sweeper per pool, not by a task
            // per returned connection (vendored pingora-core, see vendor/README.md). The
            // transport connector never pools, so it keeps the default.
            lazy_idle_pool: true,
            ..options.clone()
        };
        UpstreamClient {
            connector: Arc::new(Connector::new(Some(pooled))),
            transport: TransportConnector::new(Some(options)),
        }
    }

    /// The connector itself, for the pingora front's proxy to share.
    pub fn shared_connector(&self) -> Arc<Connector> {
        Arc::clone(&self.connector)
    }

    /// A pooled (or new) session to `peer`, and whether it was reused from the pool. Errors are
    /// marked as the upstream's (see `engine::classify`).
    ///
    /// The session reads and writes under the peer's `timeouts.read` / `timeouts.write` (as
    /// pingora's proxy sets them on its sessions): an upstream that stops answering is a 504.
    pub async fn connect(&self, peer: &HttpPeer) -> pingora::Result<(HttpSession, bool)> {
        let (mut session, reused) = self
            .connector
            .get_http_session(peer)
            .await
            .map_err(|e| e.into_up())?;
        match &mut session {
            HttpSession::H1(s) => {
                s.read_timeout = peer.options.read_timeout;
                s.write_timeout = peer.options.write_timeout;
            }
            HttpSession::H2(s) => {
                s.read_timeout = peer.options.read_timeout;
                s.write_timeout = peer.options.write_timeout;
            }
            HttpSession::Custom(_) => {}
        }
        Ok((session, reused))
    }

    /// A new transport stream to `peer` (TCP, then TLS when the peer says so), never pooled:
    /// for a connection that will be upgraded. Errors are marked as the upstream's.
    pub async fn connect_stream(&self, peer: &HttpPeer) -> pingora::Result<Stream> {
        self.transport
            .new_stream(peer)
            .await
            .map_err(|e| e.into_up())
    }

    /// Returns a finished session to the pool without I/O when it can be reused (or is HTTP/2);
    /// hands it back otherwise, for [`UpstreamClient::release`] to close.
    pub fn try_release(&self, session: HttpSession, peer: &HttpPeer) -> Option<HttpSession> {
        let idle = peer.options.idle_timeout;
        self.connector.try_release_http_session(session, peer, idle)
    }

    /// Returns a finished session to the pool (closed when it cannot be reused).
    pub async fn release(&self, session: HttpSession, peer: &HttpPeer) {
        let idle = peer.options.idle_timeout;
        self.connector
            .release_http_session(session, peer, idle)
            .await;
    }
}
