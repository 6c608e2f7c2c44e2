//! The HTTP/3 front: QUIC (quinn) + HTTP/3 (h3), sending every request through the same
//! [`Pipeline`] and the same stream front as HTTP/2 ([`crate::streams`]).
//!
//! | file | what it does |
//! |---|---|
//! | [`endpoint`] | the QUIC endpoint: UDP socket, certificate, limits, ALPN dispatch to handlers |
//! | `mod.rs` | the `h3` ALPN handler (one HTTP/3 connection: accept streams, GOAWAY on drain) and [`H3Service`], the endpoint on its own runtime |
//! | [`front`] | an h3 request stream as a wire of the stream front |
//!
//! The endpoint runs on a runtime of its own (`h3-worker` threads), so it neither depends on
//! pingora's runtimes nor slows the control plane. With `[agents]` configured, the same endpoint
//! also serves the agent protocol (ALPN `orchestra-agent/1`, [`crate::agent_hub::quic`]).

pub mod endpoint;
pub mod front;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;

use self::endpoint::{AlpnHandler, EndpointError, EndpointLimits, QuicEndpoint};
use self::front::H3Front;
use crate::pipeline::Pipeline;
use crate::state::GatewayState;
use crate::tls::ListenerCert;

/// Largest request or response head accepted (QPACK-decoded field section).
const MAX_FIELD_SECTION: u64 = 64 * 1024;

/// The `h3` ALPN handler: serves HTTP/3 connections.
#[derive(Debug)]
pub struct H3Handler {
    front: Arc<H3Front>,
    pipeline: Pipeline,
}

impl H3Handler {
    /// A handler over the shared pipeline.
    pub fn new(pipeline: Pipeline) -> Self {
        H3Handler {
            front: Arc::new(H3Front::new(pipeline.clone())),
            pipeline,
        }
    }
}

#[async_trait]
impl AlpnHandler for H3Handler {
    fn alpn(&self) -> &'static [u8] {
        b"h3"
    }

    async fn serve(&self, conn: quinn::Connection, mut shutdown: watch::Receiver<bool>) {
        let peer = conn.remote_address();
        let built = h3::server::builder()
            .max_field_section_size(MAX_FIELD_SECTION)
            .build::<_, bytes::Bytes>(h3_quinn::Connection::new(conn))
            .await;
        let mut h3c = match built {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "h3: connection setup failed");
                return;
            }
        };
        let mut draining = false;
        loop {
            tokio::select! {
                accepted = h3c.accept() => match accepted {
                    Ok(Some(resolver)) => {
                        let front = Arc::clone(&self.front);
                        // `server.header_read_timeout` bounds the wait for the HEADERS frame.
                        let head_timeout = self.pipeline.state().live().server.limits.header_read_timeout;
                        tokio::spawn(async move {
                            match tokio::time::timeout(head_timeout, resolver.resolve_request()).await {
                                Ok(Ok((req, stream))) => front.serve(req, stream, peer).await,
                                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "h3: bad request stream"),
                                Err(_) => tracing::debug!(%peer, "h3: request head not received within header_read_timeout"),
                            }
                        });
                    }
                    // GOAWAY sent (or received) and every accepted stream done.
                    Ok(None) => break,
                    Err(e) => {
                        if !e.is_h3_no_error() {
                            tracing::debug!(%peer, error = %e, "h3: connection ended");
                        }
                        break;
                    }
                },
                () = wait_true(&mut shutdown), if !draining => {
                    draining = true;
                    // GOAWAY: no new requests; the streams already accepted run to their end.
                    if let Err(e) = h3c.shutdown(0).await {
                        tracing::debug!(%peer, error = %e, "h3: GOAWAY");
                    }
                }
            }
        }
    }
}

/// Resolves once `rx` holds `true` (or its sender is gone); holds no guard across awaits.
async fn wait_true(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await.map(|_| ());
}

/// The running HTTP/3 service: the QUIC endpoint on its own runtime.
pub struct H3Service {
    endpoint: Arc<QuicEndpoint>,
    rt: Option<tokio::runtime::Runtime>,
}

impl std::fmt::Debug for H3Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H3Service")
            .field("endpoint", &self.endpoint)
            .finish()
    }
}

/// Why the HTTP/3 service could not start.
#[derive(Debug, thiserror::Error)]
pub enum H3Error {
    /// The runtime could not be built.
    #[error("HTTP/3 runtime: {0}")]
    Runtime(std::io::Error),
    /// The endpoint could not be bound or configured.
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
}

impl H3Service {
    /// Binds the QUIC endpoint on `addr` (UDP) and starts serving HTTP/3 on `threads` threads.
    pub fn start(
        state: &Arc<GatewayState>,
        cert: &ListenerCert,
        addr: SocketAddr,
        threads: usize,
    ) -> Result<H3Service, H3Error> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name("h3-worker")
            .enable_all()
            .build()
            .map_err(H3Error::Runtime)?;
        let handler = H3Handler::new(Pipeline::new(Arc::clone(state)));
        let mut handlers: Vec<Arc<dyn AlpnHandler>> = vec![Arc::new(handler)];
        // Bound at start (a reload reports them as `restart_needed`).
        let server = &state.live().server.limits;
        let mut limits = EndpointLimits {
            max_connections: server.max_connections,
            idle_timeout: server.keepalive_timeout,
            ..EndpointLimits::default()
        };
        if let Some(agents) = state.agents() {
            handlers.push(Arc::new(crate::agent_hub::quic::AgentAlpn::new(
                Arc::clone(agents),
            )));
            limits = limits.with_agents(&agents.settings(), agents.keys_at_start());
        }
        let endpoint = {
            let _guard = rt.enter();
            QuicEndpoint::bind(addr, cert, handlers, limits)?
        };
        rt.spawn(Arc::clone(&endpoint).run());
        tracing::info!(%addr, agents = state.agents().is_some(), idle_timeout_ms = limits.idle_timeout.as_millis() as u64, "QUIC endpoint listening (UDP): HTTP/3{}", if state.agents().is_some() { " and orchestra-agent/1" } else { "" });
        Ok(H3Service {
            endpoint,
            rt: Some(rt),
        })
    }

    /// The bound UDP address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.endpoint.local_addr()
    }

    /// Graceful step one: stop accepting connections, GOAWAY on every connection.
    pub fn begin_shutdown(&self) {
        self.endpoint.begin_shutdown();
    }

    /// Graceful step two (after the drain): close the remaining connections.
    pub async fn close(&self) {
        let endpoint = Arc::clone(&self.endpoint);
        if let Some(rt) = &self.rt {
            let _ = rt
                .spawn(async move { endpoint.close(Duration::from_millis(200)).await })
                .await;
        }
    }
}

impl Drop for H3Service {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}
