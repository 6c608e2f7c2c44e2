//! Taking an upgraded HTTP/1.1 connection out of pingora after its `101`, so that an idle
//! WebSocket costs only its two sockets and a small relay task.
//!
//! While pingora drives a connection, its task holds the whole request: the proxy's boxed phase
//! futures, the [`Session`] (the request head's read buffer, the parsed request and response
//! headers, the body reader and writer, digests) and the gateway's [`RequestCtx`]. For a
//! WebSocket that stays open for hours none of that is needed after the `101`. [`hand_off`]
//! takes the client's transport stream out of the session (leaving pingora a parsed placeholder
//! request over an empty in-memory stream, which it finishes and drops at once) and relays it on
//! a task of its own with the request's context moved there; the access log line and the
//! histograms are written when the WebSocket ends, as before, and `front.rs`'s `logging` skips
//! the placeholder ([`is_placeholder`]).
//!
//! The listener's connection slot (`server.max_connections`) travels with the socket
//! (`ORCHESTRA PATCH (connection slot)` in `vendor/pingora-core`), so a detached WebSocket still
//! counts against the cap until its socket is closed.
//!
//! The client is relayed as a [`StreamPeer`] with the session's write timeout, so a client that
//! stops reading is still cut.

use std::io::Cursor;

use futures::FutureExt;
use http::StatusCode;
use pingora::protocols::http::ServerSession;
use pingora::proxy::Session;

use super::{Peer, StreamPeer};
use crate::pipeline::{Pipeline, Protocol, RequestCtx};

/// The request pingora's session is left with: parsed, then finished without a response.
const PLACEHOLDER_HEAD: &[u8] = b"GET / HTTP/1.1\r\nHost: detached.invalid\r\n\r\n";

/// What [`detach`] did.
#[derive(Debug)]
enum Detached {
    /// The client's connection, out of pingora.
    Client(StreamPeer),
    /// The client has already closed (or failed): nothing to relay.
    Ended,
    /// Not an HTTP/1 session (nothing was taken): relay through the session.
    Kept,
}

/// Takes the client's connection out of `session` after its `101` (the response head and any
/// bytes already written are flushed by the peer's first write or by [`StreamPeer::flush`]).
async fn detach(session: &mut Session) -> Detached {
    if !matches!(session.as_downstream(), ServerSession::H1(_)) {
        return Detached::Kept;
    }
    super::no_body_read_timeout(session);
    super::release_idle_body_buffer(session);
    let write_timeout = session.as_downstream().get_write_timeout();
    let sent = session.body_bytes_sent() as u64;
    // Bytes the client sent right behind its request head, or whatever is ready on the socket:
    // taken with a single poll (dropping a pending read loses nothing; the relay does the same).
    let preread = match session.read_request_body().now_or_never() {
        None => None,
        Some(Ok(Some(data))) => Some(data),
        Some(Ok(None) | Err(_)) => return Detached::Ended,
    };
    let mut placeholder =
        ServerSession::new_http1(Box::new(Cursor::new(PLACEHOLDER_HEAD.to_vec())));
    if !matches!(placeholder.read_request().await, Ok(true)) {
        // A fixed, valid head over a memory stream: cannot fail. Keep relaying in place if it did.
        return match preread {
            None => Detached::Kept,
            Some(_) => Detached::Ended,
        };
    }
    placeholder.set_keepalive(None);
    let stream = match std::mem::replace(session.as_downstream_mut(), placeholder) {
        ServerSession::H1(h1) => h1.into_inner(),
        other => {
            *session.as_downstream_mut() = other;
            return Detached::Kept;
        }
    };
    Detached::Client(StreamPeer::detached(stream, preread, write_timeout, sent))
}

/// Moves the request's context out for the relay task, leaving pingora a placeholder that
/// `logging` recognises ([`is_placeholder`]) and does not record; the taken context stops
/// sharing the request head's buffer ([`RequestCtx::unshare_head`]).
fn take_ctx(pipeline: &Pipeline, ctx: &mut RequestCtx) -> RequestCtx {
    let mut taken = std::mem::replace(ctx, pipeline.begin(Protocol::Ws));
    taken.unshare_head();
    taken
}

/// True for the context [`hand_off`] leaves pingora: a WebSocket that never went through
/// [`Pipeline::admit`] (every admitted request has its identity; only admitted requests are
/// marked [`Protocol::Ws`]).
pub fn is_placeholder(ctx: &RequestCtx) -> bool {
    ctx.protocol == Protocol::Ws && ctx.identity.is_none()
}

/// Relays an upgraded connection (after its `101`) to `peer`: the client's connection is taken
/// out of pingora and relayed on a task of its own with the request's context, which is
/// finished (access log, histograms, balancer slot) when the WebSocket ends; a connection that
/// cannot be taken out is relayed through the session ([`super::run`]).
pub async fn hand_off<P: Peer + 'static>(
    session: &mut Session,
    pipeline: &Pipeline,
    ctx: &mut RequestCtx,
    mut peer: P,
) {
    match detach(session).await {
        Detached::Client(mut client) => {
            let mut ctx = take_ctx(pipeline, ctx);
            let pipeline = pipeline.clone();
            tokio::spawn(async move {
                // What the session left unwritten (the `101`, early bytes) goes first.
                if client.flush().await.is_ok() {
                    super::pump(&mut client, &mut peer).await;
                }
                let bytes = client.bytes_sent();
                drop(client);
                pipeline.finish(&mut ctx, StatusCode::SWITCHING_PROTOCOLS.as_u16(), bytes);
            });
        }
        Detached::Ended => peer.finish().await,
        Detached::Kept => super::run(session, peer).await,
    }
}
