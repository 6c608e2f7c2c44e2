//! The database behind the service: one [`Store`] over either SQLite or PostgreSQL.
//!
//! Each database has its own typed pool (`SqlitePool`, `PgPool`; not `sqlx::any`) and its own
//! embedded migrations (`migrations/sqlite`, `migrations/postgres`). The queries are the same
//! SQL for both (`$N` parameters, `ON CONFLICT`, `RETURNING` are understood by both), written
//! once in [`queries`] and instantiated per database; what differs is how each is opened
//! ([`sqlite`], [`postgres`]).
//!
//! SQLite runs in WAL mode with `synchronous = NORMAL` (a commit survives a process crash; an
//! OS crash may lose the last commits) and a single writer connection, so writers queue in the
//! pool instead of failing with `SQLITE_BUSY`; readers use their own connections and never wait
//! on the writer. Write transactions begin with `BEGIN IMMEDIATE`, so a write lock held
//! elsewhere for a moment is waited out (`busy_timeout`) rather than answered with
//! `database is locked` (why, in [`queries`]).

mod postgres;
mod queries;
mod rows;
mod sqlite;

pub use postgres::PgStore;
pub use sqlite::SqliteStore;

use crate::model::{
    Agent, AgentUpsert, AppendResult, BulkAppendResult, BulkEvent, Event, NewEvent, NewTask,
    Session, Task, TaskPatch, TaskState,
};

/// Rows per multi-row `INSERT` of events (5 parameters each: well under SQLite's 32,766 and
/// PostgreSQL's 65,535 bound parameters).
pub const EVENT_ROWS_PER_INSERT: usize = 1000;

/// Why a store call failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database URL is neither `sqlite://` nor `postgres://`.
    #[error(
        "unsupported database URL {0:?}: expected sqlite://PATH or postgres://USER@HOST:PORT/DB"
    )]
    BadUrl(String),
    /// The database could not be opened, or a query failed.
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    /// The embedded migrations could not be applied.
    #[error("database migration failed: {0} (is this database used by another, newer version?)")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// Creating the SQLite file's directory failed.
    #[error("cannot create the directory of {path}: {source}")]
    CreateDir {
        /// The database file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The request asks for something the store cannot hold (e.g. a seq out of range).
    #[error("{0}")]
    Invalid(String),
    /// The id names nothing.
    #[error("{what} {id} not found")]
    NotFound {
        /// `task`, `session`, `agent`.
        what: &'static str,
        /// The id.
        id: String,
    },
    /// The task state machine does not allow this change.
    #[error("illegal transition {} -> {}", from.as_str(), to.as_str())]
    IllegalTransition {
        /// Current state.
        from: TaskState,
        /// Asked state.
        to: TaskState,
    },
    /// The caller's `version` is not the stored one.
    #[error("stale version {given}: the task is at version {current}")]
    StaleVersion {
        /// The caller's.
        given: i64,
        /// The stored one.
        current: i64,
    },
    /// A stored row does not decode (edited by hand, or written by another program).
    #[error("stored {what} {id} is corrupt: {reason}")]
    Corrupt {
        /// Table.
        what: &'static str,
        /// Row id.
        id: String,
        /// What failed to decode.
        reason: String,
    },
}

impl StoreError {
    /// True when the database is there but could not take this call now, and the same call
    /// later should succeed: the pool had no free connection in time, the connection failed,
    /// SQLite's write lock stayed held past the busy timeout (`SQLITE_BUSY`, `SQLITE_LOCKED`
    /// and their extended codes), or PostgreSQL aborted the transaction on a serialization
    /// failure, a deadlock or a lock it could not get (`40001`, `40P01`, `55P03`).
    pub fn is_transient(&self) -> bool {
        let StoreError::Db(e) = self else {
            return false;
        };
        match e {
            sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) => true,
            sqlx::Error::Database(db) => {
                let code = db.code();
                let code = code.as_deref().unwrap_or("");
                if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
                    // Extended result codes keep the primary code in the low byte.
                    code.parse::<i32>().is_ok_and(|c| matches!(c & 0xff, 5 | 6))
                } else {
                    matches!(code, "40001" | "40P01" | "55P03")
                }
            }
            _ => false,
        }
    }
}

/// A page request on a list: at most `limit` rows with ids after `after`.
#[derive(Debug, Clone, Default)]
pub struct Page {
    /// Rows wanted (the store fetches one more to know whether a next page exists).
    pub limit: u32,
    /// The cursor of the previous page (the last id it returned).
    pub after: Option<String>,
}

/// A page of rows and the cursor of the next one.
#[derive(Debug, Clone)]
pub struct Paged<T> {
    /// The rows.
    pub items: Vec<T>,
    /// Cursor of the next page, when more rows follow.
    pub next: Option<String>,
}

/// Filters of `GET /v1/tasks`.
#[derive(Debug, Clone, Default)]
pub struct TaskFilter {
    /// Only tasks of this session.
    pub session_id: Option<String>,
    /// Only tasks on this agent.
    pub agent_id: Option<String>,
    /// Only tasks in this state.
    pub state: Option<TaskState>,
}

/// A created-or-found row: `created` is false when the id existed (an idempotent replay).
#[derive(Debug, Clone)]
pub struct Created<T> {
    /// The stored row.
    pub row: T,
    /// True when this call inserted it.
    pub created: bool,
}

/// The database: SQLite or PostgreSQL, behind one API.
#[derive(Debug, Clone)]
pub enum Store {
    /// A SQLite file.
    Sqlite(SqliteStore),
    /// A PostgreSQL database.
    Postgres(PgStore),
}

macro_rules! dispatch {
    ($self:ident, $s:ident => $call:expr) => {
        match $self {
            Store::Sqlite($s) => $call,
            Store::Postgres($s) => $call,
        }
    };
}

impl Store {
    /// Opens `url` (`sqlite://PATH` — the file and its directory are created — or
    /// `postgres://...`) and applies the embedded migrations.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        if let Some(path) = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        {
            Ok(Store::Sqlite(
                SqliteStore::open(std::path::Path::new(path)).await?,
            ))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Store::Postgres(PgStore::open(url).await?))
        } else {
            Err(StoreError::BadUrl(url.to_string()))
        }
    }

    /// Which database, for logs: `sqlite PATH` or `postgres HOST`.
    pub fn describe(&self) -> String {
        dispatch!(self, s => s.describe())
    }

    /// Succeeds when the database answers a trivial query.
    pub async fn ping(&self) -> Result<(), StoreError> {
        dispatch!(self, s => s.ping().await)
    }

    /// Closes the pools (waits for the connections to finish their work).
    pub async fn close(&self) {
        dispatch!(self, s => s.close().await)
    }

    /// Inserts or updates agent `id`.
    pub async fn upsert_agent(
        &self,
        id: &str,
        a: &AgentUpsert,
    ) -> Result<Created<Agent>, StoreError> {
        dispatch!(self, s => s.upsert_agent(id, a).await)
    }

    /// Agent `id`, if stored.
    pub async fn agent(&self, id: &str) -> Result<Option<Agent>, StoreError> {
        dispatch!(self, s => s.agent(id).await)
    }

    /// Agents in id order.
    pub async fn agents(&self, page: &Page) -> Result<Paged<Agent>, StoreError> {
        dispatch!(self, s => s.agents(page).await)
    }

    /// Creates session `id` (or returns the stored one).
    pub async fn create_session(
        &self,
        id: &str,
        owner: &str,
        now: i64,
    ) -> Result<Created<Session>, StoreError> {
        dispatch!(self, s => s.create_session(id, owner, now).await)
    }

    /// Session `id`, if stored.
    pub async fn session(&self, id: &str) -> Result<Option<Session>, StoreError> {
        dispatch!(self, s => s.session(id).await)
    }

    /// Sessions (of `owner`, when given) in id order.
    pub async fn sessions(
        &self,
        owner: Option<&str>,
        page: &Page,
    ) -> Result<Paged<Session>, StoreError> {
        dispatch!(self, s => s.sessions(owner, page).await)
    }

    /// Creates task `id` in state `pending` (or returns the stored one); its session must exist.
    pub async fn create_task(
        &self,
        id: &str,
        t: &NewTask,
        now: i64,
    ) -> Result<Created<Task>, StoreError> {
        dispatch!(self, s => s.create_task(id, t, now).await)
    }

    /// Task `id`, if stored.
    pub async fn task(&self, id: &str) -> Result<Option<Task>, StoreError> {
        dispatch!(self, s => s.task(id).await)
    }

    /// Tasks matching `filter`, in id order.
    pub async fn tasks(&self, filter: &TaskFilter, page: &Page) -> Result<Paged<Task>, StoreError> {
        dispatch!(self, s => s.tasks(filter, page).await)
    }

    /// Applies a state change (see [`TaskState::can_become`]); the same state again is a no-op.
    pub async fn patch_task(&self, id: &str, p: &TaskPatch, now: i64) -> Result<Task, StoreError> {
        dispatch!(self, s => s.patch_task(id, p, now).await)
    }

    /// Appends events of task `id`; `(task, seq)` already stored counts as a duplicate.
    pub async fn append_events(
        &self,
        id: &str,
        events: &[NewEvent],
        now: i64,
    ) -> Result<AppendResult, StoreError> {
        dispatch!(self, s => s.append_events(id, events, now).await)
    }

    /// Appends events of several tasks in one transaction; events of unknown tasks are left
    /// out and their tasks listed.
    pub async fn append_bulk(
        &self,
        events: &[BulkEvent],
        now: i64,
    ) -> Result<BulkAppendResult, StoreError> {
        dispatch!(self, s => s.append_bulk(events, now).await)
    }

    /// Events of task `id` with `seq > since`, in seq order, at most `limit`; `None` when the
    /// task does not exist.
    pub async fn events(
        &self,
        id: &str,
        since: u64,
        limit: u32,
    ) -> Result<Option<Vec<Event>>, StoreError> {
        dispatch!(self, s => s.events(id, since, limit).await)
    }
}
