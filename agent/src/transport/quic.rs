//! The QUIC transport: ALPN `orchestra-agent/1`, one bidirectional stream per protocol stream.
//!
//! The agent opens the control stream (and, after a reconnect, one stream per resumed task);
//! the gateway opens a stream per task assignment. Each stream gets a reader task (length-
//! delimited frames, capped at `MAX_FRAME`, into a channel) and a writer task. Keep-alives go
//! out every `keep_alive` (10 s by default, below the gateway's 30 s idle timeout), so an idle
//! agent holds its connection for days and a dead path is noticed within the idle timeout.
//! What the gateway may open and send ahead is bounded: `2 × max_tasks + 16` concurrent task
//! streams, 1 MiB per stream and 4 MiB per connection of flow-control window.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use orchestra_proto::v1::{frame, Error as ErrorFrame, Frame};
use orchestra_proto::{FrameReader, ALPN};
use quinn::crypto::rustls::QuicClientConfig;
use quinn::{IdleTimeout, TransportConfig, VarInt};
use tokio::sync::mpsc;

use super::{
    resolve, Closed, ConnectError, LastHeard, Outbound, Stream, StreamRx, StreamTx, STREAM_QUEUE,
};
use crate::config::AgentConfig;
use crate::tls;

/// The idle timeout the agent proposes; the gateway's (30 s) is the same, the lower one wins.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Dials the gateway over QUIC.
#[derive(Debug, Clone)]
pub struct QuicConnector {
    client: quinn::ClientConfig,
    gateway: String,
    server_name: String,
    timeout: Duration,
}

impl QuicConnector {
    /// The connector for `cfg` (TLS 1.3, the configured trust, ALPN `orchestra-agent/1`).
    pub fn new(cfg: &AgentConfig) -> Result<Self, tls::TlsError> {
        let tls = tls::client_config(&cfg.trust, &[ALPN], true)?;
        let quic = QuicClientConfig::try_from(tls).map_err(|e| tls::TlsError(e.to_string()))?;
        let mut client = quinn::ClientConfig::new(Arc::new(quic));
        let mut t = TransportConfig::default();
        t.keep_alive_interval(Some(cfg.keep_alive))
            .max_concurrent_bidi_streams(VarInt::from_u32(cfg.max_tasks * 2 + 16))
            .max_concurrent_uni_streams(VarInt::from_u32(0))
            .stream_receive_window(VarInt::from_u32(1 << 20))
            .receive_window(VarInt::from_u32(4 << 20));
        if let Ok(idle) = IdleTimeout::try_from(IDLE_TIMEOUT) {
            t.max_idle_timeout(Some(idle));
        }
        client.transport_config(Arc::new(t));
        Ok(QuicConnector {
            client,
            gateway: cfg.gateway.to_string(),
            server_name: server_name_text(&cfg.server_name),
            timeout: cfg.connect_timeout,
        })
    }

    /// One connection attempt (resolve, handshake), bounded by `connect_timeout`.
    pub async fn connect(&self) -> Result<QuicLink, ConnectError> {
        let attempt = async {
            let addr = resolve(&self.gateway).await?;
            let failed = |reason: String| ConnectError::Quic {
                addr: addr.to_string(),
                reason,
            };
            let bind: SocketAddr = if addr.is_ipv6() {
                (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
            } else {
                (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
            };
            let mut endpoint = quinn::Endpoint::client(bind).map_err(|e| failed(e.to_string()))?;
            endpoint.set_default_client_config(self.client.clone());
            let conn = endpoint
                .connect(addr, &self.server_name)
                .map_err(|e| failed(e.to_string()))?
                .await
                .map_err(|e| failed(e.to_string()))?;
            Ok(QuicLink {
                conn,
                _endpoint: endpoint,
                peer: addr,
                heard: LastHeard::new(),
            })
        };
        super::within(self.timeout, &self.gateway, attempt).await
    }
}

/// The text form of a server name, as quinn wants it.
fn server_name_text(name: &rustls::pki_types::ServerName<'_>) -> String {
    match name {
        rustls::pki_types::ServerName::DnsName(d) => d.as_ref().to_string(),
        rustls::pki_types::ServerName::IpAddress(ip) => std::net::IpAddr::from(*ip).to_string(),
        _ => String::new(),
    }
}

/// One QUIC connection to the gateway.
#[derive(Debug)]
pub struct QuicLink {
    conn: quinn::Connection,
    // Keeps the UDP socket's driver alive for as long as the connection.
    _endpoint: quinn::Endpoint,
    peer: SocketAddr,
    heard: LastHeard,
}

impl QuicLink {
    pub(crate) async fn open(&self) -> Result<Stream, Closed> {
        let (send, recv) = self.conn.open_bi().await.map_err(|_| Closed)?;
        Ok(spawn_stream(send, recv, self.heard.clone()))
    }

    pub(crate) async fn accept(&self) -> Option<Stream> {
        let (send, recv) = self.conn.accept_bi().await.ok()?;
        Some(spawn_stream(send, recv, self.heard.clone()))
    }

    pub(crate) fn close(&self, reason: &str) {
        self.conn.close(VarInt::from_u32(0), reason.as_bytes());
    }

    pub(crate) fn peer(&self) -> String {
        self.peer.to_string()
    }

    pub(crate) fn last_heard(&self) -> &LastHeard {
        &self.heard
    }
}

fn spawn_stream(send: quinn::SendStream, recv: quinn::RecvStream, heard: LastHeard) -> Stream {
    let (out_tx, out_rx) = mpsc::channel(STREAM_QUEUE);
    let (in_tx, in_rx) = mpsc::channel(STREAM_QUEUE);
    let tx = StreamTx::new(out_tx, Arc::from(""));
    tokio::spawn(write_loop(send, out_rx));
    tokio::spawn(read_loop(recv, in_tx, tx.clone(), heard));
    Stream {
        tx,
        rx: StreamRx::new(in_rx),
    }
}

async fn write_loop(mut send: quinn::SendStream, mut rx: mpsc::Receiver<Outbound>) {
    let mut prefix = Vec::with_capacity(10);
    while let Some(msg) = rx.recv().await {
        if let Some(body) = msg.body {
            prefix.clear();
            prost::encoding::encode_varint(body.len() as u64, &mut prefix);
            if send.write_all(&prefix).await.is_err() || send.write_all(&body).await.is_err() {
                return;
            }
        }
        if msg.fin {
            let _ = send.finish();
            return;
        }
    }
    // Every sender is gone without a fin: the stream is abandoned (the task was dropped).
    let _ = send.finish();
}

async fn read_loop(
    recv: quinn::RecvStream,
    frames: mpsc::Sender<Frame>,
    tx: StreamTx,
    heard: LastHeard,
) {
    let mut reader = FrameReader::new(recv);
    loop {
        match reader.next().await {
            Ok(Some(frame)) => {
                heard.touch();
                if frames.send(frame).await.is_err() {
                    return;
                }
            }
            Ok(None) => return,
            Err(orchestra_proto::FrameError::Io(_)) => return,
            Err(e) => {
                tracing::warn!(error = %e, "malformed frame from the gateway; closing the stream");
                let error = Frame {
                    msg: Some(frame::Msg::Error(ErrorFrame {
                        code: "PARAM_001".into(),
                        message: e.to_string(),
                    })),
                };
                let _ = tx.finish(Some(&error)).await;
                return;
            }
        }
    }
}
