//! The agent process: the reconnect loop around sessions, and shutdown.
//!
//! The loop connects (QUIC or WebSocket), runs a session until the connection ends, and waits
//! a backoff delay (see [`crate::backoff`]) before the next attempt — forever: an agent is
//! meant to be there whenever the gateway is. Tasks are not tied to a connection; they keep
//! running and holding their output in between.
//!
//! SIGTERM or SIGINT: every task is stopped (SIGTERM to its group, SIGKILL after
//! `stop_grace`), the agent waits — still connected, so the `stopped` results reach the
//! gateway — until the tasks are acked or `stop_grace` + [`SHUTDOWN_DRAIN`] passed, then
//! closes the connection, SIGKILLs whatever is left and exits 0. A second signal skips the
//! wait.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::backoff::Backoff;
use crate::config::{AgentConfig, Transport};
use crate::session::{self, SessionCtx, SessionEnd};
use crate::system::SystemProbe;
use crate::tasks::{self, TaskTable};
use crate::transport::quic::QuicConnector;
use crate::transport::ws::WsConnector;
use crate::transport::{ConnectError, Link};

/// How long shutdown waits, beyond `stop_grace`, for stopped tasks' results to be acked.
pub const SHUTDOWN_DRAIN: Duration = Duration::from_secs(5);

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The work directory could not be prepared.
    #[error(
        "cannot prepare the work directory {path}: {source}; check `workdir` and its permissions"
    )]
    Workdir {
        /// The directory.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// TLS could not be configured.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// Signal handlers could not be installed.
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
}

/// Dials the gateway with the configured transport.
#[derive(Debug, Clone)]
pub enum Connector {
    /// QUIC.
    Quic(QuicConnector),
    /// WebSocket.
    Ws(WsConnector),
}

impl Connector {
    /// The connector of `cfg.transport`.
    pub fn new(cfg: &AgentConfig) -> Result<Self, crate::tls::TlsError> {
        Ok(match cfg.transport {
            Transport::Quic => Connector::Quic(QuicConnector::new(cfg)?),
            Transport::Ws => Connector::Ws(WsConnector::new(cfg)?),
        })
    }

    /// One connection attempt.
    pub async fn connect(&self) -> Result<Link, ConnectError> {
        match self {
            Connector::Quic(c) => c.connect().await.map(Link::Quic),
            Connector::Ws(c) => c.connect().await.map(Link::Ws),
        }
    }
}

/// Runs the agent until SIGTERM/SIGINT.
pub async fn run(cfg: Arc<AgentConfig>) -> Result<(), StartError> {
    tasks::prepare_workdir(&cfg.workdir).map_err(|source| StartError::Workdir {
        path: cfg.workdir.display().to_string(),
        source,
    })?;
    let connector = Connector::new(&cfg)?;
    let mut term = signal(SignalKind::terminate()).map_err(StartError::Signals)?;
    let mut int = signal(SignalKind::interrupt()).map_err(StartError::Signals)?;
    let table = TaskTable::new(cfg.clone());
    let probe = {
        let workdir = cfg.workdir.clone();
        tokio::task::spawn_blocking(move || SystemProbe::new(&workdir))
            .await
            .map_err(|e| StartError::Signals(std::io::Error::other(e.to_string())))?
    };
    let ctx = SessionCtx {
        cfg: cfg.clone(),
        tasks: table.clone(),
        probe: Arc::new(Mutex::new(probe)),
    };
    tracing::info!(
        config = %cfg.file.display(),
        gateway = %cfg.gateway,
        transport = %cfg.transport,
        id = cfg.id,
        capabilities = ?cfg.capabilities,
        max_tasks = cfg.max_tasks,
        workdir = %cfg.workdir.display(),
        "starting orchestra-agent {}",
        env!("CARGO_PKG_VERSION")
    );
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let connections = tokio::spawn(connection_loop(connector, ctx, shutdown_rx));

    let signal_name = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    tracing::info!(
        signal = signal_name,
        tasks = table.len(),
        "shutting down: stopping tasks"
    );
    table.stop_all("agent shutting down").await;
    let wait = cfg.stop_grace + SHUTDOWN_DRAIN;
    tokio::select! {
        _ = table.wait_empty() => {}
        _ = tokio::time::sleep(wait) => {
            tracing::warn!(tasks = table.len(), "tasks still held after {wait:?}; exiting without their acks");
        }
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    let _ = shutdown_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(2), connections).await;
    table.kill_all();
    tracing::info!("stopped");
    Ok(())
}

async fn connection_loop(
    connector: Connector,
    ctx: SessionCtx,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut backoff = Backoff::new(ctx.cfg.reconnect);
    loop {
        if *shutdown.borrow() {
            return;
        }
        tracing::info!(gateway = %ctx.cfg.gateway, transport = %ctx.cfg.transport, attempt = backoff.failures() + 1, "connecting");
        match connector.connect().await {
            Ok(link) => {
                let since = Instant::now();
                let end = session::run(link, &ctx, &mut shutdown).await;
                let up = since.elapsed();
                match &end {
                    SessionEnd::Shutdown => return,
                    SessionEnd::Refused { code, message } => tracing::error!(
                        code,
                        reason = message,
                        "the gateway refused the register; check id, api_key and the secret against the gateway's keys file"
                    ),
                    SessionEnd::Lost(reason) => tracing::warn!(reason, "connection lost before registering"),
                    SessionEnd::Ended { reason } => tracing::warn!(reason, connected_ms = up.as_millis() as u64, "disconnected from the gateway"),
                }
                backoff.on_disconnect(up);
            }
            Err(e) => tracing::warn!(error = %e, "connection failed"),
        }
        let ceiling = backoff.ceiling();
        let delay = backoff.next_delay(rand::random::<f64>());
        tracing::info!(
            delay_ms = delay.as_millis() as u64,
            ceiling_ms = ceiling.as_millis() as u64,
            failures = backoff.failures(),
            "reconnecting after a backoff delay"
        );
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.changed() => return,
        }
    }
}
