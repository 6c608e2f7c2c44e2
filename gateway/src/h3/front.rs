//! The HTTP/3 per-request adapter: an h3 request stream as a [`Wire`] of the
//! [`StreamFront`], which runs the [`crate::pipeline::Pipeline`]'s phases and the engine's
//! attempts for HTTP/2 and HTTP/3 alike.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Buf, Bytes};
use http::{HeaderMap, Request, Response};
use pingora::http::ResponseHeader;

use crate::pipeline::{Pipeline, Protocol, Scheme};
use crate::streams::wire::{Reset, Wire};
use crate::streams::{Origin, StreamFront};

/// The send half of a request stream.
pub type H3Send = h3::server::RequestStream<h3_quinn::SendStream<Bytes>, Bytes>;
/// The receive half of a request stream.
pub type H3Recv = h3::server::RequestStream<h3_quinn::RecvStream, Bytes>;
/// A whole request stream as h3 hands it over.
pub type H3Stream = h3::server::RequestStream<h3_quinn::BidiStream<Bytes>, Bytes>;

/// An h3 request stream, split, as a [`Wire`].
pub struct H3Wire {
    send: H3Send,
    recv: H3Recv,
}

impl Wire for H3Wire {
    async fn recv_data(&mut self) -> Result<Option<Bytes>, String> {
        match self.recv.recv_data().await {
            Ok(Some(mut buf)) => Ok(Some(buf.copy_to_bytes(buf.remaining()))),
            Ok(None) => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    }

    async fn send_response(&mut self, mut head: Box<ResponseHeader>) -> Result<(), String> {
        let mut response = Response::new(());
        *response.status_mut() = head.status;
        *response.headers_mut() = head.take_headers();
        self.send
            .send_response(response)
            .await
            .map_err(|e| e.to_string())
    }

    async fn send_data(&mut self, data: Bytes, end: bool) -> Result<(), String> {
        self.send.send_data(data).await.map_err(|e| e.to_string())?;
        if end {
            self.finish().await?;
        }
        Ok(())
    }

    async fn send_trailers(&mut self, trailers: HeaderMap) -> Result<(), String> {
        self.send
            .send_trailers(trailers)
            .await
            .map_err(|e| e.to_string())?;
        self.finish().await
    }

    async fn finish(&mut self) -> Result<(), String> {
        self.send.finish().await.map_err(|e| e.to_string())
    }

    fn reset(&mut self, why: Reset) {
        self.send.stop_stream(match why {
            Reset::Cancelled => h3::error::Code::H3_REQUEST_CANCELLED,
            Reset::Internal => h3::error::Code::H3_INTERNAL_ERROR,
        });
    }

    /// `STOP_SENDING` with `H3_NO_ERROR` (RFC 9114 section 4.1: a complete response may precede
    /// the end of the request). Without it, quinn stops the stream with code 0 when it is
    /// dropped, which a client reads as an error even though its response was complete.
    fn stop_unread(&mut self) {
        self.recv.stop_sending(h3::error::Code::H3_NO_ERROR);
    }

    async fn discard_trailers(&mut self) {
        let _ = self.recv.recv_trailers().await;
    }

    /// HTTP/3 need not advertise itself.
    fn may_advertise_h3(&self) -> bool {
        false
    }

    /// A stopped stream shows on the next send; nothing to watch meanwhile.
    async fn closed(&mut self) {
        std::future::pending::<()>().await
    }
}

/// The HTTP/3 front: h3 request streams into the [`StreamFront`].
#[derive(Debug)]
pub struct H3Front {
    streams: StreamFront,
}

impl H3Front {
    /// Creates the front over the shared pipeline.
    pub fn new(pipeline: Pipeline) -> Self {
        H3Front {
            streams: StreamFront::new(pipeline),
        }
    }

    /// Serves one request stream to its end.
    pub async fn serve(self: Arc<Self>, req: Request<()>, stream: H3Stream, peer: SocketAddr) {
        let (send, recv) = stream.split();
        let (head, ()) = req.into_parts();
        let origin = Origin {
            peer: Some(peer),
            protocol: Protocol::H3,
            scheme: Scheme::Https,
        };
        self.streams
            .serve(head, H3Wire { send, recv }, origin)
            .await;
    }
}
