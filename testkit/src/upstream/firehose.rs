//! An HTTP/1.1 upstream that answers every request with one large body, written as fast as the
//! peer takes it, and reports connections the peer cut before the body was complete (how a test
//! sees that the gateway released its upstream connection).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::{bind_loopback, spawn_accept_loop, ServerTask};

const CHUNK: usize = 64 * 1024;

#[derive(Debug)]
struct State {
    len: u64,
    written: AtomicU64,
    cut: watch::Sender<u64>,
}

/// A running firehose server. Dropping it stops the server.
#[derive(Debug)]
pub struct FirehoseServer {
    addr: SocketAddr,
    state: Arc<State>,
    _task: ServerTask,
}

impl FirehoseServer {
    /// Starts a server whose every response is `len` bytes of `x`, on `127.0.0.1:0`.
    pub async fn start(len: u64) -> std::io::Result<Self> {
        let (listener, addr) = bind_loopback().await?;
        let state = Arc::new(State {
            len,
            written: AtomicU64::new(0),
            cut: watch::Sender::new(0),
        });
        let conn_state = Arc::clone(&state);
        let task = spawn_accept_loop(listener, move |stream| {
            let state = Arc::clone(&conn_state);
            async move { serve(stream, state).await }
        });
        Ok(Self {
            addr,
            state,
            _task: task,
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Body bytes written so far, over all connections.
    pub fn bytes_written(&self) -> u64 {
        self.state.written.load(Ordering::Relaxed)
    }

    /// Connections the peer closed (or reset) before their body was complete.
    pub fn cut(&self) -> u64 {
        *self.state.cut.borrow()
    }

    /// Resolves once at least `n` connections were cut. Never times out by itself.
    pub async fn wait_cut(&self, n: u64) {
        let mut rx = self.state.cut.subscribe();
        let _ = rx.wait_for(|c| *c >= n).await;
    }
}

async fn serve(mut stream: TcpStream, state: Arc<State>) {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
        if head.windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
        if head.len() > 64 * 1024 {
            return;
        }
    }
    let resp = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\n\r\n",
        state.len
    );
    if stream.write_all(resp.as_bytes()).await.is_err() {
        state.cut.send_modify(|c| *c += 1);
        return;
    }
    let chunk = vec![b'x'; CHUNK];
    let mut left = state.len;
    while left > 0 {
        let n = left.min(CHUNK as u64) as usize;
        if stream.write_all(&chunk[..n]).await.is_err() {
            state.cut.send_modify(|c| *c += 1);
            return;
        }
        state.written.fetch_add(n as u64, Ordering::Relaxed);
        left -= n as u64;
    }
    let _ = stream.flush().await;
}
