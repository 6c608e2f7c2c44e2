//! One protocol, two transports: the stream and connection types the protocol handlers
//! ([`super::control`], [`super::task_stream`]) are written against.
//!
//! | | QUIC (`orchestra-agent/1`) | WebSocket (`/agent/ws`) |
//! |---|---|---|
//! | connection | `quinn::Connection` | [`WsMux`](super::ws::WsMux): one WebSocket, streams multiplexed by `Envelope.task_id` |
//! | control stream | the first bidirectional stream the agent opens | `task_id = ""` |
//! | task stream | a bidirectional stream (gateway-opened for `TaskAssign`, agent-opened for `TaskResume`) | a `task_id`; `fin` ends a side |
//! | flow control | QUIC, per stream: a handler that stops reading stalls that stream only | one TCP connection: a handler that stops reading stalls the connection once its inbound queue ([`super::ws::STREAM_QUEUE`] frames) is full |
//!
//! The handlers see [`FrameTx`] / [`FrameRx`] pairs and a [`Conn`]; nothing above this file knows
//! which transport carries them. Both `recv` implementations are cancel-safe (a frame is either
//! returned or stays buffered), so handlers may race them in `select!` and poll them with
//! `now_or_never` to batch what has already arrived.

use std::net::SocketAddr;
use std::sync::Arc;

use orchestra_proto::v1::Frame;
use orchestra_proto::{encode_frame, FrameError, FrameReader};

use super::ws::{WsMux, WsStreamRx, WsStreamTx};

/// The sending half of a stream.
pub(crate) enum FrameTx {
    /// A QUIC send stream.
    Quic(quinn::SendStream),
    /// A WebSocket stream (envelopes with this stream's task id).
    Ws(WsStreamTx),
}

/// The receiving half of a stream.
pub(crate) enum FrameRx {
    /// A QUIC receive stream, framed.
    Quic(FrameReader<quinn::RecvStream>),
    /// A WebSocket stream's inbound queue (frames already decoded by the connection's reader).
    Ws(WsStreamRx),
}

/// Why a frame could not be sent.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SendError {
    /// The stream or connection is gone.
    #[error("stream closed: {0}")]
    Closed(String),
}

impl FrameTx {
    /// Sends one frame.
    pub async fn send(&mut self, frame: &Frame) -> Result<(), SendError> {
        match self {
            FrameTx::Quic(s) => s
                .write_all(&encode_frame(frame))
                .await
                .map_err(|e| SendError::Closed(e.to_string())),
            FrameTx::Ws(s) => s.send(Some(frame), false).await,
        }
    }

    /// Ends this side of the stream (QUIC FIN, WebSocket `fin`).
    pub async fn finish(&mut self) {
        match self {
            FrameTx::Quic(s) => {
                let _ = s.finish();
            }
            FrameTx::Ws(s) => {
                let _ = s.send(None, true).await;
            }
        }
    }
}

impl FrameTx {
    /// Ends this side and waits (at most `wait`) until the peer has read everything sent, so
    /// that a closing `Error` frame is not lost to the connection close that follows.
    pub async fn finish_and_wait(&mut self, wait: std::time::Duration) {
        match self {
            FrameTx::Quic(s) => {
                let _ = s.finish();
                let _ = tokio::time::timeout(wait, s.stopped()).await;
            }
            FrameTx::Ws(s) => {
                let _ = s.send(None, true).await;
            }
        }
    }
}

impl FrameRx {
    /// The next frame; `None` when the peer ended its side cleanly.
    pub async fn recv(&mut self) -> Result<Option<Frame>, FrameError> {
        match self {
            FrameRx::Quic(r) => r.next().await,
            FrameRx::Ws(r) => Ok(r.recv().await),
        }
    }
}

/// An agent's connection.
#[derive(Clone)]
pub(crate) enum Conn {
    /// QUIC.
    Quic(quinn::Connection),
    /// WebSocket.
    Ws(Arc<WsMux>),
}

/// A stream the agent opened (after the control stream): its halves.
pub(crate) type Accepted = (FrameTx, FrameRx);

impl Conn {
    /// The remote address.
    pub fn peer(&self) -> SocketAddr {
        match self {
            Conn::Quic(c) => c.remote_address(),
            Conn::Ws(m) => m.peer(),
        }
    }

    /// Opens a task stream (the gateway's `TaskAssign`).
    pub async fn open(&self, task_id: &str) -> Result<(FrameTx, FrameRx), SendError> {
        match self {
            Conn::Quic(c) => {
                let (tx, rx) = c
                    .open_bi()
                    .await
                    .map_err(|e| SendError::Closed(e.to_string()))?;
                Ok((FrameTx::Quic(tx), FrameRx::Quic(FrameReader::new(rx))))
            }
            Conn::Ws(m) => {
                let (tx, rx) = m.open(task_id)?;
                Ok((FrameTx::Ws(tx), FrameRx::Ws(rx)))
            }
        }
    }

    /// The next stream the agent opens; `None` once the connection is closed.
    pub async fn accept(&self) -> Option<Accepted> {
        match self {
            Conn::Quic(c) => match c.accept_bi().await {
                Ok((tx, rx)) => Some((FrameTx::Quic(tx), FrameRx::Quic(FrameReader::new(rx)))),
                Err(_) => None,
            },
            Conn::Ws(m) => m
                .accept()
                .await
                .map(|(tx, rx)| (FrameTx::Ws(tx), FrameRx::Ws(rx))),
        }
    }

    /// Closes the connection (after the caller sent an `Error` frame on the control stream).
    pub fn close(&self, reason: &str) {
        match self {
            Conn::Quic(c) => c.close(quinn::VarInt::from_u32(0), reason.as_bytes()),
            Conn::Ws(m) => m.close(),
        }
    }

    /// The hub's name for the transport.
    pub fn transport(&self) -> orchestra_hub::Transport {
        match self {
            Conn::Quic(_) => orchestra_hub::Transport::Quic,
            Conn::Ws(_) => orchestra_hub::Transport::Ws,
        }
    }
}
