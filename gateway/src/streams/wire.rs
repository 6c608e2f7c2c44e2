//! What the stream front needs from a protocol: one request stream's downstream side
//! ([`Wire`]), the request body read through it one chunk at a time ([`Downstream`]), and the
//! gateway's own answers written on it ([`WireWriter`]).

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Response, StatusCode};
use orchestra_plugins::Reject;
use pingora::http::ResponseHeader;

use crate::engine::respond::LocalWriter;
use crate::error::GatewayError;

/// How a response ends abnormally.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reset {
    /// The client did not take the response in time (`server.write_timeout`).
    Cancelled,
    /// The response failed after its head went out (the upstream broke off).
    Internal,
}

/// One request stream's downstream side: an HTTP/2 stream or an HTTP/1.1 request of a
/// pingora-core session, or an HTTP/3 request stream. Every method acts on this stream only;
/// the connection is the protocol's business.
pub trait Wire: Send {
    /// The next request body chunk as the client sent it; `None` at the end of the body.
    fn recv_data(&mut self) -> impl Future<Output = Result<Option<Bytes>, String>> + Send;

    /// Sends the response head (its fields as they are: the front already filtered them).
    fn send_response(
        &mut self,
        head: Box<ResponseHeader>,
    ) -> impl Future<Output = Result<(), String>> + Send;

    /// Sends one response body chunk, waiting for the client's flow control; `end` ends the
    /// response with it.
    fn send_data(
        &mut self,
        data: Bytes,
        end: bool,
    ) -> impl Future<Output = Result<(), String>> + Send;

    /// Sends the response trailers (which end the response).
    fn send_trailers(
        &mut self,
        trailers: HeaderMap,
    ) -> impl Future<Output = Result<(), String>> + Send;

    /// Ends the response (unless trailers or the last chunk already did).
    fn finish(&mut self) -> impl Future<Output = Result<(), String>> + Send;

    /// Ends the response abnormally: the client sees a reset stream, not a complete response.
    fn reset(&mut self, why: Reset);

    /// Tells the client to stop sending a request body the answer did not need.
    fn stop_unread(&mut self);

    /// Reads (and drops) request trailers once the body has ended: they are not forwarded
    /// (pingora's upstream client has no API for them).
    fn discard_trailers(&mut self) -> impl Future<Output = ()> + Send;

    /// True when responses on this stream may advertise HTTP/3 (`Alt-Svc`): a TLS connection
    /// that is not HTTP/3 itself.
    fn may_advertise_h3(&self) -> bool;

    /// Resolves when the client has gone away while the front waits for the upstream (after
    /// the whole request body was read); never, where the wire cannot tell.
    fn closed(&mut self) -> impl Future<Output = ()> + Send;
}

/// A borrowed wire is a wire: the caller keeps it, to look at it after the request.
impl<W: Wire> Wire for &mut W {
    fn recv_data(&mut self) -> impl Future<Output = Result<Option<Bytes>, String>> + Send {
        (**self).recv_data()
    }
    fn send_response(
        &mut self,
        head: Box<ResponseHeader>,
    ) -> impl Future<Output = Result<(), String>> + Send {
        (**self).send_response(head)
    }
    fn send_data(
        &mut self,
        data: Bytes,
        end: bool,
    ) -> impl Future<Output = Result<(), String>> + Send {
        (**self).send_data(data, end)
    }
    fn send_trailers(
        &mut self,
        trailers: HeaderMap,
    ) -> impl Future<Output = Result<(), String>> + Send {
        (**self).send_trailers(trailers)
    }
    fn finish(&mut self) -> impl Future<Output = Result<(), String>> + Send {
        (**self).finish()
    }
    fn reset(&mut self, why: Reset) {
        (**self).reset(why)
    }
    fn stop_unread(&mut self) {
        (**self).stop_unread()
    }
    fn discard_trailers(&mut self) -> impl Future<Output = ()> + Send {
        (**self).discard_trailers()
    }
    fn may_advertise_h3(&self) -> bool {
        (**self).may_advertise_h3()
    }
    fn closed(&mut self) -> impl Future<Output = ()> + Send {
        (**self).closed()
    }
}

/// Called on every request body chunk (the route's body-inspecting plugins).
pub type Inspector<'a> = dyn FnMut(&[u8]) -> Result<(), GatewayError> + Send + 'a;

fn read_timed_out(after: Duration) -> GatewayError {
    GatewayError::Rejected(Reject::new(
        StatusCode::REQUEST_TIMEOUT,
        "PARAM_001",
        format!("no request body data for {after:?} (server.body_read_timeout)"),
    ))
}

/// A request stream's downstream side with its request body state: read one chunk at a time
/// (never buffered beyond one chunk), each wait bounded by `server.body_read_timeout` (408
/// beyond it), each chunk checked against `server.max_request_body` by the inspector.
pub struct Downstream<W> {
    /// The wire, for the response.
    pub wire: W,
    pending: Option<Bytes>,
    ended: bool,
    received: u64,
    taken: bool,
    read_timeout: Duration,
}

impl<W: Wire> Downstream<W> {
    /// A stream whose body has not been read yet.
    pub fn new(wire: W, read_timeout: Duration) -> Self {
        Downstream {
            wire,
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
    pub fn untouched(&self) -> bool {
        !self.taken
    }

    async fn read(&mut self, inspect: &mut Inspector<'_>) -> Result<Option<Bytes>, GatewayError> {
        loop {
            if self.ended {
                return Ok(None);
            }
            let received = tokio::time::timeout(self.read_timeout, self.wire.recv_data()).await;
            let chunk = match received {
                Ok(Ok(Some(chunk))) => chunk,
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
    pub async fn peek(&mut self, inspect: &mut Inspector<'_>) -> Result<(), GatewayError> {
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

    /// The next chunk for the upstream, as [`Downstream::next`]; once the body is `done`, waits
    /// for the client to go away instead (`None`).
    pub async fn next_or_gone(
        &mut self,
        inspect: &mut Inspector<'_>,
        done: bool,
    ) -> Option<Result<Option<Bytes>, GatewayError>> {
        if done {
            self.wire.closed().await;
            return None;
        }
        Some(self.next(inspect).await)
    }

    /// Tells the client to stop sending a body the answer did not need.
    pub fn stop_unread(&mut self) {
        if !self.ended {
            self.wire.stop_unread();
        }
    }

    /// Request trailers, once the body has ended, read and dropped.
    pub async fn discard_trailers(&mut self) {
        if self.ended {
            self.wire.discard_trailers().await;
        }
    }
}

/// A response head for [`Wire::send_response`] from its status and fields (moved, not copied).
pub fn response_head(status: StatusCode, headers: HeaderMap) -> Box<ResponseHeader> {
    let (mut parts, ()) = Response::new(()).into_parts();
    parts.status = status;
    parts.headers = headers;
    Box::new(ResponseHeader::from(parts))
}

/// A [`Wire`] as a [`LocalWriter`]: a client that does not take the answer within
/// `server.write_timeout` is cut, as on the pingora front.
pub struct WireWriter<'a, W> {
    /// The stream.
    pub wire: &'a mut W,
    /// `HEAD`: the head only.
    pub head_only: bool,
    /// `server.write_timeout`.
    pub write_timeout: Duration,
}

impl<W: Wire> LocalWriter for WireWriter<'_, W> {
    type Error = String;

    fn head_only(&self) -> bool {
        self.head_only
    }

    fn may_advertise_h3(&self) -> bool {
        self.wire.may_advertise_h3()
    }

    async fn write(
        &mut self,
        status: StatusCode,
        headers: HeaderMap,
        body: Bytes,
    ) -> Result<(), String> {
        let with_body = !self.head_only && !body.is_empty();
        let head = response_head(status, headers);
        let wire = &mut *self.wire;
        let written = async {
            wire.send_response(head).await?;
            if with_body {
                wire.send_data(body, true).await
            } else {
                wire.finish().await
            }
        };
        match tokio::time::timeout(self.write_timeout, written).await {
            Ok(result) => result,
            Err(_) => {
                self.wire.reset(Reset::Cancelled);
                Err("client stalled (server.write_timeout)".into())
            }
        }
    }
}
