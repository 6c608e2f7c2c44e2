//! Low-level HTTP/2 clients for tests that need what `reqwest` hides: HTTP/2 with prior
//! knowledge over cleartext (h2c), and response trailers (gRPC).

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;

use crate::tls::{self, BoxError};

/// A response read to its end.
#[derive(Clone, Debug)]
pub struct FullResponse {
    /// Status code.
    pub status: StatusCode,
    /// HTTP version the response arrived with.
    pub version: Version,
    /// Response headers.
    pub headers: HeaderMap,
    /// The whole body.
    pub body: Bytes,
    /// Trailers, when the response had any.
    pub trailers: Option<HeaderMap>,
}

impl FullResponse {
    /// Parses the body as JSON.
    pub fn json(&self) -> Result<serde_json::Value, BoxError> {
        Ok(serde_json::from_slice(&self.body)?)
    }

    /// A header value as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// A trailer value as text.
    pub fn trailer(&self, name: &str) -> Option<&str> {
        self.trailers
            .as_ref()
            .and_then(|t| t.get(name))
            .and_then(|v| v.to_str().ok())
    }
}

/// Reads a streaming response to its end, keeping trailers.
pub async fn read_full(response: Response<Incoming>) -> Result<FullResponse, BoxError> {
    let (parts, body) = response.into_parts();
    let collected = body.collect().await?;
    let trailers = collected.trailers().cloned();
    Ok(FullResponse {
        status: parts.status,
        version: parts.version,
        headers: parts.headers,
        body: collected.to_bytes(),
        trailers,
    })
}

/// One HTTP/2 connection (cleartext prior knowledge, or TLS with ALPN `h2`).
#[derive(Debug)]
pub struct H2Client {
    sender: SendRequest<Full<Bytes>>,
    authority: String,
    scheme: &'static str,
    conn: JoinHandle<()>,
}

impl Drop for H2Client {
    fn drop(&mut self) {
        self.conn.abort();
    }
}

impl H2Client {
    /// Connects to `addr` with HTTP/2 prior knowledge over cleartext (h2c).
    pub async fn connect_h2c(addr: SocketAddr) -> Result<Self, BoxError> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Self::handshake(stream, addr.to_string(), "http").await
    }

    /// Connects to `addr` over TLS, trusting only `ca_pem`, sending SNI `server_name`
    /// and offering only ALPN `h2`.
    pub async fn connect_tls(
        addr: SocketAddr,
        ca_pem: &[u8],
        server_name: &str,
    ) -> Result<Self, BoxError> {
        let config = tls::client_config(ca_pem, &[b"h2"])?;
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let name = ServerName::try_from(server_name.to_string())?;
        let tls_stream = TlsConnector::from(Arc::new(config))
            .connect(name, stream)
            .await?;
        if tls_stream.get_ref().1.alpn_protocol() != Some(b"h2") {
            return Err("server did not negotiate ALPN h2".into());
        }
        let authority = format!("{server_name}:{}", addr.port());
        Self::handshake(tls_stream, authority, "https").await
    }

    async fn handshake<S>(io: S, authority: String, scheme: &'static str) -> Result<Self, BoxError>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io)).await?;
        let conn = tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Self {
            sender,
            authority,
            scheme,
            conn,
        })
    }

    /// The absolute URI for `path` on this connection's origin.
    pub fn uri(&self, path: &str) -> String {
        format!("{}://{}{path}", self.scheme, self.authority)
    }

    /// A request builder for `method` `path` on this connection's origin, HTTP/2.
    pub fn request(&self, method: http::Method, path: &str) -> http::request::Builder {
        Request::builder()
            .method(method)
            .uri(self.uri(path))
            .version(Version::HTTP_2)
    }

    /// Sends a request and returns the response with its body still streaming.
    pub async fn send(
        &mut self,
        request: Request<Full<Bytes>>,
    ) -> Result<Response<Incoming>, BoxError> {
        self.sender.ready().await?;
        Ok(self.sender.send_request(request).await?)
    }

    /// Sends a request and reads the whole response, trailers included.
    pub async fn send_full(
        &mut self,
        request: Request<Full<Bytes>>,
    ) -> Result<FullResponse, BoxError> {
        let response = self.send(request).await?;
        read_full(response).await
    }

    /// `GET path`, read to the end.
    pub async fn get(&mut self, path: &str) -> Result<FullResponse, BoxError> {
        let request = self
            .request(http::Method::GET, path)
            .body(Full::new(Bytes::new()))?;
        self.send_full(request).await
    }
}
