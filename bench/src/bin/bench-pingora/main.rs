//! `bench-pingora`: the framework floor in side-by-side comparisons — a minimal pingora proxy.
//!
//! It forwards every request to one upstream through pingora's pooled connector and does nothing
//! else: no routing, no plugins, no histograms, no request id. It is built from the same pingora
//! crates (including the workspace's vendored patches), with the same allocator (mimalloc) and
//! runtime settings as `orchestra-gateway` (`--threads` workers, no work stealing, HTTP/1.1 +
//! h2c on `--listen`, TLS with ALPN h2/http1.1 on `--tls-listen`), so the gap between the two in
//! `bench/compare` is the gateway's own cost per request.
//!
//! `--core` runs the same exchange on pingora-core's server sessions directly (HTTP/1.1 and
//! HTTP/2), without pingora-proxy (see `core.rs`): the floor below the framework's proxy layer.
//!
//! `--access-log FILE` appends one line per request to FILE through a buffer (flushed when it
//! fills and once a second), the way nginx writes `access_log ... buffer=`: the cheapest honest
//! access log a pingora proxy can have, written on the worker.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use clap::Parser;
use orchestra_bench::floor::{AccessLog, FloorArgs};
use pingora::apps::HttpServerOptions;
use pingora::connectors::http::Connector;
use pingora::connectors::ConnectorOptions;
use pingora::listeners::tls::TlsSettings;
use pingora::prelude::*;
use pingora::protocols::ALPN;
use pingora::proxy::{http_proxy_service_with_name, ProxyHttp, Session};
use pingora::server::configuration::ServerConf;
use pingora::services::listening::Service;
use pingora::upstreams::peer::HttpPeer;

mod core;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Minimal pingora proxy (the framework floor for bench/compare).
#[derive(Debug, Parser)]
#[command(name = "bench-pingora", version)]
struct Args {
    /// Plain-text listener (HTTP/1.1 and h2c prior knowledge).
    #[arg(long, default_value = "127.0.0.1:18080")]
    listen: SocketAddr,
    #[command(flatten)]
    floor: FloorArgs,
    /// Keep idle upstream connections in the vendored pingora-core's lazily checked pool
    /// (`ConnectorOptions::lazy_idle_pool`, as the gateway does) instead of pingora's pool
    /// with a watcher task per returned connection.
    #[arg(long)]
    lazy_idle_pool: bool,
    /// Serve requests on pingora-core's sessions directly instead of pingora-proxy's `HttpProxy`
    /// (no request bodies, no upgrades: the floor below the proxy layer; see `core.rs`).
    #[arg(long)]
    core: bool,
    /// Drop the spelling of HTTP/1 header names (requests and responses without pingora's case
    /// map: `HttpServerOptions` and `PeerOptions::discard_h1_header_case`, as the gateway does
    /// unless `server.preserve_header_case = true`).
    #[arg(long)]
    discard_header_case: bool,
}

/// The no-op proxy: every request goes to `upstream`.
struct Bare {
    upstream: SocketAddr,
    access_log: Option<Arc<AccessLog>>,
    discard_header_case: bool,
}

#[async_trait]
impl ProxyHttp for Bare {
    type CTX = Option<Instant>;

    fn new_ctx(&self) -> Self::CTX {
        self.access_log.as_ref().map(|_| Instant::now())
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        _ctx: &mut Self::CTX,
    ) -> Result<Box<HttpPeer>> {
        Ok(Box::new(orchestra_bench::floor::upstream_peer(
            self.upstream,
            self.discard_header_case,
        )))
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut Self::CTX) {
        if let (Some(log), Some(started)) = (&self.access_log, ctx) {
            let status = session
                .response_written()
                .map(|r| r.status.as_u16())
                .unwrap_or(0);
            let req = session.req_header();
            let bytes = session.body_bytes_sent();
            log.write(req.method.as_str(), req.uri.path(), status, bytes, *started);
        }
    }
}

/// The listener's options: h2c (prior knowledge) on the cleartext port, and the header case
/// setting.
fn server_options(args: &Args) -> HttpServerOptions {
    let mut options = HttpServerOptions::default();
    options.h2c = true;
    options.discard_h1_header_case = args.discard_header_case;
    options
}

/// The upstream connector built from the server configuration, with the vendored lazy idle pool
/// when `lazy_idle_pool` (the proxy mode keeps `HttpProxy`'s own connector otherwise).
fn connector(conf: &ServerConf, lazy_idle_pool: bool) -> Arc<Connector> {
    let mut options = ConnectorOptions::from_server_conf(conf);
    options.lazy_idle_pool = lazy_idle_pool;
    Arc::new(Connector::new(Some(options)))
}

/// The TLS listener (ALPN h2 and http/1.1) when `--tls-listen`, `--cert` and `--key` are given.
fn add_tls<A>(service: &mut Service<A>, args: &Args) -> Result<(), std::process::ExitCode> {
    let (Some(addr), Some(cert), Some(key)) = (
        args.floor.tls.tls_listen,
        &args.floor.tls.cert,
        &args.floor.tls.key,
    ) else {
        return Ok(());
    };
    let tls = TlsSettings::intermediate(&cert.to_string_lossy(), &key.to_string_lossy());
    let mut tls = tls.map_err(|e| {
        eprintln!("bench-pingora: TLS settings: {e}");
        std::process::ExitCode::FAILURE
    })?;
    tls.set_alpn(ALPN::H2H1);
    service.add_tls_with_settings(&addr.to_string(), None, tls);
    Ok(())
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    orchestra_bench::floor::quiet_tracing();
    let access_log = match &args.floor.access_log {
        Some(path) => match AccessLog::open(path) {
            Ok(log) => Some(Arc::new(log)),
            Err(e) => {
                eprintln!("bench-pingora: cannot open {}: {e}", path.display());
                return std::process::ExitCode::FAILURE;
            }
        },
        None => None,
    };
    let conf = ServerConf {
        threads: args.floor.threads.max(1),
        work_stealing: false,
        grace_period_seconds: Some(1),
        graceful_shutdown_timeout_seconds: Some(1),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    let conf = Arc::clone(&server.configuration);
    if args.core {
        let app = core::Core {
            peer: orchestra_bench::floor::upstream_peer(
                args.floor.upstream,
                args.discard_header_case,
            ),
            connector: connector(&conf, args.lazy_idle_pool),
            access_log,
            options: server_options(&args),
        };
        let mut service = Service::new("bench-pingora-core".to_string(), app);
        service.add_tcp(&args.listen.to_string());
        if let Err(code) = add_tls(&mut service, &args) {
            return code;
        }
        server.add_service(service);
        server.run_forever()
    }
    let mut service = http_proxy_service_with_name(
        &conf,
        Bare {
            upstream: args.floor.upstream,
            access_log,
            discard_header_case: args.discard_header_case,
        },
        "bench-pingora",
    );
    if let Some(app) = service.app_logic_mut() {
        if args.lazy_idle_pool {
            app.set_client_connector(connector(&conf, true));
        }
        app.server_options = Some(server_options(&args));
    }
    service.add_tcp(&args.listen.to_string());
    if let Err(code) = add_tls(&mut service, &args) {
        return code;
    }
    server.add_service(service);
    server.run_forever()
}
