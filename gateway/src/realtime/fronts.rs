//! Where the fronts hand a `serve = "realtime"` request over (after `Pipeline::on_request`):
//! the pingora front (a WebSocket upgrade → [`super::ws`], otherwise SSE over HTTP/1.1 or
//! HTTP/2) and the HTTP/3 front (SSE). Each only adapts its wire: an [`SseSink`] over its
//! response body writer, and the response head through the pipeline's response phase.

use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Method, Response, StatusCode};
use pingora::http::ResponseHeader;
use pingora::proxy::Session;

use super::sse::{self, SseSink, HEADERS, KEEPALIVE};
use super::RealtimeService;
use crate::error::GatewayError;
use crate::front::PingoraResponseHeaders;
use crate::h3::front::H3Send;
use crate::pipeline::{Pipeline, Protocol, RequestCtx};

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

struct H3Sink<'a>(&'a mut H3Send);

impl SseSink for H3Sink<'_> {
    async fn send(&mut self, chunk: Bytes) -> Result<(), String> {
        self.0.send_data(chunk).await.map_err(|e| e.to_string())
    }
}

/// Serves a realtime route on the HTTP/3 front (SSE); `Err` when nothing was written yet.
/// Returns the status and body bytes sent.
pub async fn serve_h3(
    send: &mut H3Send,
    pipeline: &Pipeline,
    ctx: &mut RequestCtx,
    method: &Method,
    headers: &HeaderMap,
    query: Option<&str>,
    ip: Option<IpAddr>,
) -> Result<(u16, usize), GatewayError> {
    let svc = service(pipeline)?;
    method_ok(method)?;
    ctx.protocol = Protocol::H3;
    let opened = sse::open(svc, &ctx.snapshot, headers, query, ip).await?;
    let mut out = HeaderMap::with_capacity(HEADERS.len() + 2);
    for (n, v) in HEADERS {
        out.insert(n, v);
    }
    pipeline.on_response(ctx, StatusCode::OK, &mut out);
    let mut response = Response::new(());
    *response.status_mut() = StatusCode::OK;
    *response.headers_mut() = out;
    if let Err(e) = send.send_response(response).await {
        tracing::debug!(error = %e, "h3: client went away before the event stream started");
        return Ok((200, 0));
    }
    let sent = sse::stream(opened, &mut H3Sink(send), KEEPALIVE).await;
    if let Err(e) = send.finish().await {
        tracing::debug!(error = %e, "h3: finishing the event stream");
    }
    Ok((200, sent))
}
