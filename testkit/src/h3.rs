//! A small HTTP/3 client (quinn + h3, rustls with `ring`) for tests of the gateway's HTTP/3 front.
//!
//! One [`H3Client`] is one QUIC connection; requests on it are concurrent streams (the client is
//! cheap to share by reference across tasks). Request bodies are sent in chunks while the
//! response is read, so an echoed body never deadlocks on flow control.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, Method, Request, StatusCode};
use quinn::crypto::rustls::QuicClientConfig;

use crate::tls::client_config;

/// Boxed error of the client.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A complete response.
#[derive(Debug, Clone)]
pub struct H3Response {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// Body.
    pub body: Bytes,
    /// Trailers, if the server sent any.
    pub trailers: Option<HeaderMap>,
}

impl H3Response {
    /// A header as a string (empty when absent or not UTF-8).
    pub fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    }

    /// The body parsed as JSON.
    pub fn json(&self) -> Result<serde_json::Value, BoxError> {
        Ok(serde_json::from_slice(&self.body)?)
    }
}

/// True when `e` is the peer's STOP_SENDING with `H3_NO_ERROR`.
fn stopped_without_error(e: &(dyn std::error::Error + Send + Sync + 'static)) -> bool {
    matches!(
        e.downcast_ref::<h3::error::StreamError>(),
        Some(h3::error::StreamError::RemoteTerminate { code, .. }) if *code == h3::error::Code::H3_NO_ERROR
    )
}

/// One HTTP/3 connection.
pub struct H3Client {
    endpoint: quinn::Endpoint,
    send: h3::client::SendRequest<h3_quinn::OpenStreams, Bytes>,
    authority: String,
    driver: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for H3Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H3Client")
            .field("authority", &self.authority)
            .finish()
    }
}

impl H3Client {
    /// Connects to `addr` (UDP), trusting only the certificates in `ca_pem`, with SNI `localhost`.
    pub async fn connect(addr: SocketAddr, ca_pem: &[u8]) -> Result<H3Client, BoxError> {
        let tls = client_config(ca_pem, &[b"h3"])?;
        let quic = QuicClientConfig::try_from(tls)?;
        let mut config = quinn::ClientConfig::new(Arc::new(quic));
        let mut transport = quinn::TransportConfig::default();
        transport.max_idle_timeout(Some(std::time::Duration::from_secs(30).try_into()?));
        config.transport_config(Arc::new(transport));
        let bind: SocketAddr = if addr.is_ipv6() {
            "[::1]:0".parse()?
        } else {
            "127.0.0.1:0".parse()?
        };
        let mut endpoint = quinn::Endpoint::client(bind)?;
        endpoint.set_default_client_config(config);
        let conn = endpoint.connect(addr, "localhost")?.await?;
        let (mut driver, send) = h3::client::new(h3_quinn::Connection::new(conn)).await?;
        let driver = tokio::spawn(async move {
            let _ = std::future::poll_fn(|cx| driver.poll_close(cx)).await;
        });
        Ok(H3Client {
            endpoint,
            send,
            authority: format!("localhost:{}", addr.port()),
            driver,
        })
    }

    /// [`connect`](Self::connect), retried every 50 ms for up to `patience`: a gateway binds its
    /// UDP socket as it turns ready, and a handshake racing that bind fails. Returns the last
    /// error when no attempt succeeded.
    pub async fn connect_patiently(
        addr: SocketAddr,
        ca_pem: &[u8],
        patience: std::time::Duration,
    ) -> Result<H3Client, BoxError> {
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            match Self::connect(addr, ca_pem).await {
                Ok(client) => return Ok(client),
                Err(e) if tokio::time::Instant::now() >= deadline => return Err(e),
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
            }
        }
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> Result<H3Response, BoxError> {
        self.request(Method::GET, path, &[], Bytes::new()).await
    }

    /// A request with `headers` and `body` (sent in 64 KiB chunks while the response is read).
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Result<H3Response, BoxError> {
        let mut builder = Request::builder()
            .method(method)
            .uri(format!("https://{}{}", self.authority, path));
        for (n, v) in headers {
            builder = builder.header(*n, *v);
        }
        let req = builder.body(())?;
        let mut send = self.send.clone();
        let stream = send.send_request(req).await?;
        let (mut tx, mut rx) = stream.split();
        let upload = async move {
            let mut rest = body;
            while !rest.is_empty() {
                let n = rest.len().min(64 * 1024);
                tx.send_data(rest.split_to(n)).await?;
            }
            tx.finish().await?;
            Ok::<_, BoxError>(())
        };
        let download = async move {
            let resp = rx.recv_response().await?;
            let mut body = BytesMut::new();
            while let Some(mut chunk) = rx.recv_data().await? {
                let n = chunk.remaining();
                body.extend_from_slice(&chunk.copy_to_bytes(n));
            }
            let trailers = rx.recv_trailers().await?;
            let (parts, ()) = resp.into_parts();
            Ok::<_, BoxError>(H3Response {
                status: parts.status,
                headers: parts.headers,
                body: body.freeze(),
                trailers,
            })
        };
        let (up, down) = tokio::join!(upload, download);
        let resp = down?;
        // The server may answer (an error) before reading the whole body: that is not a failure.
        // Nor is a server that stops the upload with H3_NO_ERROR after a complete response
        // (RFC 9114 section 4.1); any other stop of a successful request's upload is.
        if let Err(e) = up {
            if resp.status.is_success() && !stopped_without_error(&*e) {
                return Err(e);
            }
        }
        Ok(resp)
    }

    /// Closes the connection.
    pub async fn close(self) {
        self.endpoint.close(0u32.into(), b"done");
        self.driver.abort();
        let _ = tokio::time::timeout(
            std::time::Duration::from_millis(500),
            self.endpoint.wait_idle(),
        )
        .await;
    }
}
