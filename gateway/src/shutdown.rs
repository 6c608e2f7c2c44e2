//! Signals and graceful drain.
//!
//! pingora's own SIGTERM handling stops accepting and then sleeps the whole grace period even when
//! nothing is in flight. The gateway installs its own watcher instead:
//!
//! - SIGTERM: tell pingora to stop accepting (graceful terminate), then wait until no request is
//!   in flight or `grace_period` has passed, and exit 0;
//! - SIGINT: exit at once;
//! - SIGHUP: re-read the config file (see [`crate::reload`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora::server::{ShutdownSignal, ShutdownSignalWatch};
use tokio::sync::watch;

use crate::state::GatewayState;

/// The [`ShutdownSignalWatch`] handed to pingora: it resolves when the main thread decides.
pub struct ControlledShutdown {
    rx: watch::Receiver<Option<Decision>>,
}

/// What the main thread decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decision {
    /// Stop accepting; the main thread drains and exits.
    Graceful,
    /// Stop now.
    Fast,
}

/// The sending side kept by the main thread.
pub struct ShutdownTrigger {
    tx: watch::Sender<Option<Decision>>,
}

/// Creates a linked trigger / watcher pair.
pub fn channel() -> (ShutdownTrigger, ControlledShutdown) {
    let (tx, rx) = watch::channel(None);
    (ShutdownTrigger { tx }, ControlledShutdown { rx })
}

#[async_trait]
impl ShutdownSignalWatch for ControlledShutdown {
    async fn recv(&self) -> ShutdownSignal {
        let mut rx = self.rx.clone();
        loop {
            match *rx.borrow_and_update() {
                Some(Decision::Graceful) => return ShutdownSignal::GracefulTerminate,
                Some(Decision::Fast) => return ShutdownSignal::FastShutdown,
                None => {}
            }
            if rx.changed().await.is_err() {
                return ShutdownSignal::FastShutdown;
            }
        }
    }
}

impl ShutdownTrigger {
    fn send(&self, s: Decision) {
        let _ = self.tx.send(Some(s));
    }
}

/// What the control plane runs besides signal handling.
pub struct ControlPlane {
    /// The bound admin listener, if configured.
    pub admin: Option<std::net::TcpListener>,
    /// Poll interval of the config file watch (`None` = no watch).
    pub watch_interval: Option<Duration>,
    /// The HTTP/3 endpoint, drained with the rest (GOAWAY, in-flight streams, close).
    pub h3: Option<crate::h3::H3Service>,
}

/// The control-plane runtime with its signal handlers installed.
///
/// Created before any listener starts, so that a SIGTERM arriving while the gateway is still
/// starting is queued for the control plane instead of killing the process.
pub struct Signals {
    rt: tokio::runtime::Runtime,
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    /// Builds the current-thread runtime and installs the SIGTERM, SIGINT and SIGHUP handlers.
    pub fn install() -> std::io::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let _guard = rt.enter();
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
            rt,
        })
    }
}

/// Runs the control plane on the calling thread until the process exits: signals (SIGHUP
/// reloads, SIGTERM drains and exits, SIGINT exits), the admin API, the config file watch, the
/// histogram rotation tick and the monitor (dashboard sampling, alert rules).
pub fn run_control_plane(
    signals: Signals,
    trigger: ShutdownTrigger,
    state: Arc<GatewayState>,
    plane: ControlPlane,
) -> ! {
    let Signals {
        rt,
        mut term,
        mut int,
        mut hup,
    } = signals;
    let code = rt.block_on(async move {
        if let Some(listener) = plane.admin {
            match listener
                .set_nonblocking(true)
                .and_then(|()| tokio::net::TcpListener::from_std(listener))
            {
                Ok(l) => {
                    tokio::spawn(crate::admin::serve(l, Arc::clone(&state)));
                }
                Err(e) => {
                    tracing::error!(error = %e, "admin listener");
                    return 1;
                }
            }
        }
        if let Some(interval) = plane.watch_interval {
            tokio::spawn(crate::reload::watch_file(Arc::clone(&state), interval));
        }
        tokio::spawn(crate::health::run(Arc::clone(&state)));
        tokio::spawn(crate::monitor::run(Arc::clone(&state)));
        let ticker_state = Arc::clone(&state);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            let mut n: u64 = 0;
            loop {
                tick.tick().await;
                ticker_state.registry.rotate(Instant::now());
                n += 1;
                if n.is_multiple_of(10) {
                    // Plugin housekeeping, e.g. dropping idle rate-limit keys.
                    for def in ticker_state.live().snapshot.plugins.values() {
                        def.plugin.maintenance();
                    }
                }
            }
        });
        loop {
            tokio::select! {
                _ = hup.recv() => {
                    tracing::info!("SIGHUP: reloading config");
                    let _ = crate::reload::reload_file(&state, "sighup");
                }
                _ = term.recv() => {
                    let grace = state.live().server.grace_period;
                    tracing::info!(in_flight = state.in_flight(), grace_ms = grace.as_millis() as u64, "SIGTERM: draining");
                    state.set_ready(false);
                    trigger.send(Decision::Graceful);
                    if let Some(h3) = &plane.h3 {
                        h3.begin_shutdown();
                    }
                    if let Some(agents) = state.agents() {
                        // Agents are told to reconnect (to the next process) instead of
                        // holding the drain for the whole grace period.
                        agents.begin_shutdown();
                    }
                    drain(&state, grace).await;
                    if let Some(h3) = &plane.h3 {
                        h3.close().await;
                    }
                    // Queued writes are sent or spooled before the embedded backend closes.
                    if let Some(backend) = state.backend() {
                        backend.stop().await;
                    }
                    return 0;
                }
                _ = int.recv() => {
                    tracing::info!("SIGINT: exiting now");
                    trigger.send(Decision::Fast);
                    return 0;
                }
            }
        }
    });
    // Access-log lines still queued for the writer thread are written first.
    crate::access_log::flush(Duration::from_secs(1));
    std::process::exit(code)
}

/// Waits until no request is in flight (stable for a short settle time) or `grace` has passed.
async fn drain(state: &GatewayState, grace: Duration) {
    const SETTLE: Duration = Duration::from_millis(100);
    let deadline = Instant::now() + grace;
    let mut idle_since: Option<Instant> = None;
    loop {
        let now = Instant::now();
        if now >= deadline {
            tracing::warn!(
                in_flight = state.in_flight(),
                "grace period over: exiting with requests in flight"
            );
            return;
        }
        if state.in_flight() == 0 {
            let since = *idle_since.get_or_insert(now);
            if now - since >= SETTLE {
                tracing::info!("drained: exiting");
                return;
            }
        } else {
            idle_since = None;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
