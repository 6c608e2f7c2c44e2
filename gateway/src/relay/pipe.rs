//! An in-memory pipe between the [relay](super) and a WebSocket handler the gateway runs itself
//! (`/ws`, `/agent/ws`), built to cost nothing while the connection is idle.
//!
//! tokio's `DuplexStream` keeps a growable buffer per direction that never shrinks, so an idle
//! connection holds as much as its largest burst needed. Here each direction is a queue of the
//! [`Bytes`] chunks written into it, bounded by a byte limit: a chunk from the client (one burst
//! read by the session) is queued as is, a chunk from the handler is the one `write` it made, and
//! an empty queue holds no buffer at all.
//!
//! [`PipeStream`] is the handler's end (`AsyncRead` + `AsyncWrite`, for tungstenite);
//! [`PipePeer`] is the relay's end. Dropping either end closes both directions for the other.

use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use bytes::{Buf, Bytes};
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::Peer;

/// Creates a pipe that queues at most `limit` bytes each way (one write may overshoot it by its
/// own length, so a burst larger than the limit is never split for the client's sake).
pub fn pipe(limit: usize) -> (PipePeer, PipeStream) {
    let shared = Arc::new(Mutex::new(Pipe {
        to_handler: Direction::default(),
        to_client: Direction::default(),
        limit: limit.max(1),
    }));
    (
        PipePeer {
            shared: Arc::clone(&shared),
        },
        PipeStream { shared },
    )
}

#[derive(Debug)]
struct Pipe {
    /// Written by the relay (the client's bytes), read by the handler.
    to_handler: Direction,
    /// Written by the handler, read by the relay (for the client).
    to_client: Direction,
    limit: usize,
}

#[derive(Debug, Default)]
struct Direction {
    chunks: VecDeque<Bytes>,
    queued: usize,
    /// The writer has finished: the reader sees the end once the queue is empty.
    finished: bool,
    /// The reader is gone: writes fail.
    reader_gone: bool,
    read_waker: Option<Waker>,
    write_waker: Option<Waker>,
}

impl Direction {
    /// Room for a write, or why not: `Err` when the reader is gone, `Ok(false)` when full (the
    /// writer's waker is kept).
    fn poll_room(&mut self, limit: usize, cx: &mut Context<'_>) -> io::Result<bool> {
        if self.reader_gone {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        if self.queued >= limit {
            self.write_waker = Some(cx.waker().clone());
            return Ok(false);
        }
        Ok(true)
    }

    fn push(&mut self, chunk: Bytes) -> Option<Waker> {
        self.queued += chunk.len();
        self.chunks.push_back(chunk);
        self.read_waker.take()
    }

    /// The writer's side ends (finish or drop).
    fn finish(&mut self) -> Option<Waker> {
        self.finished = true;
        self.read_waker.take()
    }

    /// The reader's side is dropped: queued bytes go, writers fail from now on.
    fn drop_reader(&mut self) -> Option<Waker> {
        self.reader_gone = true;
        self.chunks = VecDeque::new();
        self.queued = 0;
        self.write_waker.take()
    }
}

fn wake(wakers: [Option<Waker>; 2]) {
    for w in wakers.into_iter().flatten() {
        w.wake();
    }
}

/// The handler's end of a [`pipe`]: reads what the client sent, writes what goes to the client.
#[derive(Debug)]
pub struct PipeStream {
    shared: Arc<Mutex<Pipe>>,
}

impl AsyncRead for PipeStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut pipe = self.shared.lock();
        let dir = &mut pipe.to_handler;
        let Some(front) = dir.chunks.front_mut() else {
            if dir.finished {
                return Poll::Ready(Ok(()));
            }
            dir.read_waker = Some(cx.waker().clone());
            return Poll::Pending;
        };
        let n = front.len().min(buf.remaining());
        buf.put_slice(&front[..n]);
        front.advance(n);
        if front.is_empty() {
            dir.chunks.pop_front();
        }
        dir.queued -= n;
        let waker = dir.write_waker.take();
        drop(pipe);
        wake([waker, None]);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for PipeStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let mut pipe = self.shared.lock();
        let limit = pipe.limit;
        match pipe.to_client.poll_room(limit, cx) {
            Err(e) => return Poll::Ready(Err(e)),
            Ok(false) => return Poll::Pending,
            Ok(true) => {}
        }
        let waker = pipe.to_client.push(Bytes::copy_from_slice(buf));
        drop(pipe);
        wake([waker, None]);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let waker = self.shared.lock().to_client.finish();
        wake([waker, None]);
        Poll::Ready(Ok(()))
    }
}

impl Drop for PipeStream {
    fn drop(&mut self) {
        let mut pipe = self.shared.lock();
        let a = pipe.to_client.finish();
        let b = pipe.to_handler.drop_reader();
        drop(pipe);
        wake([a, b]);
    }
}

/// The relay's end of a [`pipe`].
#[derive(Debug)]
pub struct PipePeer {
    shared: Arc<Mutex<Pipe>>,
}

impl Peer for PipePeer {
    fn recv(&mut self) -> impl Future<Output = io::Result<Option<Bytes>>> + Send {
        poll_fn(|cx| {
            let mut pipe = self.shared.lock();
            let dir = &mut pipe.to_client;
            match dir.chunks.pop_front() {
                Some(chunk) => {
                    dir.queued -= chunk.len();
                    let waker = dir.write_waker.take();
                    drop(pipe);
                    wake([waker, None]);
                    Poll::Ready(Ok(Some(chunk)))
                }
                None if dir.finished => Poll::Ready(Ok(None)),
                None => {
                    dir.read_waker = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        })
    }

    fn send(&mut self, data: Bytes) -> impl Future<Output = io::Result<()>> + Send {
        let mut data = Some(data);
        poll_fn(move |cx| {
            let mut pipe = self.shared.lock();
            let limit = pipe.limit;
            match pipe.to_handler.poll_room(limit, cx) {
                Err(e) => return Poll::Ready(Err(e)),
                Ok(false) => return Poll::Pending,
                Ok(true) => {}
            }
            let waker = match data.take() {
                Some(chunk) if !chunk.is_empty() => pipe.to_handler.push(chunk),
                _ => None,
            };
            drop(pipe);
            wake([waker, None]);
            Poll::Ready(Ok(()))
        })
    }

    fn finish(&mut self) -> impl Future<Output = ()> + Send {
        let waker = self.shared.lock().to_handler.finish();
        wake([waker, None]);
        std::future::ready(())
    }
}

impl Drop for PipePeer {
    fn drop(&mut self) {
        let mut pipe = self.shared.lock();
        let a = pipe.to_handler.finish();
        let b = pipe.to_client.drop_reader();
        drop(pipe);
        wake([a, b]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn bytes_cross_both_ways_and_queues_empty_out() {
        let (mut peer, mut stream) = pipe(64);
        peer.send(Bytes::from_static(b"from client")).await.unwrap();
        let mut buf = [0u8; 5];
        stream.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"from ");
        let mut rest = [0u8; 6];
        stream.read_exact(&mut rest).await.unwrap();
        assert_eq!(&rest, b"client");
        stream.write_all(b"to client").await.unwrap();
        assert_eq!(
            peer.recv().await.unwrap().as_deref(),
            Some(&b"to client"[..])
        );
        let pipe = stream.shared.lock();
        assert!(pipe.to_handler.chunks.is_empty() && pipe.to_handler.queued == 0);
        assert!(pipe.to_client.chunks.is_empty() && pipe.to_client.queued == 0);
    }

    #[tokio::test]
    async fn a_full_pipe_holds_the_writer_until_read() {
        let (mut peer, mut stream) = pipe(8);
        stream.write_all(b"12345678").await.unwrap();
        // Full: the next write waits for the relay to take the first chunk.
        let mut write = tokio_test_write(&mut stream, b"9");
        assert!(
            futures::poll!(&mut write).is_pending(),
            "a full pipe must hold the writer"
        );
        assert_eq!(
            peer.recv().await.unwrap().as_deref(),
            Some(&b"12345678"[..])
        );
        write.await.unwrap();
        assert_eq!(peer.recv().await.unwrap().as_deref(), Some(&b"9"[..]));
    }

    fn tokio_test_write<'a>(
        stream: &'a mut PipeStream,
        data: &'a [u8],
    ) -> Pin<Box<dyn Future<Output = io::Result<()>> + 'a>> {
        Box::pin(stream.write_all(data))
    }

    #[tokio::test]
    async fn ends_propagate_both_ways() {
        let (mut peer, mut stream) = pipe(64);
        peer.finish().await;
        let mut buf = Vec::new();
        assert_eq!(stream.read_to_end(&mut buf).await.unwrap(), 0);
        stream.write_all(b"last words").await.unwrap();
        drop(stream);
        assert_eq!(
            peer.recv().await.unwrap().as_deref(),
            Some(&b"last words"[..])
        );
        assert_eq!(peer.recv().await.unwrap(), None);
        assert_eq!(
            peer.send(Bytes::from_static(b"x"))
                .await
                .unwrap_err()
                .kind(),
            io::ErrorKind::BrokenPipe
        );
    }

    #[tokio::test]
    async fn dropping_the_relay_end_ends_the_handler_stream() {
        let (peer, mut stream) = pipe(64);
        drop(peer);
        let mut buf = Vec::new();
        assert_eq!(stream.read_to_end(&mut buf).await.unwrap(), 0);
        assert_eq!(
            stream.write_all(b"x").await.unwrap_err().kind(),
            io::ErrorKind::BrokenPipe
        );
    }
}
