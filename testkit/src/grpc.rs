//! The gRPC test service `testkit.Echo`: hand-written protobuf messages (no `protoc`) and
//! a client built on tonic's generic [`tonic::client::Grpc`].
//!
//! Methods (all served by [`crate::upstream::grpc::GrpcServer`]):
//! - [`UNARY`]: answers one [`EchoReply`] with the request's message.
//! - [`SERVER_STREAM`]: answers `count` replies `"<message>-<i>"`; when `fail_after` is
//!   set, it stops after that many replies with `NOT_FOUND` in the trailers.
//! - [`FAIL`]: always answers status `NOT_FOUND` with message
//!   `"no such thing: <message>"` (a trailers-only response).

use http::uri::PathAndQuery;
use tonic::codec::Streaming;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic::{Response, Status};
use tonic_prost::ProstCodec;

use crate::tls::BoxError;

/// Path of the unary method.
pub const UNARY: &str = "/testkit.Echo/Unary";
/// Path of the server-streaming method.
pub const SERVER_STREAM: &str = "/testkit.Echo/ServerStream";
/// Path of the always-failing unary method.
pub const FAIL: &str = "/testkit.Echo/Fail";

/// Request message of every `testkit.Echo` method.
#[derive(Clone, PartialEq, prost::Message)]
pub struct EchoRequest {
    /// Text echoed back.
    #[prost(string, tag = "1")]
    pub message: String,
    /// Number of replies [`SERVER_STREAM`] sends.
    #[prost(uint32, tag = "2")]
    pub count: u32,
    /// When set, [`SERVER_STREAM`] fails with `NOT_FOUND` after this many replies.
    #[prost(uint32, optional, tag = "3")]
    pub fail_after: Option<u32>,
}

/// Reply message of every `testkit.Echo` method.
#[derive(Clone, PartialEq, prost::Message)]
pub struct EchoReply {
    /// The echoed text (`"<message>-<index>"` for streamed replies).
    #[prost(string, tag = "1")]
    pub message: String,
    /// Position of the reply in its stream (0 for unary).
    #[prost(uint32, tag = "2")]
    pub index: u32,
    /// Name of the server that answered.
    #[prost(string, tag = "3")]
    pub server: String,
    /// The `x-request-id` metadata the server received, empty when absent.
    #[prost(string, tag = "4")]
    pub request_id: String,
    /// The `traceparent` metadata the server received, empty when absent.
    #[prost(string, tag = "5")]
    pub traceparent: String,
}

/// A client for `testkit.Echo` over one HTTP/2 channel.
#[derive(Clone, Debug)]
pub struct EchoClient {
    inner: tonic::client::Grpc<Channel>,
}

impl EchoClient {
    /// Connects over cleartext HTTP/2 (prior knowledge) to `uri`, e.g. `http://127.0.0.1:8080`.
    pub async fn connect(uri: &str) -> Result<Self, BoxError> {
        let channel = Endpoint::from_shared(uri.to_string())?.connect().await?;
        Ok(Self::new(channel))
    }

    /// Connects over TLS (ALPN `h2`) to `uri`, e.g. `https://localhost:8443`, trusting only
    /// the PEM certificate `ca_pem` and checking it against `domain`.
    pub async fn connect_tls(uri: &str, ca_pem: &[u8], domain: &str) -> Result<Self, BoxError> {
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(ca_pem))
            .domain_name(domain);
        let channel = Endpoint::from_shared(uri.to_string())?
            .tls_config(tls)?
            .connect()
            .await?;
        Ok(Self::new(channel))
    }

    /// Wraps an existing channel.
    pub fn new(channel: Channel) -> Self {
        Self {
            inner: tonic::client::Grpc::new(channel),
        }
    }

    /// Calls [`UNARY`].
    pub async fn unary(
        &mut self,
        request: impl tonic::IntoRequest<EchoRequest>,
    ) -> Result<Response<EchoReply>, Status> {
        self.call_unary(UNARY, request).await
    }

    /// Calls [`FAIL`].
    pub async fn fail(
        &mut self,
        request: impl tonic::IntoRequest<EchoRequest>,
    ) -> Result<Response<EchoReply>, Status> {
        self.call_unary(FAIL, request).await
    }

    /// One unary call of `method` (a full path such as [`UNARY`]).
    async fn call_unary(
        &mut self,
        method: &'static str,
        request: impl tonic::IntoRequest<EchoRequest>,
    ) -> Result<Response<EchoReply>, Status> {
        self.ready().await?;
        self.inner
            .unary(
                request.into_request(),
                PathAndQuery::from_static(method),
                ProstCodec::default(),
            )
            .await
    }

    /// Calls [`SERVER_STREAM`].
    pub async fn server_stream(
        &mut self,
        request: impl tonic::IntoRequest<EchoRequest>,
    ) -> Result<Response<Streaming<EchoReply>>, Status> {
        self.ready().await?;
        self.inner
            .server_streaming(
                request.into_request(),
                PathAndQuery::from_static(SERVER_STREAM),
                ProstCodec::default(),
            )
            .await
    }

    async fn ready(&mut self) -> Result<(), Status> {
        self.inner
            .ready()
            .await
            .map_err(|e| Status::unavailable(format!("channel not ready: {e}")))
    }
}

/// Encodes `message` as one gRPC length-prefixed frame (uncompressed), for tests that
/// speak gRPC with a plain HTTP/2 client to look at raw headers and trailers.
pub fn encode_frame<M: prost::Message>(message: &M) -> Vec<u8> {
    let payload = message.encode_to_vec();
    let mut frame = Vec::with_capacity(5 + payload.len());
    frame.push(0);
    frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    frame.extend_from_slice(&payload);
    frame
}

/// Decodes a buffer of concatenated uncompressed gRPC frames.
pub fn decode_frames<M: prost::Message + Default>(mut buf: &[u8]) -> Result<Vec<M>, BoxError> {
    let mut messages = Vec::new();
    while !buf.is_empty() {
        if buf.len() < 5 {
            return Err("truncated gRPC frame header".into());
        }
        if buf[0] != 0 {
            return Err("compressed gRPC frame not supported".into());
        }
        let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
        let end = 5usize
            .checked_add(len)
            .filter(|end| *end <= buf.len())
            .ok_or("truncated gRPC frame body")?;
        messages.push(M::decode(&buf[5..end])?);
        buf = &buf[end..];
    }
    Ok(messages)
}

/// Decodes a `grpc-message` header or trailer value, which gRPC percent-encodes.
/// Invalid escapes are kept as written.
pub fn decode_grpc_message(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let a = EchoReply {
            message: "a".into(),
            index: 1,
            ..Default::default()
        };
        let b = EchoReply {
            message: "b".into(),
            index: 2,
            ..Default::default()
        };
        let mut buf = encode_frame(&a);
        buf.extend(encode_frame(&b));
        let decoded: Vec<EchoReply> = decode_frames(&buf).expect("decode");
        assert_eq!(decoded, vec![a, b]);
        assert!(decode_frames::<EchoReply>(&buf[..3]).is_err());
    }

    #[test]
    fn grpc_message_is_percent_decoded() {
        assert_eq!(decode_grpc_message("a%20b%3A%zz%"), "a b:%zz%");
    }
}
