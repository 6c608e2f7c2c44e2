//! Opening a SQLite file: WAL, `synchronous = NORMAL`, `busy_timeout`, one writer connection and
//! a small pool of read-only connections.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use super::StoreError;

/// How long a write transaction waits for the write lock before `SQLITE_BUSY`. The store's own
/// writes never contend (one writer connection); the lock can still be held for a moment by one
/// of the read-only connections (it takes it to re-read a WAL index it caught mid-update) or for
/// longer by a second process (e.g. the `sqlite3` shell). The wait only happens because writes
/// begin with `BEGIN IMMEDIATE` (see `queries`).
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Read-only connections (range reads and lists run concurrently with the writer).
const READERS: u32 = 4;

/// A SQLite database: one writer connection, several readers.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pub(super) write: SqlitePool,
    pub(super) read: SqlitePool,
    path: PathBuf,
}

impl SqliteStore {
    /// Opens (creating if needed) the file at `path`, its parent directory too, and migrates it.
    pub async fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
                path: path.display().to_string(),
                source,
            })?;
        }
        let opts = SqliteConnectOptions::from_str("sqlite://")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true)
            .pragma("cache_size", "-16384");
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .connect_with(opts.clone())
            .await?;
        sqlx::migrate!("migrations/sqlite").run(&write).await?;
        let read = SqlitePoolOptions::new()
            .max_connections(READERS)
            .connect_with(opts.read_only(true))
            .await?;
        Ok(SqliteStore {
            write,
            read,
            path: path.to_path_buf(),
        })
    }

    pub(super) fn describe(&self) -> String {
        format!("sqlite {}", self.path.display())
    }

    pub(super) async fn close(&self) {
        self.read.close().await;
        self.write.close().await;
    }
}
