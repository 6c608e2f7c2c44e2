//! The writer task: takes writes in order, batches event appends, sends them with retries,
//! spools them while the backend is unreachable, and replays the spool when it is back.
//!
//! One task owns the queue, the breaker and the spool, so order needs no locks: at any moment it
//! is either *online* (the spool is empty: writes go to the backend) or *spooling* (the spool
//! holds writes: new writes are appended behind them, and the oldest are replayed whenever the
//! breaker lets a request through). Spool I/O runs on the blocking pool, never on a runtime
//! worker.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rand::SeedableRng;
use tokio::sync::{mpsc, oneshot};

mod replay;
mod sender;

use super::breaker::Breaker;
use super::spool::{Appended, Spool};
use super::status::Counters;
use super::transport::{Outcome, Transport};
use super::{ClientConfig, ClientError, Persisted};
use crate::model::{NewEvent, WriteOp};
use sender::Sender;

/// Records read from the spool per replay step.
pub(super) const REPLAY_RECORDS: usize = 1000;
/// Events per bulk request while replaying (bigger than live batches: nobody waits on them).
pub(super) const REPLAY_EVENTS: usize = 2000;
/// Items taken from the queue before the writer looks at what it has.
const DRAIN_MAX: usize = 65_536;

type Done = oneshot::Sender<Result<Persisted, ClientError>>;

/// What the client sends to its writer.
pub(crate) enum Item {
    /// A write and where to report its durability.
    Write { op: WriteOp, done: Done },
    /// Process everything queued before this, then answer.
    Flush(oneshot::Sender<()>),
    /// Like `Flush`, then stop.
    Shutdown(oneshot::Sender<()>),
}

struct Pending {
    op: WriteOp,
    done: Option<Done>,
    at: Instant,
}

impl Pending {
    fn resolve(&mut self, r: Result<Persisted, ClientError>) {
        if let Some(done) = self.done.take() {
            let _ = done.send(r);
        }
    }
}

/// What the front of the queue is ready for.
enum Next {
    /// Send the first write alone.
    Op,
    /// Send the first `n` writes (all event appends) as one bulk append.
    Events(usize),
    /// An event batch is filling up: wait for more until then.
    Wait(Instant),
    /// Nothing queued.
    Idle,
}

struct Writer {
    cfg: ClientConfig,
    sender: Sender,
    spool: Arc<Mutex<Spool>>,
    /// Valid records in the spool (mirror of `Spool::records`).
    spooled: u64,
    counters: Arc<Counters>,
    rx: mpsc::UnboundedReceiver<Item>,
    pending: VecDeque<Pending>,
    /// Flush / shutdown callers waiting for the queue ahead of them to be processed.
    waiters: Vec<oneshot::Sender<()>>,
    stopping: bool,
    closed: bool,
    /// A "spool full" episode has been logged (reset once a write is spooled again).
    full_logged: bool,
}

/// Runs the writer until shutdown or until every client handle is dropped.
pub(crate) async fn run(
    cfg: ClientConfig,
    transport: Transport,
    spool: Spool,
    rx: mpsc::UnboundedReceiver<Item>,
    counters: Arc<Counters>,
) {
    let sender = Sender {
        transport,
        breaker: Breaker::new(
            cfg.breaker_failures,
            cfg.breaker_min_open,
            cfg.breaker_max_open,
        ),
        counters: Arc::clone(&counters),
        attempts: cfg.attempts.max(1),
        backoff_base: cfg.backoff_base,
        backoff_max: cfg.backoff_max,
        rng: rand::rngs::SmallRng::from_os_rng(),
    };
    let mut w = Writer {
        spooled: spool.records(),
        spool: Arc::new(Mutex::new(spool)),
        cfg,
        sender,
        counters,
        rx,
        pending: VecDeque::new(),
        waiters: Vec::new(),
        stopping: false,
        closed: false,
        full_logged: false,
    };
    w.publish_spool().await;
    w.run().await;
}

impl Writer {
    async fn run(&mut self) {
        loop {
            self.drain();
            if self.pending.is_empty() {
                for w in self.waiters.drain(..) {
                    let _ = w.send(());
                }
                if self.stopping || self.closed {
                    return;
                }
            }
            if self.spooled > 0 {
                self.spooling_step().await;
            } else {
                self.online_step().await;
            }
        }
    }

    /// Takes what is queued, without waiting; stops at a flush or shutdown barrier.
    fn drain(&mut self) {
        let mut n = 0;
        while self.waiters.is_empty() && n < DRAIN_MAX {
            match self.rx.try_recv() {
                Ok(item) => self.accept(item),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    self.closed = true;
                    break;
                }
            }
            n += 1;
        }
    }

    fn accept(&mut self, item: Item) {
        match item {
            Item::Write { op, done } => {
                self.counters.queued.fetch_sub(1, Ordering::Relaxed);
                self.pending.push_back(Pending {
                    op,
                    done: Some(done),
                    at: Instant::now(),
                });
            }
            Item::Flush(tx) => self.waiters.push(tx),
            Item::Shutdown(tx) => {
                self.waiters.push(tx);
                self.stopping = true;
            }
        }
    }

    /// Waits for the next item, or until `until`.
    async fn wait(&mut self, until: Option<Instant>) -> bool {
        if !self.waiters.is_empty() || self.closed {
            return false;
        }
        let sleep = async {
            match until {
                Some(t) => tokio::time::sleep_until(t.into()).await,
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            item = self.rx.recv() => {
                match item {
                    Some(item) => self.accept(item),
                    None => self.closed = true,
                }
                true
            }
            () = sleep => false,
        }
    }

    fn next(&self, now: Instant) -> Next {
        let Some(front) = self.pending.front() else {
            return Next::Idle;
        };
        if front.op.events().is_none() {
            return Next::Op;
        }
        let mut ops = 0;
        let mut events = 0;
        for p in &self.pending {
            let Some((_, e)) = p.op.events() else {
                // Another kind of write follows: the batch goes now, order is kept.
                return Next::Events(ops);
            };
            ops += 1;
            events += e.len();
            if events >= self.cfg.batch_max_events {
                return Next::Events(ops);
            }
        }
        let deadline = front.at + self.cfg.batch_max_delay;
        if !self.waiters.is_empty() || self.closed || now >= deadline {
            Next::Events(ops)
        } else {
            Next::Wait(deadline)
        }
    }

    async fn online_step(&mut self) {
        match self.next(Instant::now()) {
            Next::Idle => {
                let probe_at = Instant::now() + self.cfg.probe_interval;
                if !self.wait(Some(probe_at)).await
                    && self.pending.is_empty()
                    && self.waiters.is_empty()
                    && !self.closed
                {
                    self.probe().await;
                }
            }
            Next::Wait(deadline) => {
                self.wait(Some(deadline)).await;
            }
            Next::Op => self.send_op().await,
            Next::Events(n) => self.send_events(n).await,
        }
    }

    async fn probe(&mut self) {
        let healthy = self.sender.transport.healthy().await;
        let was = self.counters.reachable.swap(healthy, Ordering::Relaxed);
        if healthy {
            self.sender.breaker.success();
        } else {
            if was {
                tracing::warn!(
                    backend = self.sender.transport.base(),
                    "backend health probe failed"
                );
            }
            self.sender.breaker.failure(Instant::now());
        }
        self.sender.publish();
    }

    async fn send_op(&mut self) {
        let Some(front) = self.pending.front() else {
            return;
        };
        let op = &front.op;
        match self
            .sender
            .send(|t| async move { t.send_op(op).await })
            .await
        {
            Some(outcome) => {
                let Some(mut p) = self.pending.pop_front() else {
                    return;
                };
                self.counters.batches.fetch_add(1, Ordering::Relaxed);
                let r = self.committed_or_rejected(&p.op, outcome);
                p.resolve(r);
            }
            None => self.spool_pending().await,
        }
    }

    fn committed_or_rejected(
        &self,
        op: &WriteOp,
        outcome: Outcome<()>,
    ) -> Result<Persisted, ClientError> {
        match outcome {
            Outcome::Stored(()) => {
                self.count_committed(op);
                Ok(Persisted::Committed)
            }
            Outcome::Rejected {
                status,
                code,
                message,
            } => {
                self.counters.rejected.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(status, code = %code, error = %message, op = op_name(op), "backend refused a write");
                Err(ClientError::Rejected {
                    status,
                    code,
                    message,
                })
            }
            Outcome::Failed(reason) => Err(ClientError::Unavailable {
                url: self.sender.transport.base().to_string(),
                reason,
            }),
        }
    }

    fn count_committed(&self, op: &WriteOp) {
        self.counters.writes.fetch_add(1, Ordering::Relaxed);
        if let WriteOp::AppendEvents { events, .. } = op {
            self.counters
                .events
                .fetch_add(events.len() as u64, Ordering::Relaxed);
        }
    }

    async fn send_events(&mut self, n: usize) {
        let groups: Vec<(&str, &[NewEvent])> = self
            .pending
            .iter()
            .take(n)
            .filter_map(|p| p.op.events())
            .collect();
        let outcome = self.sender.send_events(&groups).await;
        drop(groups);
        match outcome {
            Some(Outcome::Stored(result)) => {
                self.counters.batches.fetch_add(1, Ordering::Relaxed);
                for mut p in self.pending.drain(..n).collect::<Vec<_>>() {
                    let unknown =
                        p.op.events()
                            .map(|(task, _)| task)
                            .filter(|task| result.unknown_tasks.iter().any(|u| u == task));
                    let r = if let Some(task) = unknown {
                        let refused = Outcome::unknown_task(task);
                        self.committed_or_rejected(&p.op, refused)
                    } else {
                        self.count_committed(&p.op);
                        Ok(Persisted::Committed)
                    };
                    p.resolve(r);
                }
            }
            Some(Outcome::Rejected { .. }) if n > 1 => {
                // One bad write (e.g. seq 0) must not sink its neighbours: send them one by one.
                for _ in 0..n {
                    self.send_op().await;
                    if self.spooled > 0 {
                        break;
                    }
                }
            }
            Some(other) => {
                let Some(mut p) = self.pending.pop_front() else {
                    return;
                };
                let r = self.committed_or_rejected(&p.op, other.map(|_| ()));
                p.resolve(r);
            }
            None => self.spool_pending().await,
        }
    }

    /// Appends every pending write to the spool (one fsync) and resolves them.
    async fn spool_pending(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let mut batch: Vec<Pending> = self.pending.drain(..).collect();
        let spool = Arc::clone(&self.spool);
        let ops: Vec<WriteOp> = batch.iter().map(|p| p.op.clone()).collect();
        let result = tokio::task::spawn_blocking(move || {
            let mut s = spool.lock().unwrap_or_else(|e| e.into_inner());
            let refs: Vec<&WriteOp> = ops.iter().collect();
            let r = s.append(&refs);
            let books = (s.records(), s.bytes(), s.corrupt());
            (r, s.dir().display().to_string(), s.max_bytes(), books)
        })
        .await;
        let (result, dir, limit) = match result {
            Ok((r, dir, limit, books)) => {
                // The counters say "spooled" before any caller hears it.
                self.set_spool_books(books);
                (r, dir, limit)
            }
            Err(e) => {
                for p in &mut batch {
                    p.resolve(Err(ClientError::Spool(format!("spool task failed: {e}"))));
                }
                return;
            }
        };
        match result {
            Ok(appended) => {
                // Counters first, so that a caller who hears "spooled" or "refused" sees it
                // counted.
                let refused = appended.iter().filter(|a| **a == Appended::Full).count() as u64;
                let stored = appended.len() as u64 - refused;
                self.counters
                    .spooled_records
                    .fetch_add(stored, Ordering::Relaxed);
                self.counters.refused.fetch_add(refused, Ordering::Relaxed);
                for (p, a) in batch.iter_mut().zip(appended) {
                    match a {
                        Appended::Stored => p.resolve(Ok(Persisted::Spooled)),
                        Appended::Full => p.resolve(Err(ClientError::SpoolFull {
                            dir: dir.clone(),
                            limit,
                        })),
                    }
                }
                if refused > 0 {
                    if !self.full_logged {
                        self.full_logged = true;
                        tracing::error!(spool = %dir, limit_bytes = limit, refused,
                            "backend spool full: new writes are refused until the backend is back and the spool drains (metric orchestra_backend_spool_refused_total)");
                    }
                } else {
                    self.full_logged = false;
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot write the backend spool: writes lost");
                for p in &mut batch {
                    p.resolve(Err(ClientError::Spool(e.to_string())));
                }
            }
        }
        self.publish_spool().await;
    }

    async fn publish_spool(&mut self) {
        let spool = Arc::clone(&self.spool);
        let books = tokio::task::spawn_blocking(move || {
            let s = spool.lock().unwrap_or_else(|e| e.into_inner());
            (s.records(), s.bytes(), s.corrupt())
        })
        .await
        .unwrap_or((self.spooled, 0, 0));
        self.set_spool_books(books);
    }

    fn set_spool_books(&mut self, (records, bytes, corrupt): (u64, u64, u64)) {
        let was = self.spooled;
        self.spooled = records;
        self.counters
            .spool_records
            .store(records, Ordering::Relaxed);
        self.counters.spool_bytes.store(bytes, Ordering::Relaxed);
        self.counters.corrupt.store(corrupt, Ordering::Relaxed);
        self.counters.spooling.store(records > 0, Ordering::Relaxed);
        if was > 0 && records == 0 {
            tracing::info!("backend spool replayed: writes go to the backend directly again");
        }
    }
}

pub(super) fn op_name(op: &WriteOp) -> &'static str {
    match op {
        WriteOp::UpsertAgent { .. } => "upsert_agent",
        WriteOp::CreateSession(_) => "create_session",
        WriteOp::CreateTask(_) => "create_task",
        WriteOp::PatchTask { .. } => "patch_task",
        WriteOp::AppendEvents { .. } => "append_events",
    }
}
