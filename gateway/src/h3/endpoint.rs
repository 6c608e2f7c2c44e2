//! The QUIC endpoint: one UDP socket, the listener certificate, and ALPN dispatch.
//!
//! Every accepted connection is handed to the [`AlpnHandler`] registered for the ALPN protocol
//! the handshake settled on (`h3` today; `orchestra-agent/1` plugs in the same way, without
//! touching the HTTP/3 code). The endpoint bounds what a peer can make it hold:
//!
//! - connections: at most [`EndpointLimits::max_connections`] at once (`server.max_connections`);
//!   beyond it new connections are not accepted until one ends (they wait in quinn's queue of
//!   incoming connections, as TCP connections wait in the listen backlog);
//! - streams: [`EndpointLimits::max_bidi_streams`] concurrent request streams per connection;
//! - buffering: QUIC flow control caps what a peer may send ahead, per stream
//!   ([`EndpointLimits::stream_window`]) and per connection ([`EndpointLimits::connection_window`]),
//!   which also bounds h3's receive buffering (hyperium/h3#308);
//! - idleness: [`EndpointLimits::idle_timeout`] (`server.keepalive_timeout`).
//!
//! Shutdown is two-step: [`QuicEndpoint::begin_shutdown`] stops accepting and tells handlers to
//! wind down (HTTP/3 sends GOAWAY and finishes in-flight streams); [`QuicEndpoint::close`] closes
//! what is left once the control plane has drained.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use quinn::crypto::rustls::{HandshakeData, QuicServerConfig};
use quinn::{IdleTimeout, TransportConfig, VarInt};
use rustls::sign::SingleCertAndKey;
use tokio::sync::{watch, Semaphore};

use crate::tls::ListenerCert;

/// A protocol served on QUIC connections that negotiated its ALPN id.
#[async_trait]
pub trait AlpnHandler: Send + Sync + 'static {
    /// The ALPN protocol id, e.g. `b"h3"`.
    fn alpn(&self) -> &'static [u8];
    /// Serves one connection until it ends; `shutdown` turns true when the gateway drains.
    async fn serve(&self, conn: quinn::Connection, shutdown: watch::Receiver<bool>);
}

/// What the endpoint lets one peer and all peers together hold.
#[derive(Debug, Clone, Copy)]
pub struct EndpointLimits {
    /// Concurrent connections.
    pub max_connections: usize,
    /// Concurrent bidirectional (request) streams per connection.
    pub max_bidi_streams: u32,
    /// Bytes a peer may send ahead on one stream.
    pub stream_window: u32,
    /// Bytes a peer may send ahead on one connection, all streams together.
    pub connection_window: u32,
    /// A connection with no traffic for this long is closed.
    pub idle_timeout: Duration,
}

impl Default for EndpointLimits {
    fn default() -> Self {
        EndpointLimits {
            max_connections: 10_000,
            max_bidi_streams: 128,
            stream_window: 1024 * 1024,
            connection_window: 8 * 1024 * 1024,
            idle_timeout: Duration::from_secs(30),
        }
    }
}

impl EndpointLimits {
    /// The limits when the endpoint also serves agents (one `TransportConfig` serves both
    /// ALPNs, since QUIC settles the ALPN inside the handshake that already uses it).
    ///
    /// - **Idle timeout**: at least `heartbeat_interval × (offline_after_missed + 1)`, so that
    ///   the gateway's heartbeat accounting, not QUIC's idle timer, decides when an agent is
    ///   offline (and the agent's heartbeats, sent every interval, keep the connection open:
    ///   keep-alive is the agent's job).
    /// - **Streams and windows** stay those of HTTP/3: 128 concurrent bidirectional streams
    ///   (an agent needs `max_tasks` + 1, and `max_tasks` is capped at 1024 in `Register`, so an
    ///   agent with more than 127 slots runs the rest when streams free up), 1 MiB per stream
    ///   (a task's output in flight: hundreds of lines; the gateway reads a task stream only as
    ///   fast as the backend stores it, so a full window stalls that task alone) and 8 MiB per
    ///   connection. Windows are credit, not allocation: an idle agent costs no buffer memory.
    ///
    /// - **Connections**: the HTTP/3 budget plus one per agent in the keys file at start (an
    ///   agent holds one connection; a newer one replaces it).
    pub fn with_agents(mut self, agents: &orchestra_config::AgentSettings, keys: usize) -> Self {
        self.max_connections = self.max_connections.saturating_add(keys);
        let needed = agents
            .heartbeat_interval
            .saturating_mul(agents.offline_after_missed.saturating_add(1));
        self.idle_timeout = self.idle_timeout.max(needed);
        self
    }
}

/// Why the endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    /// The TLS configuration was refused by QUIC (it needs TLS 1.3).
    #[error("QUIC TLS configuration: {0}")]
    Tls(String),
    /// The UDP socket could not be bound.
    #[error("cannot bind the QUIC endpoint on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
}

/// The running endpoint.
pub struct QuicEndpoint {
    endpoint: quinn::Endpoint,
    handlers: Vec<Arc<dyn AlpnHandler>>,
    shutdown: watch::Sender<bool>,
    connections: Arc<Semaphore>,
}

impl std::fmt::Debug for QuicEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuicEndpoint")
            .field("addr", &self.endpoint.local_addr().ok())
            .finish()
    }
}

fn transport(limits: &EndpointLimits) -> TransportConfig {
    let mut t = TransportConfig::default();
    t.max_concurrent_bidi_streams(VarInt::from_u32(limits.max_bidi_streams))
        // Control, QPACK encoder and decoder streams, plus room for GREASE.
        .max_concurrent_uni_streams(VarInt::from_u32(8))
        .stream_receive_window(VarInt::from_u32(limits.stream_window))
        .receive_window(VarInt::from_u32(limits.connection_window))
        .send_window(u64::from(limits.connection_window));
    if let Ok(idle) = IdleTimeout::try_from(limits.idle_timeout) {
        t.max_idle_timeout(Some(idle));
    }
    t
}

impl QuicEndpoint {
    /// Binds the endpoint on `addr` with the listener certificate. Must run inside the tokio
    /// runtime that will drive it.
    pub fn bind(
        addr: SocketAddr,
        cert: &ListenerCert,
        handlers: Vec<Arc<dyn AlpnHandler>>,
        limits: EndpointLimits,
    ) -> Result<Arc<QuicEndpoint>, EndpointError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| EndpointError::Tls(e.to_string()))?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(SingleCertAndKey::from(Arc::clone(
                &cert.certified,
            ))));
        tls.alpn_protocols = handlers.iter().map(|h| h.alpn().to_vec()).collect();
        tls.max_early_data_size = 0;
        let crypto =
            QuicServerConfig::try_from(tls).map_err(|e| EndpointError::Tls(e.to_string()))?;
        let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        config.transport_config(Arc::new(transport(&limits)));
        let endpoint = quinn::Endpoint::server(config, addr)
            .map_err(|source| EndpointError::Bind { addr, source })?;
        let (shutdown, _) = watch::channel(false);
        Ok(Arc::new(QuicEndpoint {
            endpoint,
            handlers,
            shutdown,
            connections: Arc::new(Semaphore::new(limits.max_connections)),
        }))
    }

    /// The bound UDP address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.endpoint.local_addr()
    }

    /// Accepts connections until [`Self::begin_shutdown`].
    pub async fn run(self: Arc<Self>) {
        let mut stop = self.shutdown.subscribe();
        loop {
            // A free connection slot first: at the limit, new connections wait unaccepted.
            let permit = tokio::select! {
                p = Arc::clone(&self.connections).acquire_owned() => p,
                () = async { let _ = stop.wait_for(|s| *s).await.map(|_| ()); } => break,
            };
            let Ok(permit) = permit else { break };
            let incoming = tokio::select! {
                i = self.endpoint.accept() => i,
                () = async { let _ = stop.wait_for(|s| *s).await.map(|_| ()); } => break,
            };
            let Some(incoming) = incoming else { break };
            let this = Arc::clone(&self);
            tokio::spawn(async move {
                let _permit = permit;
                let peer = incoming.remote_address();
                let conn = match incoming.accept() {
                    Ok(connecting) => connecting.await,
                    Err(e) => Err(e),
                };
                let conn = match conn {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::debug!(%peer, error = %e, "quic: handshake failed");
                        return;
                    }
                };
                let alpn = conn
                    .handshake_data()
                    .and_then(|d| d.downcast::<HandshakeData>().ok())
                    .and_then(|d| d.protocol);
                let handler = alpn
                    .as_deref()
                    .and_then(|p| this.handlers.iter().find(|h| h.alpn() == p));
                match handler {
                    Some(h) => h.serve(conn, this.shutdown.subscribe()).await,
                    None => conn.close(VarInt::from_u32(0x0101), b"no application protocol"),
                }
            });
        }
    }

    /// Stops accepting connections and asks every handler to wind down (GOAWAY for HTTP/3).
    pub fn begin_shutdown(&self) {
        self.endpoint.set_server_config(None);
        self.shutdown.send_replace(true);
    }

    /// Closes every connection left and waits (at most `wait`) for the peers to be told.
    pub async fn close(&self, wait: Duration) {
        self.endpoint.close(VarInt::from_u32(0), b"shutdown");
        let _ = tokio::time::timeout(wait, self.endpoint.wait_idle()).await;
    }
}
