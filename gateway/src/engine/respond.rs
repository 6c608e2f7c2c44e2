//! The gateway's own answers (errors, `/healthz`, `/readyz`), written the same way on every
//! wire: headers from the error table (`Pipeline::error_response`), `Content-Length`, the
//! response phase (`x-request-id`, the route's plugins in reverse), `Alt-Svc` where it applies,
//! then one [`LocalWriter`] per wire puts the head and body on it.

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

use crate::error::GatewayError;
use crate::pipeline::{ErrorResponse, Pipeline, RequestCtx};

/// What went to the client: the status (0 when no response head was sent) and the body bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sent {
    /// Response status, 0 when none was sent.
    pub status: u16,
    /// Response body bytes delivered.
    pub bytes: usize,
}

/// A local answer that could not be written completely: what was meant to go out (for the
/// access log and the histograms) and why it did not.
#[derive(Debug)]
pub struct WriteFailed<E> {
    /// The status and body size the answer had.
    pub sent: Sent,
    /// The wire's error.
    pub error: E,
}

impl<E: std::fmt::Display> std::fmt::Display for WriteFailed<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "writing a {} answer: {}", self.sent.status, self.error)
    }
}

/// One wire's way of writing a complete gateway-generated response.
pub trait LocalWriter: Send {
    /// Why writing failed (the client went away, mostly).
    type Error: std::fmt::Display + Send;

    /// True when the response carries no body (`HEAD`).
    fn head_only(&self) -> bool;

    /// True when the connection is one `Alt-Svc` may advertise HTTP/3 on (TLS, not HTTP/3
    /// itself).
    fn may_advertise_h3(&self) -> bool;

    /// Writes the head and, unless [`LocalWriter::head_only`], the body, and ends the response.
    fn write(
        &mut self,
        status: StatusCode,
        headers: HeaderMap,
        body: Bytes,
    ) -> impl std::future::Future<Output = Result<(), Self::Error>> + Send;
}

/// `Alt-Svc: h3=":PORT"; ma=86400` while the HTTP/3 endpoint runs and `[listeners] alt_svc` is
/// true (the default), for connections where [`LocalWriter::may_advertise_h3`] holds: the same
/// rule for proxied and local responses on every front.
pub fn alt_svc(pipeline: &Pipeline, ctx: &RequestCtx, may_advertise: bool) -> Option<HeaderValue> {
    if !may_advertise || !ctx.snapshot.listeners.alt_svc {
        return None;
    }
    // The port the QUIC endpoint actually bound at start (a reload cannot move it), formatted
    // once when it was bound.
    pipeline.state().alt_svc().cloned()
}

/// Writes a complete gateway-generated response through `writer`.
pub async fn write_local<W: LocalWriter>(
    writer: &mut W,
    pipeline: &Pipeline,
    ctx: &RequestCtx,
    status: StatusCode,
    extra: &[(HeaderName, HeaderValue)],
    body: Bytes,
) -> Result<Sent, WriteFailed<W::Error>> {
    let mut headers = HeaderMap::with_capacity(extra.len() + 3);
    for (n, v) in extra {
        headers.append(n.clone(), v.clone());
    }
    headers.insert(http::header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    pipeline.on_response(ctx, status, &mut headers);
    if let Some(v) = alt_svc(pipeline, ctx, writer.may_advertise_h3()) {
        headers.insert(http::header::ALT_SVC, v);
    }
    let sent = Sent {
        status: status.as_u16(),
        bytes: if writer.head_only() { 0 } else { body.len() },
    };
    match writer.write(status, headers, body).await {
        Ok(()) => Ok(sent),
        Err(error) => Err(WriteFailed { sent, error }),
    }
}

/// Answers `err` with the gateway's JSON error (or a plugin's plain reply) through `writer`.
pub async fn write_error<W: LocalWriter>(
    writer: &mut W,
    pipeline: &Pipeline,
    ctx: &mut RequestCtx,
    err: GatewayError,
) -> Result<Sent, WriteFailed<W::Error>> {
    let ErrorResponse {
        status,
        headers,
        body,
    } = pipeline.error_response(ctx, err);
    write_local(writer, pipeline, ctx, status, &headers, body).await
}

/// Answers a built-in endpoint (`/healthz`, `/readyz`) through `writer`.
pub async fn write_builtin<W: LocalWriter>(
    writer: &mut W,
    pipeline: &Pipeline,
    ctx: &RequestCtx,
    local: crate::pipeline::LocalResponse,
) -> Result<Sent, WriteFailed<W::Error>> {
    let json = [(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    )];
    write_local(writer, pipeline, ctx, local.status, &json, local.body).await
}
