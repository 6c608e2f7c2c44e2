//! WebSocket (HTTP/1.1 `Upgrade`) proxying.
//!
//! pingora 0.9 can tear an upgraded connection down right after the `101` when the upstream
//! answers before pingora has consumed the upgrade request's empty body (pingora issue #946, fix
//! not released). The gateway therefore drives upgrades itself, still inside the one pipeline
//! and on the attempt [`engine`]: the route, plugins, picks, retries, error classification,
//! outcomes and the access log are the same as for any request; only the wire differs.
//!
//! Each attempt (the engine's loop, run here):
//! 1. [`engine::begin_attempt`] (backoff, pick), then connect to the target within the
//!    upstream's connect timeout;
//! 2. send the request head as the pipeline left it (identity headers, plugin edits, path
//!    rewrite);
//! 3. read the upstream's response head (read timeout, at most [`MAX_HEAD`] bytes);
//!
//! a failure in 1–3 goes to [`engine::failed`]: a connect failure is retried like on any front
//! (nothing was sent), a reset or timeout while the head was in flight too when the policy
//! allows it (an upgrade request is a `GET` without a body, so it is replayable), and so is a
//! 5xx head the retry policy names ([`engine::response_head`]). Then the head goes to the client
//! through the response phase; on `101` bytes are copied both ways until either side closes,
//! otherwise the refusal's body is relayed.
//!
//! The tunnel connects to a cleartext target with a plain `TcpStream` rather than the engine's
//! pooled `UpstreamClient`: an upgraded connection never returns to a pool, and pingora's stream
//! carries a read and a write buffer per connection that an idle tunnel would hold for its whole
//! life, while the relay after `101` waits on the socket's readiness. A TLS target gets a new
//! transport stream from the same client ([`UpstreamClient::connect_stream`], the peer the
//! pingora front would use: SNI, certificate checks, connect timeouts), so retries, replays and
//! the relay follow the same rules whatever the upstream's transport.
//!
//! [`UpstreamClient::connect_stream`]: crate::engine::client::UpstreamClient::connect_stream

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::StatusCode;
use pingora::http::ResponseHeader;
use pingora::protocols::Stream;
use pingora::proxy::Session;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

use crate::engine::classify::{io_error, upstream_error};
use crate::engine::respond;
use crate::engine::{self, Replay, Stage, Verdict};
use crate::error::GatewayError;
use crate::front::PingoraResponseHeaders;
use crate::pipeline::{Picked, Pipeline, RequestCtx};
use crate::relay::detach;
use crate::relay::{StreamPeer, TcpPeer};

/// Largest upstream response head accepted.
pub const MAX_HEAD: usize = 64 * 1024;
/// Largest body of a refused upgrade relayed to the client.
const MAX_REFUSAL_BODY: usize = 1024 * 1024;
/// Size of each read in the tunnel.
const CHUNK: usize = 16 * 1024;

/// An upstream response head and the bytes read past it.
type Head = (ResponseHeader, Vec<u8>);

/// The connection to the target: a plain socket, or a TLS transport stream.
enum Conn {
    /// A cleartext target.
    Tcp(TcpStream),
    /// A TLS target (pingora's transport stream).
    Tls(Stream),
}

/// Connects to the picked target (TLS when its upstream says so) within the connect timeout.
async fn connect(
    pipeline: &Pipeline,
    ctx: &RequestCtx,
    picked: &Picked,
) -> Result<Conn, Box<pingora::Error>> {
    let timeouts = picked.upstream.timeouts;
    if picked.upstream.tls.is_some() {
        // pingora bounds the TCP connect and the TLS handshake by the peer's timeouts.
        let peer = ctx.snapshot.peers.peer_for(picked, true);
        let client = pipeline.state().upstream_client();
        return client.connect_stream(&peer).await.map(Conn::Tls);
    }
    match tokio::time::timeout(timeouts.connect, TcpStream::connect(picked.addr)).await {
        Ok(Ok(s)) => {
            let _ = s.set_nodelay(true);
            Ok(Conn::Tcp(s))
        }
        Ok(Err(e)) => Err(io_error(&e, true, "connect")),
        Err(_) => Err(upstream_error(
            pingora::ErrorType::ConnectTimedout,
            "connect timed out",
        )),
    }
}

/// Connects to the picked target, sends the head and reads the response head: one attempt.
async fn attempt(
    pipeline: &Pipeline,
    ctx: &RequestCtx,
    picked: &Picked,
    head: &[u8],
) -> Result<(Conn, Head), (Stage, Box<pingora::Error>)> {
    let mut upstream = connect(pipeline, ctx, picked)
        .await
        .map_err(|e| (Stage::Connect, e))?;
    let exchanging = |e: Box<pingora::Error>| (Stage::Exchange, e);
    // A TLS stream buffers writes: the head must be flushed before the answer is awaited.
    if let Err(e) = async {
        upstream.write_all(head).await?;
        upstream.flush().await
    }
    .await
    {
        return Err(exchanging(io_error(&e, false, "write")));
    }
    let read = picked.upstream.timeouts.read;
    match tokio::time::timeout(read, read_head(&mut upstream)).await {
        Ok(Ok(head)) => Ok((upstream, head)),
        Ok(Err(e)) => Err(exchanging(e)),
        Err(_) => Err(exchanging(upstream_error(
            pingora::ErrorType::ReadTimedout,
            "no response head within the read timeout",
        ))),
    }
}

/// Proxies one upgrade request end to end. On `Err` nothing has been sent to the client yet
/// unless [`Session::response_written`] says so.
pub async fn run(
    session: &mut Session,
    pipeline: &Pipeline,
    ctx: &mut RequestCtx,
) -> Result<(), GatewayError> {
    let head = request_head(session, pipeline, ctx);
    let replay = Replay {
        idempotent: session.req_header().method.is_idempotent(),
        // An upgrade request has no body.
        body_replayable: true,
    };
    let (mut upstream, (resp, mut leftover), timeouts) = loop {
        let picked = engine::begin_attempt(ctx).await?;
        let timeouts = picked.upstream.timeouts;
        match attempt(pipeline, ctx, &picked, &head).await {
            Ok((upstream, (resp, leftover))) => {
                if engine::response_head(pipeline, ctx, resp.status.as_u16(), replay) {
                    continue;
                }
                break (upstream, (resp, leftover), timeouts);
            }
            Err((stage, e)) => match engine::failed(ctx, &e, stage, replay) {
                Verdict::Retry => continue,
                Verdict::Answer(err) => return Err(err),
            },
        }
    };
    let mut resp = resp;
    let status = resp.status;
    pipeline.on_response(ctx, status, &mut PingoraResponseHeaders(&mut resp));
    if status != StatusCode::SWITCHING_PROTOCOLS {
        let tls = crate::front::is_tls(session);
        if let Some(v) = respond::alt_svc(pipeline, ctx, tls) {
            resp.insert_header(http::header::ALT_SVC, v)
                .map_err(|e| GatewayError::Internal(e.to_string()))?;
        }
    }
    let write_err =
        |e: pingora::BError| tracing::debug!(error = %e, "client went away during upgrade");

    if status != StatusCode::SWITCHING_PROTOCOLS {
        let limit = resp
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<usize>().ok())
            .unwrap_or(MAX_REFUSAL_BODY)
            .min(MAX_REFUSAL_BODY);
        while leftover.len() < limit {
            let mut buf = vec![0u8; CHUNK];
            match tokio::time::timeout(timeouts.read, upstream.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => leftover.extend_from_slice(&buf[..n]),
                _ => break,
            }
        }
        leftover.truncate(limit);
        resp.insert_header(http::header::CONTENT_LENGTH, leftover.len())
            .map_err(|e| GatewayError::Internal(e.to_string()))?;
        resp.remove_header(&http::header::TRANSFER_ENCODING);
        session.set_keepalive(None);
        if session
            .write_response_header(Box::new(resp), false)
            .await
            .is_ok()
        {
            let _ = session
                .write_response_body(Some(Bytes::from(leftover)), true)
                .await
                .map_err(write_err);
        }
        return Ok(());
    }

    if let Err(e) = session.write_response_header(Box::new(resp), false).await {
        write_err(e);
        return Ok(());
    }
    if !leftover.is_empty()
        && session
            .write_response_body(Some(Bytes::from(leftover)), false)
            .await
            .map_err(write_err)
            .is_err()
    {
        return Ok(());
    }
    relay(session, pipeline, ctx, upstream, timeouts.write).await;
    Ok(())
}

/// Copies bytes both ways until either side closes or fails, holding no buffer while the
/// connection is idle ([`crate::relay`]), out of pingora ([`detach::hand_off`]).
async fn relay(
    session: &mut Session,
    pipeline: &Pipeline,
    ctx: &mut RequestCtx,
    upstream: Conn,
    write_timeout: std::time::Duration,
) {
    match upstream {
        Conn::Tcp(s) => detach::hand_off(session, pipeline, ctx, TcpPeer::new(s)).await,
        Conn::Tls(s) => {
            let peer = StreamPeer::new(s, Some(write_timeout));
            detach::hand_off(session, pipeline, ctx, peer).await;
        }
    }
}

/// Serializes the request head as the pipeline left it.
fn request_head(session: &Session, pipeline: &Pipeline, ctx: &RequestCtx) -> Vec<u8> {
    let req = session.req_header();
    let pq = req.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let path = pipeline.upstream_path(ctx);
    let path = path.as_deref().unwrap_or(pq);
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(req.method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in req.headers.iter() {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// Reads and parses the upstream's response head; returns it with any bytes read past it.
async fn read_head(upstream: &mut Conn) -> Result<Head, Box<pingora::Error>> {
    use pingora::ErrorType::{ConnectionClosed, InvalidHTTPHeader};
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    loop {
        let n = upstream
            .read(&mut chunk)
            .await
            .map_err(|e| io_error(&e, false, "read"))?;
        if n == 0 {
            return Err(upstream_error(
                ConnectionClosed,
                "upstream closed before answering",
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut parsed = httparse::Response::new(&mut headers);
        match parsed.parse(&buf) {
            Ok(httparse::Status::Complete(len)) => {
                let code = parsed.code.unwrap_or(502);
                let bad = |e: Box<pingora::Error>| e.into_up();
                let mut resp =
                    ResponseHeader::build(code, Some(parsed.headers.len())).map_err(bad)?;
                for h in parsed.headers.iter() {
                    resp.append_header(h.name.to_string(), h.value)
                        .map_err(bad)?;
                }
                return Ok((resp, buf[len..].to_vec()));
            }
            Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => continue,
            Ok(httparse::Status::Partial) => {
                return Err(upstream_error(
                    InvalidHTTPHeader,
                    "upstream response head too large",
                ))
            }
            Err(e) => {
                return Err(upstream_error(
                    InvalidHTTPHeader,
                    format!("invalid upstream response: {e}"),
                ))
            }
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Conn::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Tcp(s) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}
