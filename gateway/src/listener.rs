//! Listeners on pingora's server: TCP `http` (HTTP/1.1 and h2c prior knowledge on one port) and
//! TCP `https` (TLS via rustls, ALPN `h2` then `http/1.1`).
//!
//! One app serves both: [`GatewayApp`] hands HTTP/2 streams and bodiless HTTP/1.1 requests to
//! the [`StreamFront`] (on pingora-core's sessions; the front HTTP/3 uses too) and the other
//! HTTP/1.1 requests to pingora-proxy over [`PingoraFront`]. pingora runs the listeners on its
//! own runtime threads; [`start`] spawns it on a thread of its own so the main thread can own
//! signals (see [`crate::shutdown`]).
//!
//! `[server]` limits bound here, at start: `max_connections` (each listener stops accepting at
//! the cap, so new connections wait in the backlog), `header_read_timeout` (TLS handshake, h2c
//! preface, HTTP/2 handshake, whole HTTP/1 heads) and HTTP/2's idle timeout
//! (`keepalive_timeout`). These need pingora-core's patched listener and session
//! (`vendor/pingora-core`, see `vendor/README.md`).

use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use orchestra_config::Snapshot;
use pingora::apps::HttpServerOptions;
use pingora::listeners::tls::TlsSettings;
use pingora::listeners::{L4BufferSettings, ListenerConfig};
use pingora::protocols::ALPN;
use pingora::proxy::http_proxy;
use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, Server};
use pingora::services::listening::Service;
use rustls::sign::SingleCertAndKey;

use crate::front::PingoraFront;
use crate::pipeline::Pipeline;
use crate::shutdown::ControlledShutdown;
use crate::state::GatewayState;
use crate::streams::h2::GatewayApp;
use crate::streams::StreamFront;
use crate::tls::ListenerCert;

/// Why the listeners could not start.
#[derive(Debug, thiserror::Error)]
pub enum ListenerError {
    /// A listener did not accept connections in time (address in use, permissions...).
    #[error("listener {name} on {addr} did not come up within {waited:?} (address in use? see the log above)")]
    NotUp {
        /// `http` or `https`.
        name: &'static str,
        /// Its address.
        addr: SocketAddr,
        /// How long we waited.
        waited: Duration,
    },
    /// A listener address cannot be bound (in use, no permission, not a local address).
    #[error("cannot bind listener {name} on {addr}: {source}")]
    Bind {
        /// `http` or `https`.
        name: &'static str,
        /// Its address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The server thread could not be spawned.
    #[error("cannot spawn the server thread: {0}")]
    Spawn(std::io::Error),
}

/// Worker threads: `ORCHESTRA_THREADS` when set to a positive number, else the config's.
pub fn worker_threads(snapshot: &Snapshot) -> usize {
    std::env::var("ORCHESTRA_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|n| (1..=1024).contains(n))
        .unwrap_or(snapshot.server.threads)
}

/// Builds pingora's server with the gateway's listeners and starts it on its own thread.
pub fn start(
    state: &Arc<GatewayState>,
    cert: Option<&ListenerCert>,
    shutdown: ControlledShutdown,
) -> Result<std::thread::JoinHandle<()>, ListenerError> {
    let snapshot = state.snapshot();
    let conf = ServerConf {
        threads: worker_threads(&snapshot),
        grace_period_seconds: Some(snapshot.server.grace_period.as_secs().max(1)),
        graceful_shutdown_timeout_seconds: Some(1),
        work_stealing: false,
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    let conf = Arc::clone(&server.configuration);

    let pipeline = Pipeline::new(Arc::clone(state));
    let mut proxy = http_proxy(&conf, PingoraFront::new(pipeline.clone()));
    // `[server]` limits bound at start (a reload reports them as `restart_needed`); the
    // per-request ones (body read, write, keep-alive) are set by the fronts on each request.
    let limits = snapshot.server.limits;
    let mut options = HttpServerOptions::default();
    options.h2c = true;
    options.header_read_timeout = Some(limits.header_read_timeout);
    options.h2_idle_timeout = Some(limits.keepalive_timeout);
    // Request heads without a second map for the clients' spelling unless asked for.
    options.discard_h1_header_case = !snapshot.server.preserve_header_case;
    proxy.server_options = Some(options);
    // One set of upstream pools for every front (the stream front uses the same).
    proxy.set_client_connector(state.upstream_client().shared_connector());
    let mut service = Service::new(
        "orchestra-gateway".to_string(),
        GatewayApp::new(proxy, StreamFront::new(pipeline)),
    );
    service.set_max_connections_per_listener(Some(limits.max_connections));
    service.set_handshake_timeout(limits.header_read_timeout);
    if let Some(addr) = snapshot.listeners.http {
        // No L4 read buffer on cleartext: pingora's default 64 KiB `BufReader` lives as long as
        // the connection, and an upgraded connection's reads (which [`crate::relay`] keeps
        // buffer-free while idle) would fill it and keep it. Heads are read into their own 4 KiB
        // buffer, so an HTTP/1.1 request still takes one read. TLS keeps the default: the
        // record layer reads in small pieces.
        service.add_listener(
            ListenerConfig::tcp(addr.to_string()).l4_buffer(L4BufferSettings::default().read(0)),
        );
    }
    if let (Some(addr), Some(cert)) = (snapshot.listeners.https, cert) {
        let mut tls = match TlsSettings::intermediate("", "") {
            Ok(t) => t,
            Err(e) => unreachable_tls(e),
        };
        tls.set_cert_resolver(Arc::new(SingleCertAndKey::from(Arc::clone(
            &cert.certified,
        ))));
        tls.set_alpn(ALPN::H2H1);
        service.add_tls_with_settings(&addr.to_string(), None, tls);
    }
    server.add_service(service);

    let handle = std::thread::Builder::new()
        .name("pingora-server".into())
        .spawn(move || {
            server.run(RunArgs {
                shutdown_signal: Box::new(shutdown),
            })
        })
        .map_err(ListenerError::Spawn)?;
    Ok(handle)
}

fn unreachable_tls(e: Box<pingora::Error>) -> ! {
    // `TlsSettings::intermediate` only builds a struct; it has no failure path today.
    tracing::error!(error = %e, "pingora TLS settings");
    std::process::exit(1)
}

/// Checks that every data-plane listener address can be bound right now.
///
/// pingora retries a failed bind for half a minute in the background; checking first turns an
/// address in use into an immediate startup error that names it.
pub fn check_bindable(snapshot: &Snapshot) -> Result<(), ListenerError> {
    for (name, addr) in [
        ("http", snapshot.listeners.http),
        ("https", snapshot.listeners.https),
    ] {
        if let Some(addr) = addr {
            std::net::TcpListener::bind(addr)
                .map(drop)
                .map_err(|source| ListenerError::Bind { name, addr, source })?;
        }
    }
    Ok(())
}

/// Waits until every configured listener accepts TCP connections.
pub fn wait_until_up(snapshot: &Snapshot, timeout: Duration) -> Result<(), ListenerError> {
    let listeners = [
        ("http", snapshot.listeners.http),
        ("https", snapshot.listeners.https),
    ];
    for (name, addr) in listeners {
        let Some(addr) = addr else { continue };
        let probe = connectable(addr);
        let start = Instant::now();
        loop {
            if TcpStream::connect_timeout(&probe, Duration::from_millis(200)).is_ok() {
                break;
            }
            if start.elapsed() >= timeout {
                return Err(ListenerError::NotUp {
                    name,
                    addr,
                    waited: timeout,
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    Ok(())
}

/// The address to probe a listener at: a wildcard bind is probed on loopback.
fn connectable(addr: SocketAddr) -> SocketAddr {
    let mut a = addr;
    if a.ip().is_unspecified() {
        a.set_ip(match a {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    a
}
