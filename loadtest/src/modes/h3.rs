//! `h3`: HTTP/3 over QUIC (quinn + h3, rustls with `ring`, ALPN `h3`); https:// URLs whose port
//! is the server's UDP port.
//!
//! Like `h2`, `-c` connections are opened lazily and shared: worker `w` uses connection `w % c`,
//! so with `--streams m` there are `c × m` workers and up to `m` concurrent streams per
//! connection. Each connection's driver runs in its own task; when it ends, the connection is
//! marked closed and the next request on that slot reconnects.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::{Buf, Bytes};
use http_body_util::BodyExt;
use quinn::crypto::rustls::QuicClientConfig;
use tokio::sync::Mutex;

use super::http::RequestTemplate;
use crate::engine::{Driver, Outcome};
use crate::stats::{note_error, ErrorKind};

/// One shared HTTP/3 connection: the request sender and whether its driver has ended.
#[derive(Clone)]
pub struct H3Conn {
    send: h3::client::SendRequest<h3_quinn::OpenStreams, Bytes>,
    closed: Arc<AtomicBool>,
}

/// The HTTP/3 driver.
pub struct H3 {
    endpoint: quinn::Endpoint,
    addr: SocketAddr,
    server_name: String,
    template: RequestTemplate,
    slots: Vec<Mutex<Option<H3Conn>>>,
}

impl std::fmt::Debug for H3 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H3")
            .field("addr", &self.addr)
            .field("connections", &self.slots.len())
            .finish()
    }
}

impl H3 {
    /// A driver to `addr` (UDP) presenting `server_name` for TLS, with `connections` shared
    /// connections. `tls` must be a TLS 1.3-capable client config advertising ALPN `h3`.
    pub fn new(
        tls: Arc<rustls::ClientConfig>,
        addr: SocketAddr,
        server_name: String,
        template: RequestTemplate,
        connections: usize,
    ) -> Result<Self, String> {
        let quic = QuicClientConfig::try_from(tls).map_err(|e| format!("QUIC TLS setup: {e}"))?;
        let mut config = quinn::ClientConfig::new(Arc::new(quic));
        let mut transport = quinn::TransportConfig::default();
        transport
            .stream_receive_window(quinn::VarInt::from_u32(1 << 20))
            .receive_window(quinn::VarInt::from_u32(16 << 20));
        config.transport_config(Arc::new(transport));
        let bind: SocketAddr = if addr.is_ipv6() {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
        };
        let mut endpoint =
            quinn::Endpoint::client(bind).map_err(|e| format!("QUIC endpoint: {e}"))?;
        endpoint.set_default_client_config(config);
        Ok(Self {
            endpoint,
            addr,
            server_name,
            template,
            slots: (0..connections.max(1)).map(|_| Mutex::new(None)).collect(),
        })
    }

    async fn open(&self) -> Result<H3Conn, ErrorKind> {
        let connecting = self
            .endpoint
            .connect(self.addr, &self.server_name)
            .map_err(|e| note_error(ErrorKind::Connect, &format_args!("QUIC connect: {e}")))?;
        let conn = connecting.await.map_err(|e| {
            note_error(
                ErrorKind::Connect,
                &format_args!("QUIC handshake with {}: {e}", self.addr),
            )
        })?;
        let (mut driver, send) = h3::client::new(h3_quinn::Connection::new(conn))
            .await
            .map_err(|e| note_error(ErrorKind::Protocol, &format_args!("HTTP/3 setup: {e}")))?;
        let closed = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&closed);
        tokio::spawn(async move {
            // Connection errors surface on the requests using it.
            let _ = std::future::poll_fn(|cx| driver.poll_close(cx)).await;
            flag.store(true, Ordering::Relaxed);
        });
        Ok(H3Conn { send, closed })
    }
}

fn stream_error(e: &h3::error::StreamError) -> ErrorKind {
    let text = e.to_string();
    let kind = if text.contains("timed out") || text.contains("Timeout") {
        ErrorKind::Timeout
    } else if e.is_h3_no_error() {
        ErrorKind::Protocol
    } else {
        ErrorKind::Reset
    };
    note_error(kind, &format_args!("HTTP/3 stream: {text}"))
}

impl Driver for H3 {
    type Conn = H3Conn;

    async fn connect(&self, worker: usize) -> Result<Self::Conn, ErrorKind> {
        let mut slot = self.slots[worker % self.slots.len()].lock().await;
        if let Some(conn) = slot.as_ref() {
            if !conn.closed.load(Ordering::Relaxed) {
                return Ok(conn.clone());
            }
        }
        *slot = None;
        let conn = self.open().await?;
        *slot = Some(conn.clone());
        Ok(conn)
    }

    async fn request(&self, conn: &mut Self::Conn) -> Result<Outcome, ErrorKind> {
        let (parts, body) = self.template.build().into_parts();
        let body = body
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        let mut req = http::Request::from_parts(parts, ());
        *req.version_mut() = http::Version::HTTP_3;
        let mut stream = conn
            .send
            .send_request(req)
            .await
            .map_err(|e| stream_error(&e))?;
        if !body.is_empty() {
            stream.send_data(body).await.map_err(|e| stream_error(&e))?;
        }
        stream.finish().await.map_err(|e| stream_error(&e))?;
        let resp = stream.recv_response().await.map_err(|e| stream_error(&e))?;
        let mut bytes = 0u64;
        while let Some(chunk) = stream.recv_data().await.map_err(|e| stream_error(&e))? {
            bytes += chunk.remaining() as u64;
        }
        Ok(Outcome {
            status: Some(resp.status().as_u16()),
            bytes,
        })
    }

    fn reusable(&self, conn: &Self::Conn) -> bool {
        !conn.closed.load(Ordering::Relaxed)
    }
}

/// Runs the `h3` mode (the arm of [`super::run`]).
pub async fn run(
    a: crate::cli::H2Args,
    threads: usize,
    progress: bool,
) -> Result<Box<dyn crate::report::Report>, String> {
    let target = crate::net::Target::parse(&a.load.url, &["https"])?;
    let addr = target.resolve().await?;
    let opts = crate::net::TlsOptions {
        insecure: a.tls.insecure,
        ca: a.tls.ca.clone(),
    };
    let tls = crate::net::tls_config(&opts, &[b"h3"])?;
    let headers = super::http::parse_headers(&a.load.headers)?;
    // The HTTP/2 template carries the absolute URI, from which `:scheme` and `:authority` come.
    let tpl = RequestTemplate::new(
        &target,
        http::Version::HTTP_2,
        &a.http.method,
        headers,
        a.http.body_size,
    )?;
    let driver = H3::new(tls, addr, target.host.clone(), tpl, a.load.connections)?;
    let workers = a.load.connections * a.streams;
    super::run_requests(driver, "h3", &a.load, a.streams, workers, threads, progress).await
}
