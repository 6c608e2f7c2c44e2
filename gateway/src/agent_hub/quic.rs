//! The `orchestra-agent/1` ALPN handler on the gateway's QUIC endpoint (the same endpoint and
//! UDP socket as HTTP/3; [`crate::h3::endpoint`] dispatches by ALPN).
//!
//! The agent opens the control stream first; a connection that opens none within
//! [`REGISTER_TIMEOUT`](super::control::REGISTER_TIMEOUT) is closed.

use std::sync::Arc;

use async_trait::async_trait;
use orchestra_proto::FrameReader;
use tokio::sync::watch;

use super::control;
use super::transport::{Conn, FrameRx, FrameTx};
use super::AgentService;
use crate::h3::endpoint::AlpnHandler;

/// Serves agent connections.
#[derive(Debug)]
pub struct AgentAlpn {
    svc: Arc<AgentService>,
}

impl AgentAlpn {
    /// A handler feeding `svc`'s hub.
    pub fn new(svc: Arc<AgentService>) -> AgentAlpn {
        AgentAlpn { svc }
    }
}

#[async_trait]
impl AlpnHandler for AgentAlpn {
    fn alpn(&self) -> &'static [u8] {
        orchestra_proto::ALPN
    }

    async fn serve(&self, conn: quinn::Connection, mut shutdown: watch::Receiver<bool>) {
        let opened = tokio::select! {
            s = tokio::time::timeout(control::REGISTER_TIMEOUT, conn.accept_bi()) => s,
            () = super::until_true(&mut shutdown) => return conn.close(quinn::VarInt::from_u32(0), b"shutting down"),
        };
        let (tx, rx) = match opened {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                tracing::debug!(peer = %conn.remote_address(), error = %e, "agent connection ended before its control stream");
                return;
            }
            Err(_) => {
                conn.close(quinn::VarInt::from_u32(0), b"no control stream");
                return;
            }
        };
        control::serve(
            Conn::Quic(conn),
            FrameTx::Quic(tx),
            FrameRx::Quic(FrameReader::new(rx)),
            Arc::clone(&self.svc),
        )
        .await;
    }
}
