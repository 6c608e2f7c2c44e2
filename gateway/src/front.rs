//! The pingora front: HTTP/1.1 requests with a body, upgrades and WebSocket (HTTP/2 streams and
//! bodiless HTTP/1.1 requests go to [`crate::streams`]), as a thin [`ProxyHttp`] adapter over the
//! [`Pipeline`] and the attempt [`engine`]. Each phase below only translates pingora's types:
//! routing, plugins and logging happen in the pipeline; picks, retries, error classification and
//! outcomes in the engine; the gateway's own answers go through [`respond`] with
//! [`PingoraWriter`].
//!
//! | pingora phase | engine / pipeline call |
//! |---|---|
//! | `new_ctx` | `Pipeline::begin` |
//! | `request_filter` | [`DownstreamLimits`] on the session, `admit`, `builtin`, `route`, `on_request`, services, the WebSocket tunnel |
//! | `request_body_filter` | `Pipeline::on_request_body` (`max_request_body`, body plugins) |
//! | `upstream_peer` | [`engine::begin_attempt`] (backoff, pick) |
//! | `fail_to_connect` | [`engine::failed`] at [`Stage::Connect`] |
//! | `error_while_proxy` | [`engine::failed`] at [`Stage::Exchange`] |
//! | `upstream_response_filter` | [`engine::response_head`] (retryable 5xx, outcome) |
//! | `response_filter` | `Pipeline::on_response`, `Alt-Svc` |
//! | `fail_to_proxy` | [`engine::classify`], [`respond::write_error`] |
//! | `logging` | `Pipeline::finish` |

use std::net::IpAddr;

use async_trait::async_trait;
use bytes::Bytes;
use http::{HeaderName, HeaderValue, StatusCode};
use orchestra_plugins::HeaderOps;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::modules::http::HttpModules;
use pingora::prelude::*;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorSource, ErrorType};

use crate::engine::respond::{self, LocalWriter};
use crate::engine::{self, DownstreamLimits, Replay, Stage, Verdict};
use crate::error::GatewayError;
use crate::pipeline::{Pipeline, Protocol, RequestCtx, Scheme, Upgrade, ADDED_REQUEST_HEADERS};
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
    if is_tls(session) {
        Scheme::Https
    } else {
        Scheme::Http
    }
}

/// True when the client connection is TLS (a pingora-proxy `Session` derefs to the
/// pingora-core session this takes).
pub(crate) fn is_tls(session: &pingora::protocols::http::ServerSession) -> bool {
    session
        .digest()
        .and_then(|d| d.ssl_digest.as_ref())
        .is_some()
}

/// Applies `[server]`'s per-request downstream limits to the session: the body read and response
/// write timeouts, and (HTTP/1.1) how long the connection may wait for the next request.
/// `header_read_timeout` and `max_connections` are enforced by the listener (see `listener.rs`).
fn apply_limits(session: &mut Session, ctx: &RequestCtx) {
    let limits = DownstreamLimits::of(ctx);
    session.set_read_timeout(Some(limits.body_read_timeout));
    session.set_write_timeout(Some(limits.write_timeout));
    if session.get_keepalive().is_some() {
        session.set_keepalive(Some(keepalive_secs(limits.keepalive_timeout)));
    }
}

/// `server.keepalive_timeout` as pingora's keep-alive setting: whole seconds, rounded up, at
/// least 1 (0 would mean "no timeout").
pub(crate) fn keepalive_secs(timeout: std::time::Duration) -> u64 {
    timeout.as_secs_f64().ceil().max(1.0) as u64
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

/// Whether the request may be sent again: an idempotent method whose body (if any) pingora
/// still holds in its retry buffer.
fn replay(session: &Session) -> Replay {
    Replay {
        idempotent: session.req_header().method.is_idempotent(),
        body_replayable: !session.as_ref().retry_buffer_truncated(),
    }
}

/// The pingora session as a [`LocalWriter`].
pub struct PingoraWriter<'a>(pub &'a mut Session);

impl LocalWriter for PingoraWriter<'_> {
    type Error = Box<Error>;

    fn head_only(&self) -> bool {
        self.0.req_header().method == http::Method::HEAD
    }

    fn may_advertise_h3(&self) -> bool {
        is_tls(self.0)
    }

    async fn write(
        &mut self,
        status: StatusCode,
        headers: http::HeaderMap,
        body: Bytes,
    ) -> Result<()> {
        let mut resp = ResponseHeader::build(status, Some(headers.len()))?;
        for (n, v) in headers.iter() {
            resp.append_header(n.clone(), v.clone())?;
        }
        let head_only = self.head_only();
        self.0
            .write_response_header(Box::new(resp), head_only)
            .await?;
        if !head_only {
            self.0.write_response_body(Some(body), true).await?;
        }
        Ok(())
    }
}

/// Answers `err` on the session with the gateway's error response.
async fn write_error(
    session: &mut Session,
    pipeline: &Pipeline,
    ctx: &mut RequestCtx,
    err: GatewayError,
) -> Result<()> {
    // Boxed: an error answer is not the common path, and its state would otherwise grow every
    // request's `request_filter` future (see `request_filter`).
    Box::pin(respond::write_error(
        &mut PingoraWriter(session),
        pipeline,
        ctx,
        err,
    ))
    .await
    .map(drop)
    .map_err(|f| f.error)
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

    /// No downstream modules. pingora's default adds its response-compression module, disabled:
    /// the gateway does not compress responses, and the disabled module still cost every request
    /// its context box, its module list and a boxed future per header and body phase.
    fn init_downstream_modules(&self, _modules: &mut HttpModules) {}

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
                let mut writer = PingoraWriter(session);
                // Boxed, like every path below that is not a proxied request: an `async_trait`
                // boxes this method's future on every request, and the future is as large as
                // the largest state inside it.
                Box::pin(respond::write_builtin(
                    &mut writer,
                    &self.pipeline,
                    ctx,
                    local,
                ))
                .await
                .map_err(|f| f.error)?;
                return Ok(true);
            }
            if let Err(e) = self.pipeline.route(ctx, &head) {
                write_error(session, &self.pipeline, ctx, e).await?;
                return Ok(true);
            }
        }
        let req = session.req_header_mut();
        // One growth of the header maps (values and, for HTTP/1, spellings) for everything the
        // pipeline adds, instead of one per crossed capacity.
        req.reserve_headers(ADDED_REQUEST_HEADERS);
        let result = self
            .pipeline
            .on_request(ctx, &mut PingoraRequestHeaders(req));
        if let Err(e) = result {
            write_error(session, &self.pipeline, ctx, e).await?;
            return Ok(true);
        }
        if let Some(service) = self.pipeline.service(ctx) {
            // Services the gateway answers itself (agents over WebSocket; realtime WS and SSE).
            if let Err(e) = Box::pin(self.serve(service, session, ctx, ip)).await {
                write_error(session, &self.pipeline, ctx, e).await?;
            }
            return Ok(true);
        }
        if ctx.protocol == Protocol::Ws {
            if let Err(e) = Box::pin(ws_tunnel::run(session, &self.pipeline, ctx)).await {
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
        match engine::begin_attempt(ctx).await {
            Ok(p) => {
                let upgrade = session.is_upgrade_req();
                Ok(Box::new(
                    ctx.snapshot.peers.peer_for(&p, upgrade).into_owned(),
                ))
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
        // Only needed (and copied) when the request has no `Host` (HTTP/2 clients).
        let authority = match upstream_request.headers.get(http::header::HOST) {
            Some(_) => None,
            None => upstream_request.uri.authority().cloned(),
        };
        if let Some(path) = self.pipeline.upstream_path(ctx) {
            let uri = http::Uri::builder()
                .path_and_query(path)
                .build()
                .map_err(|e| Error::because(ErrorType::InvalidHTTPHeader, "rewritten path", e))?;
            upstream_request.set_uri(uri);
        }
        if let Some(auth) = authority {
            upstream_request.insert_header(http::header::HOST, auth.as_str())?;
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
        // (Upgrades never reach this phase: `ws_tunnel` drives them.)
        if engine::response_head(&self.pipeline, ctx, status, replay(session)) {
            let mut e = Error::explain(ErrorType::HTTPStatus(status), "retrying upstream status");
            e.set_retry(true);
            return Err(e);
        }
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
        if let Some(v) = respond::alt_svc(&self.pipeline, ctx, is_tls(session)) {
            resp.insert_header(http::header::ALT_SVC, v)?;
        }
        Ok(())
    }

    /// A connect failure: nothing was sent, so any method may be retried when the policy says so.
    fn fail_to_connect(
        &self,
        session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut RequestCtx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        if let Verdict::Retry = engine::failed(ctx, &e, Stage::Connect, replay(session)) {
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
        let replay = replay(session);
        let verdict = engine::failed(ctx, &e, Stage::Exchange, replay);
        if let Verdict::Retry = verdict {
            e.set_retry(true);
        } else if !replay.replayable() {
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
        let err = ctx
            .error
            .take()
            .or_else(|| engine::classify(e, engine::upstream_name(ctx)).error);
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
        // A WebSocket taken out of pingora after its `101` is recorded by its relay task when
        // it ends; pingora is left a placeholder context (`relay::detach`).
        if crate::relay::detach::is_placeholder(ctx) {
            return;
        }
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
