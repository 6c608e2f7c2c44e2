//! Taking an upgraded HTTP/1.1 connection out of pingora after its `101`, so that an idle
//! WebSocket costs only its two sockets and a small relay task.
//!
//! While pingora drives a connection, its task holds the whole request: the proxy's boxed phase
//! futures, the [`Session`] (the request head's read buffer, the parsed request and response
//! headers, the body reader and writer, digests) and the gateway's [`RequestCtx`]. For a
//! WebSocket that stays open for hours none of that is needed after the `101`. [`detach`]
//! takes the client's transport stream out of the session (leaving pingora a parsed placeholder
//! request over an empty in-memory stream, which it finishes and drops at once), and the caller
//! runs [`relay`] on a task of its own with the request's context moved there
//! ([`take_ctx`]); the access log line and the histograms are written when the WebSocket ends,
//! as before, and `front.rs`'s `logging` skips the placeholder ([`is_placeholder`]).
//!
//! The listener's connection slot (`server.max_connections`) travels with the socket
//! (`ORCHESTRA PATCH (connection slot)` in `vendor/pingora-core`), so a detached WebSocket still
//! counts against the cap until its socket is closed.
//!
//! [`Client`] reads like [`super::TcpPeer`] with no buffer while idle (it waits on a one-byte
//! read, then takes what else is ready into a burst buffer with a single poll) and writes each
//! chunk with the session's write timeout, so a client that stops reading is still cut.

use std::io;
use std::io::Cursor;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use futures::FutureExt;
use pingora::protocols::http::ServerSession;
use pingora::protocols::Stream;
use pingora::proxy::Session;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{Peer, MIN_READ_ROOM, READ_CHUNK};
use crate::pipeline::{Pipeline, Protocol, RequestCtx};

/// The request pingora's session is left with: parsed, then finished without a response.
const PLACEHOLDER_HEAD: &[u8] = b"GET / HTTP/1.1\r\nHost: detached.invalid\r\n\r\n";

/// What [`detach`] did.
#[derive(Debug)]
pub enum Detached {
    /// The client's connection, out of pingora.
    Client(Client),
    /// The client has already closed (or failed): nothing to relay.
    Ended,
    /// Not an HTTP/1 session (nothing was taken): relay through the session.
    Kept,
}

/// Takes the client's connection out of `session` after its `101` (the response head and any
/// bytes already written are flushed by [`Client`]'s first write or by [`Client::flush`]).
pub async fn detach(session: &mut Session) -> Detached {
    if !matches!(session.as_downstream(), ServerSession::H1(_)) {
        return Detached::Kept;
    }
    super::no_body_read_timeout(session);
    super::release_idle_body_buffer(session);
    let write_timeout = session.as_downstream().get_write_timeout();
    let sent = session.body_bytes_sent() as u64;
    // Bytes the client sent right behind its request head, or whatever is ready on the socket:
    // taken with a single poll (dropping a pending read loses nothing; the relay does the same).
    let preread = match session.read_request_body().now_or_never() {
        None => None,
        Some(Ok(Some(data))) => Some(data),
        Some(Ok(None) | Err(_)) => return Detached::Ended,
    };
    let mut placeholder =
        ServerSession::new_http1(Box::new(Cursor::new(PLACEHOLDER_HEAD.to_vec())));
    if !matches!(placeholder.read_request().await, Ok(true)) {
        // A fixed, valid head over a memory stream: cannot fail. Keep relaying in place if it did.
        return match preread {
            None => Detached::Kept,
            Some(_) => Detached::Ended,
        };
    }
    placeholder.set_keepalive(None);
    let stream = match std::mem::replace(session.as_downstream_mut(), placeholder) {
        ServerSession::H1(h1) => h1.into_inner(),
        other => {
            *session.as_downstream_mut() = other;
            return Detached::Kept;
        }
    };
    Detached::Client(Client {
        stream,
        burst: None,
        preread,
        write_timeout,
        sent,
    })
}

/// Moves the request's context out for the relay task, leaving pingora a placeholder that
/// `logging` recognises ([`is_placeholder`]) and does not record.
pub fn take_ctx(pipeline: &Pipeline, ctx: &mut RequestCtx) -> RequestCtx {
    std::mem::replace(ctx, pipeline.begin(Protocol::Ws))
}

/// True for the context [`take_ctx`] leaves behind: a WebSocket that never went through
/// [`Pipeline::admit`] (every admitted request has its identity; only admitted requests are
/// marked [`Protocol::Ws`]).
pub fn is_placeholder(ctx: &RequestCtx) -> bool {
    ctx.protocol == Protocol::Ws && ctx.identity.is_none()
}

/// Copies bytes both ways between a detached `client` and `peer` until either side closes or
/// fails (the same rules as [`super::run`]).
pub async fn relay<P: Peer>(client: &mut Client, mut peer: P) {
    if client.flush().await.is_err() {
        return;
    }
    loop {
        tokio::select! {
            from_client = client.recv() => match from_client {
                Ok(Some(data)) => {
                    if peer.send(data).await.is_err() {
                        break;
                    }
                }
                Ok(None) | Err(_) => {
                    peer.finish().await;
                    break;
                }
            },
            from_peer = peer.recv() => match from_peer {
                Ok(Some(data)) => {
                    if client.send(data).await.is_err() {
                        break;
                    }
                }
                Ok(None) | Err(_) => {
                    client.finish().await;
                    break;
                }
            },
        }
    }
}

/// A client connection taken out of pingora: its transport stream (TCP or TLS) and the bytes
/// that arrived with the request head.
pub struct Client {
    stream: Stream,
    /// The current burst's buffer; `None` while the client is silent.
    burst: Option<BytesMut>,
    /// Bytes read by the session before the hand-off, relayed first.
    preread: Option<Bytes>,
    /// The session's write timeout: a client that accepts no bytes for this long is cut.
    write_timeout: Option<Duration>,
    /// Body bytes sent to the client since the `101` (for the access log).
    sent: u64,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("burst", &self.burst.as_ref().map(BytesMut::capacity))
            .field("sent", &self.sent)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Body bytes sent to the client since the `101`, the session's included.
    pub fn bytes_sent(&self) -> usize {
        usize::try_from(self.sent).unwrap_or(usize::MAX)
    }

    /// Flushes what the session left in the stream's write buffer (the `101`, early bytes).
    pub async fn flush(&mut self) -> io::Result<()> {
        within(self.write_timeout, self.stream.flush()).await
    }

    /// Takes what is ready without waiting into the burst buffer: `Ok(None)` when nothing is
    /// (the buffer is then released).
    fn try_read(&mut self) -> io::Result<Option<Option<Bytes>>> {
        let buf = self
            .burst
            .get_or_insert_with(|| BytesMut::with_capacity(READ_CHUNK));
        if buf.capacity() - buf.len() < MIN_READ_ROOM {
            *buf = BytesMut::with_capacity(READ_CHUNK);
        }
        match self.stream.read_buf(buf).now_or_never() {
            Some(Ok(0)) => {
                self.burst = None;
                Ok(Some(None))
            }
            Some(Ok(_)) => Ok(Some(Some(buf.split().freeze()))),
            Some(Err(e)) => Err(e),
            None => {
                self.burst = None;
                Ok(None)
            }
        }
    }
}

impl Peer for Client {
    async fn recv(&mut self) -> io::Result<Option<Bytes>> {
        if let Some(data) = self.preread.take() {
            return Ok(Some(data));
        }
        loop {
            if self.burst.is_none() {
                // Idle: wait on a one-byte read (no buffer), then take the rest of the burst.
                let mut first = [0u8; 1];
                if self.stream.read(&mut first).await? == 0 {
                    return Ok(None);
                }
                let mut buf = BytesMut::with_capacity(READ_CHUNK);
                buf.put_u8(first[0]);
                // The end (or an error) right after the byte: relay the byte, and the next read
                // reports it.
                if let Some(Ok(0) | Err(_)) = self.stream.read_buf(&mut buf).now_or_never() {
                    return Ok(Some(buf.freeze()));
                }
                let chunk = buf.split().freeze();
                self.burst = Some(buf);
                return Ok(Some(chunk));
            }
            if let Some(read) = self.try_read()? {
                return Ok(read);
            }
        }
    }

    async fn send(&mut self, data: Bytes) -> io::Result<()> {
        let len = data.len() as u64;
        let stream = &mut self.stream;
        let write = async move {
            stream.write_all(&data).await?;
            stream.flush().await
        };
        within(self.write_timeout, write).await?;
        self.sent += len;
        Ok(())
    }

    async fn finish(&mut self) {
        let _ = within(
            self.write_timeout,
            AsyncWriteExt::shutdown(&mut self.stream),
        )
        .await;
    }
}

/// Runs one write operation within `timeout` (none: unbounded).
async fn within<F>(timeout: Option<Duration>, write: F) -> io::Result<()>
where
    F: std::future::Future<Output = io::Result<()>>,
{
    match timeout {
        Some(t) => tokio::time::timeout(t, write)
            .await
            .unwrap_or_else(|_| Err(io::ErrorKind::TimedOut.into())),
        None => write.await,
    }
}
