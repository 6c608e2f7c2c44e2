//! The upstream side of one attempt of the stream front on a pooled upstream session (from the
//! engine's shared `UpstreamClient`): request head, request body and response, streamed both ways
//! between the upstream session and the downstream [`Wire`].
//!
//! Reading the upstream response and forwarding the request body run in one `select!` loop, so
//! an upstream that answers while it still reads (an echo) never deadlocks against a client
//! still sending. Each direction moves one chunk at a time and waits for the other side's flow
//! control before reading the next: nothing is buffered beyond one chunk per direction.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::protocols::http::client::HttpSession;
use pingora::Error;

use super::wire::{Downstream, Inspector, Wire};
use crate::error::GatewayError;

/// Why an attempt ended without a usable response head.
#[derive(Debug)]
pub enum AttemptError {
    /// The upstream failed (connect, reset, timeout).
    Upstream(Box<Error>),
    /// The client's request body failed or was rejected (limit, plugin); answer with this error.
    Downstream(GatewayError),
    /// The client went away while the upstream had not answered yet.
    ClientGone,
}

/// An attempt that got its response head: the session, ready to stream the response body.
pub struct Exchange {
    /// The upstream session.
    pub session: HttpSession,
    /// True when the whole request body has been sent upstream.
    pub request_done: bool,
}

/// Sends the request head and streams the request body until the response head arrives.
///
/// Not an `async fn`: the session is moved into the `async move` block once (an `async fn` keeps
/// each by-value argument twice in its state).
#[allow(clippy::manual_async_fn)] // on purpose: see above
pub fn send_request<'a, 'b: 'a, W: Wire + 'a>(
    mut session: HttpSession,
    mut head: Box<RequestHeader>,
    body: &'a mut Downstream<W>,
    inspect: &'a mut Inspector<'b>,
) -> impl Future<Output = Result<Exchange, (HttpSession, AttemptError)>> + Send + use<'a, 'b, W> {
    async move {
        if matches!(session, HttpSession::H1(_))
            && !body.known_empty()
            && head.headers.get(http::header::CONTENT_LENGTH).is_none()
        {
            // HTTP/2 and HTTP/3 have no chunked framing; HTTP/1.1 needs one for a body of unknown
            // length.
            if let Err(e) = head.insert_header(http::header::TRANSFER_ENCODING, "chunked") {
                return Err((session, AttemptError::Upstream(e)));
            }
        }
        if let Err(e) = session.write_request_header(head).await {
            return Err((session, AttemptError::Upstream(e)));
        }
        let mut request_done = false;
        if body.known_empty() {
            if let Err(e) = session.finish_request_body().await {
                return Err((session, AttemptError::Upstream(e)));
            }
            request_done = true;
        }
        loop {
            tokio::select! {
                res = read_head(&mut session) => {
                    return match res {
                        Ok(()) => Ok(Exchange { session, request_done }),
                        Err(e) => Err((session, AttemptError::Upstream(e))),
                    };
                }
                next = body.next_or_gone(inspect, request_done) => {
                    let Some(chunk) = next else {
                        return Err((session, AttemptError::ClientGone));
                    };
                    match forward_chunk(&mut session, chunk).await {
                        Ok(done) => request_done = done,
                        Err(e) => return Err((session, e)),
                    }
                }
            }
        }
    }
}

/// Reads the response head, skipping HTTP/1.1 informational (`1xx`) heads.
async fn read_head(session: &mut HttpSession) -> pingora::Result<()> {
    loop {
        session.read_response_header().await?;
        let informational = session
            .response_header()
            .is_some_and(|h| h.status.is_informational());
        if !informational || !matches!(session, HttpSession::H1(_)) {
            return Ok(());
        }
    }
}

/// Writes one request body chunk upstream; `Ok(true)` once the body is complete.
async fn forward_chunk(
    session: &mut HttpSession,
    chunk: Result<Option<Bytes>, GatewayError>,
) -> Result<bool, AttemptError> {
    match chunk {
        Ok(Some(data)) => session
            .write_request_body(data, false)
            .await
            .map(|()| false)
            .map_err(AttemptError::Upstream),
        Ok(None) => session
            .finish_request_body()
            .await
            .map(|()| true)
            .map_err(AttemptError::Upstream),
        Err(e) => Err(AttemptError::Downstream(e)),
    }
}

/// The response head of a session whose [`send_request`] succeeded.
pub fn response_head(session: &HttpSession) -> Option<&ResponseHeader> {
    session.response_header()
}

/// What streaming the response body produced.
#[derive(Debug, Default)]
pub struct Streamed {
    /// Body bytes delivered to the client.
    pub bytes: usize,
    /// The response was read to its end (the session may be pooled when the request was too).
    pub response_done: bool,
    /// The request body was sent to its end.
    pub request_done: bool,
    /// The response already ended on the wire (with its last body chunk).
    pub wire_ended: bool,
    /// What failed, if anything (the response head is already out: the stream is reset).
    pub error: Option<String>,
}

/// Streams the response body to the client while forwarding the rest of the request body; a
/// client that does not take a chunk within `idle` (`server.write_timeout`) is cut.
pub async fn stream_response<W: Wire>(
    exchange: &mut Exchange,
    down: &mut Downstream<W>,
    inspect: &mut Inspector<'_>,
    idle: Duration,
) -> Streamed {
    let session = &mut exchange.session;
    let mut out = Streamed {
        request_done: exchange.request_done,
        ..Streamed::default()
    };
    loop {
        tokio::select! {
            res = session.read_response_body(), if !out.response_done => {
                match res {
                    // An empty DATA frame reads as the end of the body to some HTTP/3 clients
                    // (h3 among them): never send one.
                    Ok(Some(data)) if data.is_empty() => {}
                    Ok(Some(data)) => {
                        let n = data.len();
                        // The last chunk ends the response with it (no empty end frame after).
                        let end = session.response_done();
                        let sent = tokio::time::timeout(idle, down.wire.send_data(data, end)).await;
                        match sent {
                            Ok(Ok(())) => {
                                out.bytes += n;
                                if end {
                                    out.response_done = true;
                                    out.wire_ended = true;
                                }
                            }
                            Ok(Err(e)) => { out.error = Some(e); return out; }
                            Err(_) => { out.error = Some("client stalled".into()); return out; }
                        }
                    }
                    Ok(None) => out.response_done = true,
                    Err(e) => { out.error = Some(e.to_string()); return out; }
                }
            }
            chunk = down.next(inspect), if !out.request_done => {
                match forward_chunk(session, chunk).await {
                    Ok(done) => out.request_done = done,
                    // The response is already flowing: a request body that fails now only
                    // ends the upload; the upstream decides what to answer.
                    Err(AttemptError::Upstream(e)) => { out.error = Some(e.to_string()); return out; }
                    Err(AttemptError::Downstream(e)) => { out.error = Some(e.to_string()); return out; }
                    Err(AttemptError::ClientGone) => { out.error = Some("client gone".into()); return out; }
                }
            }
        }
        if out.response_done {
            // An upstream that answered without reading the whole body: stop the upload.
            return out;
        }
    }
}
