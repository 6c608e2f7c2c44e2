//! The HTTP/3 per-request adapter: one request stream in, the [`Pipeline`]'s phases in the same
//! order as the pingora front, one response out.
//!
//! ```text
//! begin(H3) ─► identify ─► builtin? ─► route ─► on_request ─► [pick ─► connect ─► send_request]*
//!   ─► upstream_responded ─► on_response ─► stream body ─► finish(status, bytes)
//! ```
//! The attempts are the [`engine`]'s loop, run here directly: [`engine::begin_attempt`], connect
//! through the process's shared [`UpstreamClient`], [`exchange::send_request`], then
//! [`engine::failed`] or [`engine::response_head`] decide whether to retry. Failures become the
//! same JSON answers as on HTTP/2 ([`respond`] through [`H3Writer`]). A request is replayable
//! while no request body byte has left the gateway (this front keeps no replay buffer).
//!
//! Per-request limits: `server.max_request_body` through [`Pipeline::on_request_body`] on every
//! chunk, `server.body_read_timeout` on each body read, `server.write_timeout` on each response
//! chunk sent (a client that stops reading is cut, the "send stall").

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes};
use http::{HeaderMap, HeaderName, Method, Request, Response, StatusCode};
use orchestra_plugins::Reject;
use pingora::http::RequestHeader;
use pingora::protocols::http::client::HttpSession;

use super::exchange::{self, AttemptError, ResponseSink};
use crate::engine::client::UpstreamClient;
use crate::engine::respond::{self, LocalWriter, Sent};
use crate::engine::{self, DownstreamLimits, Replay, Stage, Verdict};
use crate::error::GatewayError;
use crate::pipeline::{Pipeline, Protocol, RequestCtx, Scheme};

/// The send half of a request stream.
pub type H3Send = h3::server::RequestStream<h3_quinn::SendStream<Bytes>, Bytes>;
/// The receive half of a request stream.
pub type H3Recv = h3::server::RequestStream<h3_quinn::RecvStream, Bytes>;
/// A whole request stream as h3 hands it over.
pub type H3Stream = h3::server::RequestStream<h3_quinn::BidiStream<Bytes>, Bytes>;

/// Called on every request body chunk (the route's body-inspecting plugins).
pub type Inspector<'a> = dyn FnMut(&[u8]) -> Result<(), GatewayError> + Send + 'a;

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

/// The request body, read one chunk at a time from the stream (never buffered beyond one chunk).
/// Each wait for a chunk is bounded by `server.body_read_timeout` (408 beyond it); the size is
/// checked against `server.max_request_body` by [`Pipeline::on_request_body`].
pub struct RequestBody {
    recv: H3Recv,
    pending: Option<Bytes>,
    ended: bool,
    received: u64,
    taken: bool,
    read_timeout: Duration,
}

fn read_timed_out(after: Duration) -> GatewayError {
    GatewayError::Rejected(Reject::new(
        StatusCode::REQUEST_TIMEOUT,
        "PARAM_001",
        format!("no request body data for {after:?} (server.body_read_timeout)"),
    ))
}

impl RequestBody {
    fn new(recv: H3Recv, read_timeout: Duration) -> Self {
        RequestBody {
            recv,
            pending: None,
            ended: false,
            received: 0,
            taken: false,
            read_timeout,
        }
    }

    /// True when the body is known to be empty (the stream ended with no data).
    pub fn known_empty(&self) -> bool {
        self.ended && self.received == 0
    }

    /// True while no body byte has left the gateway (the request can be replayed).
    fn untouched(&self) -> bool {
        !self.taken
    }

    async fn read(&mut self, inspect: &mut Inspector<'_>) -> Result<Option<Bytes>, GatewayError> {
        loop {
            if self.ended {
                return Ok(None);
            }
            let received = tokio::time::timeout(self.read_timeout, self.recv.recv_data()).await;
            let chunk = match received {
                Ok(Ok(Some(mut buf))) => buf.copy_to_bytes(buf.remaining()),
                Ok(Ok(None)) => {
                    self.ended = true;
                    return Ok(None);
                }
                Ok(Err(e)) => return Err(GatewayError::BadRequest(format!("request body: {e}"))),
                Err(_) => return Err(read_timed_out(self.read_timeout)),
            };
            if chunk.is_empty() {
                continue;
            }
            self.received += chunk.len() as u64;
            inspect(&chunk)?;
            return Ok(Some(chunk));
        }
    }

    /// Reads the first chunk ahead (or learns that the body is empty) before connecting.
    async fn peek(&mut self, inspect: &mut Inspector<'_>) -> Result<(), GatewayError> {
        if self.pending.is_none() && !self.ended {
            self.pending = self.read(inspect).await?;
        }
        Ok(())
    }

    /// The next chunk for the upstream; `None` at the end.
    pub async fn next(
        &mut self,
        inspect: &mut Inspector<'_>,
    ) -> Result<Option<Bytes>, GatewayError> {
        self.taken = true;
        if let Some(b) = self.pending.take() {
            return Ok(Some(b));
        }
        self.read(inspect).await
    }

    /// Tells the client to stop sending a body the answer did not need, with `H3_NO_ERROR`
    /// (RFC 9114 section 4.1: a complete response may precede the end of the request). Without
    /// it, quinn stops the stream with code 0 when it is dropped, which a client reads as an
    /// error even though its response was complete.
    fn stop_unread(&mut self) {
        if !self.ended {
            self.recv.stop_sending(h3::error::Code::H3_NO_ERROR);
        }
    }

    /// Request trailers, once the body has ended (not forwarded: pingora's client has no API).
    async fn discard_trailers(&mut self) {
        if self.ended {
            let _ = self.recv.recv_trailers().await;
        }
    }
}

struct Sink<'a>(&'a mut H3Send);

impl ResponseSink for Sink<'_> {
    async fn send(&mut self, data: Bytes) -> Result<(), String> {
        self.0.send_data(data).await.map_err(|e| e.to_string())
    }
}

/// The HTTP/3 send half as a [`LocalWriter`]; a client that does not take the answer within
/// `server.write_timeout` is cut, as on the other fronts.
pub struct H3Writer<'a> {
    send: &'a mut H3Send,
    head_only: bool,
    write_timeout: Duration,
}

impl LocalWriter for H3Writer<'_> {
    type Error = String;

    fn head_only(&self) -> bool {
        self.head_only
    }

    /// HTTP/3 need not advertise itself.
    fn may_advertise_h3(&self) -> bool {
        false
    }

    async fn write(
        &mut self,
        status: StatusCode,
        headers: HeaderMap,
        body: Bytes,
    ) -> Result<(), String> {
        let mut response = Response::new(());
        *response.status_mut() = status;
        *response.headers_mut() = headers;
        let send = &mut *self.send;
        let with_body = !self.head_only && !body.is_empty();
        let written = async {
            send.send_response(response).await?;
            if with_body {
                send.send_data(body).await?;
            }
            send.finish().await
        };
        match tokio::time::timeout(self.write_timeout, written).await {
            Ok(result) => result.map_err(|e| e.to_string()),
            Err(_) => {
                self.send.stop_stream(h3::error::Code::H3_REQUEST_CANCELLED);
                Err("client stalled (server.write_timeout)".into())
            }
        }
    }
}

/// The HTTP/3 front: the pipeline and the process's shared upstream client. The downstream
/// limits come from the running config (`[server]`) on every request.
#[derive(Debug)]
pub struct H3Front {
    pipeline: Pipeline,
}

impl H3Front {
    /// Creates the front over the shared pipeline.
    pub fn new(pipeline: Pipeline) -> Self {
        H3Front { pipeline }
    }

    fn client(&self) -> &UpstreamClient {
        self.pipeline.state().upstream_client()
    }

    /// Serves one request stream to its end.
    pub async fn serve(self: Arc<Self>, req: Request<()>, stream: H3Stream, peer: SocketAddr) {
        let (mut send, recv) = stream.split();
        let mut ctx = self.pipeline.begin(Protocol::H3);
        let limits = DownstreamLimits::of(&ctx);
        let mut body = RequestBody::new(recv, limits.body_read_timeout);
        let sent = self.handle(&mut ctx, req, &mut send, &mut body, peer).await;
        body.stop_unread();
        self.pipeline.finish(&mut ctx, sent.status, sent.bytes);
    }

    async fn handle(
        &self,
        ctx: &mut RequestCtx,
        req: Request<()>,
        send: &mut H3Send,
        body: &mut RequestBody,
        peer: SocketAddr,
    ) -> Sent {
        let (parts, ()) = req.into_parts();
        let ip = Some(peer.ip());
        let head_only = parts.method == Method::HEAD;
        {
            let admitted = self.pipeline.admit(
                ctx,
                &parts.method,
                &parts.uri,
                &parts.headers,
                ip,
                Scheme::Https,
            );
            let head = match admitted {
                Ok(head) => head,
                Err(e) => return self.write_error(send, ctx, e, head_only).await,
            };
            if let Some(local) = self.pipeline.builtin(&head) {
                let mut writer = H3Writer {
                    send,
                    head_only,
                    write_timeout: DownstreamLimits::of(ctx).write_timeout,
                };
                let written = respond::write_builtin(&mut writer, &self.pipeline, ctx, local).await;
                return sent_or_log(written);
            }
            if let Err(e) = self.pipeline.route(ctx, &head) {
                return self.write_error(send, ctx, e, head_only).await;
            }
        }
        let mut headers = parts.headers;
        if let Err(e) = self.pipeline.on_request(ctx, &mut headers) {
            return self.write_error(send, ctx, e, head_only).await;
        }
        if let Some(service) = self.pipeline.service(ctx) {
            let e = match service {
                orchestra_config::Service::Realtime => {
                    let served = crate::realtime::fronts::serve_h3(
                        send,
                        &self.pipeline,
                        ctx,
                        &parts.method,
                        &headers,
                        parts.uri.query(),
                        ip,
                    )
                    .await;
                    match served {
                        Ok((status, bytes)) => return Sent { status, bytes },
                        Err(e) => e,
                    }
                }
                other => GatewayError::ServiceUnavailable(other.as_str()),
            };
            return self.write_error(send, ctx, e, head_only).await;
        }
        let pq = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        let path = self
            .pipeline
            .upstream_path(ctx)
            .unwrap_or_else(|| pq.to_string());
        let upstream_head = match upstream_head(&parts.method, &path, &headers, &parts.uri) {
            Ok(h) => h,
            Err(e) => return self.write_error(send, ctx, e, head_only).await,
        };
        // The first chunk (or the end) tells an empty body from a streamed one; a client that
        // waits for the response head before sending (bidirectional streaming) is not waited on.
        let peeked = {
            let mut inspect = inspector(&self.pipeline, ctx);
            tokio::time::timeout(PEEK_WAIT, body.peek(&mut inspect)).await
        };
        if let Ok(Err(e)) = peeked {
            return self.write_error(send, ctx, e, head_only).await;
        }
        self.proxy(ctx, upstream_head, parts.method, send, body, head_only)
            .await
    }

    /// Attempts until a response head is accepted, then streams the response.
    async fn proxy(
        &self,
        ctx: &mut RequestCtx,
        head: RequestHeader,
        method: Method,
        send: &mut H3Send,
        body: &mut RequestBody,
        head_only: bool,
    ) -> Sent {
        let client = self.client();
        // The snapshot's prebuilt peers, held apart from `ctx` (which each attempt updates).
        let live = Arc::clone(&ctx.snapshot);
        loop {
            let picked = match engine::begin_attempt(ctx).await {
                Ok(p) => p,
                Err(e) => return self.write_error(send, ctx, e, head_only).await,
            };
            let peer = live.peers.peer_for(&picked, false);
            let replay = |body: &RequestBody| Replay {
                idempotent: method.is_idempotent(),
                body_replayable: body.untouched() || body.known_empty(),
            };
            let session = match client.connect(&peer).await {
                Ok((s, _reused)) => s,
                Err(e) => match engine::failed(ctx, &e, Stage::Connect, replay(body)) {
                    Verdict::Retry => continue,
                    Verdict::Answer(err) => {
                        return self.write_error(send, ctx, err, head_only).await;
                    }
                },
            };
            let sent = {
                let mut inspect = inspector(&self.pipeline, ctx);
                exchange::send_request(session, head.clone(), body, &mut inspect).await
            };
            let mut exchange = match sent {
                Ok(x) => x,
                Err((mut session, AttemptError::Downstream(e))) => {
                    session.shutdown().await;
                    ctx.attempts.failed();
                    return self.write_error(send, ctx, e, head_only).await;
                }
                Err((mut session, AttemptError::Upstream(e))) => {
                    session.shutdown().await;
                    match engine::failed(ctx, &e, Stage::Exchange, replay(body)) {
                        Verdict::Retry => continue,
                        Verdict::Answer(err) => {
                            return self.write_error(send, ctx, err, head_only).await;
                        }
                    }
                }
            };
            let Some(resp) = exchange::response_head(&exchange.session) else {
                exchange.session.shutdown().await;
                let err = GatewayError::Internal("no response head".into());
                return self.write_error(send, ctx, err, head_only).await;
            };
            let status = resp.status;
            if engine::response_head(&self.pipeline, ctx, status.as_u16(), replay(body)) {
                exchange.session.shutdown().await;
                continue;
            }
            let mut headers = HeaderMap::with_capacity(resp.headers.len() + 2);
            for (n, v) in resp.headers.iter() {
                if !hop_by_hop(n) {
                    headers.append(n.clone(), v.clone());
                }
            }
            self.pipeline.on_response(ctx, status, &mut headers);
            let mut response = Response::new(());
            *response.status_mut() = status;
            *response.headers_mut() = headers;
            if let Err(e) = send.send_response(response).await {
                tracing::debug!(error = %e, "h3: client gone before the response head");
                exchange.session.shutdown().await;
                return Sent::default();
            }
            let write_timeout = DownstreamLimits::of(ctx).write_timeout;
            let streamed = {
                let mut inspect = inspector(&self.pipeline, ctx);
                let mut sink = Sink(send);
                exchange::stream_response(
                    &mut exchange,
                    body,
                    &mut sink,
                    &mut inspect,
                    write_timeout,
                )
                .await
            };
            return self
                .end_response(ctx, exchange.session, &peer, send, body, streamed, status)
                .await;
        }
    }

    /// Trailers, stream end, and the upstream session back to the pool (or closed).
    #[allow(clippy::too_many_arguments)]
    async fn end_response(
        &self,
        ctx: &mut RequestCtx,
        mut session: HttpSession,
        peer: &pingora::upstreams::peer::HttpPeer,
        send: &mut H3Send,
        body: &mut RequestBody,
        streamed: exchange::Streamed,
        status: StatusCode,
    ) -> Sent {
        if let Some(e) = streamed.error {
            tracing::debug!(error = %e, request_id = ctx.request_id(), "h3: response aborted");
            send.stop_stream(h3::error::Code::H3_INTERNAL_ERROR);
            session.shutdown().await;
            return Sent {
                status: status.as_u16(),
                bytes: streamed.bytes,
            };
        }
        if let HttpSession::H2(h2) = &mut session {
            if let Ok(Some(trailers)) = h2.read_trailers().await {
                if let Err(e) = send.send_trailers(trailers).await {
                    tracing::debug!(error = %e, "h3: sending trailers");
                }
            }
        }
        if let Err(e) = send.finish().await {
            tracing::debug!(error = %e, "h3: finishing the response stream");
        }
        body.discard_trailers().await;
        if streamed.request_done && session.response_done() {
            self.client().release(session, peer).await;
        } else {
            session.shutdown().await;
        }
        Sent {
            status: status.as_u16(),
            bytes: streamed.bytes,
        }
    }

    async fn write_error(
        &self,
        send: &mut H3Send,
        ctx: &mut RequestCtx,
        err: GatewayError,
        head_only: bool,
    ) -> Sent {
        let mut writer = H3Writer {
            send,
            head_only,
            write_timeout: DownstreamLimits::of(ctx).write_timeout,
        };
        sent_or_log(respond::write_error(&mut writer, &self.pipeline, ctx, err).await)
    }
}

/// What a local answer sent; a failed write is logged (the client went away) and counts as
/// its status with no body bytes.
fn sent_or_log(written: Result<Sent, respond::WriteFailed<String>>) -> Sent {
    written.unwrap_or_else(|e| {
        tracing::debug!(error = %e, "h3: could not send the gateway's response");
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

/// The request head sent upstream: method, (rewritten) path, forwarded headers and `Host`.
fn upstream_head(
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    uri: &http::Uri,
) -> Result<RequestHeader, GatewayError> {
    let bad = |e: Box<pingora::Error>| GatewayError::BadRequest(e.to_string());
    let mut head = RequestHeader::build(method.clone(), path.as_bytes(), Some(headers.len() + 1))
        .map_err(bad)?;
    for (n, v) in headers.iter() {
        if !hop_by_hop(n) {
            head.append_header(n.clone(), v.clone()).map_err(bad)?;
        }
    }
    if headers.get(http::header::HOST).is_none() {
        if let Some(auth) = uri.authority() {
            head.insert_header(http::header::HOST, auth.as_str())
                .map_err(bad)?;
        }
    }
    Ok(head)
}
