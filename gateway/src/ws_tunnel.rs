//! WebSocket (HTTP/1.1 `Upgrade`) proxying.
//!
//! pingora 0.9 can tear an upgraded connection down right after the `101` when the upstream
//! answers before pingora has consumed the upgrade request's empty body (pingora issue #946, fix
//! not released). The gateway therefore drives upgrades itself, still inside the one pipeline:
//! the route, plugins, balancer pick and access log are the same as for any request; only the
//! transport after the pick differs.
//!
//! 1. connect to the picked target (connect timeout of the upstream);
//! 2. send the request head as the pipeline left it (identity headers, plugin edits, path rewrite);
//! 3. read the upstream's response head (read timeout, at most [`MAX_HEAD`] bytes) and send it to
//!    the client through the response phase;
//! 4. on `101`, copy bytes both ways until either side closes; otherwise relay the refusal's body.
//!
//! Upstreams reached over TLS are proxied by pingora's own upgrade path instead.

use bytes::Bytes;
use http::StatusCode;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::error::GatewayError;
use crate::front::PingoraResponseHeaders;
use crate::pipeline::{Pipeline, RequestCtx};
use orchestra_lb::Failure;

/// Largest upstream response head accepted.
pub const MAX_HEAD: usize = 64 * 1024;
/// Largest body of a refused upgrade relayed to the client.
const MAX_REFUSAL_BODY: usize = 1024 * 1024;
/// Size of each read in the tunnel.
const CHUNK: usize = 16 * 1024;

/// True when this request's upstream can be tunnelled here (cleartext HTTP/1.1 targets).
pub fn can_tunnel(ctx: &RequestCtx) -> bool {
    ctx.upstream().is_some_and(|u| u.tls.is_none())
}

fn unavailable(ctx: &RequestCtx, reason: impl Into<String>) -> GatewayError {
    GatewayError::UpstreamUnavailable {
        upstream: ctx
            .upstream()
            .map(|u| u.name.to_string())
            .unwrap_or_default(),
        reason: reason.into(),
    }
}

/// Proxies one upgrade request end to end. On `Err` nothing has been sent to the client yet
/// unless [`Session::response_written`] says so.
pub async fn run(
    session: &mut Session,
    pipeline: &Pipeline,
    ctx: &mut RequestCtx,
) -> Result<(), GatewayError> {
    let picked = pipeline.pick(ctx)?;
    let timeouts = picked.upstream.timeouts;
    let mut upstream =
        match tokio::time::timeout(timeouts.connect, TcpStream::connect(picked.addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                pipeline.attempt_failed(ctx, Failure::ConnectFailure, false);
                return Err(unavailable(ctx, format!("connect: {e}")));
            }
            Err(_) => {
                pipeline.attempt_failed(ctx, Failure::ConnectFailure, false);
                return Err(unavailable(ctx, "connect timed out"));
            }
        };
    let _ = upstream.set_nodelay(true);

    let head = request_head(session, pipeline, ctx);
    upstream
        .write_all(&head)
        .await
        .map_err(|e| unavailable(ctx, format!("write: {e}")))?;

    let (resp, mut leftover) =
        match tokio::time::timeout(timeouts.read, read_head(&mut upstream)).await {
            Ok(Ok(v)) => v,
            Ok(Err(reason)) => {
                pipeline.attempt_failed(ctx, Failure::ConnectFailure, false);
                return Err(unavailable(ctx, reason));
            }
            Err(_) => {
                pipeline.attempt_failed(ctx, Failure::ConnectFailure, false);
                return Err(GatewayError::UpstreamTimeout {
                    upstream: picked.upstream.name.to_string(),
                });
            }
        };
    pipeline.upstream_responded(ctx, resp.status.as_u16());
    let mut resp = resp;
    let status = resp.status;
    pipeline.on_response(ctx, status, &mut PingoraResponseHeaders(&mut resp));
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
    pump(session, upstream).await;
    Ok(())
}

/// Copies bytes both ways until either side closes or fails, holding no buffer while the
/// connection is idle ([`crate::relay`]).
async fn pump(session: &mut Session, upstream: TcpStream) {
    crate::relay::run(session, crate::relay::TcpPeer::new(upstream)).await;
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
async fn read_head(upstream: &mut TcpStream) -> Result<(ResponseHeader, Vec<u8>), String> {
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    loop {
        let n = upstream
            .read(&mut chunk)
            .await
            .map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("upstream closed before answering".into());
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut parsed = httparse::Response::new(&mut headers);
        match parsed.parse(&buf) {
            Ok(httparse::Status::Complete(len)) => {
                let code = parsed.code.unwrap_or(502);
                let mut resp = ResponseHeader::build(code, Some(parsed.headers.len()))
                    .map_err(|e| e.to_string())?;
                for h in parsed.headers.iter() {
                    resp.append_header(h.name.to_string(), h.value)
                        .map_err(|e| format!("bad upstream header: {e}"))?;
                }
                return Ok((resp, buf[len..].to_vec()));
            }
            Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => continue,
            Ok(httparse::Status::Partial) => return Err("upstream response head too large".into()),
            Err(e) => return Err(format!("invalid upstream response: {e}")),
        }
    }
}
