//! `orchestra-backend`: the persistence service of Orchestra Gateway (SPEC "Backend service").
//!
//! `orchestra-backend [--listen 127.0.0.1:7070] [--database-url sqlite://data/orchestra.db |
//! postgres://USER@HOST:PORT/DB]`. SIGTERM and SIGINT stop accepting, finish the requests in
//! flight and close the database.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Parser;
use orchestra_backend::server;
use orchestra_backend::store::Store;
use orchestra_logging::LogFormat;

/// The persistence service of Orchestra Gateway: agents, sessions, tasks and task events over
/// HTTP/JSON, stored in SQLite or PostgreSQL.
#[derive(Debug, Parser)]
#[command(name = "orchestra-backend", version, about)]
struct Cli {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:7070")]
    listen: SocketAddr,
    /// `sqlite://PATH` (file and directory created when missing) or `postgres://USER@HOST:PORT/DB`.
    #[arg(
        long,
        env = "ORCHESTRA_DATABASE_URL",
        default_value = "sqlite://data/orchestra.db",
        hide_env_values = true
    )]
    database_url: String,
    /// Log line format on stderr; level from RUST_LOG (default info).
    #[arg(long, value_enum, default_value = "json")]
    log_format: LogFormat,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    orchestra_logging::init(cli.log_format, orchestra_backend::DEFAULT_LOG_FILTER);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("orchestra-backend")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the runtime");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(run(cli))
}

async fn run(cli: Cli) -> ExitCode {
    let store = match Store::open(&cli.database_url).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(database = %redact(&cli.database_url), error = %e, "cannot open the database");
            return ExitCode::FAILURE;
        }
    };
    let listener = match tokio::net::TcpListener::bind(cli.listen).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(listen = %cli.listen, error = %e, "cannot bind the listener");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(
        listen = %cli.listen,
        database = %store.describe(),
        "orchestra-backend {} ready",
        env!("CARGO_PKG_VERSION")
    );
    let result = server::serve(listener, store.clone(), shutdown_signal()).await;
    store.close().await;
    match result {
        Ok(()) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!(error = %e, "server failed");
            ExitCode::FAILURE
        }
    }
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::warn!("cannot install signal handlers; stop with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: finishing requests in flight"),
        _ = int.recv() => tracing::info!("SIGINT: finishing requests in flight"),
    }
}

/// The URL without its password, for logs.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}
