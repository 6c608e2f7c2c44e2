//! The upstream attempt engine: what happens between "the route's plugins said yes" and "an
//! upstream response head is accepted", identical for every front.
//!
//! ```text
//!            ┌───────────────────────────── Verdict::Retry ◄──────────────────────────┐
//!            ▼                                                                         │
//! begin_attempt: backoff ─► pick (breaker + budget admission on the first, ──► front connects and
//!                            balancer slot, avoid the target that just failed)  sends (wire only)
//!                                                                                      │
//!     failed(ctx, error, replay)  ◄── connect / write / read error ────────────────────┤
//!       classify (one table) ─► outcome to the balancer ─► retry? (policy, budget,      │
//!       replayable) ─► Verdict                                                          │
//!     response_head(ctx, status, replay) ◄── response head ──────────────────────────────┘
//!       5xx the policy names and replayable ─► Retry; otherwise the outcome is kept until
//!       `Pipeline::finish` completes the slot (peak-EWMA, outlier detection, histograms)
//! ```
//!
//! The fronts keep only wire translation:
//! - the pingora front (`front.rs`, HTTP/1.1) maps pingora's phases onto these
//!   calls: `upstream_peer` → [`begin_attempt`], `fail_to_connect` / `error_while_proxy` →
//!   [`failed`] (pingora then re-enters `upstream_peer`), `upstream_response_filter` →
//!   [`response_head`], `fail_to_proxy` → [`classify`] and the error writer;
//! - the stream front (`streams/`: HTTP/2, HTTP/3 and bodiless HTTP/1.1) and the WebSocket
//!   tunnel (`ws_tunnel.rs`) run the loop above themselves.
//!
//! Rules every front gets from here, whatever the protocol:
//! - **Retries**: a connect failure may be retried for any method (nothing was sent); a reset,
//!   timeout or retryable 5xx only when the request is replayable ([`Replay`]: idempotent method
//!   and a body the front can still send again) — and within `retry.attempts` and the retry
//!   budget (connect failures are bounded by `attempts` only; see [`attempts`]).
//! - **Errors**: [`classify`] is the one table from a pingora error (the fronts and the tunnel
//!   turn their I/O errors into pingora errors of the matching type) to the balancer's
//!   [`Failure`] and the [`GatewayError`] the client sees: connect failures and resets 502
//!   `UPSTREAM_UNAVAILABLE`, read/write timeouts 504 `UPSTREAM_TIMEOUT`.
//! - **Timeouts**: connect, read and write timeouts of the upstream come from one peer builder
//!   (`upstream.rs`), used by pingora's proxy, the stream front's [`client::UpstreamClient`] and
//!   the tunnel's connect.
//! - **Per-request limits**: `server.max_request_body` is counted by
//!   `Pipeline::admit`/`Pipeline::on_request_body` on every front that carries a request body
//!   (a WebSocket upgrade has none: bytes after the `101` are a tunnel, not a body);
//!   `server.write_timeout` (a client that stops reading, "send stall") and
//!   `server.body_read_timeout` come from [`DownstreamLimits`], applied by each front to its
//!   wire (pingora: the session's write/read timeouts; HTTP/3: each send and each body read).
//! - **Answers**: [`respond`] writes the gateway's own responses (errors, `/healthz`) through
//!   one [`respond::LocalWriter`] per wire, with `Alt-Svc` where it applies.

pub mod attempts;
pub mod classify;
pub mod client;
pub mod respond;

use std::sync::Arc;
use std::time::Duration;

use orchestra_lb::Failure;

pub use self::attempts::Attempts;
pub use self::classify::{classify, classify_upstream, Classified};

use crate::error::GatewayError;
use crate::pipeline::{Picked, Pipeline, RequestCtx};

/// What the front does after an attempt failed.
#[derive(Debug)]
pub enum Verdict {
    /// Start another attempt ([`begin_attempt`] again).
    Retry,
    /// Stop and answer the client with this error (when nothing was sent to it yet).
    Answer(GatewayError),
}

/// Whether the request could be sent upstream again, as the front knows it.
#[derive(Debug, Clone, Copy)]
pub struct Replay {
    /// The method is idempotent (RFC 9110 §9.2.2).
    pub idempotent: bool,
    /// The whole request body (possibly empty) can still be sent again: pingora's retry buffer
    /// holds it, or no body byte has left the gateway yet.
    pub body_replayable: bool,
}

impl Replay {
    /// True when a reset, a timeout or a 5xx may be retried.
    pub fn replayable(self) -> bool {
        self.idempotent && self.body_replayable
    }
}

/// The per-request downstream limits of `[server]` (from the request's config snapshot), which
/// every front applies to its own wire.
#[derive(Debug, Clone, Copy)]
pub struct DownstreamLimits {
    /// Longest wait for the next request body chunk (408 beyond it).
    pub body_read_timeout: Duration,
    /// Longest wait for the client to accept response bytes ("send stall"); the response is cut
    /// beyond it.
    pub write_timeout: Duration,
    /// HTTP/1.1: longest wait for the next request on a kept-alive connection.
    pub keepalive_timeout: Duration,
}

impl DownstreamLimits {
    /// The limits the request runs with.
    pub fn of(ctx: &RequestCtx) -> Self {
        let l = &ctx.snapshot.server.limits;
        DownstreamLimits {
            body_read_timeout: l.body_read_timeout,
            write_timeout: l.write_timeout,
            keepalive_timeout: l.keepalive_timeout,
        }
    }
}

/// Starts one attempt: waits the retry backoff (after a failed attempt), then picks a target of
/// the route's upstream (admitting the request through the circuit breaker and the retry budget
/// on the first attempt).
pub async fn begin_attempt(ctx: &mut RequestCtx) -> Result<Picked, GatewayError> {
    if let Some(delay) = ctx.upstream().and_then(|u| ctx.attempts.backoff(u)) {
        tokio::time::sleep(delay).await;
    }
    pick(ctx)
}

/// Picks a target for one attempt (no backoff; [`begin_attempt`] waits it).
pub fn pick(ctx: &mut RequestCtx) -> Result<Picked, GatewayError> {
    let upstream_index = ctx
        .route
        .and_then(|i| ctx.snapshot.routes.routes().get(i))
        .and_then(|r| r.upstream())
        .ok_or_else(|| GatewayError::Internal("pick before route".into()))?;
    let upstream = ctx
        .snapshot
        .upstreams
        .get(upstream_index)
        .cloned()
        .ok_or_else(|| GatewayError::Internal("pick before route".into()))?;
    let i = ctx.attempts.start(&upstream)?;
    let target = upstream
        .balancer
        .targets()
        .get(i)
        .ok_or_else(|| GatewayError::Internal(format!("balancer picked target {i}")))?;
    let picked = Picked {
        addr: target.addr,
        upstream: Arc::clone(&upstream),
        upstream_index,
        target_index: i,
    };
    ctx.picked = Some(picked.clone());
    Ok(picked)
}

/// Records that the current attempt failed with `failure` (the balancer's outcome) and decides
/// whether to retry: the policy, the budget, and — except after a connect failure, when nothing
/// was sent — the request must be replayable.
pub fn retry_after(ctx: &mut RequestCtx, failure: Failure, replay: Replay) -> bool {
    ctx.attempts.failed();
    let connect = failure == Failure::ConnectFailure;
    // Nothing reached the upstream after a connect failure: any method may go again.
    let idempotent = connect || replay.replayable();
    let Some(upstream) = ctx.picked.as_ref().map(|p| Arc::clone(&p.upstream)) else {
        return false;
    };
    ctx.attempts.should_retry(&upstream, failure, idempotent) && idempotent
}

/// Where an attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Before the connection was up (TCP, TLS): nothing was sent, whatever the error says.
    Connect,
    /// On an established connection (writing the request, waiting for the response head).
    Exchange,
}

/// An attempt failed with `e` before a usable response head: records the outcome and says
/// whether to retry or what to answer.
pub fn failed(ctx: &mut RequestCtx, e: &pingora::Error, stage: Stage, replay: Replay) -> Verdict {
    let upstream = upstream_name(ctx);
    let Classified { mut failure, error } = classify_upstream(e, upstream);
    if stage == Stage::Connect && failure.is_some() {
        failure = Some(Failure::ConnectFailure);
    }
    let Some(failure) = failure else {
        // Not the upstream's fault (the client went away, a malformed request): no outcome
        // for the balancer, no retry.
        return Verdict::Answer(
            error.unwrap_or_else(|| GatewayError::Internal(e.etype().as_str().into())),
        );
    };
    if retry_after(ctx, failure, replay) {
        return Verdict::Retry;
    }
    Verdict::Answer(error.unwrap_or_else(|| GatewayError::Internal(e.etype().as_str().into())))
}

/// The upstream's response head arrived with `status`. Returns true when the front must discard
/// it and retry (a 5xx the retry policy names, on a replayable request); otherwise the outcome
/// is recorded (upstream latency, success or failure for the balancer) and the response goes on.
pub fn response_head(
    pipeline: &Pipeline,
    ctx: &mut RequestCtx,
    status: u16,
    replay: Replay,
) -> bool {
    if status >= 500 && retry_after(ctx, Failure::Status(status), replay) {
        return true;
    }
    pipeline.upstream_responded(ctx, status);
    false
}

/// The name of the upstream of the current attempt (empty before the first pick).
pub fn upstream_name(ctx: &RequestCtx) -> &str {
    ctx.picked
        .as_ref()
        .map(|p| &*p.upstream.name)
        .or_else(|| ctx.upstream().map(|u| &*u.name))
        .unwrap_or("")
}
