//! A task's held events (DELIVERY.md invariant 2): numbered, kept until the gateway acks them,
//! bounded in memory and spilled to disk beyond that.
//!
//! Events `acked + 1 ..= last_seq` are held. The oldest ones are in memory (up to
//! `memory_per_task` bytes; at least one event), the newer ones, once memory is full, in the
//! spill file — memory always holds a prefix, so order is kept without an index. Only events in
//! memory are sent; a cumulative ack frees memory and reads the next events back from the
//! spill file. The memory cap is thus also the window of unacked events in flight.
//!
//! When the spill file reaches `spill_per_task`, [`Outbox::has_room`] turns false and the task
//! stops taking output from its process (which then blocks on its pipe) until acks free room:
//! nothing is ever dropped.

use std::collections::VecDeque;
use std::path::PathBuf;

use bytes::Bytes;
use orchestra_proto::v1::Frame;
use prost::Message;

use super::spill::Spill;
use crate::config::OutputLimits;

/// Bytes counted per held event besides its encoding (queue slot, `Bytes` header).
const ENTRY_OVERHEAD: usize = 48;

/// Held events of one task.
#[derive(Debug)]
pub struct Outbox {
    next_seq: u64,
    acked: u64,
    mem: VecDeque<Bytes>,
    mem_bytes: usize,
    limits: OutputLimits,
    spill: Option<Spill>,
    spill_path: PathBuf,
}

impl Outbox {
    /// An empty outbox whose first event will be `first_seq`.
    pub fn new(first_seq: u64, limits: OutputLimits, spill_path: PathBuf) -> Self {
        Outbox {
            next_seq: first_seq,
            acked: first_seq.saturating_sub(1),
            mem: VecDeque::new(),
            mem_bytes: 0,
            limits,
            spill: None,
            spill_path,
        }
    }

    /// The seq of the last event produced (`acked` when none is held).
    pub fn last_seq(&self) -> u64 {
        self.next_seq - 1
    }

    /// The highest seq the gateway acked.
    pub fn acked(&self) -> u64 {
        self.acked
    }

    /// True when the spill file has room for more events.
    pub fn has_room(&self) -> bool {
        self.spill
            .as_ref()
            .is_none_or(|s| s.bytes() < self.limits.spill_per_task)
    }

    /// Bytes currently waiting in the spill file.
    pub fn spilled_bytes(&self) -> u64 {
        self.spill.as_ref().map_or(0, Spill::bytes)
    }

    /// Numbers the next event, encodes the frame `make(seq)` builds and holds it.
    pub async fn push(&mut self, make: impl FnOnce(u64) -> Frame) -> std::io::Result<u64> {
        let seq = self.next_seq;
        let body = Bytes::from(make(seq).encode_to_vec());
        let spilling = self.spill.as_ref().is_some_and(|s| s.records() > 0);
        let fits = self.mem.is_empty()
            || self.mem_bytes + body.len() + ENTRY_OVERHEAD <= self.limits.memory_per_task;
        if spilling || !fits {
            if self.spill.is_none() {
                self.spill = Some(Spill::create(&self.spill_path).await?);
                tracing::info!(
                    path = %self.spill_path.display(),
                    held_in_memory = self.mem_bytes,
                    "unacked output exceeds the memory cap; spilling to disk"
                );
            }
            if let Some(spill) = self.spill.as_mut() {
                spill.append(seq, &body).await?;
            }
        } else {
            self.mem_bytes += body.len() + ENTRY_OVERHEAD;
            self.mem.push_back(body);
        }
        self.next_seq += 1;
        Ok(seq)
    }

    /// The encoded event `seq`, when it is held in memory.
    pub fn get(&self, seq: u64) -> Option<&Bytes> {
        let index = seq.checked_sub(self.acked + 1)?;
        self.mem.get(usize::try_from(index).ok()?)
    }

    /// Cumulative ack: frees every event `<= seq` and reads spilled events back into the room
    /// this makes. `seq` beyond the last event is clamped (returns false).
    pub async fn ack(&mut self, seq: u64) -> std::io::Result<bool> {
        let valid = seq <= self.last_seq();
        let seq = seq.min(self.last_seq());
        while self.acked < seq {
            if let Some(body) = self.mem.pop_front() {
                self.mem_bytes -= body.len() + ENTRY_OVERHEAD;
            } else if let Some(spill) = self.spill.as_mut() {
                // Acked while still on disk (the gateway holds it from an earlier connection).
                spill.pop().await?;
            }
            self.acked += 1;
        }
        self.refill().await?;
        Ok(valid)
    }

    async fn refill(&mut self) -> std::io::Result<()> {
        let Some(spill) = self.spill.as_mut() else {
            return Ok(());
        };
        while spill.records() > 0
            && (self.mem.is_empty() || self.mem_bytes < self.limits.memory_per_task)
        {
            let Some((seq, body)) = spill.pop().await? else {
                break;
            };
            let expected = self.acked + 1 + self.mem.len() as u64;
            if seq != expected {
                return Err(std::io::Error::other(format!(
                    "spill file {} is corrupt: read seq {seq}, expected {expected}",
                    spill.path().display()
                )));
            }
            self.mem_bytes += body.len() + ENTRY_OVERHEAD;
            self.mem.push_back(body);
        }
        Ok(())
    }

    /// Deletes the spill file, if any.
    pub async fn discard(&mut self) {
        if let Some(spill) = self.spill.take() {
            spill.remove().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use orchestra_proto::v1::{frame, OutputItem, TaskEvent};

    fn event(text: String) -> impl FnOnce(u64) -> Frame {
        move |seq| Frame {
            msg: Some(frame::Msg::Event(TaskEvent {
                seq,
                body: Some(orchestra_proto::v1::task_event::Body::Output(OutputItem {
                    kind: 1,
                    text,
                    json: String::new(),
                })),
            })),
        }
    }

    fn seq_of(body: &Bytes) -> u64 {
        match Frame::decode(body.clone()).unwrap().msg {
            Some(frame::Msg::Event(e)) => e.seq,
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn holds_until_acked_and_spills_beyond_the_memory_cap() {
        let dir = tempfile::tempdir().unwrap();
        let limits = OutputLimits {
            memory_per_task: 4096,
            spill_per_task: 1 << 20,
        };
        let mut o = Outbox::new(5, limits, dir.path().join("t"));
        for i in 0..1000 {
            let seq = o
                .push(event(format!("line {i:04} {}", "x".repeat(40))))
                .await
                .unwrap();
            assert_eq!(seq, 5 + i);
        }
        assert_eq!(o.last_seq(), 1004);
        assert!(
            o.spilled_bytes() > 0,
            "1000 events of ~60 bytes exceed 4 KiB"
        );
        assert!(o.get(5).is_some());
        assert!(o.get(4).is_none());
        // Only a memory-sized prefix is sendable.
        let in_mem = (5..).take_while(|s| o.get(*s).is_some()).count();
        assert!(in_mem > 10 && in_mem < 100, "{in_mem}");
        // Acks walk through memory and the spill file, in order.
        let mut next = 5;
        while next <= 1004 {
            let body = o.get(next).unwrap().clone();
            assert_eq!(seq_of(&body), next);
            o.ack(next).await.unwrap();
            next += 1;
        }
        assert_eq!(o.acked(), 1004);
        assert_eq!(o.spilled_bytes(), 0);
        // An ack beyond the last event is clamped.
        assert!(!o.ack(2000).await.unwrap());
        assert_eq!(o.acked(), 1004);
        o.discard().await;
        assert!(!dir.path().join("t").exists());
    }

    #[tokio::test]
    async fn an_ack_can_reach_into_the_spill_file() {
        let dir = tempfile::tempdir().unwrap();
        let limits = OutputLimits {
            memory_per_task: 1024,
            spill_per_task: 2048,
        };
        let mut o = Outbox::new(1, limits, dir.path().join("t"));
        while o.has_room() {
            o.push(event("y".repeat(100))).await.unwrap();
        }
        let last = o.last_seq();
        o.ack(last - 2).await.unwrap();
        assert_eq!(seq_of(o.get(last - 1).unwrap()), last - 1);
        assert!(o.has_room());
    }
}
