//! A raw TCP upstream: the test writes the bytes of every answer itself (framing mistakes,
//! informational heads, connections closed mid-body, stray bytes on an idle connection), and
//! sees its side of every connection: how many were accepted and how many are still open.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use tokio::io::AsyncWriteExt;
//! use testkit::upstream::raw::RawServer;
//!
//! let server = RawServer::start(|mut conn, id| async move {
//!     while let Some(_head) = conn.next_head().await {
//!         let body = format!("conn={id}");
//!         let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", body.len());
//!         if conn.stream.write_all(format!("{head}{body}").as_bytes()).await.is_err() {
//!             return;
//!         }
//!     }
//! })
//! .await?;
//! let _addr = server.addr();
//! # Ok(()) }
//! ```

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use super::{bind_loopback, spawn_accept_loop, ServerTask};

/// A listener on `127.0.0.1:0` whose connections are each served by the test's own function.
/// Dropping it closes the listener and every connection.
#[derive(Debug)]
pub struct RawServer {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    open: Arc<AtomicUsize>,
    _task: ServerTask,
}

impl RawServer {
    /// Starts the server: every accepted connection is handed to `serve` with its index (0 for
    /// the first); the connection counts as open until `serve` returns.
    pub async fn start<F, Fut>(mut serve: F) -> std::io::Result<Self>
    where
        F: FnMut(RawConn, usize) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let (listener, addr) = bind_loopback().await?;
        let accepted = Arc::new(AtomicUsize::new(0));
        let open = Arc::new(AtomicUsize::new(0));
        let (acc, opn) = (accepted.clone(), open.clone());
        let task = spawn_accept_loop(listener, move |stream| {
            let id = acc.fetch_add(1, Ordering::SeqCst);
            opn.fetch_add(1, Ordering::SeqCst);
            let served = serve(RawConn::new(stream), id);
            let opn = opn.clone();
            async move {
                served.await;
                opn.fetch_sub(1, Ordering::SeqCst);
            }
        });
        Ok(RawServer {
            addr,
            accepted,
            open,
            _task: task,
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Connections whose `serve` has not returned yet.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }
}

/// One accepted connection, with the bytes its peer sent that the test has not consumed yet.
#[derive(Debug)]
pub struct RawConn {
    /// The connection; answers are written to it directly.
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl RawConn {
    fn new(stream: TcpStream) -> Self {
        RawConn {
            stream,
            buf: Vec::new(),
        }
    }

    /// The next request head (request line and fields, without the blank line that ends it,
    /// decoded lossily); `None` once the peer closed or the connection failed.
    pub async fn next_head(&mut self) -> Option<String> {
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                self.buf.drain(..end + 4);
                return Some(head);
            }
            self.fill().await?;
        }
    }

    /// The next `n` bytes (a request body); `None` if the connection ends first.
    pub async fn take(&mut self, n: usize) -> Option<Vec<u8>> {
        while self.buf.len() < n {
            self.fill().await?;
        }
        Some(self.buf.drain(..n).collect())
    }

    /// Reads what the peer sent next; `None` at its end or on an error.
    async fn fill(&mut self) -> Option<()> {
        let mut chunk = [0u8; 4096];
        match self.stream.read(&mut chunk).await {
            Ok(0) | Err(_) => None,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Some(())
            }
        }
    }
}

/// The request target of a request head (`/` when the head has none).
pub fn path_of(head: &str) -> &str {
    head.split_whitespace().nth(1).unwrap_or("/")
}
