//! The stream front: one request per stream, for HTTP/2 (streams of pingora-core's HTTP/2
//! sessions, see [`h2`]), HTTP/1.1 requests without a body (pingora-core's HTTP/1 sessions, same
//! file) and HTTP/3 (h3 request streams, `crate::h3::front`). The [`Pipeline`]'s phases run in
//! the same order as on the pingora front (which keeps the rest of HTTP/1.1):
//!
//! ```text
//! begin ─► admit ─► builtin? ─► route ─► on_request ─► service? ─► [pick ─► connect ─► send_request]*
//!   ─► response_head ─► on_response (+ Alt-Svc) ─► stream body (+ trailers) ─► finish(status, bytes)
//! ```
//! The attempts are the [`engine`]'s loop, run here directly: [`engine::begin_attempt`], connect
//! through the process's shared [`UpstreamClient`], [`exchange::send_request`], then
//! [`engine::failed`] or [`engine::response_head`] decide whether to retry. Failures become the
//! gateway's JSON answers ([`respond`] through [`WireWriter`]). A request is replayable while no
//! request body byte has left the gateway (this front keeps no replay buffer).
//!
//! Why these are served here and not by pingora-proxy: per request, pingora-proxy's phases,
//! modules and per-stream task cost more than the whole exchange on pingora-core's sessions
//! (`bench-pingora --core`: HTTP/2 over TLS 1.14× nginx's CPU per request, pingora-proxy's no-op
//! proxy 1.65–1.74×; HTTP/1.1 1.43–1.52× against 1.76–1.83×; bench/RESULTS.md). Only the wire
//! differs between the protocols ([`Wire`]); everything else is this file, the engine and the
//! pipeline.
//!
//! Per-request limits: `server.max_request_body` through [`Pipeline::on_request_body`] on every
//! chunk, `server.body_read_timeout` on each body read, `server.write_timeout` on each response
//! chunk sent (a client that stops reading is cut, the "send stall").

pub mod exchange;
pub mod h2;
pub mod wire;

use std::borrow::Cow;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderName, Method, StatusCode};
use pingora::http::RequestHeader;
use pingora::protocols::http::client::HttpSession;
use pingora::upstreams::peer::HttpPeer;

use self::exchange::AttemptError;
use self::wire::{Downstream, Reset, Wire, WireWriter};
use crate::engine::client::UpstreamClient;
use crate::engine::respond::{self, Sent};
use crate::engine::{self, DownstreamLimits, Replay, Stage, Verdict};
use crate::error::GatewayError;
use crate::front::PingoraResponseHeaders;
use crate::pipeline::{Pipeline, Protocol, RequestCtx, Scheme};

/// How long the front waits for the first request body chunk before connecting upstream.
const PEEK_WAIT: Duration = Duration::from_millis(50);

/// Hop-by-hop headers never forwarded in either direction.
fn hop_by_hop(name: &HeaderName) -> bool {
    use http::header::*;
    name == CONNECTION
        || name == TRANSFER_ENCODING
        || name == UPGRADE
        || name == TE
        || name == PROXY_AUTHENTICATE
        || name.as_str() == "keep-alive"
        || name.as_str() == "proxy-connection"
}

/// The names [`hop_by_hop`] matches.
fn hop_by_hop_names() -> [HeaderName; 7] {
    use http::header::*;
    [
        CONNECTION,
        TRANSFER_ENCODING,
        UPGRADE,
        TE,
        PROXY_AUTHENTICATE,
        HeaderName::from_static("keep-alive"),
        HeaderName::from_static("proxy-connection"),
    ]
}

/// Request fields that are hop-by-hop besides [`hop_by_hop`]'s (as the pingora front drops them
/// on HTTP/1.1: `Trailer`, `Proxy-Authorization`, `HTTP2-Settings`).
fn request_hop_by_hop(name: &HeaderName) -> bool {
    hop_by_hop(name)
        || name == http::header::TRAILER
        || name == http::header::PROXY_AUTHORIZATION
        || name.as_str() == "http2-settings"
}

/// Where a stream came from.
#[derive(Debug, Clone, Copy)]
pub struct Origin {
    /// The client's address, when known.
    pub peer: Option<SocketAddr>,
    /// The protocol, for the access log and the histograms.
    pub protocol: Protocol,
    /// `https` on TLS (always for HTTP/3).
    pub scheme: Scheme,
}

/// The stream front: the pipeline and the process's shared upstream client. The downstream
/// limits come from the running config (`[server]`) on every request.
#[derive(Debug)]
pub struct StreamFront {
    pipeline: Pipeline,
}

impl StreamFront {
    /// Creates the front over the shared pipeline.
    pub fn new(pipeline: Pipeline) -> Self {
        StreamFront { pipeline }
    }

    fn client(&self) -> &UpstreamClient {
        self.pipeline.state().upstream_client()
    }

    /// The running config.
    pub fn live(&self) -> Arc<crate::state::Live> {
        self.pipeline.state().live()
    }

    /// Serves one request stream to its end: `head` is the request head as the client sent it,
    /// `wire` the stream.
    ///
    /// (Here and below, the large by-value arguments go to an `async move` block instead of an
    /// `async fn`: an `async fn` keeps each argument twice in its state, and the state of this
    /// whole chain is allocated and moved once per stream.)
    #[allow(clippy::manual_async_fn)] // on purpose: see `serve`
    pub fn serve<'a, W: Wire + 'a>(
        &'a self,
        head: http::request::Parts,
        wire: W,
        origin: Origin,
    ) -> impl Future<Output = ()> + Send + 'a {
        async move {
            let mut ctx = self.pipeline.begin(origin.protocol);
            let limits = DownstreamLimits::of(&ctx);
            let mut down = Downstream::new(wire, limits.body_read_timeout);
            let sent = self.handle(&mut ctx, head, &mut down, origin).await;
            down.stop_unread();
            self.pipeline.finish(&mut ctx, sent.status, sent.bytes);
        }
    }

    #[allow(clippy::manual_async_fn)] // on purpose: see `serve`
    fn handle<'a, W: Wire + 'a>(
        &'a self,
        ctx: &'a mut RequestCtx,
        parts: http::request::Parts,
        down: &'a mut Downstream<W>,
        origin: Origin,
    ) -> impl Future<Output = Sent> + Send + 'a {
        async move {
            let ip = origin.peer.map(|p| p.ip());
            let head_only = parts.method == Method::HEAD;
            {
                let admitted = self.pipeline.admit(
                    ctx,
                    &parts.method,
                    &parts.uri,
                    &parts.headers,
                    ip,
                    origin.scheme,
                );
                let head = match admitted {
                    Ok(head) => head,
                    Err(e) => return self.write_error(&mut down.wire, ctx, e, head_only).await,
                };
                if let Some(local) = self.pipeline.builtin(&head) {
                    let mut writer = WireWriter {
                        wire: &mut down.wire,
                        head_only,
                        write_timeout: DownstreamLimits::of(ctx).write_timeout,
                    };
                    // Boxed, like every answer that is not a proxied response: the state of an
                    // `async fn` is as large as the largest state inside it, and this future is
                    // allocated (and moved) once per stream.
                    let written = Box::pin(respond::write_builtin(
                        &mut writer,
                        &self.pipeline,
                        ctx,
                        local,
                    ))
                    .await;
                    return sent_or_log(written);
                }
                if let Err(e) = self.pipeline.route(ctx, &head) {
                    return self.write_error(&mut down.wire, ctx, e, head_only).await;
                }
            }
            let http::request::Parts {
                method,
                uri,
                mut headers,
                ..
            } = parts;
            if let Err(e) = self.pipeline.on_request(ctx, &mut headers) {
                return self.write_error(&mut down.wire, ctx, e, head_only).await;
            }
            if let Some(service) = self.pipeline.service(ctx) {
                let e = match service {
                    orchestra_config::Service::Realtime => {
                        let served = Box::pin(crate::realtime::fronts::serve_stream(
                            &mut down.wire,
                            &self.pipeline,
                            ctx,
                            &method,
                            &headers,
                            uri.query(),
                            ip,
                        ))
                        .await;
                        match served {
                            Ok((status, bytes)) => return Sent { status, bytes },
                            Err(e) => e,
                        }
                    }
                    orchestra_config::Service::Agents
                        if self.pipeline.state().agents().is_some() =>
                    {
                        // As on the pingora front for a request that is not an HTTP/1.1 upgrade.
                        crate::ws_server::UpgradeError::Invalid("no upgrade on HTTP/2 or HTTP/3")
                            .into_gateway_error()
                    }
                    other => GatewayError::ServiceUnavailable(other.as_str()),
                };
                return self.write_error(&mut down.wire, ctx, e, head_only).await;
            }
            let upstream_head = match upstream_head(&self.pipeline, ctx, &method, uri, headers) {
                Ok(h) => Box::new(h),
                Err(e) => return self.write_error(&mut down.wire, ctx, e, head_only).await,
            };
            // The first chunk (or the end) tells an empty body from a streamed one; a client that
            // waits for the response head before sending (bidirectional streaming) is not waited
            // on.
            let peeked = {
                let mut inspect = inspector(&self.pipeline, ctx);
                tokio::time::timeout(PEEK_WAIT, down.peek(&mut inspect)).await
            };
            if let Ok(Err(e)) = peeked {
                return self.write_error(&mut down.wire, ctx, e, head_only).await;
            }
            self.proxy(ctx, upstream_head, method, down, head_only)
                .await
        }
    }

    /// Attempts until a response head is accepted, then streams the response.
    async fn proxy<W: Wire>(
        &self,
        ctx: &mut RequestCtx,
        head: Box<RequestHeader>,
        method: Method,
        down: &mut Downstream<W>,
        head_only: bool,
    ) -> Sent {
        let client = self.client();
        // The snapshot's prebuilt peers, held apart from `ctx` (which each attempt updates).
        let live = Arc::clone(&ctx.snapshot);
        let replay = |down: &Downstream<W>| Replay {
            idempotent: method.is_idempotent(),
            body_replayable: down.untouched() || down.known_empty(),
        };
        loop {
            let picked = match engine::begin_attempt(ctx).await {
                Ok(p) => p,
                Err(e) => return self.write_error(&mut down.wire, ctx, e, head_only).await,
            };
            // A reference into the snapshot (an owned peer, for a target the index does not
            // hold, is boxed: the future keeps a pointer, not a 672-byte peer).
            let owned_peer;
            let peer: &HttpPeer = match live.peers.peer_for(&picked, false) {
                Cow::Borrowed(p) => p,
                Cow::Owned(p) => {
                    owned_peer = Box::new(p);
                    &owned_peer
                }
            };
            let session = match client.connect(peer).await {
                Ok((s, _reused)) => s,
                Err(e) => match engine::failed(ctx, &e, Stage::Connect, replay(down)) {
                    Verdict::Retry => continue,
                    Verdict::Answer(err) => {
                        return self.write_error(&mut down.wire, ctx, err, head_only).await;
                    }
                },
            };
            let sent = {
                let mut inspect = inspector(&self.pipeline, ctx);
                exchange::send_request(session, head.clone(), down, &mut inspect).await
            };
            let mut exchange = match sent {
                Ok(x) => x,
                Err((mut session, AttemptError::Downstream(e))) => {
                    session.shutdown().await;
                    ctx.attempts.failed();
                    return self.write_error(&mut down.wire, ctx, e, head_only).await;
                }
                Err((mut session, AttemptError::ClientGone)) => {
                    // Nothing to answer: the upstream connection is closed (it is mid-request).
                    Box::pin(session.shutdown()).await;
                    return Sent::default();
                }
                Err((mut session, AttemptError::Upstream(e))) => {
                    session.shutdown().await;
                    match engine::failed(ctx, &e, Stage::Exchange, replay(down)) {
                        Verdict::Retry => continue,
                        Verdict::Answer(err) => {
                            return self.write_error(&mut down.wire, ctx, err, head_only).await;
                        }
                    }
                }
            };
            let Some(resp) = exchange::response_head(&exchange.session) else {
                exchange.session.shutdown().await;
                let err = GatewayError::Internal("no response head".into());
                return self.write_error(&mut down.wire, ctx, err, head_only).await;
            };
            let status = resp.status;
            if engine::response_head(&self.pipeline, ctx, status.as_u16(), replay(down)) {
                exchange.session.shutdown().await;
                continue;
            }
            let mut resp = Box::new(resp.clone());
            if resp.headers.keys().any(hop_by_hop) {
                for name in hop_by_hop_names() {
                    resp.remove_header(&name);
                }
            }
            self.pipeline
                .on_response(ctx, status, &mut PingoraResponseHeaders(&mut resp));
            if let Some(v) = respond::alt_svc(&self.pipeline, ctx, down.wire.may_advertise_h3()) {
                let _ = resp.insert_header(http::header::ALT_SVC, v);
            }
            if let Err(e) = down.wire.send_response(resp).await {
                tracing::debug!(error = %e, "client gone before the response head");
                exchange.session.shutdown().await;
                return Sent::default();
            }
            let write_timeout = DownstreamLimits::of(ctx).write_timeout;
            let streamed = {
                let mut inspect = inspector(&self.pipeline, ctx);
                exchange::stream_response(&mut exchange, down, &mut inspect, write_timeout).await
            };
            return self
                .end_response(ctx, exchange.session, peer, down, streamed, status)
                .await;
        }
    }

    /// Trailers, stream end, and the upstream session back to the pool (or closed).
    #[allow(clippy::manual_async_fn)] // on purpose: see `serve`
    fn end_response<'a, W: Wire + 'a>(
        &'a self,
        ctx: &'a mut RequestCtx,
        mut session: HttpSession,
        peer: &'a HttpPeer,
        down: &'a mut Downstream<W>,
        streamed: exchange::Streamed,
        status: StatusCode,
    ) -> impl Future<Output = Sent> + Send + 'a {
        async move {
            if let Some(e) = streamed.error {
                tracing::debug!(error = %e, request_id = ctx.request_id(), "response aborted");
                down.wire.reset(Reset::Internal);
                session.shutdown().await;
                return Sent {
                    status: status.as_u16(),
                    bytes: streamed.bytes,
                };
            }
            let mut trailers_sent = streamed.wire_ended;
            if let (HttpSession::H2(h2), false) = (&mut session, streamed.wire_ended) {
                if let Ok(Some(trailers)) = h2.read_trailers().await {
                    match down.wire.send_trailers(trailers).await {
                        Ok(()) => trailers_sent = true,
                        Err(e) => tracing::debug!(error = %e, "sending trailers"),
                    }
                }
            }
            if !trailers_sent {
                if let Err(e) = down.wire.finish().await {
                    tracing::debug!(error = %e, "finishing the response stream");
                }
            }
            down.discard_trailers().await;
            if streamed.request_done && session.response_done() {
                // Back to the pool without awaiting; only a session that must close is awaited
                // (boxed: pingora's release future is ~3 KB, and this one is allocated per stream).
                if let Some(session) = self.client().try_release(session, peer) {
                    Box::pin(self.client().release(session, peer)).await;
                }
            } else {
                Box::pin(session.shutdown()).await;
            }
            Sent {
                status: status.as_u16(),
                bytes: streamed.bytes,
            }
        }
    }

    async fn write_error<W: Wire>(
        &self,
        wire: &mut W,
        ctx: &mut RequestCtx,
        err: GatewayError,
        head_only: bool,
    ) -> Sent {
        let mut writer = WireWriter {
            wire,
            head_only,
            write_timeout: DownstreamLimits::of(ctx).write_timeout,
        };
        // Boxed: see `handle`.
        sent_or_log(Box::pin(respond::write_error(&mut writer, &self.pipeline, ctx, err)).await)
    }
}

/// What a local answer sent; a failed write is logged (the client went away) and counts as
/// its status with no body bytes.
fn sent_or_log(written: Result<Sent, respond::WriteFailed<String>>) -> Sent {
    written.unwrap_or_else(|e| {
        tracing::debug!(error = %e, "could not send the gateway's response");
        Sent { bytes: 0, ..e.sent }
    })
}

/// Every request body chunk through [`Pipeline::on_request_body`] (size limit, body plugins).
fn inspector<'a>(
    pipeline: &'a Pipeline,
    ctx: &'a mut RequestCtx,
) -> impl FnMut(&[u8]) -> Result<(), GatewayError> + Send + 'a {
    move |chunk| pipeline.on_request_body(ctx, chunk)
}

/// The request head sent upstream: method, (rewritten) path, the forwarded fields (moved, not
/// copied) and `Host` from the authority when the client sent none (HTTP/2 and HTTP/3 name the
/// host in `:authority`).
fn upstream_head(
    pipeline: &Pipeline,
    ctx: &RequestCtx,
    method: &Method,
    uri: http::Uri,
    mut headers: HeaderMap,
) -> Result<RequestHeader, GatewayError> {
    let bad = |e: Box<pingora::Error>| GatewayError::BadRequest(e.to_string());
    if headers.keys().any(request_hop_by_hop) {
        // Fields the client named in `Connection` are hop-by-hop too (RFC 9110 7.6.1).
        let nominated: Vec<HeaderName> = headers
            .get_all(http::header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
            .collect();
        for name in nominated {
            headers.remove(name);
        }
        for name in hop_by_hop_names() {
            headers.remove(name);
        }
        headers.remove(http::header::TRAILER);
        headers.remove(http::header::PROXY_AUTHORIZATION);
        headers.remove("http2-settings");
    }
    let host = match headers.contains_key(http::header::HOST) {
        true => None,
        false => uri.authority().cloned(),
    };
    let path = match pipeline.upstream_path(ctx) {
        Some(p) => http::uri::PathAndQuery::try_from(p)
            .map_err(|e| GatewayError::BadRequest(format!("rewritten path: {e}")))?,
        None => uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/")),
    };
    let (mut parts, ()) = http::Request::new(()).into_parts();
    parts.method = method.clone();
    parts.uri = http::Uri::from(path);
    parts.headers = headers;
    let mut head = RequestHeader::from(parts);
    if let Some(auth) = host {
        head.insert_header(http::header::HOST, auth.as_str())
            .map_err(bad)?;
    }
    Ok(head)
}
