//! The pingora front: HTTP/1.1, HTTP/2 (h2c and TLS) and WebSocket, as a thin [`ProxyHttp`]
//! adapter over the [`Pipeline`]. Each phase below only translates pingora's types and calls the
//! pipeline; routing, plugins, balancing and logging happen there.

use std::net::IpAddr;

use async_trait::async_trait;
use bytes::Bytes;
use http::{HeaderName, HeaderValue, StatusCode};
use orchestra_lb::Failure;
use orchestra_plugins::HeaderOps;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorSource, ErrorType};

use crate::error::GatewayError;
use crate::pipeline::{ErrorResponse, Pipeline, Protocol, RequestCtx, Scheme, Upgrade};
use crate::upstream::http_peer;
use crate::ws_tunnel;

/// The pingora-facing proxy; one instance serves every listener.
#[derive(Debug, Clone)]
pub struct PingoraFront {
    pipeline: Pipeline,
}

impl PingoraFront {
    /// Creates the front over the shared pipeline.
    pub fn new(pipeline: Pipeline) -> Self {
        PingoraFront { pipeline }
    }
}

/// `https` when the connection is TLS.
fn scheme(session: &Session) -> Scheme {
    match session.digest().and_then(|d| d.ssl_digest.as_ref()) {
        Some(_) => Scheme::Https,
        None => Scheme::Http,
    }
}

/// Applies `[server]`'s per-request downstream limits to the session: the body read and response
/// write timeouts, and (HTTP/1.1) how long the connection may wait for the next request.
/// `header_read_timeout` and `max_connections` are enforced by the listener (see `listener.rs`).
fn apply_limits(session: &mut Session, ctx: &RequestCtx) {
    let limits = &ctx.snapshot.server.limits;
    session.set_read_timeout(Some(limits.body_read_timeout));
    session.set_write_timeout(Some(limits.write_timeout));
    if session.get_keepalive().is_some() {
        // pingora counts keep-alive in whole seconds, and 0 would mean "no timeout".
        let secs = limits.keepalive_timeout.as_secs_f64().ceil().max(1.0) as u64;
        session.set_keepalive(Some(secs));
    }
}

fn client_ip(session: &Session) -> Option<IpAddr> {
    session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip())
}

/// [`HeaderOps`] over pingora's request header (which keeps a case map beside the `HeaderMap`).
pub struct PingoraRequestHeaders<'a>(pub &'a mut RequestHeader);
/// [`HeaderOps`] over pingora's response header.
pub struct PingoraResponseHeaders<'a>(pub &'a mut ResponseHeader);

macro_rules! pingora_header_ops {
    ($t:ident) => {
        impl HeaderOps for $t<'_> {
            fn get(&self, name: &HeaderName) -> Option<&HeaderValue> {
                self.0.headers.get(name)
            }
            fn set(&mut self, name: HeaderName, value: HeaderValue) {
                // Only fails on invalid names/values, which the types already exclude.
                let _ = self.0.insert_header(name, value);
            }
            fn append(&mut self, name: HeaderName, value: HeaderValue) {
                let _ = self.0.append_header(name, value);
            }
            fn remove(&mut self, name: &HeaderName) {
                self.0.remove_header(name);
            }
            fn as_map(&self) -> Option<&http::HeaderMap> {
                Some(&self.0.headers)
            }
        }
    };
}
pingora_header_ops!(PingoraRequestHeaders);
pingora_header_ops!(PingoraResponseHeaders);

/// `Alt-Svc: h3=":PORT"; ma=86400` for responses over TLS while HTTP/3 is on and
/// `[listeners] alt_svc` is true (the default).
fn alt_svc(session: &Session, pipeline: &Pipeline, ctx: &RequestCtx) -> Option<HeaderValue> {
    // The port the QUIC endpoint actually bound at start (a reload cannot move it), formatted
    // once when it was bound.
    let value = pipeline
        .state()
        .alt_svc()
        .filter(|_| ctx.snapshot.listeners.alt_svc)?;
    session.digest()?.ssl_digest.as_ref()?;
    Some(value.clone())
}

/// Writes a complete gateway-generated response.
async fn write_local(
    session: &mut Session,
    pipeline: &Pipeline,
    ctx: &RequestCtx,
    status: StatusCode,
    headers: &[(HeaderName, HeaderValue)],
    body: Bytes,
) -> Result<()> {
    let mut resp = ResponseHeader::build(status, Some(headers.len() + 3))?;
    for (n, v) in headers {
        resp.append_header(n.clone(), v.clone())?;
    }
    resp.insert_header(http::header::CONTENT_LENGTH, body.len())?;
    pipeline.on_response(ctx, status, &mut PingoraResponseHeaders(&mut resp));
    if let Some(v) = alt_svc(session, pipeline, ctx) {
        resp.insert_header(http::header::ALT_SVC, v)?;
    }
    let head_only = session.req_header().method == http::Method::HEAD;
    session
        .write_response_header(Box::new(resp), head_only)
        .await?;
    if !head_only {
        session.write_response_body(Some(body), true).await?;
    }
    Ok(())
}

async fn write_error(
    session: &mut Session,
    pipeline: &Pipeline,
    ctx: &mut RequestCtx,
    err: GatewayError,
) -> Result<()> {
    let ErrorResponse {
        status,
        headers,
        body,
    } = pipeline.error_response(ctx, err);
    write_local(session, pipeline, ctx, status, &headers, body).await
}

/// True when the request may be sent again: an idempotent method whose body (if any) pingora
/// still holds in its retry buffer.
fn retry_safe(session: &Session) -> bool {
    session.req_header().method.is_idempotent() && !session.as_ref().retry_buffer_truncated()
}

/// Maps a pingora proxy error to the gateway's error for the client.
fn classify(e: &Error, ctx: &RequestCtx) -> Option<GatewayError> {
    let upstream = ctx
        .picked
        .as_ref()
        .map(|p| p.upstream.name.to_string())
        .unwrap_or_default();
    match (e.esource(), e.etype()) {
        (_, ErrorType::HTTPStatus(code)) if *code == 400 => {
            Some(GatewayError::BadRequest("malformed request".into()))
        }
        (ErrorSource::Upstream, ErrorType::ReadTimedout | ErrorType::WriteTimedout) => {
            Some(GatewayError::UpstreamTimeout { upstream })
        }
        (ErrorSource::Upstream, _) => Some(GatewayError::UpstreamUnavailable {
            upstream,
            reason: e.etype().as_str().to_string(),
        }),
        (ErrorSource::Downstream, _) => None,
        _ => Some(GatewayError::Internal(e.etype().as_str().to_string())),
    }
}

impl PingoraFront {
    /// Serves a route with `serve = "..."`; `Err` when nothing was written yet.
    async fn serve(
        &self,
        service: orchestra_config::Service,
        session: &mut Session,
        ctx: &mut RequestCtx,
        ip: Option<IpAddr>,
    ) -> std::result::Result<(), GatewayError> {
        match service {
            orchestra_config::Service::Agents => {
                let Some(svc) = self.pipeline.state().agents().cloned() else {
                    return Err(GatewayError::ServiceUnavailable(service.as_str()));
                };
                let peer = session
                    .client_addr()
                    .and_then(|a| a.as_inet())
                    .copied()
                    .unwrap_or_else(|| {
                        std::net::SocketAddr::from((ip.unwrap_or([0, 0, 0, 0].into()), 0))
                    });
                ctx.protocol = Protocol::Ws;
                crate::ws_server::serve(
                    session,
                    &self.pipeline,
                    ctx,
                    None,
                    crate::agent_hub::ws::websocket_config(),
                    move |ws| crate::agent_hub::ws::serve(ws, peer, svc),
                )
                .await
                .map_err(crate::ws_server::UpgradeError::into_gateway_error)
            }
            orchestra_config::Service::Realtime => {
                crate::realtime::fronts::serve_pingora(session, &self.pipeline, ctx, ip).await
            }
        }
    }
}

#[async_trait]
impl ProxyHttp for PingoraFront {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        self.pipeline.begin(Protocol::H1)
    }

    /// Identity, built-in endpoints, routing, the request side of the plugin chain, and
    /// WebSocket upgrades (tunnelled by [`ws_tunnel`]). `Ok(true)` = answered here.
    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let ip = client_ip(session);
        let scheme = scheme(session);
        apply_limits(session, ctx);
        if session.is_http2() {
            ctx.protocol = Protocol::H2;
        }
        {
            let req = session.req_header();
            let admitted =
                self.pipeline
                    .admit(ctx, &req.method, &req.uri, &req.headers, ip, scheme);
            let head = match admitted {
                Ok(head) => head,
                Err(e) => {
                    session.set_keepalive(None);
                    write_error(session, &self.pipeline, ctx, e).await?;
                    return Ok(true);
                }
            };
            if ctx.protocol != Protocol::H2 && head.upgrade == Upgrade::WebSocket {
                ctx.protocol = Protocol::Ws;
            }
            if let Some(local) = self.pipeline.builtin(&head) {
                let json = [(
                    http::header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                )];
                write_local(
                    session,
                    &self.pipeline,
                    ctx,
                    local.status,
                    &json,
                    local.body,
                )
                .await?;
                return Ok(true);
            }
            if let Err(e) = self.pipeline.route(ctx, &head) {
                write_error(session, &self.pipeline, ctx, e).await?;
                return Ok(true);
            }
        }
        let result = self
            .pipeline
            .on_request(ctx, &mut PingoraRequestHeaders(session.req_header_mut()));
        if let Err(e) = result {
            write_error(session, &self.pipeline, ctx, e).await?;
            return Ok(true);
        }
        if let Some(service) = self.pipeline.service(ctx) {
            // Services the gateway answers itself (agents over WebSocket; realtime WS and SSE).
            if let Err(e) = self.serve(service, session, ctx, ip).await {
                write_error(session, &self.pipeline, ctx, e).await?;
            }
            return Ok(true);
        }
        if ctx.protocol == Protocol::Ws && ws_tunnel::can_tunnel(ctx) {
            if let Err(e) = ws_tunnel::run(session, &self.pipeline, ctx).await {
                if session.response_written().is_none() {
                    write_error(session, &self.pipeline, ctx, e).await?;
                }
            }
            return Ok(true);
        }
        Ok(false)
    }

    /// Request body chunks are counted against `server.max_request_body` and go through the
    /// route's body-inspecting plugins (e.g. `limits`).
    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        _end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let Some(chunk) = body {
            if let Err(e) = self.pipeline.on_request_body(ctx, chunk) {
                let status = e.status().as_u16();
                ctx.error = Some(e);
                return Error::e_explain(ErrorType::HTTPStatus(status), "request body rejected");
            }
        }
        Ok(())
    }

    async fn upstream_peer(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        if let Some(delay) = ctx.upstream().and_then(|u| ctx.attempts.backoff(u)) {
            tokio::time::sleep(delay).await;
        }
        match self.pipeline.pick(ctx) {
            Ok(p) => {
                let upgrade = session.is_upgrade_req();
                // The peer built when the config was applied; building one here is the fallback.
                Ok(
                    match ctx
                        .snapshot
                        .peers
                        .get(p.upstream_index, p.target_index, upgrade)
                    {
                        Some(peer) => Box::new(peer.clone()),
                        None => http_peer(&p.upstream, p.addr, upgrade),
                    },
                )
            }
            Err(e) => {
                let status = e.status().as_u16();
                ctx.error = Some(e);
                Error::e_explain(ErrorType::HTTPStatus(status), "no target")
            }
        }
    }

    /// The normalized path (and `strip_prefix`), and `Host` for HTTP/2 clients talking to
    /// HTTP/1.1 upstreams.
    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let authority = upstream_request.uri.authority().cloned();
        if let Some(path) = self.pipeline.upstream_path(ctx) {
            let uri = http::Uri::builder()
                .path_and_query(path)
                .build()
                .map_err(|e| Error::because(ErrorType::InvalidHTTPHeader, "rewritten path", e))?;
            upstream_request.set_uri(uri);
        }
        if upstream_request.headers.get(http::header::HOST).is_none() {
            if let Some(auth) = authority {
                upstream_request.insert_header(http::header::HOST, auth.as_str())?;
            }
        }
        Ok(())
    }

    /// The upstream's response head: records the attempt's outcome, and turns a 5xx the retry
    /// policy names into a retryable error (nothing has reached the client yet).
    async fn upstream_response_filter(
        &self,
        session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let status = upstream_response.status.as_u16();
        if status >= 500 && ctx.protocol != Protocol::Ws {
            let idempotent = retry_safe(session);
            if self
                .pipeline
                .attempt_failed(ctx, Failure::Status(status), idempotent)
            {
                let mut e =
                    Error::explain(ErrorType::HTTPStatus(status), "retrying upstream status");
                e.set_retry(true);
                return Err(e);
            }
        }
        self.pipeline.upstream_responded(ctx, status);
        Ok(())
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let status = resp.status;
        self.pipeline
            .on_response(ctx, status, &mut PingoraResponseHeaders(resp));
        if let Some(v) = alt_svc(session, &self.pipeline, ctx) {
            resp.insert_header(http::header::ALT_SVC, v)?;
        }
        Ok(())
    }

    /// A connect failure: nothing was sent, so any method may be retried when the policy says so.
    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut RequestCtx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        if self
            .pipeline
            .attempt_failed(ctx, Failure::ConnectFailure, true)
        {
            e.set_retry(true);
        }
        e
    }

    /// A failure after connecting (reset, timeout): retried when the policy allows and the
    /// request can be replayed; otherwise pingora's own rule (retry a stale pooled connection).
    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut RequestCtx,
        client_reused: bool,
    ) -> Box<Error> {
        let mut e = e.more_context(format!("Peer: {peer}"));
        let failure = match e.etype() {
            ErrorType::ReadTimedout | ErrorType::WriteTimedout => Failure::Timeout,
            _ => Failure::Reset,
        };
        let replayable = retry_safe(session);
        if self.pipeline.attempt_failed(ctx, failure, replayable) && replayable {
            e.set_retry(true);
        } else if !replayable {
            e.set_retry(false);
        } else {
            e.retry.decide_reuse(client_reused);
        }
        e
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let err = ctx.error.take().or_else(|| classify(e, ctx));
        if matches!(
            err,
            Some(GatewayError::UpstreamTimeout { .. } | GatewayError::UpstreamUnavailable { .. })
        ) {
            ctx.attempts.failed();
        }
        let code = match err {
            Some(err) if session.response_written().is_none() => {
                let status = err.status().as_u16();
                // pingora does not reuse a client connection after an upstream failure; say so
                // (`Connection: close`) instead of promising keep-alive.
                session.set_keepalive(None);
                if let Err(we) = write_error(session, &self.pipeline, ctx, err).await {
                    tracing::debug!(error = %we, "could not send error response");
                }
                status
            }
            Some(err) => {
                ctx.error = Some(err);
                0
            }
            None => 0,
        };
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut RequestCtx) {
        let status = session
            .response_written()
            .map(|r| r.status.as_u16())
            .unwrap_or(0);
        let bytes = session.body_bytes_sent();
        self.pipeline.finish(ctx, status, bytes);
    }

    fn suppress_error_log(&self, _session: &Session, ctx: &RequestCtx, error: &Error) -> bool {
        // Errors the gateway answered are already in the access log with their code, and a
        // client that went away mid-response is not something an operator can act on.
        if ctx.error.is_some() || error.esource() == &ErrorSource::Downstream {
            tracing::debug!(error = %error, request_id = ctx.request_id(), "request ended early");
            return true;
        }
        false
    }
}
