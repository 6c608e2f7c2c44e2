//! The spooling half of the writer: new writes queue behind the spool, and the oldest spooled
//! writes are replayed whenever the breaker lets a request through.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use super::{op_name, Writer, REPLAY_EVENTS, REPLAY_RECORDS};
use crate::client::spool::Pos;
use crate::client::transport::Outcome;
use crate::model::{NewEvent, WriteOp};

impl Writer {
    pub(super) async fn spooling_step(&mut self) {
        if !self.pending.is_empty() {
            // New writes queue behind the spooled ones.
            self.spool_pending().await;
            return;
        }
        let now = Instant::now();
        if self.sender.breaker.allows(now) {
            self.replay().await;
            return;
        }
        self.sender.publish();
        if self.stopping || self.closed {
            return;
        }
        let until = self.sender.breaker.retry_at();
        self.wait(until).await;
    }

    /// Replays the oldest spooled writes; stops at the first request that fails.
    async fn replay(&mut self) {
        let spool = Arc::clone(&self.spool);
        let chunk = tokio::task::spawn_blocking(move || {
            spool
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .peek(REPLAY_RECORDS)
        })
        .await;
        let chunk = match chunk {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "cannot read the backend spool");
                self.sender.breaker.failure(Instant::now());
                return;
            }
            Err(e) => {
                tracing::error!(error = %e, "spool task failed");
                return;
            }
        };
        if chunk.is_empty() {
            // Only corrupt records were left: they are skipped; settle the books.
            let pos = {
                let s = self.spool.lock().unwrap_or_else(|e| e.into_inner());
                s.records()
            };
            if pos == 0 {
                self.publish_spool().await;
            } else {
                self.ack(None, 0).await;
            }
            return;
        }
        let mut done: Option<Pos> = None;
        let mut done_n = 0u64;
        let mut i = 0;
        while i < chunk.len() {
            // A unit: consecutive appends (up to REPLAY_EVENTS events), or one other write.
            let mut j = i;
            let mut events = 0;
            while j < chunk.len() {
                match &chunk[j].op {
                    WriteOp::AppendEvents { events: e, .. } if events < REPLAY_EVENTS => {
                        events += e.len();
                        j += 1;
                    }
                    _ => break,
                }
            }
            let unit = if j == i { i..i + 1 } else { i..j };
            let ok = if j == i {
                let op = &chunk[i].op;
                match self
                    .sender
                    .send(|t| async move { t.send_op(op).await })
                    .await
                {
                    Some(outcome) => {
                        if let Outcome::Rejected {
                            status,
                            code,
                            message,
                        } = outcome
                        {
                            self.counters.rejected.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(status, code = %code, error = %message, op = op_name(op), "backend refused a replayed write; dropped");
                        } else {
                            self.count_committed(op);
                        }
                        true
                    }
                    None => false,
                }
            } else {
                let groups: Vec<(&str, &[NewEvent])> = chunk[unit.clone()]
                    .iter()
                    .filter_map(|r| r.op.events())
                    .collect();
                let outcome = self.sender.send_events(&groups).await;
                match outcome {
                    Some(Outcome::Stored(r)) => {
                        for u in &r.unknown_tasks {
                            tracing::warn!(task = %u, "replayed events of an unknown task; dropped");
                        }
                        for rec in &chunk[unit.clone()] {
                            self.count_committed(&rec.op);
                        }
                        true
                    }
                    Some(Outcome::Rejected {
                        status,
                        code,
                        message,
                    }) => {
                        self.counters
                            .rejected
                            .fetch_add(unit.len() as u64, Ordering::Relaxed);
                        tracing::warn!(status, code = %code, error = %message, writes = unit.len(), "backend refused replayed events; dropped");
                        true
                    }
                    Some(Outcome::Failed(_)) | None => false,
                }
            };
            if !ok {
                break;
            }
            self.counters.batches.fetch_add(1, Ordering::Relaxed);
            self.counters
                .replayed
                .fetch_add(unit.len() as u64, Ordering::Relaxed);
            done = Some(chunk[unit.end - 1].next);
            done_n += unit.len() as u64;
            i = unit.end;
        }
        if let Some(pos) = done {
            self.ack(Some(pos), done_n).await;
        }
    }

    async fn ack(&mut self, pos: Option<Pos>, n: u64) {
        let spool = Arc::clone(&self.spool);
        let r = tokio::task::spawn_blocking(move || {
            let mut s = spool.lock().unwrap_or_else(|e| e.into_inner());
            match pos {
                Some(p) => s.ack(p, n),
                None => Ok(()),
            }
        })
        .await;
        if let Ok(Err(e)) = r {
            tracing::warn!(error = %e, "cannot record the spool replay position (replay may repeat; writes are idempotent)");
        }
        self.publish_spool().await;
    }
}
