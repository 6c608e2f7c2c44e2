//! `h1`: HTTP/1.1 over plain TCP or TLS, keep-alive (default) or one connection per request
//! (`--new-conn`).
//!
//! hyper's connection future is polled in the worker's own task alongside the request (no
//! spawned connection task, no cross-task wake-ups per request), which keeps the load
//! generator's cost per request close to wrk's.

use std::future::{poll_fn, Future};
use std::pin::{pin, Pin};
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{HeaderValue, CONNECTION};
use http_body_util::Full;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;

use super::http::{classify, drain, RequestTemplate};
use crate::engine::{Driver, Outcome};
use crate::net::{Connector, Stream};
use crate::stats::{note_error, ErrorKind};

/// A connection idle longer than this is checked for a server-side close before reuse, so a
/// keep-alive timeout on the target is not counted as an error.
const IDLE_CHECK: Duration = Duration::from_secs(1);

/// The HTTP/1.1 driver.
#[derive(Debug)]
pub struct H1 {
    connector: Connector,
    template: RequestTemplate,
    new_conn: bool,
}

impl H1 {
    /// A driver sending `template` through `connector`; with `new_conn`, every request gets
    /// its own connection and carries `Connection: close`.
    pub fn new(connector: Connector, mut template: RequestTemplate, new_conn: bool) -> Self {
        if new_conn {
            template.insert_header(CONNECTION, HeaderValue::from_static("close"));
        }
        Self {
            connector,
            template,
            new_conn,
        }
    }

    async fn open(&self) -> Result<H1Conn, ErrorKind> {
        let stream = self.connector.connect().await?;
        if let Some(p) = stream.alpn().filter(|p| *p != b"http/1.1") {
            let p = String::from_utf8_lossy(p).into_owned();
            return Err(note_error(
                ErrorKind::Protocol,
                &format_args!("server chose ALPN {p:?}, not http/1.1"),
            ));
        }
        let (sender, conn) = http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|e| classify(&e))?;
        Ok(H1Conn {
            sender,
            conn: Box::pin(conn),
            closed: false,
            last_used: Instant::now(),
        })
    }
}

/// One HTTP/1.1 connection: the request sender and the connection state machine, both owned
/// by the worker.
pub struct H1Conn {
    sender: http1::SendRequest<Full<Bytes>>,
    conn: Pin<Box<http1::Connection<TokioIo<Stream>, Full<Bytes>>>>,
    closed: bool,
    last_used: Instant,
}

impl H1Conn {
    /// Polls the connection once: notices a close by the server while we were idle.
    async fn check_alive(&mut self) {
        if self.closed {
            return;
        }
        let conn = &mut self.conn;
        let ended = poll_fn(|cx| Poll::Ready(conn.as_mut().poll(cx).is_ready())).await;
        if ended {
            self.closed = true;
        }
    }
}

/// Runs `fut` while also driving the connection, in the current task. If the connection ends
/// first, `fut` is still polled to completion: it then fails (or finishes with what the
/// connection delivered before closing).
async fn drive<T, F>(
    conn: &mut Pin<Box<http1::Connection<TokioIo<Stream>, Full<Bytes>>>>,
    closed: &mut bool,
    fut: F,
) -> Result<T, hyper::Error>
where
    F: Future<Output = Result<T, hyper::Error>>,
{
    let mut fut = pin!(fut);
    poll_fn(|cx| {
        if let Poll::Ready(out) = fut.as_mut().poll(cx) {
            return Poll::Ready(out);
        }
        if !*closed && conn.as_mut().poll(cx).is_ready() {
            *closed = true;
            // The dispatcher is gone: the request future can now make final progress.
            return fut.as_mut().poll(cx);
        }
        Poll::Pending
    })
    .await
}

impl Driver for H1 {
    type Conn = H1Conn;

    async fn connect(&self, _worker: usize) -> Result<H1Conn, ErrorKind> {
        self.open().await
    }

    async fn request(&self, c: &mut H1Conn) -> Result<Outcome, ErrorKind> {
        if !self.new_conn && c.last_used.elapsed() > IDLE_CHECK {
            c.check_alive().await;
            if c.closed || c.sender.is_closed() {
                *c = self.open().await?;
            }
        }
        let req = self.template.build();
        let H1Conn {
            sender,
            conn,
            closed,
            last_used,
        } = c;
        let exchange = async {
            sender.ready().await?;
            let resp = sender.send_request(req).await?;
            let status = resp.status().as_u16();
            let bytes = drain(resp.into_body()).await?;
            Ok(Outcome {
                status: Some(status),
                bytes,
            })
        };
        let out = drive(conn, closed, exchange)
            .await
            .map_err(|e| classify(&e))?;
        *last_used = Instant::now();
        Ok(out)
    }

    fn reusable(&self, c: &H1Conn) -> bool {
        !self.new_conn && !c.closed && !c.sender.is_closed()
    }
}
