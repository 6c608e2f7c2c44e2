//! The byte relay behind every WebSocket the gateway carries: copies bytes between the client
//! and a [`Peer`] until either side ends ([`pump`]), and holds **no buffer while the connection
//! is idle**. The peer is the upstream of a proxied WebSocket ([`crate::ws_tunnel`]: a
//! [`TcpPeer`], or a [`StreamPeer`] over TLS) or the in-memory pipe to the handler of `/ws` and
//! `/agent/ws` (`ws_server.rs`). After the `101` the client's connection is taken out of pingora
//! and relayed on a task of its own ([`detach::hand_off`]), so that pingora's per-request state
//! is freed; [`run`] relays through the pingora [`Session`] when the connection cannot be taken
//! out (not HTTP/1).
//!
//! A WebSocket can stay open and silent for hours, so what an idle one costs is what the gateway
//! pays per connection. Buffers exist only while bytes flow:
//!
//! - client → peer: a client taken out of pingora is read as a [`StreamPeer`] (a one-byte wait,
//!   then a buffer kept for the burst); one still inside pingora reads with pingora's body buffer
//!   released between bursts (`ORCHESTRA PATCH (idle body buffer)` in `vendor/pingora-core`,
//!   switched on by [`run`]); each burst is handed to the peer as one [`Bytes`];
//! - peer → client: a TCP upstream is awaited with [`TcpStream::readable`] (no buffer), then read
//!   into a buffer kept for the burst and dropped as soon as a read would block ([`TcpPeer`]); a
//!   TLS upstream or the handler's pipe is read as a [`StreamPeer`].
//!
//! Each chunk goes to the client as the `Bytes` it was read into: no copy on the way.

use std::future::Future;
use std::io;

use bytes::{Bytes, BytesMut};
use pingora::protocols::http::ServerSession;
use pingora::proxy::Session;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

pub mod detach;
mod stream;

pub use stream::StreamPeer;

/// Largest single read from a TCP peer; a burst larger than this is relayed in several chunks.
pub const READ_CHUNK: usize = 16 * 1024;
/// A burst buffer with less room than this left is replaced before the next read.
const MIN_READ_ROOM: usize = 2 * 1024;

/// The other end of a relayed connection.
pub trait Peer: Send {
    /// Waits for the peer's next bytes; `Ok(None)` when it has finished sending.
    ///
    /// Must be cancel-safe: the relay drops this future whenever the client's bytes come first,
    /// and nothing may be lost when it does.
    fn recv(&mut self) -> impl Future<Output = io::Result<Option<Bytes>>> + Send;
    /// Sends the client's bytes to the peer.
    fn send(&mut self, data: Bytes) -> impl Future<Output = io::Result<()>> + Send;
    /// Tells the peer the client has finished sending (half-close).
    fn finish(&mut self) -> impl Future<Output = ()> + Send;
}

/// Copies bytes both ways between `session` (after its `101`) and `peer` until either side
/// closes or fails, through the session (a connection [`detach`] could not take out).
pub async fn run<P: Peer>(session: &mut Session, mut peer: P) {
    release_idle_body_buffer(session);
    no_body_read_timeout(session);
    pump(&mut SessionPeer(session), &mut peer).await;
}

/// The relay itself: copies bytes both ways between `client` and `peer` until either side
/// closes or fails. The client ending its side half-closes the peer; the peer ending its side
/// finishes the client's (and with it the client connection).
pub async fn pump<C: Peer, P: Peer>(client: &mut C, peer: &mut P) {
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

/// The client's side of a connection still inside pingora: the upgraded request body in, the
/// response body out.
struct SessionPeer<'a>(&'a mut Session);

impl Peer for SessionPeer<'_> {
    async fn recv(&mut self) -> io::Result<Option<Bytes>> {
        self.0
            .read_request_body()
            .await
            .map_err(|e| io::Error::other(e.to_string()))
    }

    async fn send(&mut self, data: Bytes) -> io::Result<()> {
        self.0
            .write_response_body(Some(data), false)
            .await
            .map_err(|e| io::Error::other(e.to_string()))
    }

    async fn finish(&mut self) {
        let _ = self.0.write_response_body(None, true).await;
    }
}

/// After a `101` the client's bytes are a WebSocket, not a request body: `server.body_read_timeout`
/// no longer applies (a browser that only listens may stay silent for hours; liveness is the
/// endpoints' pings). Used by this relay and by the gateway's own WebSocket endpoints.
pub fn no_body_read_timeout(session: &mut Session) {
    session.set_read_timeout(None);
}

/// Lets an HTTP/1 session read its upgraded body without holding pingora's 64 KiB body buffer
/// while the client is silent.
pub(crate) fn release_idle_body_buffer(session: &mut Session) {
    if let ServerSession::H1(h1) = session.as_downstream_mut() {
        h1.set_release_idle_body_buffer(true);
    }
}

/// A TCP upstream as a [`Peer`]: waits for readability holding no buffer, reads a burst into one
/// buffer, and drops that buffer as soon as a read would block.
#[derive(Debug)]
pub struct TcpPeer {
    stream: TcpStream,
    /// The current burst's buffer; `None` while the upstream is silent.
    burst: Option<BytesMut>,
}

impl TcpPeer {
    /// Relays to and from `stream`.
    pub fn new(stream: TcpStream) -> Self {
        TcpPeer {
            stream,
            burst: None,
        }
    }

    /// One read without waiting: `Ok(Some(None))` at the end of the stream, `Ok(None)` when a
    /// read would block (the burst buffer is then released).
    fn try_read(&mut self) -> io::Result<Option<Option<Bytes>>> {
        let read = match self.stream.try_read_buf(burst_room(&mut self.burst)) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => None,
            read => Some(read),
        };
        take_burst(&mut self.burst, read)
    }
}

/// The burst buffer to read into: allocated when the burst starts, replaced when nearly full.
fn burst_room(burst: &mut Option<BytesMut>) -> &mut BytesMut {
    let buf = burst.get_or_insert_with(|| BytesMut::with_capacity(READ_CHUNK));
    if buf.capacity() - buf.len() < MIN_READ_ROOM {
        *buf = BytesMut::with_capacity(READ_CHUNK);
    }
    buf
}

/// What a read into [`burst_room`] gave (`None`: nothing was ready), as a peer's `try_read`
/// reports it: `Ok(Some(Some(chunk)))` bytes, `Ok(Some(None))` the end, `Ok(None)` nothing ready.
/// The buffer is released at the end and when nothing is ready; a chunk keeps its part of the
/// buffer, and the rest serves the burst's next read.
fn take_burst(
    burst: &mut Option<BytesMut>,
    read: Option<io::Result<usize>>,
) -> io::Result<Option<Option<Bytes>>> {
    match read {
        Some(Ok(0)) => {
            *burst = None;
            Ok(Some(None))
        }
        Some(Ok(_)) => Ok(Some(burst.as_mut().map(|buf| buf.split().freeze()))),
        Some(Err(e)) => Err(e),
        None => {
            *burst = None;
            Ok(None)
        }
    }
}

impl Peer for TcpPeer {
    async fn recv(&mut self) -> io::Result<Option<Bytes>> {
        loop {
            if self.burst.is_none() {
                // Idle: wait holding nothing but the socket's registration.
                self.stream.readable().await?;
            }
            if let Some(read) = self.try_read()? {
                return Ok(read);
            }
        }
    }

    async fn send(&mut self, data: Bytes) -> io::Result<()> {
        self.stream.write_all(&data).await
    }

    async fn finish(&mut self) {
        let _ = self.stream.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    async fn pair() -> (TcpPeer, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
        (TcpPeer::new(client.unwrap()), accepted.unwrap().0)
    }

    #[tokio::test]
    async fn burst_buffer_is_released_when_the_upstream_goes_quiet() {
        let (mut peer, mut far) = pair().await;
        far.write_all(b"hello").await.unwrap();
        let got = peer.recv().await.unwrap().unwrap();
        assert_eq!(&got[..], b"hello");
        // Still inside the burst: the next read finds nothing and drops the buffer.
        let waiting = tokio::time::timeout(std::time::Duration::from_millis(20), peer.recv()).await;
        assert!(waiting.is_err(), "nothing was sent, recv must wait");
        assert!(peer.burst.is_none(), "an idle peer holds no buffer");
        far.write_all(b"again").await.unwrap();
        let got = peer.recv().await.unwrap().unwrap();
        assert_eq!(&got[..], b"again");
        drop(far);
        assert_eq!(peer.recv().await.unwrap(), None);
        assert!(peer.burst.is_none());
    }

    #[tokio::test]
    async fn a_large_burst_arrives_whole_and_in_order() {
        let (mut peer, mut far) = pair().await;
        let big: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
        let sent = big.clone();
        let writer = tokio::spawn(async move {
            far.write_all(&sent).await.unwrap();
        });
        let mut got = Vec::new();
        while got.len() < big.len() {
            let chunk = peer.recv().await.unwrap().unwrap();
            assert!(chunk.len() <= READ_CHUNK);
            got.extend_from_slice(&chunk);
        }
        writer.await.unwrap();
        assert_eq!(got, big);
    }
}
