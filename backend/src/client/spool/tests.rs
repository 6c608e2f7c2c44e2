//! The spool's record format, replay order, crash and corruption handling, and limit.
use super::*;
use crate::model::NewEvent;

fn op(seq: u64) -> WriteOp {
    WriteOp::AppendEvents {
        task_id: "t".into(),
        events: vec![NewEvent {
            seq,
            kind: "k".into(),
            data: serde_json::json!({"text": "hello"}),
        }],
    }
}

fn seq_of(op: &WriteOp) -> u64 {
    match op {
        WriteOp::AppendEvents { events, .. } => events[0].seq,
        _ => 0,
    }
}

fn append(s: &mut Spool, seqs: std::ops::RangeInclusive<u64>) -> Vec<Appended> {
    let ops: Vec<WriteOp> = seqs.map(op).collect();
    let refs: Vec<&WriteOp> = ops.iter().collect();
    s.append(&refs).expect("append")
}

/// Replays everything: peeks, checks order, acks.
fn drain(s: &mut Spool) -> Vec<u64> {
    let mut out = Vec::new();
    loop {
        let batch = s.peek(7).expect("peek");
        let Some(last) = batch.last() else { break };
        let next = last.next;
        out.extend(batch.iter().map(|r| seq_of(&r.op)));
        s.ack(next, batch.len() as u64).expect("ack");
    }
    out
}

fn segments(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .expect("dir")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".seg"))
        })
        .count()
}

#[test]
fn replays_in_order_across_segments_and_deletes_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = Spool::open(dir.path(), 1 << 20, 200).expect("open");
    for i in 0..10 {
        append(&mut s, i * 10 + 1..=i * 10 + 10);
    }
    assert_eq!(s.records(), 100);
    assert!(segments(dir.path()) > 1, "small segments rotate");
    assert_eq!(drain(&mut s), (1..=100).collect::<Vec<_>>());
    assert!(s.is_empty());
    assert_eq!(s.bytes(), 0);
    assert_eq!(segments(dir.path()), 0, "replayed segments are deleted");
    // Usable again afterwards.
    append(&mut s, 101..=102);
    assert_eq!(drain(&mut s), [101, 102]);
}

#[test]
fn a_new_process_replays_what_the_old_one_left_from_its_checkpoint() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let mut s = Spool::open(dir.path(), 1 << 20, 1 << 20).expect("open");
        append(&mut s, 1..=20);
        let batch = s.peek(5).expect("peek");
        s.ack(batch[4].next, 5).expect("ack");
        // Dropped without replaying the rest: a crash.
    }
    let mut s = Spool::open(dir.path(), 1 << 20, 1 << 20).expect("reopen");
    assert_eq!(s.records(), 15);
    append(&mut s, 21..=22);
    assert_eq!(
        segments(dir.path()),
        2,
        "a new process writes a new segment"
    );
    assert_eq!(drain(&mut s), (6..=22).collect::<Vec<_>>());
}

#[test]
fn corrupt_and_truncated_records_are_skipped_and_counted() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let mut s = Spool::open(dir.path(), 1 << 20, 1 << 20).expect("open");
        append(&mut s, 1..=5);
    }
    let seg = segment_path(dir.path(), 1);
    let mut bytes = std::fs::read(&seg).expect("read");
    // Flip a payload byte of the second record.
    let first_len = u32::from_le_bytes(bytes[0..4].try_into().expect("4")) as usize;
    let second = 8 + first_len;
    bytes[second + 8 + 3] ^= 0x55;
    // And a tail cut mid-record, as a crash during a write leaves it.
    bytes.extend_from_slice(&100u32.to_le_bytes());
    bytes.extend_from_slice(&[1, 2, 3, 4, 5, 6]);
    std::fs::write(&seg, &bytes).expect("write");
    let mut s = Spool::open(dir.path(), 1 << 20, 1 << 20).expect("reopen");
    assert_eq!(s.records(), 4);
    assert_eq!(s.corrupt(), 2, "one CRC mismatch, one truncated tail");
    assert_eq!(drain(&mut s), [1, 3, 4, 5]);
    assert_eq!(s.corrupt(), 2, "counted once");
    assert!(s.is_empty());
}

#[test]
fn a_spool_of_only_garbage_opens_empty() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(segment_path(dir.path(), 3), [9u8; 5]).expect("write");
    let s = Spool::open(dir.path(), 1 << 20, 1 << 20).expect("open");
    assert!(s.is_empty());
    assert_eq!(s.corrupt(), 1);
    assert_eq!(segments(dir.path()), 0);
}

#[test]
fn the_limit_refuses_from_the_first_write_that_does_not_fit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = Spool::open(dir.path(), 1000, 1 << 20).expect("open");
    let r = append(&mut s, 1..=100);
    let stored = r.iter().take_while(|a| **a == Appended::Stored).count();
    assert!(stored > 0 && stored < 100);
    assert!(
        r[stored..].iter().all(|a| *a == Appended::Full),
        "no hole after a refusal"
    );
    assert!(s.bytes() <= 1000);
    assert_eq!(append(&mut s, 101..=101), [Appended::Full]);
    // Replaying frees the space.
    assert_eq!(drain(&mut s).len(), stored);
    assert_eq!(append(&mut s, 102..=102), [Appended::Stored]);
}
