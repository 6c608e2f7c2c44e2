//! The on-disk spool: where writes go, in order, while the backend is unreachable.
//!
//! ## Layout
//! A directory of append-only segment files `NNNNNNNNNNNNNNNNNNNN.seg` (ids increase; the oldest
//! is replayed first) and a checkpoint file `replayed` (`SEGMENT OFFSET`, the position of the
//! next record to replay). A segment is closed for writing once it passes `segment_bytes`, and
//! every process start writes into a new segment (never after a tail that a crash may have cut).
//!
//! ## Record
//! `len: u32 LE | crc32(payload): u32 LE | payload` where `payload` is the JSON of one
//! [`WriteOp`]. A record whose CRC does not match, or whose payload does not decode, is logged,
//! counted and skipped; a record whose length runs past the end of its segment (a write cut by a
//! crash) ends that segment: logged and skipped. Never a panic.
//!
//! ## fsync policy
//! [`Spool::append`] writes a whole group of records with one `write` and then `fdatasync`s the
//! segment (group commit); a new segment also fsyncs the directory. Only after that does the
//! caller resolve the writes' `Durable`s: a spooled write survives a crash of the process and
//! of the machine. The checkpoint is written without fsync: after a crash, replay may restart a
//! little earlier, and every write is idempotent on the backend, so that replays nothing twice
//! in effect.
//!
//! ## Limit
//! The spool holds at most `max_bytes` (segment files on disk, replayed parts included until
//! their segment is deleted). A group that would pass it is refused from the first record that
//! does not fit (later records are refused too, so order is never broken by a hole).

use std::collections::{HashSet, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::model::WriteOp;

/// Bytes of a record header (length, CRC32).
pub const HEADER: u64 = 8;
/// The largest record accepted when reading back; a longer length field is corruption.
pub const MAX_RECORD: u64 = 64 << 20;
const CHECKPOINT: &str = "replayed";

/// Why the spool failed.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// A file operation failed (disk full, permissions...).
    #[error("spool {path}: {op}: {source}")]
    Io {
        /// The file or directory.
        path: String,
        /// What was attempted.
        op: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
}

fn io_err<'a>(path: &'a Path, op: &'static str) -> impl FnOnce(std::io::Error) -> SpoolError + 'a {
    move |source| SpoolError::Io {
        path: path.display().to_string(),
        op,
        source,
    }
}

/// A position in the spool: segment id and byte offset of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pos {
    /// Segment id.
    pub segment: u64,
    /// Byte offset in the segment.
    pub offset: u64,
}

#[derive(Debug)]
struct Segment {
    id: u64,
    path: PathBuf,
    len: u64,
}

/// One record read back for replay.
#[derive(Debug)]
pub struct Replayed {
    /// The write.
    pub op: WriteOp,
    /// The position just after it (acknowledge up to here once the backend stored it).
    pub next: Pos,
}

/// What [`Spool::append`] did with each write of a group, in order.
#[derive(Debug, PartialEq, Eq)]
pub enum Appended {
    /// Written and fsynced.
    Stored,
    /// Refused: the spool would pass its limit.
    Full,
}

/// The spool of one client.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    segment_bytes: u64,
    segments: VecDeque<Segment>,
    /// Open for appending: the last segment, created by this process.
    writer: Option<File>,
    read: Pos,
    reader: Option<(u64, BufReader<File>, u64)>,
    bytes: u64,
    records: u64,
    corrupt: u64,
    known_corrupt: HashSet<Pos>,
}

impl Spool {
    /// Opens (creating) the spool in `dir`; records left by an earlier process are counted
    /// (and a corrupt tail reported) so they replay first.
    pub fn open(dir: &Path, max_bytes: u64, segment_bytes: u64) -> Result<Spool, SpoolError> {
        std::fs::create_dir_all(dir).map_err(io_err(dir, "create directory"))?;
        let mut ids = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io_err(dir, "list"))? {
            let entry = entry.map_err(io_err(dir, "list"))?;
            let name = entry.file_name();
            let Some(id) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".seg"))
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            ids.push(id);
        }
        ids.sort_unstable();
        let mut segments = VecDeque::new();
        let mut bytes = 0;
        for id in ids {
            let path = segment_path(dir, id);
            let len = std::fs::metadata(&path)
                .map_err(io_err(&path, "stat"))?
                .len();
            bytes += len;
            segments.push_back(Segment { id, path, len });
        }
        let read = read_checkpoint(dir)
            .filter(|p| {
                segments
                    .iter()
                    .any(|s| s.id == p.segment && p.offset <= s.len)
            })
            .or_else(|| {
                segments.front().map(|s| Pos {
                    segment: s.id,
                    offset: 0,
                })
            })
            .unwrap_or(Pos {
                segment: 0,
                offset: 0,
            });
        let mut spool = Spool {
            dir: dir.to_path_buf(),
            max_bytes,
            segment_bytes: segment_bytes.max(1),
            segments,
            writer: None,
            read,
            reader: None,
            bytes,
            records: 0,
            corrupt: 0,
            known_corrupt: HashSet::new(),
        };
        // Segments before the checkpoint were replayed but not deleted (a crash in between).
        while spool
            .segments
            .front()
            .is_some_and(|s| s.id < spool.read.segment)
        {
            spool.drop_front();
        }
        spool.records = spool.count_unreplayed()?;
        if spool.records == 0 {
            // Nothing valid left (all replayed, or only corrupt records): start clean.
            spool.clear();
        } else {
            tracing::info!(
                dir = %dir.display(),
                records = spool.records,
                bytes = spool.bytes,
                "backend spool holds writes from an earlier run; they are replayed first"
            );
        }
        Ok(spool)
    }

    /// True when nothing is left to replay.
    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// Bytes of segment files on disk.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Records not yet replayed.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Corrupt or truncated records skipped so far.
    pub fn corrupt(&self) -> u64 {
        self.corrupt
    }

    /// The limit.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends `ops` in order with one write and one fdatasync.
    pub fn append(&mut self, ops: &[&WriteOp]) -> Result<Vec<Appended>, SpoolError> {
        let mut buf = Vec::new();
        let mut out = Vec::with_capacity(ops.len());
        let mut full = false;
        for op in ops {
            if full {
                out.push(Appended::Full);
                continue;
            }
            let start = buf.len();
            buf.extend_from_slice(&[0; HEADER as usize]);
            if serde_json::to_writer(&mut buf, op).is_err() {
                // A WriteOp always serializes; keep the invariant that a hole is never made.
                buf.truncate(start);
                full = true;
                out.push(Appended::Full);
                continue;
            }
            let len = (buf.len() - start) as u64 - HEADER;
            if self.bytes + buf.len() as u64 > self.max_bytes || len > MAX_RECORD {
                buf.truncate(start);
                full = true;
                out.push(Appended::Full);
                continue;
            }
            let crc = crc32fast::hash(&buf[start + HEADER as usize..]);
            buf[start..start + 4].copy_from_slice(&(len as u32).to_le_bytes());
            buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
            out.push(Appended::Stored);
        }
        if buf.is_empty() {
            return Ok(out);
        }
        let stored = out.iter().filter(|a| **a == Appended::Stored).count() as u64;
        self.writable()?;
        let path = self
            .segments
            .back()
            .map(|s| s.path.clone())
            .unwrap_or_default();
        let file = self
            .writer
            .as_mut()
            .ok_or_else(|| io_err(&path, "open segment")(std::io::ErrorKind::NotFound.into()))?;
        file.write_all(&buf).map_err(io_err(&path, "write"))?;
        file.sync_data().map_err(io_err(&path, "fdatasync"))?;
        if let Some(seg) = self.segments.back_mut() {
            seg.len += buf.len() as u64;
        }
        self.bytes += buf.len() as u64;
        self.records += stored;
        Ok(out)
    }

    /// The segment to append to: the current one, or a new one when there is none yet (first
    /// append of this process) or the current one is full.
    fn writable(&mut self) -> Result<(), SpoolError> {
        let rotate = match (&self.writer, self.segments.back()) {
            (Some(_), Some(last)) => last.len >= self.segment_bytes,
            _ => true,
        };
        if rotate {
            let id = self
                .segments
                .back()
                .map_or(1, |s| s.id + 1)
                .max(self.read.segment);
            let path = segment_path(&self.dir, id);
            let file = OpenOptions::new()
                .create_new(true)
                .append(true)
                .open(&path)
                .map_err(io_err(&path, "create segment"))?;
            File::open(&self.dir)
                .and_then(|d| d.sync_all())
                .map_err(io_err(&self.dir, "fsync directory"))?;
            if self.segments.is_empty() {
                self.read = Pos {
                    segment: id,
                    offset: 0,
                };
            }
            self.segments.push_back(Segment { id, path, len: 0 });
            self.writer = Some(file);
        }
        Ok(())
    }

    /// Reads up to `max_records` records from the replay position (without moving it: call
    /// [`Spool::ack`] once they are stored). Corrupt records are skipped and counted.
    pub fn peek(&mut self, max_records: usize) -> Result<Vec<Replayed>, SpoolError> {
        let mut out = Vec::new();
        let mut pos = self.read;
        while out.len() < max_records {
            // The segment of `pos`, or the next one when it was deleted after being replayed.
            let Some(seg) = self.segments.iter().find(|s| s.id >= pos.segment) else {
                break;
            };
            if seg.id > pos.segment {
                pos = Pos {
                    segment: seg.id,
                    offset: 0,
                };
            }
            let (seg_len, seg_path) = (seg.len, seg.path.clone());
            if pos.offset >= seg_len {
                // End of this segment: continue with the next one, if any.
                match self.segments.iter().find(|s| s.id > pos.segment) {
                    Some(next) => {
                        pos = Pos {
                            segment: next.id,
                            offset: 0,
                        };
                        continue;
                    }
                    None => break,
                }
            }
            match self.read_at(pos, seg_len, &seg_path)? {
                Record::Op(op, next) => out.push(Replayed { op, next }),
                Record::Corrupt(next, why) => {
                    if self.known_corrupt.insert(pos) {
                        tracing::warn!(
                            spool = %seg_path.display(),
                            offset = pos.offset,
                            reason = %why,
                            "corrupt spool record skipped"
                        );
                        self.corrupt += 1;
                    }
                    // Move the replay position past it so it is not reported again.
                    if out.is_empty() {
                        self.read = next;
                    }
                    pos = next;
                    continue;
                }
            }
            pos = out.last().map(|r| r.next).unwrap_or(pos);
        }
        Ok(out)
    }

    fn read_at(&mut self, pos: Pos, seg_len: u64, path: &Path) -> Result<Record, SpoolError> {
        let cached =
            matches!(&self.reader, Some((id, _, off)) if *id == pos.segment && *off == pos.offset);
        if !cached {
            let mut f = File::open(path).map_err(io_err(path, "open segment"))?;
            f.seek(SeekFrom::Start(pos.offset))
                .map_err(io_err(path, "seek"))?;
            self.reader = Some((pos.segment, BufReader::new(f), pos.offset));
        }
        let Some((_, reader, _)) = self.reader.as_mut() else {
            return Err(io_err(path, "open segment")(
                std::io::ErrorKind::NotFound.into(),
            ));
        };
        let end_of_segment = Pos {
            segment: pos.segment,
            offset: seg_len,
        };
        let left = seg_len - pos.offset;
        if left < HEADER {
            self.reader = None;
            return Ok(Record::Corrupt(
                end_of_segment,
                format!("truncated record header ({left} bytes at the end of the segment)"),
            ));
        }
        let mut header = [0u8; HEADER as usize];
        reader
            .read_exact(&mut header)
            .map_err(io_err(path, "read"))?;
        let len = u64::from(u32::from_le_bytes([
            header[0], header[1], header[2], header[3],
        ]));
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        if len > MAX_RECORD || len > left - HEADER {
            self.reader = None;
            return Ok(Record::Corrupt(
                end_of_segment,
                format!(
                    "record length {len} runs past the end of the segment ({} bytes left): \
                     truncated by a crash, rest of the segment skipped",
                    left - HEADER
                ),
            ));
        }
        let mut payload = vec![0u8; len as usize];
        reader
            .read_exact(&mut payload)
            .map_err(io_err(path, "read"))?;
        let next = Pos {
            segment: pos.segment,
            offset: pos.offset + HEADER + len,
        };
        if let Some((_, _, off)) = &mut self.reader {
            *off = next.offset;
        }
        if crc32fast::hash(&payload) != crc {
            return Ok(Record::Corrupt(next, "CRC32 mismatch".to_string()));
        }
        match serde_json::from_slice::<WriteOp>(&payload) {
            Ok(op) => Ok(Record::Op(op, next)),
            Err(e) => Ok(Record::Corrupt(next, format!("undecodable write: {e}"))),
        }
    }

    /// Marks everything before `pos` as replayed (`records` of them): deletes segments that
    /// are done and writes the checkpoint.
    pub fn ack(&mut self, pos: Pos, records: u64) -> Result<(), SpoolError> {
        self.read = pos;
        self.records = self.records.saturating_sub(records);
        while let Some(front) = self.segments.front() {
            let done = front.id < pos.segment
                || (front.id == pos.segment && pos.offset >= front.len && self.segments.len() > 1);
            if !done {
                break;
            }
            self.drop_front();
        }
        if self.records == 0 {
            self.clear();
            return Ok(());
        }
        write_checkpoint(&self.dir, self.read)
    }

    /// Everything replayed: start over with no files at all (the next append creates a new
    /// segment with a higher id).
    fn clear(&mut self) {
        let next_id = self.segments.back().map_or(self.read.segment, |s| s.id) + 1;
        while !self.segments.is_empty() {
            self.drop_front();
        }
        self.writer = None;
        self.reader = None;
        self.known_corrupt.clear();
        self.read = Pos {
            segment: next_id,
            offset: 0,
        };
        let _ = std::fs::remove_file(self.dir.join(CHECKPOINT));
    }

    fn drop_front(&mut self) {
        if let Some(seg) = self.segments.pop_front() {
            if let Err(e) = std::fs::remove_file(&seg.path) {
                tracing::warn!(spool = %seg.path.display(), error = %e, "cannot delete a replayed spool segment");
            }
            self.bytes = self.bytes.saturating_sub(seg.len);
            if self.reader.as_ref().is_some_and(|(id, _, _)| *id == seg.id) {
                self.reader = None;
            }
            if self.segments.is_empty() {
                self.writer = None;
            }
        }
    }

    /// Counts the valid records from the replay position (at open: what an earlier run left);
    /// corrupt ones are logged here, once, and skipped silently on replay.
    fn count_unreplayed(&mut self) -> Result<u64, SpoolError> {
        let saved = self.read;
        let mut n = 0;
        loop {
            let batch = self.peek(1024)?;
            let Some(last) = batch.last() else { break };
            n += batch.len() as u64;
            self.read = last.next;
        }
        if n > 0 {
            self.read = saved;
        }
        self.reader = None;
        Ok(n)
    }
}

enum Record {
    Op(WriteOp, Pos),
    Corrupt(Pos, String),
}

fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}.seg"))
}

fn read_checkpoint(dir: &Path) -> Option<Pos> {
    let text = std::fs::read_to_string(dir.join(CHECKPOINT)).ok()?;
    let mut parts = text.split_whitespace();
    let segment = parts.next()?.parse().ok()?;
    let offset = parts.next()?.parse().ok()?;
    Some(Pos { segment, offset })
}

fn write_checkpoint(dir: &Path, pos: Pos) -> Result<(), SpoolError> {
    let tmp = dir.join(format!("{CHECKPOINT}.tmp"));
    std::fs::write(&tmp, format!("{} {}\n", pos.segment, pos.offset))
        .map_err(io_err(&tmp, "write checkpoint"))?;
    std::fs::rename(&tmp, dir.join(CHECKPOINT)).map_err(io_err(&tmp, "rename checkpoint"))
}

#[cfg(test)]
mod tests;
