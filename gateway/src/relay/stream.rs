//! A byte stream as a relay [`Peer`]: a pingora transport [`Stream`] (TCP or TLS) — the client
//! connection a WebSocket took out of pingora ([`super::detach`]), a TLS upstream of the tunnel —
//! or the in-memory pipe to a WebSocket endpoint the gateway serves itself (`ws_server.rs`).
//!
//! It reads like [`super::TcpPeer`] with no buffer while idle: it waits on a one-byte read (a
//! TLS stream has no readiness to wait on), then takes what else is ready into a burst buffer
//! with a single poll, and drops that buffer when the burst ends. Each write (and its flush) is
//! bounded by the write timeout, so a peer that stops reading is cut.

use std::io;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use futures::FutureExt;
use pingora::protocols::Stream;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::{burst_room, take_burst, Peer, READ_CHUNK};

/// A stream relayed as a [`Peer`], with the bytes read from it before the relay began.
pub struct StreamPeer<S = Stream> {
    stream: S,
    /// The current burst's buffer; `None` while the peer is silent.
    burst: Option<BytesMut>,
    /// Bytes read before the relay began (by the session, before a hand-off), relayed first.
    preread: Option<Bytes>,
    /// A peer that accepts no bytes for this long is cut.
    write_timeout: Option<Duration>,
    /// Bytes sent to the peer (for a detached client: body bytes since the `101`, for the
    /// access log).
    sent: u64,
}

impl<S> std::fmt::Debug for StreamPeer<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamPeer")
            .field("burst", &self.burst.as_ref().map(BytesMut::capacity))
            .field("sent", &self.sent)
            .finish_non_exhaustive()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> StreamPeer<S> {
    /// Relays `stream`; each write is bounded by `write_timeout`.
    pub fn new(stream: S, write_timeout: Option<Duration>) -> Self {
        Self::detached(stream, None, write_timeout, 0)
    }

    /// A client taken out of a session: what the session read first and the bytes it sent.
    pub(super) fn detached(
        stream: S,
        preread: Option<Bytes>,
        write_timeout: Option<Duration>,
        sent: u64,
    ) -> Self {
        StreamPeer {
            stream,
            burst: None,
            preread,
            write_timeout,
            sent,
        }
    }

    /// Bytes sent to the peer (a detached client: body bytes since the `101`, the session's
    /// included).
    pub fn bytes_sent(&self) -> usize {
        usize::try_from(self.sent).unwrap_or(usize::MAX)
    }

    /// Flushes what is left in the stream's write buffer (a detached client: the `101`, early
    /// bytes the session wrote).
    pub async fn flush(&mut self) -> io::Result<()> {
        within(self.write_timeout, self.stream.flush()).await
    }

    /// Takes what is ready without waiting into the burst buffer: `Ok(None)` when nothing is
    /// (the buffer is then released).
    fn try_read(&mut self) -> io::Result<Option<Option<Bytes>>> {
        let read = self
            .stream
            .read_buf(burst_room(&mut self.burst))
            .now_or_never();
        take_burst(&mut self.burst, read)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Peer for StreamPeer<S> {
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
