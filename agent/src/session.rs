//! One connection's protocol: register, heartbeats, ping/pong, task assignments and resumes.
//!
//! 1. The agent opens the control stream and sends `Register` (credentials signed with the
//!    secret, capabilities, `max_tasks`, and the ids of the tasks it still holds); the gateway
//!    answers `Registered` or `Error` (`AUTH_001`: the session ends, the reconnect loop backs
//!    off).
//! 2. Each held task gets a stream of its own and resumes on it (`TaskTable::resume_all`).
//! 3. Then, until the connection ends: a `Heartbeat` with system information every
//!    `heartbeat_interval_ms` (from `Registered`, 10 s when absent), each followed by a `Ping`;
//!    `Pong` for every `Ping` the gateway sends; each stream the gateway opens is read for its
//!    `TaskAssign` and handed to the task table. Three heartbeat intervals (+1 s) without a
//!    frame from the gateway on any stream (no pong, no ack, nothing; the transport's
//!    [`LastHeard`](crate::transport::LastHeard)) end the session: over WebSocket nothing else
//!    would notice a dead path.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use orchestra_proto::v1::{frame, Error as ErrorFrame, Frame, Ping, Pong, Register};
use orchestra_proto::PROTOCOL_VERSION;
use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};

use crate::auth;
use crate::config::AgentConfig;
use crate::system::SystemProbe;
use crate::tasks::{TaskTable, PARAM_001};
use crate::transport::{Link, Stream, StreamRx};

/// Heartbeat interval when `Registered` does not give one.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(10);
/// How long the gateway has to send `TaskAssign` on a stream it opened.
const ASSIGN_TIMEOUT: Duration = Duration::from_secs(10);
/// Heartbeat intervals of silence after which the connection is considered dead.
const SILENT_INTERVALS: u32 = 3;

/// What the session needs besides the connection.
#[derive(Debug, Clone)]
pub struct SessionCtx {
    /// The configuration.
    pub cfg: Arc<AgentConfig>,
    /// The task table.
    pub tasks: TaskTable,
    /// System information for heartbeats (used on the blocking pool).
    pub probe: Arc<Mutex<SystemProbe>>,
}

/// How a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEnd {
    /// The gateway refused the register (`Error` frame).
    Refused {
        /// Platform code, e.g. `AUTH_001`.
        code: String,
        /// The gateway's message.
        message: String,
    },
    /// The connection ended or broke after (or during) registration.
    Lost(String),
    /// The agent is shutting down.
    Shutdown,
    /// Registered, then the connection ended.
    Ended {
        /// Why it ended.
        reason: String,
    },
}

/// Runs the protocol on `link` until the connection ends or `shutdown` turns true.
pub async fn run(
    mut link: Link,
    ctx: &SessionCtx,
    shutdown: &mut watch::Receiver<bool>,
) -> SessionEnd {
    let Ok(Stream {
        tx: control,
        rx: mut control_rx,
    }) = link.open("").await
    else {
        return SessionEnd::Lost("could not open the control stream".into());
    };
    let register = register_frame(ctx);
    if control.send(&register).await.is_err() {
        return SessionEnd::Lost("the connection closed before register".into());
    }
    let registered = match tokio::time::timeout(ctx.cfg.connect_timeout, control_rx.recv()).await {
        Err(_) => {
            link.close("no answer to register");
            return SessionEnd::Lost(format!(
                "no answer to register within {:?}",
                ctx.cfg.connect_timeout
            ));
        }
        Ok(None) => return SessionEnd::Lost("the control stream closed before registered".into()),
        Ok(Some(Frame {
            msg: Some(frame::Msg::Registered(r)),
        })) => r,
        Ok(Some(Frame {
            msg: Some(frame::Msg::Error(e)),
        })) => {
            link.close("register refused");
            return SessionEnd::Refused {
                code: e.code,
                message: e.message,
            };
        }
        Ok(Some(other)) => {
            link.close("protocol error");
            return SessionEnd::Lost(format!("expected Registered, got {:?}", other.msg));
        }
    };
    let interval = match registered.heartbeat_interval_ms {
        0 => DEFAULT_HEARTBEAT,
        ms => Duration::from_millis(ms).clamp(Duration::from_millis(100), Duration::from_secs(300)),
    };
    tracing::info!(
        gateway = %link.peer(),
        connection_id = registered.connection_id,
        gateway_version = registered.gateway_version,
        heartbeat_ms = interval.as_millis() as u64,
        resumed_tasks = ctx.tasks.len(),
        "registered"
    );
    ctx.tasks.resume_all(&link).await;

    let mut heartbeat = tokio::time::interval(interval);
    heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut ping_id = 0u64;
    let mut ping_sent: Option<(u64, Instant)> = None;
    let end = loop {
        tokio::select! {
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    break SessionEnd::Shutdown;
                }
            }
            stream = link.accept() => {
                let Some(stream) = stream else {
                    break SessionEnd::Ended { reason: "the connection closed".into() };
                };
                tokio::spawn(handle_stream(stream, ctx.tasks.clone()));
            }
            frame = control_rx.recv() => {
                match on_control(frame, &control, &mut ping_sent).await {
                    Ok(()) => {}
                    Err(reason) => break SessionEnd::Ended { reason },
                }
            }
            _ = heartbeat.tick() => {
                let silent = link.last_heard().elapsed();
                if silent > interval * SILENT_INTERVALS + Duration::from_secs(1) {
                    break SessionEnd::Ended {
                        reason: format!("nothing heard from the gateway for {silent:?}"),
                    };
                }
                let hb = sample(ctx).await;
                ping_id += 1;
                let ping = Frame { msg: Some(frame::Msg::Ping(Ping { id: ping_id })) };
                let sent = control.send(&Frame { msg: Some(frame::Msg::Heartbeat(hb)) }).await.is_ok()
                    && control.send(&ping).await.is_ok();
                if !sent {
                    break SessionEnd::Ended { reason: "the connection closed".into() };
                }
                ping_sent = Some((ping_id, Instant::now()));
            }
        }
    };
    link.close(match end {
        SessionEnd::Shutdown => "agent shutting down",
        _ => "session ended",
    });
    end
}

async fn on_control(
    frame: Option<Frame>,
    control: &crate::transport::StreamTx,
    ping_sent: &mut Option<(u64, Instant)>,
) -> Result<(), String> {
    let Some(frame) = frame else {
        return Err("the control stream closed".into());
    };
    match frame.msg {
        Some(frame::Msg::Ping(p)) => {
            let pong = Frame {
                msg: Some(frame::Msg::Pong(Pong { id: p.id })),
            };
            control
                .send(&pong)
                .await
                .map_err(|_| "the connection closed".to_string())?;
        }
        Some(frame::Msg::Pong(p)) => {
            if let Some((id, at)) = *ping_sent {
                if id == p.id {
                    tracing::debug!(rtt_us = at.elapsed().as_micros() as u64, "pong");
                    *ping_sent = None;
                }
            }
        }
        Some(frame::Msg::Error(e)) => {
            return Err(format!(
                "the gateway closed the session: {} {}",
                e.code, e.message
            ));
        }
        other => {
            tracing::debug!(frame = ?other, "unexpected frame on the control stream; ignored");
        }
    }
    Ok(())
}

/// Reads the `TaskAssign` that opens a gateway stream and hands it to the task table.
async fn handle_stream(mut stream: Stream, tasks: TaskTable) {
    let first = tokio::time::timeout(ASSIGN_TIMEOUT, recv(&mut stream.rx)).await;
    match first {
        Ok(Some(Frame {
            msg: Some(frame::Msg::Assign(assign)),
        })) => tasks.assign(assign, stream).await,
        Ok(None) => {}
        Ok(Some(other)) => {
            tracing::warn!(frame = ?other.msg, "a gateway stream must start with TaskAssign");
            let error = Frame {
                msg: Some(frame::Msg::Error(ErrorFrame {
                    code: PARAM_001.into(),
                    message: "a stream opened by the gateway must start with TaskAssign".into(),
                })),
            };
            let _ = stream.tx.finish(Some(&error)).await;
        }
        Err(_) => {
            tracing::warn!(
                "no TaskAssign on a gateway stream within {ASSIGN_TIMEOUT:?}; closing it"
            );
            let _ = stream.tx.finish(None).await;
        }
    }
}

async fn recv(rx: &mut StreamRx) -> Option<Frame> {
    rx.recv().await
}

fn register_frame(ctx: &SessionCtx) -> Frame {
    let cfg = &ctx.cfg;
    let timestamp = auth::unix_now();
    let nonce = auth::nonce();
    let signature = auth::sign(cfg.secret.as_bytes(), &cfg.id, timestamp, &nonce);
    Frame {
        msg: Some(frame::Msg::Register(Register {
            protocol_version: PROTOCOL_VERSION,
            agent_id: cfg.id.clone(),
            api_key: cfg.api_key.clone(),
            timestamp,
            nonce,
            signature,
            name: cfg.name.clone(),
            capabilities: cfg.capabilities.clone(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            metadata: cfg
                .metadata
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            max_tasks: cfg.max_tasks,
            running_tasks: ctx.tasks.ids(),
        })),
    }
}

async fn sample(ctx: &SessionCtx) -> orchestra_proto::v1::Heartbeat {
    let probe = ctx.probe.clone();
    let running = ctx.tasks.running();
    tokio::task::spawn_blocking(move || {
        let mut probe = probe.lock().unwrap_or_else(|p| p.into_inner());
        probe.sample(running)
    })
    .await
    .unwrap_or_else(|_| orchestra_proto::v1::Heartbeat {
        running_tasks: running,
        ..Default::default()
    })
}
