//! A task's spill file: held events beyond the memory cap, appended in seq order and read back
//! in the same order as acks make room in memory.
//!
//! Record: `seq` (u64 LE), `len` (u32 LE), the encoded frame. Appends go through a 64 KiB
//! buffer; reads flush it first. When every record has been read back the file is truncated, so
//! a task that spills now and then does not grow its file forever. Files live in
//! `{workdir}/.spill/{task_id}`; the directory is emptied when the agent starts (held events do
//! not outlive the process that held them). tokio's file I/O runs on its blocking pool, off the
//! async workers.

use std::io::SeekFrom;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use tokio::fs::{File, OpenOptions};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt, BufReader, BufWriter};

const HEADER: u64 = 12;

/// One spill file.
#[derive(Debug)]
pub struct Spill {
    path: PathBuf,
    writer: BufWriter<File>,
    reader: BufReader<File>,
    /// Records appended and not read back yet.
    records: u64,
    /// Bytes appended and not read back yet.
    bytes: u64,
    unflushed: bool,
}

impl Spill {
    /// Creates (or truncates) the file at `path`.
    pub async fn create(path: &Path) -> std::io::Result<Spill> {
        // Truncate, then reopen in append mode: after the file is truncated to restart it,
        // writes must land at the new end, not at the old offset.
        drop(File::create(path).await?);
        let file = OpenOptions::new().append(true).open(path).await?;
        let reader = File::open(path).await?;
        Ok(Spill {
            path: path.to_path_buf(),
            writer: BufWriter::with_capacity(64 * 1024, file),
            reader: BufReader::with_capacity(64 * 1024, reader),
            records: 0,
            bytes: 0,
            unflushed: false,
        })
    }

    /// Appends one record.
    pub async fn append(&mut self, seq: u64, body: &[u8]) -> std::io::Result<()> {
        let len = u32::try_from(body.len())
            .map_err(|_| std::io::Error::other("event larger than 4 GiB"))?;
        self.writer.write_all(&seq.to_le_bytes()).await?;
        self.writer.write_all(&len.to_le_bytes()).await?;
        self.writer.write_all(body).await?;
        self.records += 1;
        self.bytes += HEADER + u64::from(len);
        self.unflushed = true;
        Ok(())
    }

    /// Reads the oldest record back; `None` when all have been read.
    pub async fn pop(&mut self) -> std::io::Result<Option<(u64, Bytes)>> {
        if self.records == 0 {
            return Ok(None);
        }
        if self.unflushed {
            self.writer.flush().await?;
            self.unflushed = false;
        }
        let seq = self.reader.read_u64_le().await?;
        let len = self.reader.read_u32_le().await?;
        let mut body = vec![0u8; len as usize];
        self.reader.read_exact(&mut body).await?;
        self.records -= 1;
        self.bytes -= HEADER + u64::from(len);
        if self.records == 0 {
            // Everything was read back: start the file over.
            self.writer.get_ref().set_len(0).await?;
            self.reader.seek(SeekFrom::Start(0)).await?;
        }
        Ok(Some((seq, Bytes::from(body))))
    }

    /// Records not read back yet.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Bytes not read back yet.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Deletes the file.
    pub async fn remove(self) {
        let path = self.path.clone();
        drop(self);
        if let Err(e) = tokio::fs::remove_file(&path).await {
            tracing::debug!(path = %path.display(), error = %e, "could not remove a spill file");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn records_come_back_in_order_and_the_file_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t1");
        let mut s = Spill::create(&path).await.unwrap();
        for seq in 1..=100u64 {
            s.append(seq, format!("event {seq}").as_bytes())
                .await
                .unwrap();
        }
        assert_eq!(s.records(), 100);
        for seq in 1..=50u64 {
            let (got, body) = s.pop().await.unwrap().unwrap();
            assert_eq!(got, seq);
            assert_eq!(body, format!("event {seq}").as_bytes());
        }
        s.append(101, b"event 101").await.unwrap();
        for seq in 51..=101u64 {
            assert_eq!(s.pop().await.unwrap().unwrap().0, seq);
        }
        assert_eq!(s.pop().await.unwrap(), None);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
        s.append(102, b"again").await.unwrap();
        assert_eq!(
            s.pop().await.unwrap().unwrap(),
            (102, Bytes::from_static(b"again"))
        );
        s.remove().await;
        assert!(!path.exists());
    }
}
