//! `bench-hyper`: a minimal proxy on hyper 1 instead of pingora — the floor of a non-pingora
//! HTTP stack in side-by-side comparisons.
//!
//! Issue 14 asks for the gateway's CPU per request within 1.3× nginx's; pingora-core's own
//! HTTP/1 sessions cost more than that on the benchmark machine (`bench-pingora --core`). This
//! binary answers the question that leaves open: what would the *other* Rust stack cost? It does
//! what `bench-pingora` does and nothing else — every request goes to one upstream over pooled
//! keep-alive HTTP/1.1 connections (hyper-util's pooled client), the response streams back — on
//! hyper's server (HTTP/1.1 and h2c on `--listen`, TLS with ALPN h2/http1.1 on `--tls-listen`),
//! with the same allocator (mimalloc) and a current-thread runtime for `--threads 1`.
//!
//! `--pingora-upstream` keeps hyper's server but takes the upstream side from pingora-core, as
//! the gateway does: its pooled `Connector` (the vendored lazy idle pool) and its HTTP/1 client
//! session, headers without case. The gap between the two modes is the upstream half's share.
//!
//! Not a proxy to put in front of anything: no upgrades (WebSocket requests get what the
//! upstream answers without the tunnel), no hop-by-hop header handling beyond `Connection`, an
//! upstream failure is a `502`. `--access-log FILE` writes one buffered line per request on the
//! worker, as `bench-pingora --access-log` does (written at the response head: its byte count is
//! the response's `Content-Length`, 0 without one).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use clap::Parser;
use futures::stream::{BoxStream, StreamExt};
use http::uri::{Authority, Scheme};
use http::{header, HeaderValue, Request, Response, StatusCode, Uri, Version};
use http_body_util::{Either, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use orchestra_bench::accept::{accept_loop, ServeConn};
use orchestra_bench::floor::{upstream_peer, AccessLog, FloorArgs, IDLE_TIMEOUT};
use pingora::connectors::http::Connector;
use pingora::connectors::ConnectorOptions;
use pingora::http::RequestHeader;
use pingora::protocols::http::client::HttpSession as ClientSession;
use pingora::upstreams::peer::HttpPeer;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Minimal hyper proxy (the floor of a non-pingora HTTP stack for bench/compare).
#[derive(Debug, Parser)]
#[command(name = "bench-hyper", version)]
struct Args {
    /// Plain-text listener (HTTP/1.1 and h2c prior knowledge).
    #[arg(long, default_value = "127.0.0.1:18081")]
    listen: SocketAddr,
    #[command(flatten)]
    floor: FloorArgs,
    /// Proxy upstream through pingora-core's pooled connector and HTTP/1 client session (the
    /// gateway's upstream half) instead of hyper-util's client. Requests with a body get `501`.
    #[arg(long)]
    pingora_upstream: bool,
}

/// How requests reach the upstream.
enum Upstream {
    /// hyper-util's pooled client.
    Hyper(Box<Client<HttpConnector, Incoming>>),
    /// pingora-core's pooled connector and HTTP/1 client sessions.
    Pingora(Box<PingoraUpstream>),
}

/// The upstream half of `--pingora-upstream`.
struct PingoraUpstream {
    /// The pool (the vendored lazy idle pool, as the gateway uses).
    connector: Connector,
    /// The upstream, built once.
    peer: HttpPeer,
}

/// What every connection's service shares.
struct Proxy {
    upstream: Upstream,
    authority: Authority,
    host: HeaderValue,
    access_log: Option<AccessLog>,
}

/// A response body streamed from a pingora upstream session.
type PingoraBody = StreamBody<BoxStream<'static, Result<Frame<Bytes>, Box<pingora::Error>>>>;

type ProxyBody = Either<Either<Incoming, Full<Bytes>>, PingoraBody>;

impl Proxy {
    /// Forwards one request upstream and returns its response (or a `502`), then logs it.
    async fn forward(self: Arc<Self>, req: Request<Incoming>) -> Response<ProxyBody> {
        // What the log line needs, taken only when there is a log (the request moves on).
        let logged = self.access_log.as_ref().map(|_| {
            (
                Instant::now(),
                req.method().clone(),
                req.uri().path().to_owned(),
            )
        });
        let resp = match &self.upstream {
            Upstream::Hyper(client) => self.forward_hyper(client, req).await,
            Upstream::Pingora(_) => match self.clone().forward_pingora(req).await {
                Ok(resp) => resp,
                Err(code) => status(code),
            },
        };
        if let (Some(log), Some((started, method, path))) = (&self.access_log, logged) {
            let bytes = resp
                .headers()
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok()?.parse().ok())
                .unwrap_or(0);
            log.write(
                method.as_str(),
                &path,
                resp.status().as_u16(),
                bytes,
                started,
            );
        }
        resp
    }

    /// The request through hyper-util's client.
    async fn forward_hyper(
        &self,
        client: &Client<HttpConnector, Incoming>,
        mut req: Request<Incoming>,
    ) -> Response<ProxyBody> {
        let mut parts = req.uri().clone().into_parts();
        parts.scheme = Some(Scheme::HTTP);
        parts.authority = Some(self.authority.clone());
        match Uri::from_parts(parts) {
            Ok(uri) => *req.uri_mut() = uri,
            Err(_) => return status(StatusCode::BAD_REQUEST),
        }
        // The upstream speaks HTTP/1.1 whatever the client spoke.
        *req.version_mut() = Version::HTTP_11;
        req.headers_mut().remove(header::CONNECTION);
        match client.request(req).await {
            Ok(resp) => resp.map(|b| Either::Left(Either::Left(b))),
            Err(_) => status(StatusCode::BAD_GATEWAY),
        }
    }

    /// The request through pingora-core's connector and HTTP/1 client session; the response
    /// body streams from the session, which goes back to the pool when the body has ended.
    async fn forward_pingora(
        self: Arc<Self>,
        req: Request<Incoming>,
    ) -> Result<Response<ProxyBody>, StatusCode> {
        let Upstream::Pingora(pingora) = &self.upstream else {
            return Err(StatusCode::INTERNAL_SERVER_ERROR);
        };
        let (connector, peer) = (&pingora.connector, &pingora.peer);
        let (mut parts, body) = req.into_parts();
        if !hyper::body::Body::is_end_stream(&body) {
            return Err(StatusCode::NOT_IMPLEMENTED);
        }
        // Origin form toward the upstream; HTTP/2 requests carry no Host header.
        if let Some(pq) = parts.uri.path_and_query() {
            if let Ok(uri) = Uri::try_from(pq.as_str()) {
                parts.uri = uri;
            }
        }
        parts.version = Version::HTTP_11;
        parts.headers.remove(header::CONNECTION);
        if !parts.headers.contains_key(header::HOST) {
            parts.headers.insert(header::HOST, self.host.clone());
        }
        let head = RequestHeader::from(parts);
        let (session, _reused) = connector
            .get_http_session(peer)
            .await
            .map_err(|_| StatusCode::BAD_GATEWAY)?;
        let ClientSession::H1(mut session) = session else {
            return Err(StatusCode::BAD_GATEWAY);
        };
        let exchange = async {
            session.write_request_header(Box::new(head)).await?;
            session.finish_body().await?;
            let mut resp = session.read_resp_header_parts().await?;
            while resp.status.is_informational() {
                resp = session.read_resp_header_parts().await?;
            }
            Ok::<_, Box<pingora::Error>>(resp)
        };
        let resp = exchange.await.map_err(|_| StatusCode::BAD_GATEWAY)?;
        let parts: Box<http::response::Parts> = resp.into();
        // The session goes back to the pool as soon as its body is done: hyper's HTTP/1 writer
        // stops polling a body once it has sent Content-Length bytes.
        let body = futures::stream::unfold(Some((session, self)), |state| async move {
            let (mut session, proxy) = state?;
            match session.read_body_bytes().await {
                Ok(Some(bytes)) if !session.is_body_done() => {
                    Some((Ok(Frame::data(bytes)), Some((session, proxy))))
                }
                Ok(Some(bytes)) => {
                    proxy.release(session).await;
                    Some((Ok(Frame::data(bytes)), None))
                }
                Ok(None) => {
                    proxy.release(session).await;
                    None
                }
                Err(e) => Some((Err(e), None)),
            }
        })
        .boxed();
        Ok(Response::from_parts(
            *parts,
            Either::Right(StreamBody::new(body)),
        ))
    }

    /// Returns a finished upstream session to pingora's pool.
    async fn release(&self, session: pingora::protocols::http::v1::client::HttpSession) {
        if let Upstream::Pingora(pingora) = &self.upstream {
            pingora
                .connector
                .release_http_session(
                    ClientSession::H1(session),
                    &pingora.peer,
                    Some(IDLE_TIMEOUT),
                )
                .await;
        }
    }
}

fn status(code: StatusCode) -> Response<ProxyBody> {
    let mut resp = Response::new(Either::Left(Either::Right(Full::new(Bytes::new()))));
    *resp.status_mut() = code;
    resp
}

fn main() -> ExitCode {
    let args = Args::parse();
    orchestra_bench::floor::quiet_tracing();
    let (rt, _threads) = match orchestra_bench::runtime::build(Some(args.floor.threads)) {
        Ok(built) => built,
        Err(e) => {
            eprintln!("bench-hyper: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench-hyper: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> std::io::Result<()> {
    let floor = &args.floor;
    let authority = Authority::try_from(floor.upstream.to_string())
        .map_err(|e| std::io::Error::other(format!("upstream {}: {e}", floor.upstream)))?;
    let access_log = match &floor.access_log {
        Some(path) => Some(AccessLog::open(path).map_err(|e| {
            std::io::Error::new(e.kind(), format!("access log {}: {e}", path.display()))
        })?),
        None => None,
    };
    let upstream = if args.pingora_upstream {
        // pingora's default pool size (`ServerConf::upstream_keepalive_pool_size`).
        let mut options = ConnectorOptions::new(128);
        options.lazy_idle_pool = true;
        Upstream::Pingora(Box::new(PingoraUpstream {
            connector: Connector::new(Some(options)),
            peer: upstream_peer(floor.upstream, true),
        }))
    } else {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        Upstream::Hyper(Box::new(
            Client::builder(TokioExecutor::new())
                .pool_idle_timeout(IDLE_TIMEOUT)
                .build(connector),
        ))
    };
    let host = HeaderValue::from_str(authority.as_str())
        .map_err(|e| std::io::Error::other(format!("upstream {}: {e}", floor.upstream)))?;
    let proxy = Arc::new(Proxy {
        upstream,
        authority,
        host,
        access_log,
    });
    let server = ProxyConn {
        builder: Arc::new(auto::Builder::new(TokioExecutor::new())),
        proxy,
    };

    let mut tasks = Vec::new();
    let listener = bind(args.listen).await?;
    tasks.push(tokio::spawn(accept_loop(listener, None, server.clone())));
    if let (Some(addr), Some(cert), Some(key)) =
        (floor.tls.tls_listen, &floor.tls.cert, &floor.tls.key)
    {
        let acceptor = orchestra_bench::upstream::tls::acceptor(cert, key)?;
        let listener = bind(addr).await?;
        tasks.push(tokio::spawn(accept_loop(
            listener,
            Some(acceptor),
            server.clone(),
        )));
        eprintln!("bench-hyper: TLS (h2, http/1.1) on {addr}");
    }
    eprintln!(
        "bench-hyper: HTTP/1.1 + h2c on {} -> {}",
        args.listen, floor.upstream
    );
    for task in tasks {
        match task.await {
            Ok(res) => res?,
            Err(e) => return Err(std::io::Error::other(e)),
        }
    }
    Ok(())
}

async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("bind {addr}: {e}")))
}

/// One client connection: hyper's server (HTTP/1.1 or HTTP/2) over the shared proxy.
#[derive(Clone)]
struct ProxyConn {
    builder: Arc<auto::Builder<TokioExecutor>>,
    proxy: Arc<Proxy>,
}

impl ServeConn for ProxyConn {
    async fn serve<S>(self, io: S)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let proxy = self.proxy;
        let svc = service_fn(move |req| {
            let proxy = proxy.clone();
            async move { Ok::<_, std::convert::Infallible>(proxy.forward(req).await) }
        });
        // Client errors (resets, protocol errors) end the connection; nothing to report.
        let _ = self.builder.serve_connection(TokioIo::new(io), svc).await;
    }
}
