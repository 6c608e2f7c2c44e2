//! pingora-core's sessions on the stream front. Each stream of an HTTP/2 connection (h2c or TLS
//! with ALPN `h2`) arrives as a pingora-core [`ServerSession`] (pingora-core's connection
//! handling: handshake, SETTINGS, the h2c preface bound, GOAWAY on shutdown) and is served by the
//! [`StreamFront`] through [`H2Wire`]. On an HTTP/1.1 connection [`GatewayApp`] reads each head
//! as pingora-proxy would and serves a request without a body on the stream front as well
//! (borrowing the session, which then goes on to the connection's next request); any other
//! request goes to pingora-proxy ([`crate::front`]).

use std::borrow::BorrowMut;
use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use http::HeaderMap;
use pingora::apps::{HttpPersistentSettings, HttpServerApp, HttpServerOptions, ReusedHttpStream};
use pingora::http::ResponseHeader;
use pingora::protocols::http::v2::server::H2Options;
use pingora::protocols::http::ServerSession;
use pingora::protocols::Stream;
use pingora::proxy::HttpProxy;
use pingora::server::ShutdownWatch;

use super::wire::{Reset, Wire};
use super::{Origin, StreamFront};
use crate::front::PingoraFront;
use crate::pipeline::{Protocol, Scheme};

/// A pingora-core session as a [`Wire`]: an HTTP/2 stream (owned), or one request of an
/// HTTP/1.1 connection (borrowed: the connection goes on after it).
pub struct SessionWire<S> {
    session: S,
    tls: bool,
    /// The response was given up after its head (HTTP/1.1: the connection must be closed, not
    /// finished: finishing would end a chunked body as if it were complete).
    aborted: bool,
}

/// An HTTP/2 stream of a pingora-core session as a [`Wire`].
pub type H2Wire = SessionWire<ServerSession>;

impl<S> SessionWire<S> {
    /// The wire of a session whose request came from `origin`.
    fn new(session: S, origin: &Origin) -> Self {
        SessionWire {
            session,
            tls: origin.scheme == Scheme::Https,
            aborted: false,
        }
    }
}

fn text(e: Box<pingora::Error>) -> String {
    e.to_string()
}

impl<S: BorrowMut<ServerSession> + Send> Wire for SessionWire<S> {
    async fn recv_data(&mut self) -> Result<Option<Bytes>, String> {
        self.session
            .borrow_mut()
            .read_request_body()
            .await
            .map_err(text)
    }

    async fn send_response(&mut self, mut head: Box<ResponseHeader>) -> Result<(), String> {
        let session = self.session.borrow_mut();
        if matches!(session, ServerSession::H1(_)) {
            // An HTTP/2 upstream's head says HTTP/2.
            head.set_version(http::Version::HTTP_11);
            if needs_chunked(session, &head) {
                // HTTP/1.1 frames a body of unknown length in chunks (pingora-core would
                // otherwise end it by closing the connection).
                head.insert_header(http::header::TRANSFER_ENCODING, "chunked")
                    .map_err(text)?;
            }
        }
        session.write_response_header(head).await.map_err(text)
    }

    async fn send_data(&mut self, data: Bytes, end: bool) -> Result<(), String> {
        self.session
            .borrow_mut()
            .write_response_body(data, end)
            .await
            .map_err(text)
    }

    async fn send_trailers(&mut self, trailers: HeaderMap) -> Result<(), String> {
        self.session
            .borrow_mut()
            .write_response_trailers(trailers)
            .await
            .map_err(text)
    }

    async fn finish(&mut self) -> Result<(), String> {
        self.session.borrow_mut().finish_body().await.map_err(text)
    }

    /// HTTP/2: `RST_STREAM(INTERNAL_ERROR)` either way (pingora-core's `shutdown`). HTTP/1.1
    /// has no stream to reset: the connection is closed by the caller ([`GatewayApp`]).
    fn reset(&mut self, _why: Reset) {
        self.aborted = true;
        match self.session.borrow_mut() {
            ServerSession::H2(s) => s.shutdown(),
            other => other.set_keepalive(None),
        }
    }

    /// HTTP/2: dropping the session's unread request body tells the client to stop (the h2
    /// crate sends `RST_STREAM(NO_ERROR)` after a complete response). HTTP/1.1: nothing is
    /// unread (the stream front serves HTTP/1.1 requests without a body only).
    fn stop_unread(&mut self) {}

    /// pingora-core's HTTP/2 session keeps request trailers to itself.
    async fn discard_trailers(&mut self) {}

    fn may_advertise_h3(&self) -> bool {
        self.tls
    }

    /// HTTP/1.1: the connection's end (read as pingora-proxy watches it while it waits for an
    /// upstream). HTTP/2: a reset stream shows on the next send.
    async fn closed(&mut self) {
        let session = self.session.borrow_mut();
        if matches!(session, ServerSession::H1(_)) && session.read_body_or_idle(true).await.is_err()
        {
            return;
        }
        std::future::pending::<()>().await
    }
}

/// Serves one HTTP/2 stream whose session pingora-core made (with its head already read: an
/// HTTP/2 session's `read_request` only says so). Not an `async fn`: the preparation needs no
/// await, and the stream front's future is the one allocated.
fn serve_h2(
    front: &StreamFront,
    mut session: ServerSession,
) -> impl Future<Output = ()> + Send + '_ {
    let (head, origin) = take_request(&mut session, Protocol::H2);
    front.serve(head, SessionWire::new(session, &origin), origin)
}

/// The request of a session whose head was read, as the stream front takes it: method, target
/// and version copied, the header map moved out; and where it came from.
fn take_request(session: &mut ServerSession, protocol: Protocol) -> (http::request::Parts, Origin) {
    let peer = session.client_addr().and_then(|a| a.as_inet()).copied();
    let tls = crate::front::is_tls(session);
    let req = session.req_header_mut();
    let (mut head, ()) = http::Request::new(()).into_parts();
    head.method = req.method.clone();
    head.uri = req.uri.clone();
    head.version = req.version;
    head.headers = req.take_headers();
    let origin = Origin {
        peer,
        protocol,
        scheme: if tls { Scheme::Https } else { Scheme::Http },
    };
    (head, origin)
}

/// True when an HTTP/1.1 response head announces a body but neither its length nor chunks.
fn needs_chunked(session: &ServerSession, head: &ResponseHeader) -> bool {
    let status = head.status.as_u16();
    let bodiless = head.status.is_informational()
        || status == 204
        || status == 304
        || session.req_header().method == http::Method::HEAD;
    !bodiless
        && !head.headers.contains_key(http::header::CONTENT_LENGTH)
        && !head.headers.contains_key(http::header::TRANSFER_ENCODING)
}

/// Whether the stream front serves this HTTP/1.1 request (its head just read) instead of
/// pingora-proxy: an HTTP/1.1 request without a body, not an upgrade, in origin form, without
/// `Expect`, when header spellings are not preserved. Everything else keeps pingora-proxy's
/// handling (request bodies with its retry buffer and `100-continue`, WebSocket upgrades and the
/// gateway's WebSocket services, HTTP/1.0, the header case map).
fn stream_front_serves(session: &mut ServerSession, preserve_case: bool) -> bool {
    let req = session.req_header();
    let plain = !preserve_case
        && req.version == http::Version::HTTP_11
        && req.method != http::Method::CONNECT
        && req.uri.authority().is_none()
        && !req.headers.contains_key(http::header::EXPECT);
    plain && !session.is_upgrade_req() && session.is_body_empty()
}

/// Serves one HTTP/1.1 request on the stream front; `true` when the response was given up after
/// its head (the connection must then be closed).
async fn serve_h1(
    front: &StreamFront,
    session: &mut ServerSession,
    keepalive_secs: u64,
    shutting_down: bool,
) -> bool {
    if shutting_down {
        session.set_keepalive(None);
    } else if session.get_keepalive().is_some() {
        session.set_keepalive(Some(keepalive_secs));
    }
    let (head, origin) = take_request(session, Protocol::H1);
    let mut wire = SessionWire::new(session, &origin);
    front.serve(head, &mut wire, origin).await;
    wire.aborted
}

/// The pingora server app of the gateway's TCP listeners: HTTP/2 streams and bodiless HTTP/1.1
/// requests to the [`StreamFront`], other HTTP/1.1 requests (bodies, WebSocket upgrades...) to
/// pingora-proxy's `HttpProxy` over [`PingoraFront`]. Connection handling (TLS, ALPN, h2c,
/// limits) is pingora-core's either way; the server options and HTTP/2 settings are the proxy's.
pub struct GatewayApp {
    proxy: Arc<HttpProxy<PingoraFront>>,
    streams: StreamFront,
}

impl GatewayApp {
    /// The app over the configured proxy and the stream front.
    pub fn new(proxy: HttpProxy<PingoraFront>, streams: StreamFront) -> Self {
        GatewayApp {
            proxy: Arc::new(proxy),
            streams,
        }
    }

    /// An HTTP/1.1 connection: this loop serves its requests (one future per connection, as
    /// the proxy's own loop): the head is read as the proxy reads it, then each request goes to
    /// the stream front or, when it needs what only pingora-proxy does, to the proxy.
    async fn serve_h1_connection(
        self: &Arc<Self>,
        session: ServerSession,
        shutdown: &ShutdownWatch,
    ) -> Option<ReusedHttpStream> {
        let mut session = Box::new(session);
        loop {
            session = self.proxy.handle_new_request(session).await?;
            let live = self.streams.live();
            if !stream_front_serves(&mut session, live.server.preserve_header_case) {
                return self.proxy.process_read_http(session, shutdown).await;
            }
            let keepalive = crate::front::keepalive_secs(live.server.limits.keepalive_timeout);
            drop(live);
            let shutting_down = *shutdown.borrow();
            if serve_h1(&self.streams, &mut session, keepalive, shutting_down).await {
                // Not `finish`: the client must see the response end early.
                session.shutdown().await;
                return None;
            }
            let settings = HttpPersistentSettings::for_session(&session);
            let stream = session.finish().await.ok()??;
            let reused = ReusedHttpStream::from_reusable_stream(stream, settings);
            session = Box::new(reused.into_next_session(self.proxy.server_options()));
        }
    }
}

#[async_trait]
impl HttpServerApp for GatewayApp {
    async fn process_new_http(
        self: &Arc<Self>,
        session: ServerSession,
        shutdown: &ShutdownWatch,
    ) -> Option<ReusedHttpStream> {
        if matches!(session, ServerSession::H2(_)) {
            // Boxed: the stream front's future is larger than the hand-off to the proxy, and
            // `async_trait` boxes this method's future on every call.
            Box::pin(serve_h2(&self.streams, session)).await;
            return None;
        }
        if !matches!(session, ServerSession::H1(_)) {
            return self.proxy.process_new_http(session, shutdown).await;
        }
        // Boxed: an HTTP/1.1 connection's future holds pingora-proxy's (~10 KB); inline, every
        // HTTP/2 stream's future (this method's, boxed per call by `async_trait`) would be as
        // large. Once per connection.
        Box::pin(self.serve_h1_connection(session, shutdown)).await
    }

    async fn http_cleanup(&self) {
        self.proxy.http_cleanup().await;
    }

    fn server_options(&self) -> Option<&HttpServerOptions> {
        self.proxy.server_options()
    }

    fn h2_options(&self) -> Option<H2Options> {
        self.proxy.h2_options()
    }

    async fn process_custom_session(
        self: Arc<Self>,
        _stream: Stream,
        _shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        None
    }
}
