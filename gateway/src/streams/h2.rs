//! HTTP/2 on pingora-core: each stream of an HTTP/2 connection (h2c or TLS with ALPN `h2`)
//! arrives as a pingora-core [`ServerSession`] (pingora-core's connection handling: handshake,
//! SETTINGS, the h2c preface bound, GOAWAY on shutdown) and is served by the [`StreamFront`]
//! through [`H2Wire`]. HTTP/1.1 connections go to pingora-proxy ([`crate::front`]) as before:
//! [`GatewayApp`] tells the two apart per session.

use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use http::HeaderMap;
use pingora::apps::{HttpServerApp, HttpServerOptions, ReusedHttpStream};
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

/// An HTTP/2 stream of a pingora-core session as a [`Wire`].
pub struct H2Wire {
    session: ServerSession,
    tls: bool,
}

fn text(e: Box<pingora::Error>) -> String {
    e.to_string()
}

impl Wire for H2Wire {
    async fn recv_data(&mut self) -> Result<Option<Bytes>, String> {
        self.session.read_request_body().await.map_err(text)
    }

    async fn send_response(&mut self, head: Box<ResponseHeader>) -> Result<(), String> {
        self.session.write_response_header(head).await.map_err(text)
    }

    async fn send_data(&mut self, data: Bytes, end: bool) -> Result<(), String> {
        self.session
            .write_response_body(data, end)
            .await
            .map_err(text)
    }

    async fn send_trailers(&mut self, trailers: HeaderMap) -> Result<(), String> {
        self.session
            .write_response_trailers(trailers)
            .await
            .map_err(text)
    }

    async fn finish(&mut self) -> Result<(), String> {
        self.session.finish_body().await.map_err(text)
    }

    /// `RST_STREAM(INTERNAL_ERROR)` either way (pingora-core's `shutdown`).
    fn reset(&mut self, _why: Reset) {
        if let ServerSession::H2(s) = &mut self.session {
            s.shutdown();
        }
    }

    /// Dropping the session's unread request body tells the client to stop (the h2 crate sends
    /// `RST_STREAM(NO_ERROR)` after a complete response).
    fn stop_unread(&mut self) {}

    /// pingora-core's HTTP/2 session keeps request trailers to itself.
    async fn discard_trailers(&mut self) {}

    fn may_advertise_h3(&self) -> bool {
        self.tls
    }
}

/// Serves one HTTP/2 stream whose session pingora-core made (with its head already read: an
/// HTTP/2 session's `read_request` only says so). Not an `async fn`: the preparation needs no
/// await, and the stream front's future is the one allocated.
fn serve_h2(
    front: &StreamFront,
    mut session: ServerSession,
) -> impl Future<Output = ()> + Send + '_ {
    let peer = session.client_addr().and_then(|a| a.as_inet()).copied();
    let tls = crate::front::is_tls_session(&session);
    let req = session.req_header_mut();
    let (mut head, ()) = http::Request::new(()).into_parts();
    head.method = req.method.clone();
    head.uri = req.uri.clone();
    head.version = http::Version::HTTP_2;
    head.headers = req.take_headers();
    let origin = Origin {
        peer,
        protocol: Protocol::H2,
        scheme: if tls { Scheme::Https } else { Scheme::Http },
    };
    front.serve(head, H2Wire { session, tls }, origin)
}

/// The pingora server app of the gateway's TCP listeners: HTTP/2 streams to the
/// [`StreamFront`], HTTP/1.1 (and its WebSocket upgrades) to pingora-proxy's `HttpProxy` over
/// [`PingoraFront`]. Connection handling (TLS, ALPN, h2c, limits) is pingora-core's either way;
/// the server options and HTTP/2 settings are the proxy's.
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
        self.proxy.process_new_http(session, shutdown).await
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
