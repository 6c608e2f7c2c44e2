//! `orchestra-gateway`: run the gateway, check a config, or talk to a running gateway.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use orchestra_config::report::print_errors;
use orchestra_gateway::admin_client;
use orchestra_gateway::agent_hub::AgentService;
use orchestra_gateway::logging::{self, LogFormat};
use orchestra_gateway::shutdown::ControlPlane;
use orchestra_gateway::state::GatewayState;
use orchestra_gateway::{listener, shutdown, tls};

/// mimalloc's per-thread free lists: malloc/free were ~10% of the HTTP/1.1 profile with glibc
/// (see bench/RESULTS.md). The `system-allocator` feature keeps glibc's malloc instead, for heap
/// profilers (heaptrack, valgrind's massif) that attribute malloc calls but not mimalloc's.
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The edge gateway of AI Orchestra: HTTP/1.1, HTTP/2 and WebSocket in front of the platform's
/// upstreams.
#[derive(Debug, Parser)]
#[command(name = "orchestra-gateway", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Config file (for `run`, the default, and `check`).
    #[arg(short, long, global = true, default_value = orchestra_config::DEFAULT_CONFIG_PATH)]
    config: PathBuf,
    /// Log line format on stderr; level from RUST_LOG (default info).
    #[arg(long, global = true, value_enum, default_value = "json")]
    log_format: LogFormat,
}

#[derive(Debug, Clone, clap::Args)]
struct AdminArgs {
    /// Admin API of the running gateway.
    #[arg(long, default_value = "http://127.0.0.1:9901")]
    admin: String,
    /// Bearer token of the admin API.
    #[arg(long, env = "ORCHESTRA_ADMIN_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway (the default).
    Run,
    /// Validate a config: print every error and exit 1, or a one-line summary and exit 0.
    Check,
    /// Print the latency histograms of a running gateway as a table.
    Stats {
        #[command(flatten)]
        admin: AdminArgs,
        /// Window: 1m, 5m or total.
        #[arg(long, default_value = "1m")]
        window: String,
    },
    /// Ask a running gateway to re-read its config file.
    Reload {
        #[command(flatten)]
        admin: AdminArgs,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Run) {
        Command::Check => check(&cli.config),
        Command::Run => {
            logging::init(cli.log_format);
            let code = run(&cli.config);
            // Lines still queued for the access-log writer are written before the process ends.
            orchestra_gateway::access_log::flush(Duration::from_secs(1));
            code
        }
        Command::Stats { admin, window } => {
            let path = format!("/admin/histograms?window={window}");
            client(&admin, http::Method::GET, &path, |body| {
                admin_client::stats_table(&body)
            })
        }
        Command::Reload { admin } => client(&admin, http::Method::POST, "/admin/reload", Ok),
    }
}

fn client(
    admin: &AdminArgs,
    method: http::Method,
    path: &str,
    render: impl FnOnce(String) -> Result<String, String>,
) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(admin_client::call(
        &admin.admin,
        admin.token.as_deref(),
        method,
        path,
    ));
    match result.map_err(|e| e.to_string()).and_then(render) {
        Ok(out) => {
            println!("{}", out.trim_end());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn check(path: &Path) -> ExitCode {
    match orchestra_config::load(path) {
        Ok(s) => {
            if let Some(agents) = s.agents.as_ref() {
                if let Err(e) = AgentService::load_keys(agents) {
                    print_errors(path, std::slice::from_ref(&e));
                    return ExitCode::FAILURE;
                }
            }
            let l = &s.server.limits;
            println!(
                "{}: ok: {} routes, {} upstreams, {} plugins; limits: header_read_timeout={:?} \
                 keepalive_timeout={:?} body_read_timeout={:?} write_timeout={:?} \
                 max_connections={} max_request_body={} trusted_proxies={}",
                path.display(),
                s.routes.len(),
                s.upstreams.len(),
                s.plugins.len(),
                l.header_read_timeout,
                l.keepalive_timeout,
                l.body_read_timeout,
                l.write_timeout,
                l.max_connections,
                l.max_request_body,
                s.server.trusted_proxies.len(),
            );
            ExitCode::SUCCESS
        }
        Err(errors) => {
            print_errors(path, &errors.0);
            ExitCode::FAILURE
        }
    }
}

fn run(path: &Path) -> ExitCode {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(config = %path.display(), error = %e, "cannot read config file");
            return ExitCode::FAILURE;
        }
    };
    let snapshot = match orchestra_config::from_str(&text, &path.display().to_string()) {
        Ok(s) => s,
        Err(errors) => {
            for e in &errors.0 {
                tracing::error!(error = %e, "invalid config");
            }
            return ExitCode::FAILURE;
        }
    };
    // The QUIC endpoint (h3) shares the listener certificate, also when `https` is off.
    let cert = match snapshot.listeners.https.or(snapshot.listeners.h3) {
        Some(_) => match tls::listener_cert(&snapshot) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::error!(error = %e, "TLS certificate");
                return ExitCode::FAILURE;
            }
        },
        None => None,
    };
    let threads = listener::worker_threads(&snapshot);
    let admin = match snapshot.listeners.admin {
        Some(addr) => match std::net::TcpListener::bind(addr) {
            Ok(l) => Some(l),
            Err(e) => {
                tracing::error!(%addr, error = %e, "cannot bind the admin listener");
                return ExitCode::FAILURE;
            }
        },
        None => None,
    };
    // One recording shard per data-plane thread, plus spare ones for other runtimes.
    let state = GatewayState::new(snapshot, &text, threads * 2 + 2);
    state.history.set_path(path);
    let backend = match orchestra_gateway::backend::Backend::start(&state.live().backend) {
        Ok(b) => std::sync::Arc::new(b),
        Err(e) => {
            tracing::error!(error = %e, "backend");
            return ExitCode::FAILURE;
        }
    };
    state.set_backend(Arc::clone(&backend));
    let live = state.live();
    if let Some(settings) = live.snapshot.agents.as_ref() {
        let persist =
            orchestra_gateway::agent_hub::store::BackendPersist::new(backend.client().clone());
        match AgentService::start(settings, persist, Arc::clone(&state.registry)) {
            Ok(svc) => state.set_agents(svc),
            Err(e) => {
                tracing::error!(error = %e, "cannot start the agent hub");
                return ExitCode::FAILURE;
            }
        }
        if live.listeners.h3.is_none() {
            tracing::warn!("[agents] without a [listeners] h3 address: agents can connect over WebSocket (routes with serve = \"agents\") only");
        }
    }
    orchestra_gateway::realtime::install(&state, backend.client());
    tracing::info!(
        config = %path.display(),
        version = live.version,
        sha256 = %live.sha256,
        http = ?live.listeners.http,
        https = ?live.listeners.https,
        admin = ?live.listeners.admin,
        h3 = ?live.listeners.h3,
        threads,
        routes = live.routes.len(),
        upstreams = live.upstreams.len(),
        "starting orchestra-gateway {}",
        env!("CARGO_PKG_VERSION")
    );
    if let Err(e) = listener::check_bindable(&live) {
        tracing::error!(error = %e, "listeners");
        return ExitCode::FAILURE;
    }
    let signals = match shutdown::Signals::install() {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot install signal handlers");
            return ExitCode::FAILURE;
        }
    };
    // HTTP/3 front: the QUIC endpoint on its own runtime, sharing the pipeline. Started before
    // the TCP listeners so that the first TLS response can already advertise it (Alt-Svc).
    let h3 = match (live.listeners.h3, cert.as_ref()) {
        (Some(addr), Some(cert)) => {
            match orchestra_gateway::h3::H3Service::start(&state, cert, addr, threads) {
                Ok(s) => {
                    state.set_h3_port(addr.port());
                    Some(s)
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot start the HTTP/3 endpoint");
                    return ExitCode::FAILURE;
                }
            }
        }
        _ => None,
    };
    let (trigger, watcher) = shutdown::channel();
    let server = match listener::start(&state, cert.as_ref(), watcher) {
        Ok(h) => h,
        Err(e) => {
            tracing::error!(error = %e, "cannot start listeners");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = listener::wait_until_up(&live, Duration::from_secs(10)) {
        tracing::error!(error = %e, "listeners");
        return ExitCode::FAILURE;
    }
    if server.is_finished() {
        tracing::error!("the server thread exited during start-up");
        return ExitCode::FAILURE;
    }
    drop(live);
    state.set_ready(true);
    tracing::info!("ready");
    shutdown::run_control_plane(
        signals,
        trigger,
        state,
        ControlPlane {
            admin,
            watch_interval: Some(Duration::from_millis(500)),
            h3,
        },
    )
}
