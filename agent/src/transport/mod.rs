//! Transports: one connection to the gateway, carrying the control stream and one stream per
//! task, over QUIC ([`quic`]) or WebSocket ([`ws`]).
//!
//! The protocol code (`session`, `tasks`) sees only [`Link`], [`StreamTx`] and [`StreamRx`]:
//! - a stream's frames arrive on a [`StreamRx`] (a channel fed by a reader task: one per QUIC
//!   stream, or the WebSocket demultiplexer); `None` means the gateway finished its side or the
//!   connection is gone;
//! - frames are sent through a [`StreamTx`], whose writer (one per QUIC stream, or the single
//!   WebSocket writer that wraps each frame in an `Envelope`) does the I/O. The channel is
//!   bounded, so a slow connection pushes back on the sender; [`StreamTx::reserve`] waits for
//!   room without committing to a frame, so a task can wait for room and for acks at once.
//!
//! Every frame received from the gateway, on any stream, marks the connection as heard from
//! ([`LastHeard`], read with [`Link::last_heard`]): acks on a busy task stream are signs of life
//! as good as a pong on the control stream.
//!
//! Frames travel encoded (the protobuf bytes of a `Frame`, without the length prefix): the
//! agent encodes an output event once, holds those bytes until the gateway acks them, and may
//! send them again after a reconnect.

pub mod quic;
pub mod ws;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use orchestra_proto::v1::Frame;
use prost::Message;
use tokio::sync::mpsc;

/// Frames a stream's writer may have queued before senders wait.
pub(crate) const STREAM_QUEUE: usize = 64;

/// The connection is gone; nothing more can be sent on this stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the connection to the gateway is closed")]
pub struct Closed;

/// When a frame last arrived from the gateway on any stream of one connection: one atomic
/// the transport's readers store to and the session loads from (no lock per frame). Measured on
/// tokio's clock, so tests with a paused clock control it.
#[derive(Debug, Clone)]
pub struct LastHeard {
    base: tokio::time::Instant,
    /// Milliseconds after `base` of the last frame.
    at_ms: Arc<AtomicU64>,
}

impl LastHeard {
    /// Heard from now (a connection just established).
    pub fn new() -> Self {
        LastHeard {
            base: tokio::time::Instant::now(),
            at_ms: Arc::new(AtomicU64::new(0)),
        }
    }

    /// A frame arrived.
    pub fn touch(&self) {
        let ms = u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.at_ms.fetch_max(ms, Ordering::Relaxed);
    }

    /// Time since the last frame (or since the connection was established).
    pub fn elapsed(&self) -> Duration {
        let at = Duration::from_millis(self.at_ms.load(Ordering::Relaxed));
        self.base.elapsed().saturating_sub(at)
    }
}

impl Default for LastHeard {
    fn default() -> Self {
        LastHeard::new()
    }
}

/// One message for a stream's writer.
#[derive(Debug)]
pub(crate) struct Outbound {
    /// The task id (WebSocket envelopes carry it; QUIC streams ignore it). Empty: control.
    pub stream: Arc<str>,
    /// The encoded frame, if any.
    pub body: Option<Bytes>,
    /// The sender's side of the stream ends after this message.
    pub fin: bool,
}

/// The sending side of one stream.
#[derive(Debug, Clone)]
pub struct StreamTx {
    tx: mpsc::Sender<Outbound>,
    stream: Arc<str>,
}

/// Room for one frame on a stream, reserved by [`StreamTx::reserve`].
#[derive(Debug)]
pub struct StreamPermit {
    permit: mpsc::OwnedPermit<Outbound>,
    stream: Arc<str>,
}

impl StreamPermit {
    /// Queues an encoded frame.
    pub fn send(self, body: Bytes) {
        self.permit.send(Outbound {
            stream: self.stream,
            body: Some(body),
            fin: false,
        });
    }
}

impl StreamTx {
    pub(crate) fn new(tx: mpsc::Sender<Outbound>, stream: Arc<str>) -> Self {
        StreamTx { tx, stream }
    }

    /// Sends one frame.
    pub async fn send(&self, frame: &Frame) -> Result<(), Closed> {
        self.send_encoded(Bytes::from(frame.encode_to_vec())).await
    }

    /// Sends one already encoded frame.
    pub async fn send_encoded(&self, body: Bytes) -> Result<(), Closed> {
        self.tx
            .send(Outbound {
                stream: self.stream.clone(),
                body: Some(body),
                fin: false,
            })
            .await
            .map_err(|_| Closed)
    }

    /// Waits for room for one frame (cancel-safe).
    pub async fn reserve(&self) -> Result<StreamPermit, Closed> {
        let permit = self.tx.clone().reserve_owned().await.map_err(|_| Closed)?;
        Ok(StreamPermit {
            permit,
            stream: self.stream.clone(),
        })
    }

    /// Sends `frame` (if any) and ends the agent's side of the stream.
    pub async fn finish(&self, frame: Option<&Frame>) -> Result<(), Closed> {
        self.tx
            .send(Outbound {
                stream: self.stream.clone(),
                body: frame.map(|f| Bytes::from(f.encode_to_vec())),
                fin: true,
            })
            .await
            .map_err(|_| Closed)
    }

    /// True once the connection is gone.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

/// The receiving side of one stream.
#[derive(Debug)]
pub struct StreamRx {
    rx: mpsc::Receiver<Frame>,
}

impl StreamRx {
    pub(crate) fn new(rx: mpsc::Receiver<Frame>) -> Self {
        StreamRx { rx }
    }

    /// The next frame; `None` when the gateway finished its side or the connection is gone
    /// (cancel-safe).
    pub async fn recv(&mut self) -> Option<Frame> {
        self.rx.recv().await
    }
}

/// One stream: both sides.
#[derive(Debug)]
pub struct Stream {
    /// Sending side.
    pub tx: StreamTx,
    /// Receiving side.
    pub rx: StreamRx,
}

/// One connection to the gateway.
#[derive(Debug)]
pub enum Link {
    /// QUIC.
    Quic(quic::QuicLink),
    /// WebSocket.
    Ws(ws::WsLink),
}

impl Link {
    /// Opens a stream: the control stream (`task_id` empty) or a task stream (resume).
    pub async fn open(&self, task_id: &str) -> Result<Stream, Closed> {
        match self {
            Link::Quic(l) => l.open().await,
            Link::Ws(l) => l.open(task_id).await,
        }
    }

    /// The next stream opened by the gateway (a task assignment); `None` once the connection
    /// is gone (cancel-safe).
    pub async fn accept(&mut self) -> Option<Stream> {
        match self {
            Link::Quic(l) => l.accept().await,
            Link::Ws(l) => l.accept().await,
        }
    }

    /// Closes the connection; `reason` is sent to the gateway where the transport allows.
    pub fn close(&self, reason: &str) {
        match self {
            Link::Quic(l) => l.close(reason),
            Link::Ws(l) => l.close(reason),
        }
    }

    /// When the gateway was last heard from, on any stream of this connection.
    pub fn last_heard(&self) -> &LastHeard {
        match self {
            Link::Quic(l) => l.last_heard(),
            Link::Ws(l) => l.last_heard(),
        }
    }

    /// The gateway's address, for logs.
    pub fn peer(&self) -> String {
        match self {
            Link::Quic(l) => l.peer(),
            Link::Ws(l) => l.peer(),
        }
    }
}

/// Why a connection attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The gateway's host name did not resolve.
    #[error("cannot resolve {addr}: {reason}; check `gateway` and DNS")]
    Resolve {
        /// The address as configured.
        addr: String,
        /// Why.
        reason: String,
    },
    /// The QUIC handshake failed (no gateway listening, certificate rejected, ALPN refused...).
    #[error("QUIC connection to {addr} failed: {reason}")]
    Quic {
        /// The address tried.
        addr: String,
        /// Why.
        reason: String,
    },
    /// TCP, TLS or the WebSocket upgrade failed.
    #[error("WebSocket connection to {url} failed: {reason}")]
    WebSocket {
        /// The URL tried.
        url: String,
        /// Why.
        reason: String,
    },
    /// No answer within `connect_timeout`.
    #[error("no connection to {addr} within {secs:.1} s")]
    Timeout {
        /// The address tried.
        addr: String,
        /// The timeout.
        secs: f64,
    },
}

/// Runs one connection `attempt`, bounded by `timeout` ([`ConnectError::Timeout`] naming
/// `gateway` when it runs out).
pub(crate) async fn within<T>(
    timeout: Duration,
    gateway: &str,
    attempt: impl std::future::Future<Output = Result<T, ConnectError>>,
) -> Result<T, ConnectError> {
    tokio::time::timeout(timeout, attempt)
        .await
        .unwrap_or_else(|_| {
            Err(ConnectError::Timeout {
                addr: gateway.to_string(),
                secs: timeout.as_secs_f64(),
            })
        })
}

/// Resolves `host:port` to its first address (a blocking lookup on tokio's pool).
pub(crate) async fn resolve(addr: &str) -> Result<std::net::SocketAddr, ConnectError> {
    let mut addrs = tokio::net::lookup_host(addr)
        .await
        .map_err(|e| ConnectError::Resolve {
            addr: addr.to_string(),
            reason: e.to_string(),
        })?;
    addrs.next().ok_or_else(|| ConnectError::Resolve {
        addr: addr.to_string(),
        reason: "no address".into(),
    })
}
