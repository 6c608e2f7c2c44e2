//! Test-only helpers for Orchestra Gateway integration tests.
//!
//! Everything here runs for real on the loopback interface: upstream servers bind
//! `127.0.0.1:0` and report the address they got, and the gateway is started as a real
//! child process from its built binary.
//!
//! | module | what it gives a test |
//! |---|---|
//! | [`upstream::http`] | an echo server speaking HTTP/1.1 and h2c on one port, plus a TLS variant (ALPN `h2`, `http/1.1`) |
//! | [`upstream::controlled`] | the same echo server with a per-response delay, stoppable and restartable on its port |
//! | [`upstream::firehose`] | an HTTP/1.1 server answering one large body as fast as the peer reads, counting connections cut before the end |
//! | [`upstream::raw`] | a raw TCP server whose connections the test serves byte by byte, counting accepted and open connections |
//! | [`upstream::sse`] | a Server-Sent Events server whose second event waits on a gate the test opens |
//! | [`upstream::ws`] | a WebSocket echo server (close code 4001 on request) |
//! | [`upstream::grpc`] | a gRPC server (h2c) with unary, server-streaming and failing methods |
//! | [`grpc`] | the hand-written protobuf messages and a gRPC client for that server |
//! | [`agent`] | a scripted agent (`orchestra-agent/1` over QUIC or `/agent/ws`, frame by frame), and the real `orchestra-agent` binary as a child process |
//! | [`h3`] | an HTTP/3 client (quinn + h3) trusting a given certificate |
//! | [`client`] | HTTP/2 clients (h2c prior knowledge, TLS) that expose response trailers |
//! | [`tls`] | self-signed certificates and rustls configurations (ring provider) |
//! | [`gateway`] | [`GatewayProcess`]: write a config, start `orchestra-gateway`, wait for `/healthz`, read its logs, send SIGTERM; admin port, config rewrites, SIGHUP; [`gateway::toml`]: config bodies (upstreams, routes, plugins) from typed calls |
//! | [`postgres`] | [`PgCluster`]: a throwaway PostgreSQL cluster (initdb in a temp dir, a free loopback port), stopped and deleted on drop |
//! | [`backend`] | [`BackendProcess`]: start `orchestra-backend` on a database, wait for `/healthz`, SIGKILL and restart it on the same port |
//! | [`net`] | free ports and addresses nothing listens on |
//! | [`prometheus`] | a strict reader of the Prometheus text exposition (`/metrics`) |
//! | [`request`] | send a `reqwest` request and get its status, headers and whole body in one value |
//! | [`raw_http`] | a raw HTTP/1.1 client: oversized heads, chunked bodies sent piece by piece, answers that arrive before the request is complete |
//! | [`webhook`] | a webhook receiver recording alert notifications, with queued failure answers for retry tests |
//! | [`browser`] | headless Chromium over WebDriver (chromedriver + fantoccini) for dashboard tests |
//!
//! Every server handle stops its server (listener and open connections) when dropped.

pub mod agent;
pub mod backend;
pub mod browser;
pub mod client;
pub mod gateway;
pub mod grpc;
pub mod h3;
pub mod net;
pub mod postgres;
pub mod prometheus;
pub mod raw_http;
pub mod request;
pub mod tls;
pub mod upstream;
pub mod webhook;

pub use backend::BackendProcess;
pub use gateway::{CheckOutput, GatewayBuilder, GatewayProcess, LaunchError};
pub use postgres::PgCluster;
pub use upstream::controlled::ControlledEcho;
pub use upstream::firehose::FirehoseServer;
pub use upstream::grpc::GrpcServer;
pub use upstream::http::EchoServer;
pub use upstream::sse::SseServer;
pub use upstream::ws::WsEchoServer;
pub use webhook::WebhookReceiver;

/// The first value of header `name` (case-insensitive) in `headers`, whose names are lowercased:
/// the lookup of every recorded request and response here.
pub(crate) fn header_value<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}
