//! `orchestra-agent`: run the agent (`run`, the default) or validate its config (`check`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use orchestra_agent::config::{self, Overrides};
use orchestra_agent::supervisor;
use orchestra_logging::LogFormat;

/// The agent of AI Orchestra's worker machines: dials the gateway, runs the tasks it assigns
/// and streams their output back.
#[derive(Debug, Parser)]
#[command(name = "orchestra-agent", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Config file.
    #[arg(short, long, global = true, default_value = config::DEFAULT_CONFIG_PATH)]
    config: PathBuf,
    /// Gateway address HOST:PORT (overrides `gateway`).
    #[arg(long, global = true, value_name = "HOST:PORT")]
    gateway: Option<String>,
    /// Agent id (overrides `id`).
    #[arg(long, global = true)]
    id: Option<String>,
    /// API key (overrides `api_key`).
    #[arg(long, global = true)]
    api_key: Option<String>,
    /// Environment variable holding the HMAC secret (overrides `secret_env`, `secret_file`
    /// and `secret`).
    #[arg(long, global = true, value_name = "VAR")]
    secret_env: Option<String>,
    /// PEM file of the certificate(s) to trust for the gateway (overrides `ca` and `insecure`).
    #[arg(long, global = true, value_name = "FILE")]
    ca: Option<String>,
    /// Trust any gateway certificate (development only; overrides `ca`).
    #[arg(long, global = true, conflicts_with = "ca")]
    insecure: bool,
    /// Transport: quic or ws (overrides `transport`).
    #[arg(long, global = true, value_name = "quic|ws")]
    transport: Option<String>,
    /// Log line format on stderr; level from RUST_LOG (default info).
    #[arg(long, global = true, value_enum, default_value = "json")]
    log_format: LogFormat,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the agent (the default).
    Run,
    /// Validate the config and flags: print every error and exit 1, or a summary and exit 0.
    Check,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let overrides = Overrides {
        gateway: cli.gateway.clone(),
        id: cli.id.clone(),
        api_key: cli.api_key.clone(),
        secret_env: cli.secret_env.clone(),
        ca: cli.ca.clone(),
        insecure: cli.insecure,
        transport: cli.transport.clone(),
    };
    match cli.command.unwrap_or(Command::Run) {
        Command::Check => check(&cli.config, &overrides),
        Command::Run => {
            orchestra_logging::init(cli.log_format, orchestra_logging::DEFAULT_FILTER);
            run(&cli.config, &overrides)
        }
    }
}

fn check(path: &std::path::Path, overrides: &Overrides) -> ExitCode {
    match config::load(path, overrides) {
        Ok(c) => {
            println!(
                "{}: ok: gateway {} over {}, agent {:?}, {} tools, max_tasks {}",
                path.display(),
                c.gateway,
                c.transport,
                c.id,
                c.tools.len(),
                c.max_tasks
            );
            ExitCode::SUCCESS
        }
        Err(errors) => {
            orchestra_config_core::report::print_errors(path, &errors.0);
            ExitCode::FAILURE
        }
    }
}

fn run(path: &std::path::Path, overrides: &Overrides) -> ExitCode {
    let cfg = match config::load(path, overrides) {
        Ok(c) => Arc::new(c),
        Err(errors) => {
            for e in &errors.0 {
                tracing::error!(error = %e, "invalid config");
            }
            return ExitCode::FAILURE;
        }
    };
    if cfg.secret.as_bytes().len() < 32 {
        tracing::warn!("the HMAC secret is shorter than 32 bytes; use a longer random secret");
    }
    if matches!(cfg.trust, config::Trust::Insecure) {
        tracing::warn!("insecure = true: any gateway certificate is accepted (development only)");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("agent")
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the runtime");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(supervisor::run(cfg)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            ExitCode::FAILURE
        }
    }
}
