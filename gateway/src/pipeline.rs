//! The request pipeline every front calls: one code path for HTTP/1.1, HTTP/2, HTTP/3 and
//! WebSocket.
//!
//! ```text
//! begin ─► builtin? ─► route ─► on_request (plugins, identity headers) ─► [engine: attempts]
//!                                                        on_response (plugins, x-request-id) ◄─┘
//!                                                                 finish (stats, access log) ◄─┘
//! ```
//!
//! Upstream attempts (pick, retries, error classification, outcomes) are the attempt engine's
//! (`crate::engine`); the pipeline records what they produced (`upstream_responded`, `finish`).
//!
//! A front owns the sockets and the protocol; it creates a [`RequestCtx`] per request with
//! [`Pipeline::begin`], calls the phases in order, and hands header access to the pipeline through
//! [`HeaderOps`]. State that outlives a request lives in the config snapshot (routes, balancers,
//! plugins) or in [`GatewayState`], never in the front.
//!
//! [`Pipeline::admit`] is the first phase on every front: it checks the head and normalizes the
//! path (`orchestra_ingress`), so routing, plugins and the upstream all see one spelling of the
//! path, whatever protocol carried it. [`Pipeline::on_request`] removes upgrade tokens other
//! than `websocket` and writes the `X-Forwarded-*` headers; [`Pipeline::on_request_body`]
//! enforces `server.max_request_body`.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use orchestra_config::{RouteRequest, Service, Upstream};
use orchestra_ingress::{set_forwarded, strip_foreign_upgrade};
use orchestra_plugins::{HeaderOps, PluginCtx, Reject, RequestView};

pub use orchestra_ingress::{RequestHead, Scheme, Upgrade};

use crate::access_log::{self, AccessLine};
use crate::engine::attempts::{self, Attempts};
use crate::error::GatewayError;
use crate::request_id::{never_indexed, RequestIdentity, TRACEPARENT_NAME, X_REQUEST_ID_NAME};
use crate::state::{GatewayState, InFlight, Live};

/// The protocol a request arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP/1.x.
    H1,
    /// HTTP/2 (h2c or TLS).
    H2,
    /// HTTP/3.
    H3,
    /// A WebSocket upgrade over HTTP/1.1.
    Ws,
}

impl Protocol {
    /// Label used in logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::H1 => "h1",
            Protocol::H2 => "h2",
            Protocol::H3 => "h3",
            Protocol::Ws => "ws",
        }
    }
}

/// How many headers [`Pipeline::on_request`] adds at most without plugins (`x-request-id`,
/// `traceparent`, `X-Forwarded-For`, `-Proto`, `-Host`): fronts reserve room for them once.
pub const ADDED_REQUEST_HEADERS: usize = 5;

/// The target chosen for one attempt.
#[derive(Debug, Clone)]
pub struct Picked {
    /// The upstream.
    pub upstream: Arc<Upstream>,
    /// The target's address.
    pub addr: SocketAddr,
    /// Index of the upstream in the snapshot (the route's `upstream()`).
    pub upstream_index: usize,
    /// Index of the target in the upstream's balancer.
    pub target_index: usize,
}

/// Per-request state, owned by the front for the request's lifetime.
#[derive(Debug)]
pub struct RequestCtx {
    /// The config this request runs on from start to end.
    pub snapshot: Arc<Live>,
    /// Front protocol.
    pub protocol: Protocol,
    /// `x-request-id` and `traceparent`.
    pub identity: Option<RequestIdentity>,
    /// Index of the matched route.
    pub route: Option<usize>,
    /// The target of the current attempt.
    pub picked: Option<Picked>,
    /// Values plugins share within the request.
    pub plugin_ctx: PluginCtx,
    /// The error the gateway answered with, if any.
    pub error: Option<GatewayError>,
    method: Method,
    /// The normalized path and query (what routes and plugins saw).
    path: String,
    /// True when [`RequestCtx::path`] differs from what the client sent.
    path_changed: bool,
    /// The connected peer.
    peer: Option<IpAddr>,
    /// The client address behind `server.trusted_proxies` (the peer when it is not one).
    client: Option<IpAddr>,
    scheme: Scheme,
    /// The host the client asked for, for `X-Forwarded-Host`.
    host: Option<HeaderValue>,
    started: Instant,
    upstream_latency: Option<std::time::Duration>,
    /// Upstream attempts: breaker, budget, balancer slot, retries.
    pub attempts: Attempts,
    body_bytes: u64,
    _in_flight: InFlight,
}

impl RequestCtx {
    /// The matched route's upstream, once routed.
    pub fn upstream(&self) -> Option<&Arc<Upstream>> {
        let route = self.snapshot.routes.routes().get(self.route?)?;
        self.snapshot.upstreams.get(route.upstream()?)
    }

    /// The request id (empty before [`Pipeline::admit`]).
    pub fn request_id(&self) -> &str {
        self.identity
            .as_ref()
            .map(RequestIdentity::request_id_str)
            .unwrap_or("")
    }

    /// Copies the values the context shares with the request head's buffer (`Host`, a request
    /// id the client sent) into values of their own. A context that outlives its request (a
    /// WebSocket relay, for hours) would otherwise keep the whole head buffer alive.
    pub fn unshare_head(&mut self) {
        if let Some(host) = self.host.take() {
            self.host = HeaderValue::from_bytes(host.as_bytes()).ok();
        }
        if let Some(identity) = self.identity.as_mut() {
            if let Ok(id) = HeaderValue::from_bytes(identity.request_id.as_bytes()) {
                identity.request_id = id;
            }
        }
    }
}

/// A response the gateway produces without an upstream (health endpoints).
#[derive(Debug)]
pub struct LocalResponse {
    /// Status.
    pub status: StatusCode,
    /// JSON body.
    pub body: Bytes,
}

/// The pipeline: a handle on the shared state, cheap to clone into every front.
#[derive(Debug, Clone)]
pub struct Pipeline {
    state: Arc<GatewayState>,
}

impl Pipeline {
    /// Creates the pipeline over the gateway's shared state.
    pub fn new(state: Arc<GatewayState>) -> Self {
        Pipeline { state }
    }

    /// The shared state.
    pub fn state(&self) -> &Arc<GatewayState> {
        &self.state
    }

    /// Starts a request: loads the current snapshot and counts the request in flight.
    pub fn begin(&self, protocol: Protocol) -> RequestCtx {
        RequestCtx {
            snapshot: self.state.snapshot(),
            protocol,
            identity: None,
            route: None,
            picked: None,
            plugin_ctx: PluginCtx::default(),
            error: None,
            method: Method::GET,
            path: String::new(),
            path_changed: false,
            peer: None,
            client: None,
            scheme: Scheme::Http,
            host: None,
            started: Instant::now(),
            upstream_latency: None,
            attempts: Attempts::default(),
            body_bytes: 0,
            _in_flight: self.state.enter(),
        }
    }

    /// The first phase: derives `x-request-id` / `traceparent`, checks the head and normalizes
    /// its path (see `orchestra_ingress`). A head that cannot be made canonical is a 400
    /// `PARAM_001` the front answers with [`Pipeline::error_response`].
    pub fn admit<'a>(
        &self,
        ctx: &mut RequestCtx,
        method: &'a Method,
        uri: &'a Uri,
        headers: &'a HeaderMap,
        peer: Option<IpAddr>,
        scheme: Scheme,
    ) -> Result<RequestHead<'a>, GatewayError> {
        ctx.method = method.clone();
        ctx.identity = Some(RequestIdentity::from_headers(headers));
        ctx.peer = peer;
        ctx.scheme = scheme;
        ctx.path.clear();
        let head = match RequestHead::parse(method, uri, headers, peer, scheme) {
            Ok(h) => h,
            Err(e) => {
                // Logged as sent (without the query, see `finish`).
                ctx.path.push_str(uri.path());
                return Err(GatewayError::BadRequest(e.to_string()));
            }
        };
        ctx.path.push_str(&head.path);
        if let Some(q) = head.query {
            ctx.path.push('?');
            ctx.path.push_str(q);
        }
        ctx.path_changed = head.path_changed();
        let trusted = &ctx.snapshot.server.trusted_proxies;
        ctx.client = trusted.resolve(peer, headers);
        // From a `Host` header the value is shared, not copied (HTTP/2 and HTTP/3 carry the
        // authority in the URI instead).
        ctx.host = match (uri.authority(), headers.get(http::header::HOST)) {
            (None, Some(v)) => Some(v.clone()),
            _ => head.host.and_then(|h| HeaderValue::from_str(h).ok()),
        };
        let limit = ctx.snapshot.server.limits.max_request_body;
        let declared = headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit) {
            return Err(body_too_large(limit));
        }
        Ok(head)
    }

    /// The client address behind `server.trusted_proxies` (the peer when it is not a trusted
    /// proxy), once admitted; what plugins and `client_ip` hashing see.
    pub fn client_ip(&self, ctx: &RequestCtx) -> Option<IpAddr> {
        ctx.client
    }

    /// Answers the built-in endpoints (`/healthz`, `/readyz`) before routing.
    pub fn builtin(&self, head: &RequestHead<'_>) -> Option<LocalResponse> {
        if head.method != Method::GET && head.method != Method::HEAD {
            return None;
        }
        match &*head.path {
            "/healthz" => Some(LocalResponse {
                status: StatusCode::OK,
                body: Bytes::from_static(br#"{"status":"ok"}"#),
            }),
            "/readyz" => Some(crate::backend::readyz(&self.state)),
            _ => None,
        }
    }

    /// Finds the route: first match in file order.
    pub fn route(&self, ctx: &mut RequestCtx, head: &RequestHead<'_>) -> Result<(), GatewayError> {
        let req = RouteRequest {
            host: head.host,
            path: &head.path,
            method: head.method,
            headers: head.headers,
        };
        let (i, route) = ctx
            .snapshot
            .routes
            .find(&req)
            .ok_or(GatewayError::NoRoute)?;
        if let Some(key) = route
            .upstream()
            .and_then(|u| ctx.snapshot.upstreams.get(u))
            .and_then(|u| u.policy.hash_key.as_ref())
        {
            ctx.attempts.hash_key = attempts::hash_of(key, head.headers, ctx.client);
        }
        ctx.route = Some(i);
        Ok(())
    }

    /// The gateway service answering the matched route (`serve = "..."`), if any: the front
    /// hands the request to it after [`Pipeline::on_request`] instead of picking a target.
    pub fn service(&self, ctx: &RequestCtx) -> Option<Service> {
        ctx.snapshot.routes.routes().get(ctx.route?)?.service()
    }

    /// Removes upgrade tokens other than `websocket`, runs the route's plugin chain on the
    /// headers going upstream (plugins see the client address resolved behind
    /// `server.trusted_proxies`), then sets the identity headers (`x-request-id`,
    /// `traceparent`) and the `X-Forwarded-*` headers, so no plugin can drop or forge them.
    pub fn on_request(
        &self,
        ctx: &mut RequestCtx,
        upstream_headers: &mut dyn HeaderOps,
    ) -> Result<(), GatewayError> {
        strip_foreign_upgrade(upstream_headers);
        // Disjoint field borrows: the snapshot is read while `plugin_ctx` is written.
        if let Some(route) = ctx.route.and_then(|i| ctx.snapshot.routes.routes().get(i)) {
            if !route.chain.is_empty() {
                let mut view = RequestView {
                    method: &ctx.method,
                    path: &ctx.path,
                    headers: upstream_headers,
                    client_ip: ctx.client,
                    ctx: &mut ctx.plugin_ctx,
                };
                route
                    .chain
                    .on_request(&mut view)
                    .map_err(GatewayError::Rejected)?;
            }
        }
        if let Some(id) = &ctx.identity {
            upstream_headers.set(X_REQUEST_ID_NAME, never_indexed(&id.request_id));
            upstream_headers.set(TRACEPARENT_NAME, never_indexed(&id.traceparent));
        }
        set_forwarded(
            upstream_headers,
            ctx.peer,
            &ctx.snapshot.server.trusted_proxies,
            ctx.scheme,
            ctx.host.as_ref(),
        );
        Ok(())
    }

    /// Counts one chunk of the request body against `server.max_request_body` (413 beyond it)
    /// and runs the chain's body phase on it (only for chains that inspect bodies, e.g.
    /// `limits`). Every front calls it on every chunk.
    pub fn on_request_body(&self, ctx: &mut RequestCtx, chunk: &[u8]) -> Result<(), GatewayError> {
        ctx.body_bytes += chunk.len() as u64;
        let limit = ctx.snapshot.server.limits.max_request_body;
        if ctx.body_bytes > limit {
            return Err(body_too_large(limit));
        }
        let Some(route) = ctx.route.and_then(|i| ctx.snapshot.routes.routes().get(i)) else {
            return Ok(());
        };
        if !route.chain.inspects_body() {
            return Ok(());
        }
        route
            .chain
            .on_request_body(chunk, ctx.body_bytes, &mut ctx.plugin_ctx)
            .map_err(GatewayError::Rejected)
    }

    /// True when the route's chain wants to see request body chunks.
    pub fn inspects_body(&self, ctx: &RequestCtx) -> bool {
        ctx.route
            .and_then(|i| ctx.snapshot.routes.routes().get(i))
            .is_some_and(|r| r.chain.inspects_body())
    }

    /// The path and query to send upstream when it differs from what the client sent: the
    /// normalized path, with the matched prefix removed when the route has `strip_prefix`.
    pub fn upstream_path(&self, ctx: &RequestCtx) -> Option<String> {
        let route = ctx.route.and_then(|i| ctx.snapshot.routes.routes().get(i));
        if let Some(rewritten) = route.and_then(|r| r.rewrite_path(&ctx.path)) {
            return Some(rewritten);
        }
        ctx.path_changed.then(|| ctx.path.clone())
    }

    /// Marks the arrival of the upstream's response head (upstream latency and the attempt's
    /// outcome for the balancer).
    pub fn upstream_responded(&self, ctx: &mut RequestCtx, status: u16) {
        ctx.upstream_latency = Some(ctx.started.elapsed());
        ctx.attempts.responded(status);
    }

    /// Runs the response phase: `x-request-id` toward the client and the plugin chain in reverse.
    pub fn on_response(&self, ctx: &RequestCtx, status: StatusCode, headers: &mut dyn HeaderOps) {
        if let Some(id) = &ctx.identity {
            headers.set(X_REQUEST_ID_NAME, never_indexed(&id.request_id));
        }
        if let Some(route) = ctx.route.and_then(|i| ctx.snapshot.routes.routes().get(i)) {
            if !route.chain.is_empty() {
                route.chain.on_response(status, headers, &ctx.plugin_ctx);
            }
        }
    }

    /// The headers and body of the gateway's own answer to `err`. A plugin's plain reply (e.g. a
    /// CORS preflight) has no JSON body and is not counted as an error.
    pub fn error_response(&self, ctx: &mut RequestCtx, err: GatewayError) -> ErrorResponse {
        if let GatewayError::Rejected(r) = &err {
            if r.plain_answer {
                return ErrorResponse {
                    status: r.status,
                    headers: r.headers.clone(),
                    body: Bytes::new(),
                };
            }
        }
        let body = err.body(ctx.request_id());
        let mut headers = vec![(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )];
        headers.extend(err.headers());
        let status = err.status();
        ctx.error = Some(err);
        ErrorResponse {
            status,
            headers,
            body,
        }
    }

    /// Ends the request: releases the target slot, records latency histograms and status
    /// counters, and queues the access-log line (formatted and written on the access log's own
    /// thread, see [`access_log`]).
    ///
    /// The second and last clock read of the request (the first is in [`Pipeline::begin`]).
    /// `finish` is the request's last phase: it moves the path out of `ctx` into the log line.
    pub fn finish(&self, ctx: &mut RequestCtx, status: u16, bytes: usize) {
        ctx.attempts.finish();
        let ended = Instant::now();
        let elapsed = ended.saturating_duration_since(ctx.started);
        self.record(ctx, status, elapsed);
        if !access_log::enabled() {
            return;
        }
        let route = ctx.route.and_then(|i| ctx.snapshot.routes.routes().get(i));
        let mut path = std::mem::take(&mut ctx.path);
        // The query is left out of the log: it may carry tokens (`?token=`).
        if let Some(q) = path.find('?') {
            path.truncate(q);
        }
        access_log::submit(AccessLine {
            request_id: ctx.identity.as_ref().map(|i| i.request_id.clone()),
            protocol: ctx.protocol.as_str(),
            method: ctx.method.clone(),
            path,
            route: route.map(|r| Arc::clone(&r.name)),
            upstream: ctx.picked.as_ref().map(|p| Arc::clone(&p.upstream.name)),
            target: ctx.picked.as_ref().map(|p| p.addr),
            status,
            bytes,
            duration: elapsed,
            ended,
            error: ctx.error.as_ref().map(GatewayError::code).unwrap_or(""),
        });
    }

    /// Histograms (route, target, protocol; total and upstream latency) and status counters.
    fn record(&self, ctx: &RequestCtx, status: u16, elapsed: std::time::Duration) {
        let series = &ctx.snapshot.series;
        let total = elapsed.as_micros() as u64;
        let proto = series.protocol(ctx.protocol);
        let route = ctx.route.and_then(|i| series.routes.get(i));
        let target = ctx.picked.as_ref().and_then(|p| {
            let up = ctx
                .route
                .and_then(|i| ctx.snapshot.routes.routes().get(i))?
                .upstream()?;
            series.target(up, p.addr)
        });
        let registry = &self.state.registry;
        let mut ids = [proto.total; 3];
        let mut n = 1;
        if let Some((pair, counters)) = route {
            counters.add(status);
            ids[n] = pair.total;
            n += 1;
        } else {
            series.no_route.add(status);
        }
        if let Some(pair) = target {
            ids[n] = pair.total;
            n += 1;
        }
        registry.record(&ids[..n], total);
        if let Some(up) = ctx.upstream_latency {
            let mut ids = [proto.upstream; 3];
            let mut n = 1;
            if let Some((pair, _)) = route {
                ids[n] = pair.upstream;
                n += 1;
            }
            if let Some(pair) = target {
                ids[n] = pair.upstream;
                n += 1;
            }
            registry.record(&ids[..n], up.as_micros() as u64);
        }
    }
}

/// 413 `PARAM_001`: the request body is larger than `server.max_request_body`.
fn body_too_large(limit: u64) -> GatewayError {
    GatewayError::Rejected(Reject::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "PARAM_001",
        format!("request body exceeds {limit} bytes (server.max_request_body)"),
    ))
}

/// The gateway's own answer to an error, ready for any front to write.
#[derive(Debug)]
pub struct ErrorResponse {
    /// Status code.
    pub status: StatusCode,
    /// Headers besides `x-request-id` (added by the response phase).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// JSON body.
    pub body: Bytes,
}
