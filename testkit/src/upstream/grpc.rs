//! gRPC upstream (h2c prior knowledge) serving the `testkit.Echo` service described in
//! [`crate::grpc`], with tonic's server-side codec machinery on a hyper connection.

use std::convert::Infallible;
use std::future::{ready, Ready};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Request, Response};
use tonic::Status;
use tonic_prost::ProstCodec;

use super::{bind_loopback, spawn_http_server, Body, RecordedRequest, RequestLog, ServerTask};
use crate::grpc::{EchoReply, EchoRequest, FAIL, SERVER_STREAM, UNARY};
use crate::tls::BoxError;

/// Largest `count` the streaming method honours.
pub const MAX_STREAM_COUNT: u32 = 10_000;

/// A running gRPC server. Dropping it stops the server.
#[derive(Debug)]
pub struct GrpcServer {
    addr: SocketAddr,
    log: RequestLog,
    _task: ServerTask,
}

#[derive(Clone, Debug)]
struct Ctx {
    name: Arc<str>,
    log: RequestLog,
}

impl GrpcServer {
    /// Starts the server named `name` (reported in every reply) on `127.0.0.1:0`.
    pub async fn start(name: &str) -> std::io::Result<Self> {
        let (listener, addr) = bind_loopback().await?;
        let ctx = Ctx {
            name: Arc::from(name),
            log: RequestLog::default(),
        };
        let log = ctx.log.clone();
        let task = spawn_http_server(listener, ctx, handle);
        Ok(Self {
            addr,
            log,
            _task: task,
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`, the origin to give a gRPC client.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Requests received so far (awaitable).
    pub fn requests(&self) -> &RequestLog {
        &self.log
    }
}

async fn handle(req: Request<Incoming>, ctx: Ctx) -> Result<Response<Body>, Infallible> {
    ctx.log.record(RecordedRequest::from_parts(
        req.method(),
        req.uri(),
        req.version(),
        req.headers(),
    ));
    let mut grpc = tonic::server::Grpc::new(ProstCodec::<EchoReply, EchoRequest>::default());
    let response = match req.uri().path() {
        UNARY => grpc.unary(Unary(ctx), req).await,
        FAIL => grpc.unary(Fail, req).await,
        SERVER_STREAM => grpc.server_streaming(ServerStream(ctx), req).await,
        _ => Status::unimplemented("unknown method").into_http(),
    };
    Ok(response.map(|body| body.map_err(BoxError::from).boxed_unsync()))
}

fn metadata(request: &tonic::Request<EchoRequest>, key: &str) -> String {
    request
        .metadata()
        .get(key)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

fn reply(
    ctx: &Ctx,
    request: &tonic::Request<EchoRequest>,
    message: String,
    index: u32,
) -> EchoReply {
    EchoReply {
        message,
        index,
        server: ctx.name.to_string(),
        request_id: metadata(request, "x-request-id"),
        traceparent: metadata(request, "traceparent"),
    }
}

struct Unary(Ctx);

impl tonic::server::UnaryService<EchoRequest> for Unary {
    type Response = EchoReply;
    type Future = Ready<Result<tonic::Response<EchoReply>, Status>>;

    fn call(&mut self, request: tonic::Request<EchoRequest>) -> Self::Future {
        let message = request.get_ref().message.clone();
        let mut response = tonic::Response::new(reply(&self.0, &request, message, 0));
        response.metadata_mut().insert(
            "x-grpc-server",
            tonic::metadata::MetadataValue::from_static("testkit"),
        );
        ready(Ok(response))
    }
}

struct Fail;

impl tonic::server::UnaryService<EchoRequest> for Fail {
    type Response = EchoReply;
    type Future = Ready<Result<tonic::Response<EchoReply>, Status>>;

    fn call(&mut self, request: tonic::Request<EchoRequest>) -> Self::Future {
        ready(Err(Status::not_found(format!(
            "no such thing: {}",
            request.get_ref().message
        ))))
    }
}

type ReplyStream = Pin<Box<dyn Stream<Item = Result<EchoReply, Status>> + Send>>;

struct ServerStream(Ctx);

impl tonic::server::ServerStreamingService<EchoRequest> for ServerStream {
    type Response = EchoReply;
    type ResponseStream = ReplyStream;
    type Future = Ready<Result<tonic::Response<ReplyStream>, Status>>;

    fn call(&mut self, request: tonic::Request<EchoRequest>) -> Self::Future {
        let EchoRequest {
            message,
            count,
            fail_after,
        } = request.get_ref().clone();
        let count = count.min(MAX_STREAM_COUNT);
        let sent = fail_after.map_or(count, |n| n.min(count));
        let mut items: Vec<Result<EchoReply, Status>> = (0..sent)
            .map(|i| Ok(reply(&self.0, &request, format!("{message}-{i}"), i)))
            .collect();
        if fail_after.is_some() {
            items.push(Err(Status::not_found(format!(
                "stream stopped after {sent}"
            ))));
        }
        let stream: ReplyStream = Box::pin(futures::stream::iter(items));
        ready(Ok(tonic::Response::new(stream)))
    }
}
