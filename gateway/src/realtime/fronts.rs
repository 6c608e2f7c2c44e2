//! Where the fronts hand a `serve = "realtime"` request over (after `Pipeline::on_request`):
//! the pingora front (a WebSocket upgrade → [`super::ws`], otherwise SSE over HTTP/1.1) and the
//! stream front (SSE over HTTP/2 and HTTP/3). Each only adapts its wire: an [`SseSink`] over its
//! response body writer, and the response head through the pipeline's response phase.

use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use pingora::http::ResponseHeader;
use pingora::proxy::Session;

use super::sse::{self, SseSink, HEADERS, KEEPALIVE};
use super::RealtimeService;
use crate::error::GatewayError;
use crate::front::PingoraResponseHeaders;
use crate::pipeline::{Pipeline, RequestCtx};
use crate::streams::wire::{response_head, Wire};

fn service(pipeline: &Pipeline) -> Result<Arc<RealtimeService>, GatewayError> {
    pipeline
        .state()
        .realtime()
        .cloned()
        .ok_or(GatewayError::ServiceUnavailable("realtime"))
}

fn method_ok(method: &Method) -> Result<(), GatewayError> {
    if method == Method::GET {
        Ok(())
    } else {
        Err(GatewayError::Rejected(orchestra_plugins::Reject::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "PARAM_001",
            "the event stream answers GET (or a WebSocket upgrade)",
        )))
    }
}

struct PingoraSink<'a>(&'a mut Session);

impl SseSink for PingoraSink<'_> {
    async fn send(&mut self, chunk: Bytes) -> Result<(), String> {
        self.0
            .write_response_body(Some(chunk), false)
            .await
            .map_err(|e| e.to_string())
    }
}

/// Serves a realtime route on the pingora front; `Err` when nothing was written yet.
pub async fn serve_pingora(
    session: &mut Session,
    pipeline: &Pipeline,
    ctx: &mut RequestCtx,
    ip: Option<IpAddr>,
) -> Result<(), GatewayError> {
    let svc = service(pipeline)?;
    if session.is_upgrade_req() {
        return super::ws::serve(session, pipeline, ctx, ip, svc).await;
    }
    method_ok(&session.req_header().method)?;
    let opened = {
        let req = session.req_header();
        sse::open(svc, &ctx.snapshot, &req.headers, req.uri.query(), ip).await?
    };
    let mut resp = ResponseHeader::build(StatusCode::OK, Some(HEADERS.len() + 2))
        .map_err(|e| GatewayError::Internal(e.to_string()))?;
    for (n, v) in HEADERS {
        let _ = resp.insert_header(n, v);
    }
    pipeline.on_response(ctx, StatusCode::OK, &mut PingoraResponseHeaders(&mut resp));
    if let Err(e) = session.write_response_header(Box::new(resp), false).await {
        tracing::debug!(error = %e, "client went away before the event stream started");
        return Ok(());
    }
    let _ = sse::stream(opened, &mut PingoraSink(session), KEEPALIVE).await;
    let _ = session.write_response_body(None, true).await;
    Ok(())
}

struct WireSink<'a, W>(&'a mut W);

impl<W: Wire> SseSink for WireSink<'_, W> {
    async fn send(&mut self, chunk: Bytes) -> Result<(), String> {
        self.0.send_data(chunk, false).await
    }
}

/// Serves a realtime route on the stream front (SSE over HTTP/2 or HTTP/3); `Err` when nothing
/// was written yet. Returns the status and body bytes sent.
pub async fn serve_stream<W: Wire>(
    wire: &mut W,
    pipeline: &Pipeline,
    ctx: &mut RequestCtx,
    method: &Method,
    headers: &HeaderMap,
    query: Option<&str>,
    ip: Option<IpAddr>,
) -> Result<(u16, usize), GatewayError> {
    let svc = service(pipeline)?;
    method_ok(method)?;
    let opened = sse::open(svc, &ctx.snapshot, headers, query, ip).await?;
    let mut out = HeaderMap::with_capacity(HEADERS.len() + 2);
    for (n, v) in HEADERS {
        out.insert(n, v);
    }
    pipeline.on_response(ctx, StatusCode::OK, &mut out);
    if let Err(e) = wire.send_response(response_head(StatusCode::OK, out)).await {
        tracing::debug!(error = %e, "client went away before the event stream started");
        return Ok((200, 0));
    }
    let sent = sse::stream(opened, &mut WireSink(&mut *wire), KEEPALIVE).await;
    if let Err(e) = wire.finish().await {
        tracing::debug!(error = %e, "finishing the event stream");
    }
    Ok((200, sent))
}
