//! One task stream, on either transport: the gateway's half of "one QUIC stream per task".
//!
//! ```text
//! open:    TaskAssign (new task)  |  OutputAck { durable } (resumed task)
//! loop:    agent frames ─► hub attachment (accept, ingest: fan-out at once) ─► batch
//!          batch ─► backend append ─► Durable ─► OutputAck { last seq of the batch }
//!          input / stop from the hub ─► TaskInput / TaskStop
//! end:     result durable and acked, agent's FIN ─► our FIN; the task leaves the hub
//! ```
//!
//! **Batching.** After a frame, every frame already received is taken as well (up to
//! [`MAX_BATCH`]), so a fast producer costs one backend append per batch, not per line; acks are
//! cumulative, one per batch, sent in order as the batches become durable.
//!
//! **Flow control.** At most [`MAX_UNDURABLE`] events per stream are received but not yet
//! durable; beyond that the stream is not read until the backend catches up. On QUIC this leaves
//! the bytes in the stream's receive window, so only this task's sender waits; the agent's other
//! tasks and its control stream go on.
//!
//! **Bad input.** A frame that breaks the stream rules (event before accept, a seq gap, an
//! event after the result, a frame of the wrong kind or direction, an undecodable or oversized
//! frame) ends the task as failed with the reason, and the agent gets `Error` and `TaskStop`.

use std::sync::Arc;
use std::time::Duration;

use futures::stream::FuturesOrdered;
use futures::{FutureExt, StreamExt};
use orchestra_backend::model::NewEvent;
use orchestra_hub::attachment::{MAX_BATCH, MAX_UNDURABLE};
use orchestra_hub::{Ingest, PersistError, ProtocolError, TaskAttachment, TaskCommand};
use orchestra_proto::v1::{self, frame::Msg, Frame};
use orchestra_proto::FrameError;
use tokio::time::Instant;

use super::control::name_of;
use super::transport::{FrameRx, FrameTx};
use super::AgentService;

/// How long the gateway waits for the agent's FIN once the result is acked.
pub const FIN_TIMEOUT: Duration = Duration::from_secs(30);

/// How the stream starts.
#[derive(Debug)]
pub(crate) enum Opening {
    /// A new task: send the assignment.
    Assign(v1::TaskAssign),
    /// A resumed task: tell the agent what is durable.
    Resume {
        /// Highest seq stored durably.
        ack: u64,
    },
}

fn msg(m: Msg) -> Frame {
    Frame { msg: Some(m) }
}

/// A batch on its way to the backend.
struct Pending {
    ack: u64,
    events: u64,
    first_at: Instant,
}

/// Why the stream loop ended.
enum End {
    /// Everything done: finish both sides.
    Done,
    /// The stream or connection broke: the task is orphaned (the attachment's drop).
    Lost,
    /// The agent broke the protocol: fail the task.
    Protocol(ProtocolError),
    /// Undecodable input.
    BadFrame(String),
    /// The backend could not store a batch: close so the agent resends after reconnecting.
    Backend(PersistError),
    /// The agent rejected the assignment.
    Rejected,
}

/// Runs one task stream to its end.
pub(crate) async fn run(
    mut tx: FrameTx,
    mut rx: FrameRx,
    mut att: TaskAttachment,
    opening: Opening,
    svc: Arc<AgentService>,
) {
    let first = match opening {
        Opening::Assign(a) => msg(Msg::Assign(a)),
        Opening::Resume { ack } => msg(Msg::Ack(v1::OutputAck { seq: ack })),
    };
    if tx.send(&first).await.is_err() {
        return;
    }
    let end = pump(&mut tx, &mut rx, &mut att, &svc).await;
    match end {
        End::Done => {
            tx.finish().await;
            att.finish();
        }
        End::Rejected => tx.finish().await,
        End::Lost => {}
        End::Protocol(ProtocolError::Superseded) => {}
        End::Protocol(e) => {
            att.protocol_error(&e);
            svc.metrics
                .bad_frames
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            close_with(&mut tx, e.code(), &e.to_string()).await;
            att.fail(&format!("protocol error from the agent: {e}"));
        }
        End::BadFrame(reason) => {
            svc.metrics
                .bad_frames
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::warn!(task = att.task_id(), reason, "bad frame on a task stream");
            close_with(&mut tx, "PARAM_001", &reason).await;
            att.fail(&format!("protocol error from the agent: {reason}"));
        }
        End::Backend(e) => {
            tracing::error!(task = att.task_id(), error = %e, "task events not stored; the agent will resend them");
            close_with(&mut tx, "SYS_001", &format!("events not stored: {e}")).await;
        }
    }
}

/// Sends `Error` and `TaskStop`, then ends the stream.
async fn close_with(tx: &mut FrameTx, code: &str, message: &str) {
    let _ = tx
        .send(&msg(Msg::Error(v1::Error {
            code: code.to_string(),
            message: message.to_string(),
        })))
        .await;
    let _ = tx
        .send(&msg(Msg::Stop(v1::TaskStop {
            reason: message.to_string(),
        })))
        .await;
    tx.finish().await;
}

async fn pump(
    tx: &mut FrameTx,
    rx: &mut FrameRx,
    att: &mut TaskAttachment,
    svc: &AgentService,
) -> End {
    let mut pending = FuturesOrdered::new();
    let mut undurable: usize = 0;
    let mut over = false;
    let mut agent_done = false;
    let mut commands_open = true;
    let mut batch: Vec<NewEvent> = Vec::new();
    let fin_deadline = tokio::time::sleep(Duration::MAX);
    tokio::pin!(fin_deadline);
    loop {
        if over && agent_done {
            return End::Done;
        }
        tokio::select! {
            biased;
            Some((p, result)) = pending.next(), if !pending.is_empty() => {
                let p: Pending = p;
                let result: Result<(), PersistError> = result;
                if let Err(e) = result {
                    return End::Backend(e);
                }
                undurable = undurable.saturating_sub(p.events as usize);
                match att.acked(p.ack, p.events) {
                    Ok(done) => {
                        if done && !over {
                            over = true;
                            fin_deadline.as_mut().reset(Instant::now() + FIN_TIMEOUT);
                        }
                    }
                    Err(e) => return End::Protocol(e),
                }
                svc.record_ack_latency(p.first_at.elapsed());
                if tx.send(&msg(Msg::Ack(v1::OutputAck { seq: p.ack }))).await.is_err() {
                    return End::Lost;
                }
            }
            cmd = att.command(), if commands_open => match cmd {
                Some(TaskCommand::Input { data, close }) => {
                    let f = msg(Msg::Input(v1::TaskInput { data: data.to_vec(), close }));
                    if tx.send(&f).await.is_err() {
                        return End::Lost;
                    }
                }
                Some(TaskCommand::Stop { reason }) => {
                    if tx.send(&msg(Msg::Stop(v1::TaskStop { reason }))).await.is_err() {
                        return End::Lost;
                    }
                }
                None => commands_open = false,
            },
            frame = rx.recv(), if !agent_done && undurable < MAX_UNDURABLE => {
                let first_at = Instant::now();
                let mut ack = 0;
                let mut events = 0u64;
                let mut next = Some(frame);
                while let Some(frame) = next.take() {
                    match frame {
                        Ok(Some(f)) => match handle(f, att, &mut batch) {
                            Step::Ack(seq) => {
                                ack = seq;
                                events += 1;
                            }
                            Step::Duplicate(seq) => {
                                if tx.send(&msg(Msg::Ack(v1::OutputAck { seq }))).await.is_err() {
                                    if !batch.is_empty() {
                                        drop(att.persist(std::mem::take(&mut batch)));
                                    }
                                    return End::Lost;
                                }
                            }
                            Step::End(end) => {
                                // Events taken in before the bad frame were published: store them.
                                if !batch.is_empty() {
                                    drop(att.persist(std::mem::take(&mut batch)));
                                }
                                return end;
                            }
                        },
                        Ok(None) => {
                            agent_done = true;
                            if !att.has_result() {
                                // The agent ended its side without a result.
                                if !batch.is_empty() {
                                    drop(att.persist(std::mem::take(&mut batch)));
                                }
                                return End::Lost;
                            }
                            break;
                        }
                        Err(e) => {
                            if !batch.is_empty() {
                                drop(att.persist(std::mem::take(&mut batch)));
                            }
                            if let FrameError::Io(e) = e {
                                tracing::debug!(task = att.task_id(), error = %e, "task stream lost");
                                return End::Lost;
                            }
                            return End::BadFrame(e.to_string());
                        }
                    }
                    if batch.len() < MAX_BATCH && undurable + (events as usize) < MAX_UNDURABLE {
                        next = rx.recv().now_or_never();
                    }
                }
                if !batch.is_empty() {
                    undurable += events as usize;
                    let durable = att.persist(std::mem::take(&mut batch));
                    let p = Pending { ack, events, first_at };
                    pending.push_back(durable.map(move |r| (p, r)));
                }
            }
            () = &mut fin_deadline, if over => {
                tracing::debug!(task = att.task_id(), "agent did not finish its side after the result; closing");
                return End::Done;
            }
        }
    }
}

enum Step {
    /// Taken in: ack through this seq once the batch is durable.
    Ack(u64),
    /// A duplicate: ack this (durable) seq now.
    Duplicate(u64),
    End(End),
}

fn handle(frame: Frame, att: &mut TaskAttachment, batch: &mut Vec<NewEvent>) -> Step {
    let Some(m) = frame.msg else {
        return Step::End(End::BadFrame("empty frame on a task stream".into()));
    };
    match m {
        Msg::Accepted(a) => match att.accepted(a.seq, a.pid, batch) {
            Ok(seq) => Step::Ack(seq),
            Err(e) => Step::End(End::Protocol(e)),
        },
        Msg::Rejected(r) => {
            att.rejected(&r.code, &r.reason);
            Step::End(End::Rejected)
        }
        Msg::Event(ev) => match att.ingest(&ev, batch) {
            Ok(Ingest::Accepted { ack }) => Step::Ack(ack),
            Ok(Ingest::Duplicate { ack }) => Step::Duplicate(ack),
            Err(e) => Step::End(End::Protocol(e)),
        },
        Msg::Error(e) => {
            tracing::warn!(task = att.task_id(), code = %e.code, message = %e.message, "agent reported an error on a task stream");
            Step::End(End::Lost)
        }
        other => {
            let name = name_of(&Frame { msg: Some(other) });
            Step::End(End::Protocol(ProtocolError::UnexpectedFrame(name)))
        }
    }
}
