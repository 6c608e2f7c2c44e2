//! The control stream of one agent connection, from `Register` to the end.
//!
//! 1. The first frame must be `Register` within [`REGISTER_TIMEOUT`]; its credentials are checked
//!    by the `agent_auth` verifier (unknown id, wrong API key, stale timestamp, bad signature,
//!    replayed nonce → `Error { AUTH_001 }`, then the connection is closed) and its fields are
//!    bounded (→ `PARAM_001`).
//! 2. The hub registers the agent (replacing an older connection with the same id) and the
//!    gateway answers `Registered` (heartbeat interval, version, connection id).
//! 3. Then, until the connection ends: `Heartbeat`s update the agent's system info; `Ping` is
//!    answered with `Pong`; the gateway pings every few heartbeat intervals and feeds the round
//!    trip to dispatch; streams the agent opens (`TaskResume`) are handed to
//!    [`super::task_stream`]. A heartbeat overdue by half an interval marks the agent late (dispatch
//!    avoids it); `offline_after_missed` intervals without one close the connection
//!    (`Error { AGENT_001 }`). Any other frame is a protocol error (`PARAM_001`, close).
//!
//! The connection also closes when the hub asks (a newer connection replaced it, its key was
//! removed) and when the gateway shuts down; the agent gets an `Error` frame saying why.

use std::sync::Arc;
use std::time::Duration;

use orchestra_hub::{AgentHello, AgentSession, Resume};
use orchestra_plugins::agent_auth::AgentCredentials;
use orchestra_proto::v1::{self, frame::Msg, Frame};
use tokio::sync::watch;
use tokio::time::Instant;

use super::link::ConnLink;
use super::task_stream::{self, Opening};
use super::transport::{Conn, FrameRx, FrameTx};
use super::AgentService;

/// How long a new connection (or an agent-opened stream) may take to send its first frame.
pub const REGISTER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the gateway waits for the agent to read a closing `Error` frame.
pub const CLOSE_LINGER: Duration = Duration::from_secs(1);
/// Ping every this many heartbeat intervals.
const PING_EVERY: u32 = 3;

/// Limits on `Register` fields.
const MAX_FIELD: usize = 256;
const MAX_LIST: usize = 64;
const MAX_RUNNING: usize = 4096;
const MAX_SLOTS: u32 = 1024;

fn error_frame(code: &str, message: &str) -> Frame {
    Frame {
        msg: Some(Msg::Error(v1::Error {
            code: code.to_string(),
            message: message.to_string(),
        })),
    }
}

/// Sends `Error { code, message }`, waits briefly for the agent to read it, closes.
pub(crate) async fn refuse(conn: &Conn, tx: &mut FrameTx, code: &str, message: &str) {
    tracing::info!(peer = %conn.peer(), code, message, "agent connection refused or closed");
    let _ = tx.send(&error_frame(code, message)).await;
    tx.finish_and_wait(CLOSE_LINGER).await;
    conn.close(message);
}

fn frame_name(msg: &Msg) -> &'static str {
    match msg {
        Msg::Register(_) => "Register",
        Msg::Heartbeat(_) => "Heartbeat",
        Msg::Ping(_) => "Ping",
        Msg::Pong(_) => "Pong",
        Msg::Registered(_) => "Registered",
        Msg::Error(_) => "Error",
        Msg::Assign(_) => "TaskAssign",
        Msg::Input(_) => "TaskInput",
        Msg::Stop(_) => "TaskStop",
        Msg::Ack(_) => "OutputAck",
        Msg::Accepted(_) => "TaskAccepted",
        Msg::Rejected(_) => "TaskRejected",
        Msg::Event(_) => "TaskEvent",
        Msg::Resume(_) => "TaskResume",
    }
}

/// The name of a frame for error messages.
pub(crate) fn name_of(frame: &Frame) -> &'static str {
    frame.msg.as_ref().map_or("empty", frame_name)
}

/// Checks the register fields other than the credentials.
fn check_fields(r: &v1::Register) -> Result<(), String> {
    if r.protocol_version != orchestra_proto::PROTOCOL_VERSION {
        return Err(format!(
            "protocol_version {} is not supported (this gateway speaks {})",
            r.protocol_version,
            orchestra_proto::PROTOCOL_VERSION
        ));
    }
    if r.name.len() > MAX_FIELD || r.version.len() > MAX_FIELD {
        return Err("name and version are at most 256 bytes".into());
    }
    if r.capabilities.len() > MAX_LIST
        || r.capabilities
            .iter()
            .any(|c| c.is_empty() || c.len() > MAX_FIELD)
    {
        return Err("capabilities: at most 64 names of 1-256 bytes".into());
    }
    if r.metadata.len() > MAX_LIST
        || r.metadata
            .iter()
            .any(|(k, v)| k.len() > MAX_FIELD || v.len() > 4096)
    {
        return Err("metadata: at most 64 entries, keys of 256 and values of 4096 bytes".into());
    }
    if r.running_tasks.len() > MAX_RUNNING || r.running_tasks.iter().any(|t| t.len() > MAX_FIELD) {
        return Err("running_tasks: at most 4096 ids of at most 256 bytes".into());
    }
    if r.max_tasks > MAX_SLOTS {
        return Err(format!("max_tasks {} is above {MAX_SLOTS}", r.max_tasks));
    }
    Ok(())
}

/// Serves one agent connection whose control stream is `(tx, rx)`.
pub(crate) async fn serve(conn: Conn, mut tx: FrameTx, mut rx: FrameRx, svc: Arc<AgentService>) {
    let first = tokio::time::timeout(REGISTER_TIMEOUT, rx.recv()).await;
    let register = match first {
        Ok(Ok(Some(Frame {
            msg: Some(Msg::Register(r)),
        }))) => r,
        Ok(Ok(Some(other))) => {
            svc.metrics
                .bad_frames
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let msg = format!("the first frame must be Register, not {}", name_of(&other));
            return refuse(&conn, &mut tx, "PARAM_001", &msg).await;
        }
        Ok(Ok(None)) => return conn.close("no register"),
        Ok(Err(e)) => {
            svc.metrics
                .bad_frames
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return refuse(&conn, &mut tx, "PARAM_001", &e.to_string()).await;
        }
        Err(_) => {
            let msg = format!("no Register within {} s", REGISTER_TIMEOUT.as_secs());
            return refuse(&conn, &mut tx, "PARAM_001", &msg).await;
        }
    };
    let creds = AgentCredentials {
        agent_id: &register.agent_id,
        api_key: &register.api_key,
        timestamp: register.timestamp,
        nonce: &register.nonce,
        signature: &register.signature,
    };
    if let Err(e) = svc.verifier().verify(&creds) {
        svc.auth_failed(&e);
        tracing::warn!(agent = %register.agent_id.escape_debug(), peer = %conn.peer(), error = %e, "agent authentication failed");
        return refuse(
            &conn,
            &mut tx,
            e.code(),
            &format!("authentication failed: {e}"),
        )
        .await;
    }
    if let Err(msg) = check_fields(&register) {
        svc.metrics
            .bad_frames
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        return refuse(&conn, &mut tx, "PARAM_001", &format!("Register: {msg}")).await;
    }
    let hello = AgentHello {
        name: if register.name.is_empty() {
            register.agent_id.clone()
        } else {
            register.name
        },
        id: register.agent_id,
        capabilities: register.capabilities,
        version: register.version,
        metadata: register.metadata.into_iter().collect(),
        max_tasks: register.max_tasks,
        running_tasks: register.running_tasks,
        transport: conn.transport(),
        peer: conn.peer(),
    };
    let (close_tx, close_rx) = watch::channel(None);
    let link = Arc::new(ConnLink::new(conn.clone(), Arc::clone(&svc), close_tx));
    let session = Arc::new(svc.hub().connect(hello, link));
    let settings = svc.settings();
    let registered = Frame {
        msg: Some(Msg::Registered(v1::Registered {
            protocol_version: orchestra_proto::PROTOCOL_VERSION,
            heartbeat_interval_ms: settings.heartbeat_interval.as_millis() as u64,
            gateway_version: env!("CARGO_PKG_VERSION").to_string(),
            connection_id: session.connection_id().to_string(),
        })),
    };
    if tx.send(&registered).await.is_err() {
        session.close("could not send Registered");
        return;
    }
    let reason = run(&conn, &mut tx, &mut rx, &svc, &session, close_rx).await;
    session.close(&reason);
    conn.close(&reason);
}

/// The registered connection's loop; returns why it ended.
async fn run(
    conn: &Conn,
    tx: &mut FrameTx,
    rx: &mut FrameRx,
    svc: &Arc<AgentService>,
    session: &Arc<AgentSession>,
    mut close_rx: watch::Receiver<Option<(&'static str, String)>>,
) -> String {
    let mut shutdown = svc.shutdown_signal();
    let mut last_heartbeat = Instant::now();
    let mut interval = svc.settings().heartbeat_interval;
    let mut tick = tokio::time::interval_at(Instant::now() + interval, interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut ticks: u32 = 0;
    let mut ping_id: u64 = 1;
    let mut ping_sent = Some((ping_id, Instant::now()));
    if tx.send(&ping(ping_id)).await.is_err() {
        return "could not send Ping".into();
    }
    loop {
        tokio::select! {
            frame = rx.recv() => match frame {
                Ok(Some(Frame { msg: Some(msg) })) => match msg {
                    Msg::Heartbeat(hb) => {
                        session.heartbeat(&hb);
                        last_heartbeat = Instant::now();
                    }
                    Msg::Ping(p) => {
                        let pong = Frame { msg: Some(Msg::Pong(v1::Pong { id: p.id })) };
                        if tx.send(&pong).await.is_err() {
                            return "control stream closed".into();
                        }
                    }
                    Msg::Pong(p) => {
                        if let Some((id, at)) = ping_sent {
                            if id == p.id {
                                session.rtt(at.elapsed());
                                ping_sent = None;
                            }
                        }
                    }
                    Msg::Error(e) => {
                        return format!("agent sent an error: {} {}", e.code, e.message);
                    }
                    other => {
                        svc.metrics.bad_frames.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let msg = format!("unexpected {} on the control stream", frame_name(&other));
                        refuse(conn, tx, "PARAM_001", &msg).await;
                        return msg;
                    }
                },
                Ok(Some(Frame { msg: None })) => {
                    svc.metrics.bad_frames.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    refuse(conn, tx, "PARAM_001", "empty frame on the control stream").await;
                    return "empty frame".into();
                }
                Ok(None) => return "agent closed the control stream".into(),
                Err(e) => {
                    svc.metrics.bad_frames.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let msg = format!("control stream: {e}");
                    refuse(conn, tx, "PARAM_001", &msg).await;
                    return msg;
                }
            },
            _ = tick.tick() => {
                let settings = svc.settings();
                if settings.heartbeat_interval != interval {
                    interval = settings.heartbeat_interval;
                    tick = tokio::time::interval_at(Instant::now() + interval, interval);
                    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                }
                let silent = last_heartbeat.elapsed();
                let limit = interval * settings.offline_after_missed;
                if silent > limit {
                    svc.metrics.offline.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let msg = format!(
                        "no heartbeat for {:.1} s ({} missed at {} ms): offline",
                        silent.as_secs_f64(),
                        settings.offline_after_missed,
                        interval.as_millis()
                    );
                    refuse(conn, tx, "AGENT_001", &msg).await;
                    return msg;
                }
                if silent > interval + interval / 2 {
                    session.late();
                }
                ticks = ticks.wrapping_add(1);
                let ping_stale = ping_sent.is_some_and(|(_, at)| at.elapsed() > interval * PING_EVERY);
                if (ping_sent.is_none() && ticks.is_multiple_of(PING_EVERY)) || ping_stale {
                    ping_id += 1;
                    ping_sent = Some((ping_id, Instant::now()));
                    if tx.send(&ping(ping_id)).await.is_err() {
                        return "control stream closed".into();
                    }
                }
            }
            accepted = conn.accept() => match accepted {
                Some((stx, srx)) => {
                    tokio::spawn(resume_stream(Arc::clone(session), stx, srx, Arc::clone(svc)));
                }
                None => return "connection closed".into(),
            },
            _ = close_rx.changed() => {
                let request = close_rx.borrow_and_update().clone();
                if let Some((code, reason)) = request {
                    refuse(conn, tx, code, &reason).await;
                    return reason;
                }
            }
            () = super::until_true(&mut shutdown) => {
                let msg = "gateway shutting down: reconnect";
                refuse(conn, tx, "SYS_001", msg).await;
                return msg.into();
            }
        }
    }
}

fn ping(id: u64) -> Frame {
    Frame {
        msg: Some(Msg::Ping(v1::Ping { id })),
    }
}

/// A stream the agent opened: it must start with `TaskResume`.
async fn resume_stream(
    session: Arc<AgentSession>,
    mut tx: FrameTx,
    mut rx: FrameRx,
    svc: Arc<AgentService>,
) {
    let first = tokio::time::timeout(REGISTER_TIMEOUT, rx.recv()).await;
    let resume = match first {
        Ok(Ok(Some(Frame {
            msg: Some(Msg::Resume(r)),
        }))) => r,
        Ok(Ok(None)) => return,
        other => {
            svc.metrics
                .bad_frames
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let what = match other {
                Ok(Ok(Some(f))) => name_of(&f).to_string(),
                Ok(Err(e)) => e.to_string(),
                _ => "nothing".to_string(),
            };
            let msg =
                format!("a stream opened by the agent must start with TaskResume, got {what}");
            let _ = tx.send(&error_frame("PARAM_001", &msg)).await;
            tx.finish().await;
            return;
        }
    };
    let answer = session.resume(&resume.task_id, resume.last_seq).await;
    drop(session);
    match answer {
        Resume::Attached { ack, attachment } => {
            task_stream::run(tx, rx, attachment, Opening::Resume { ack }, svc).await;
        }
        Resume::Stop { reason } => {
            let stop = Frame {
                msg: Some(Msg::Stop(v1::TaskStop { reason })),
            };
            let _ = tx.send(&stop).await;
            tx.finish().await;
        }
    }
}
