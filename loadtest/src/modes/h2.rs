//! `h2c` and `h2`: HTTP/2 with prior knowledge over TCP, or over TLS with ALPN `h2`.
//!
//! `-c` connections are opened lazily and shared: worker `w` uses connection `w % c`, so with
//! `--streams m` there are `c × m` workers and up to `m` concurrent streams per connection.
//! Each connection's state machine runs in its own task (it serves several workers).

use bytes::Bytes;
use http_body_util::Full;
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::sync::Mutex;

use super::http::{classify, drain, RequestTemplate};
use crate::engine::{Driver, Outcome};
use crate::net::Connector;
use crate::stats::{note_error, ErrorKind};

/// The HTTP/2 driver.
#[derive(Debug)]
pub struct H2 {
    connector: Connector,
    template: RequestTemplate,
    slots: Vec<Mutex<Option<http2::SendRequest<Full<Bytes>>>>>,
}

impl H2 {
    /// A driver with `connections` shared connections.
    pub fn new(connector: Connector, template: RequestTemplate, connections: usize) -> Self {
        Self {
            connector,
            template,
            slots: (0..connections.max(1)).map(|_| Mutex::new(None)).collect(),
        }
    }
}

impl Driver for H2 {
    type Conn = http2::SendRequest<Full<Bytes>>;

    async fn connect(&self, worker: usize) -> Result<Self::Conn, ErrorKind> {
        let mut slot = self.slots[worker % self.slots.len()].lock().await;
        if let Some(sender) = slot.as_ref() {
            if !sender.is_closed() {
                return Ok(sender.clone());
            }
        }
        *slot = None;
        let stream = self.connector.connect().await?;
        if let Some(p) = stream.alpn().filter(|p| *p != b"h2") {
            let p = String::from_utf8_lossy(p).into_owned();
            return Err(note_error(
                ErrorKind::Protocol,
                &format_args!("server chose ALPN {p:?}, not h2"),
            ));
        }
        let (sender, conn) = http2::Builder::new(TokioExecutor::new())
            .initial_stream_window_size(1 << 20)
            .initial_connection_window_size(16 << 20)
            .max_concurrent_reset_streams(1024)
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|e| classify(&e))?;
        tokio::spawn(async move {
            // Connection errors surface on the requests using it.
            let _ = conn.await;
        });
        *slot = Some(sender.clone());
        Ok(sender)
    }

    async fn request(&self, sender: &mut Self::Conn) -> Result<Outcome, ErrorKind> {
        let req = self.template.build();
        sender.ready().await.map_err(|e| classify(&e))?;
        let resp = sender.send_request(req).await.map_err(|e| classify(&e))?;
        let status = resp.status().as_u16();
        let bytes = drain(resp.into_body()).await.map_err(|e| classify(&e))?;
        Ok(Outcome {
            status: Some(status),
            bytes,
        })
    }

    fn reusable(&self, sender: &Self::Conn) -> bool {
        !sender.is_closed()
    }
}
