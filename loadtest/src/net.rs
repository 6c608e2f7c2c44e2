//! Targets and transport: URL parsing, TCP connect (with `TCP_NODELAY`), optional TLS (rustls,
//! ring) with `--insecure` or `--ca FILE`, and one [`Stream`] type for plain and TLS
//! connections.

use std::fs::File;
use std::io::{self, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::Uri;
use orchestra_tls_client::{Verify, Versions};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::stats::{note_error, ErrorKind};

/// A parsed target URL.
#[derive(Debug, Clone)]
pub struct Target {
    /// The URL as given.
    pub url: String,
    /// The parsed URI.
    pub uri: Uri,
    /// `https` or `wss`.
    pub tls: bool,
    /// Host name or IP literal (without brackets).
    pub host: String,
    /// Port (explicit or the scheme's default).
    pub port: u16,
    /// `host:port` as it goes into `Host` / `:authority`.
    pub authority: String,
    /// Path and query (`/` if empty).
    pub path_and_query: String,
}

impl Target {
    /// Parses `url`, accepting only the schemes in `schemes` (e.g. `["http", "https"]`).
    pub fn parse(url: &str, schemes: &[&str]) -> Result<Self, String> {
        let uri: Uri = url
            .parse()
            .map_err(|e| format!("invalid URL {url:?}: {e}"))?;
        let scheme = uri.scheme_str().unwrap_or("");
        if !schemes.contains(&scheme) {
            return Err(format!(
                "URL {url:?}: scheme must be one of {}",
                schemes.join(", ")
            ));
        }
        let tls = matches!(scheme, "https" | "wss");
        let host = uri
            .host()
            .ok_or_else(|| format!("URL {url:?} has no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let authority = uri
            .authority()
            .map(|a| a.as_str().to_string())
            .unwrap_or_else(|| host.clone());
        let path_and_query = uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| "/".to_string());
        Ok(Self {
            url: url.to_string(),
            uri,
            tls,
            host,
            port,
            authority,
            path_and_query,
        })
    }

    /// Resolves the host once (at start, not per connection).
    pub async fn resolve(&self) -> Result<SocketAddr, String> {
        let mut addrs = tokio::net::lookup_host((self.host.as_str(), self.port))
            .await
            .map_err(|e| format!("cannot resolve {}: {e}", self.host))?;
        addrs
            .next()
            .ok_or_else(|| format!("{} resolves to no address", self.host))
    }
}

/// TLS settings from the command line.
#[derive(Debug, Clone, Default)]
pub struct TlsOptions {
    /// Accept any server certificate (self-signed test setups).
    pub insecure: bool,
    /// Trust this PEM CA bundle instead of the system roots.
    pub ca: Option<std::path::PathBuf>,
}

/// Builds a rustls client config advertising `alpn`.
pub fn tls_config(opts: &TlsOptions, alpn: &[&[u8]]) -> Result<Arc<ClientConfig>, String> {
    let verify = if opts.insecure {
        Verify::AnyCertificate
    } else {
        let mut roots = RootCertStore::empty();
        let bundle = match &opts.ca {
            Some(path) => path.clone(),
            None => std::env::var_os("SSL_CERT_FILE")
                .map(Into::into)
                .unwrap_or_else(|| "/etc/ssl/certs/ca-certificates.crt".into()),
        };
        for cert in read_certs(&bundle)? {
            roots
                .add(cert)
                .map_err(|e| format!("{}: bad CA certificate: {e}", bundle.display()))?;
        }
        Verify::Roots(roots)
    };
    let cfg = orchestra_tls_client::client_config(verify, Versions::Safe, alpn)
        .map_err(|e| format!("TLS setup: {e}"))?;
    Ok(Arc::new(cfg))
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let file = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    rustls_pemfile::certs(&mut BufReader::new(file))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// Opens connections to one target, with TLS when the scheme asks for it.
#[derive(Clone)]
pub struct Connector {
    addr: SocketAddr,
    tls: Option<(TlsConnector, ServerName<'static>)>,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("addr", &self.addr)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl Connector {
    /// A connector for `target` at `addr`; `tls` is required when the target's scheme is
    /// `https`/`wss` and ignored otherwise.
    pub fn new(
        target: &Target,
        addr: SocketAddr,
        tls: Option<Arc<ClientConfig>>,
    ) -> Result<Self, String> {
        let tls = match (target.tls, tls) {
            (false, _) => None,
            (true, None) => return Err(format!("{}: TLS not configured", target.url)),
            (true, Some(cfg)) => {
                let name = ServerName::try_from(target.host.clone())
                    .map_err(|e| format!("{}: bad TLS server name: {e}", target.host))?;
                Some((TlsConnector::from(cfg), name))
            }
        };
        Ok(Self { addr, tls })
    }

    /// TCP connect (plus TLS handshake when configured). TCP failures are
    /// [`ErrorKind::Connect`]; TLS failures are [`ErrorKind::Protocol`].
    pub async fn connect(&self) -> Result<Stream, ErrorKind> {
        let tcp = TcpStream::connect(self.addr).await.map_err(|e| {
            note_error(
                ErrorKind::Connect,
                &format_args!("connect {}: {e}", self.addr),
            )
        })?;
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            None => Ok(Stream::Plain(tcp)),
            Some((connector, name)) => connector
                .connect(name.clone(), tcp)
                .await
                .map(|s| Stream::Tls(Box::new(s)))
                .map_err(|e| {
                    note_error(
                        classify_io(&e, ErrorKind::Protocol),
                        &format_args!("TLS handshake: {e}"),
                    )
                }),
        }
    }
}

/// Maps an I/O error: resets and early EOFs are [`ErrorKind::Reset`], timeouts
/// [`ErrorKind::Timeout`], anything else `other`.
pub fn classify_io(e: &io::Error, other: ErrorKind) -> ErrorKind {
    match e.kind() {
        io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::BrokenPipe
        | io::ErrorKind::UnexpectedEof => ErrorKind::Reset,
        io::ErrorKind::TimedOut => ErrorKind::Timeout,
        io::ErrorKind::ConnectionRefused => ErrorKind::Connect,
        _ => other,
    }
}

/// A plain or TLS client connection.
#[derive(Debug)]
pub enum Stream {
    /// Cleartext TCP.
    Plain(TcpStream),
    /// TLS over TCP.
    Tls(Box<TlsStream<TcpStream>>),
}

impl Stream {
    /// The ALPN protocol the server chose, if TLS.
    pub fn alpn(&self) -> Option<&[u8]> {
        match self {
            Stream::Plain(_) => None,
            Stream::Tls(s) => s.get_ref().1.alpn_protocol(),
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Target;

    #[test]
    fn parse_targets() {
        let t = Target::parse("http://127.0.0.1:8080/api?x=1", &["http", "https"]).expect("ok");
        assert!(!t.tls);
        assert_eq!(t.port, 8080);
        assert_eq!(t.authority, "127.0.0.1:8080");
        assert_eq!(t.path_and_query, "/api?x=1");

        let t = Target::parse("https://localhost", &["http", "https"]).expect("ok");
        assert!(t.tls);
        assert_eq!(t.port, 443);
        assert_eq!(t.path_and_query, "/");

        let t = Target::parse("ws://[::1]:9000/ws", &["ws", "wss"]).expect("ok");
        assert_eq!(t.host, "::1");
        assert_eq!(t.authority, "[::1]:9000");

        assert!(Target::parse("ftp://x/", &["http"]).is_err());
        assert!(Target::parse("not a url", &["http"]).is_err());
    }
}
