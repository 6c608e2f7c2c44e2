//! The SQL of every store call, written once and instantiated for SQLite and PostgreSQL by
//! `store_queries!`. Both databases understand the same text (`$N` parameters, `ON CONFLICT`,
//! `RETURNING`); what differs is passed in: how a write transaction begins and how a task row is
//! locked for a state change.
//!
//! On SQLite every write transaction is `BEGIN IMMEDIATE`: it takes the database's write lock
//! before its first statement, where SQLite's busy handler (the store's `busy_timeout`) waits for
//! a lock held elsewhere. A plain (deferred) `BEGIN` whose first statement reads would take the
//! lock only at its first write, and SQLite answers such an upgrade `SQLITE_BUSY` at once, busy
//! timeout or not, whenever another connection holds the lock at that moment — another process
//! (the `sqlite3` shell, a backup), or one of the store's own read-only connections, which takes
//! the write lock for an instant when it catches the WAL index mid-update. The second is what
//! a CI run hit once: an append answered `database is locked` while ten writers and their reads
//! ran (`tests/sqlite_writers.rs`; the test beside it holds the lock from a second process and
//! fails without `IMMEDIATE` every time). The single writer connection already serializes the
//! store's own writes, so no row lock is needed there. PostgreSQL begins plainly and locks the
//! task row with `FOR UPDATE`.

use std::collections::HashSet;

use sqlx::QueryBuilder;

use super::rows::{AgentRow, EventRow, SessionRow, TaskRow};
use super::{
    Created, Page, Paged, PgStore, SqliteStore, StoreError, TaskFilter, EVENT_ROWS_PER_INSERT,
};
use crate::model::{
    Agent, AgentUpsert, AppendResult, BulkAppendResult, BulkEvent, Event, NewEvent, NewTask,
    Session, Task, TaskPatch, TaskState,
};

const TASK_COLUMNS: &str = "id, session_id, tool, prompt, cwd, requires, priority, agent_id, \
                            state, result, version, created_at, updated_at";

/// JSON text of a value (serializing a `serde_json::Value` or a `Vec<String>` cannot fail).
fn json_text<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".to_string())
}

/// A sequence number as stored (`BIGINT`): 1 ..= i64::MAX.
fn stored_seq(task_id: &str, seq: u64) -> Result<i64, StoreError> {
    match i64::try_from(seq) {
        Ok(s) if s >= 1 => Ok(s),
        _ => Err(StoreError::Invalid(format!(
            "task {task_id}: seq {seq} out of range (1 ..= {})",
            i64::MAX
        ))),
    }
}

/// Cuts a fetched `limit + 1` rows down to a page and its next cursor.
fn paged<T>(mut rows: Vec<T>, limit: u32, id: impl Fn(&T) -> &str) -> Paged<T> {
    let next = if rows.len() > limit as usize {
        rows.truncate(limit as usize);
        rows.last().map(|r| id(r).to_string())
    } else {
        None
    };
    Paged { items: rows, next }
}

macro_rules! store_queries {
    ($store:ty, $db:ty, $begin:literal, $lock:literal) => {
        impl $store {
            pub(super) async fn ping(&self) -> Result<(), StoreError> {
                sqlx::query("SELECT 1").execute(&self.read).await?;
                Ok(())
            }

            pub(super) async fn upsert_agent(
                &self,
                id: &str,
                a: &AgentUpsert,
            ) -> Result<Created<Agent>, StoreError> {
                let mut tx = self.write.begin_with($begin).await?;
                let existed = sqlx::query("SELECT 1 FROM agents WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?
                    .is_some();
                // An older upsert replayed after a newer one (spool) must not move last_seen back.
                sqlx::query(
                    "INSERT INTO agents (id, name, capabilities, metadata, status, last_seen) \
                     VALUES ($1, $2, $3, $4, $5, $6) \
                     ON CONFLICT (id) DO UPDATE SET name = excluded.name, \
                     capabilities = excluded.capabilities, metadata = excluded.metadata, \
                     status = excluded.status, last_seen = excluded.last_seen \
                     WHERE agents.last_seen <= excluded.last_seen",
                )
                .bind(id)
                .bind(&a.name)
                .bind(json_text(&a.capabilities))
                .bind(json_text(&a.metadata))
                .bind(&a.status)
                .bind(a.last_seen)
                .execute(&mut *tx)
                .await?;
                let row: AgentRow = sqlx::query_as("SELECT * FROM agents WHERE id = $1")
                    .bind(id)
                    .fetch_one(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(Created {
                    row: row.into_agent()?,
                    created: !existed,
                })
            }

            pub(super) async fn agent(&self, id: &str) -> Result<Option<Agent>, StoreError> {
                let row: Option<AgentRow> = sqlx::query_as("SELECT * FROM agents WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&self.read)
                    .await?;
                row.map(AgentRow::into_agent).transpose()
            }

            pub(super) async fn agents(&self, page: &Page) -> Result<Paged<Agent>, StoreError> {
                let mut q = QueryBuilder::<$db>::new("SELECT * FROM agents");
                if let Some(after) = &page.after {
                    q.push(" WHERE id > ").push_bind(after.as_str());
                }
                q.push(" ORDER BY id LIMIT ")
                    .push_bind(i64::from(page.limit) + 1);
                let rows: Vec<AgentRow> = q.build_query_as().fetch_all(&self.read).await?;
                let rows = rows
                    .into_iter()
                    .map(AgentRow::into_agent)
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(paged(rows, page.limit, |a| &a.id))
            }

            pub(super) async fn create_session(
                &self,
                id: &str,
                owner: &str,
                now: i64,
            ) -> Result<Created<Session>, StoreError> {
                let mut tx = self.write.begin_with($begin).await?;
                let created = sqlx::query(
                    "INSERT INTO sessions (id, owner, created_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (id) DO NOTHING",
                )
                .bind(id)
                .bind(owner)
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                    == 1;
                let row: SessionRow = sqlx::query_as("SELECT * FROM sessions WHERE id = $1")
                    .bind(id)
                    .fetch_one(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(Created {
                    row: row.into_session(),
                    created,
                })
            }

            pub(super) async fn session(&self, id: &str) -> Result<Option<Session>, StoreError> {
                let row: Option<SessionRow> =
                    sqlx::query_as("SELECT * FROM sessions WHERE id = $1")
                        .bind(id)
                        .fetch_optional(&self.read)
                        .await?;
                Ok(row.map(SessionRow::into_session))
            }

            pub(super) async fn sessions(
                &self,
                owner: Option<&str>,
                page: &Page,
            ) -> Result<Paged<Session>, StoreError> {
                let mut q = QueryBuilder::<$db>::new("SELECT * FROM sessions WHERE 1 = 1");
                if let Some(owner) = owner {
                    q.push(" AND owner = ").push_bind(owner);
                }
                if let Some(after) = &page.after {
                    q.push(" AND id > ").push_bind(after.as_str());
                }
                q.push(" ORDER BY id LIMIT ")
                    .push_bind(i64::from(page.limit) + 1);
                let rows: Vec<SessionRow> = q.build_query_as().fetch_all(&self.read).await?;
                let rows = rows.into_iter().map(SessionRow::into_session).collect();
                Ok(paged(rows, page.limit, |s| &s.id))
            }

            pub(super) async fn create_task(
                &self,
                id: &str,
                t: &NewTask,
                now: i64,
            ) -> Result<Created<Task>, StoreError> {
                let mut tx = self.write.begin_with($begin).await?;
                let existing: Option<TaskRow> =
                    sqlx::query_as(&format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = $1"))
                        .bind(id)
                        .fetch_optional(&mut *tx)
                        .await?;
                if let Some(row) = existing {
                    tx.commit().await?;
                    return Ok(Created {
                        row: row.into_task()?,
                        created: false,
                    });
                }
                let session = sqlx::query("SELECT 1 FROM sessions WHERE id = $1")
                    .bind(&t.session_id)
                    .fetch_optional(&mut *tx)
                    .await?;
                if session.is_none() {
                    return Err(StoreError::NotFound {
                        what: "session",
                        id: t.session_id.clone(),
                    });
                }
                let row: TaskRow = sqlx::query_as(&format!(
                    "INSERT INTO tasks ({TASK_COLUMNS}) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, NULL, 1, $10, $10) \
                     RETURNING {TASK_COLUMNS}"
                ))
                .bind(id)
                .bind(&t.session_id)
                .bind(&t.tool)
                .bind(&t.prompt)
                .bind(t.cwd.as_deref())
                .bind(json_text(&t.requires))
                .bind(t.priority)
                .bind(t.agent_id.as_deref())
                .bind(TaskState::Pending.as_str())
                .bind(now)
                .fetch_one(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(Created {
                    row: row.into_task()?,
                    created: true,
                })
            }

            pub(super) async fn task(&self, id: &str) -> Result<Option<Task>, StoreError> {
                let row: Option<TaskRow> =
                    sqlx::query_as(&format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = $1"))
                        .bind(id)
                        .fetch_optional(&self.read)
                        .await?;
                row.map(TaskRow::into_task).transpose()
            }

            pub(super) async fn tasks(
                &self,
                filter: &TaskFilter,
                page: &Page,
            ) -> Result<Paged<Task>, StoreError> {
                let mut q = QueryBuilder::<$db>::new(format!(
                    "SELECT {TASK_COLUMNS} FROM tasks WHERE 1 = 1"
                ));
                if let Some(s) = &filter.session_id {
                    q.push(" AND session_id = ").push_bind(s.as_str());
                }
                if let Some(a) = &filter.agent_id {
                    q.push(" AND agent_id = ").push_bind(a.as_str());
                }
                if let Some(st) = filter.state {
                    q.push(" AND state = ").push_bind(st.as_str());
                }
                if let Some(after) = &page.after {
                    q.push(" AND id > ").push_bind(after.as_str());
                }
                q.push(" ORDER BY id LIMIT ")
                    .push_bind(i64::from(page.limit) + 1);
                let rows: Vec<TaskRow> = q.build_query_as().fetch_all(&self.read).await?;
                let rows = rows
                    .into_iter()
                    .map(TaskRow::into_task)
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(paged(rows, page.limit, |t| &t.id))
            }

            pub(super) async fn patch_task(
                &self,
                id: &str,
                p: &TaskPatch,
                now: i64,
            ) -> Result<Task, StoreError> {
                let mut tx = self.write.begin_with($begin).await?;
                let row: Option<TaskRow> = sqlx::query_as(&format!(
                    "SELECT {TASK_COLUMNS} FROM tasks WHERE id = $1{}",
                    $lock
                ))
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
                let current = match row {
                    Some(r) => r.into_task()?,
                    None => {
                        return Err(StoreError::NotFound {
                            what: "task",
                            id: id.to_string(),
                        })
                    }
                };
                // The same state again is a replay (spool, retry): answered, nothing changed.
                if current.state == p.state {
                    tx.commit().await?;
                    return Ok(current);
                }
                if let Some(given) = p.version {
                    if given != current.version {
                        return Err(StoreError::StaleVersion {
                            given,
                            current: current.version,
                        });
                    }
                }
                if !current.state.can_become(p.state) {
                    return Err(StoreError::IllegalTransition {
                        from: current.state,
                        to: p.state,
                    });
                }
                let result = p.result.as_ref().map(json_text);
                let row: TaskRow = sqlx::query_as(&format!(
                    "UPDATE tasks SET state = $2, agent_id = COALESCE($3, agent_id), \
                     result = COALESCE($4, result), version = version + 1, updated_at = $5 \
                     WHERE id = $1 RETURNING {TASK_COLUMNS}"
                ))
                .bind(id)
                .bind(p.state.as_str())
                .bind(p.agent_id.as_deref())
                .bind(result)
                .bind(now)
                .fetch_one(&mut *tx)
                .await?;
                tx.commit().await?;
                row.into_task()
            }

            pub(super) async fn append_events(
                &self,
                id: &str,
                events: &[NewEvent],
                now: i64,
            ) -> Result<AppendResult, StoreError> {
                let seqs = events
                    .iter()
                    .map(|e| stored_seq(id, e.seq))
                    .collect::<Result<Vec<_>, _>>()?;
                let texts: Vec<String> = events.iter().map(|e| json_text(&e.data)).collect();
                let mut tx = self.write.begin_with($begin).await?;
                let exists = sqlx::query("SELECT 1 FROM tasks WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?
                    .is_some();
                if !exists {
                    return Err(StoreError::NotFound {
                        what: "task",
                        id: id.to_string(),
                    });
                }
                let mut inserted = 0;
                for start in (0..events.len()).step_by(EVENT_ROWS_PER_INSERT) {
                    let end = (start + EVENT_ROWS_PER_INSERT).min(events.len());
                    let mut q = QueryBuilder::<$db>::new(
                        "INSERT INTO task_events (task_id, seq, kind, data, at) ",
                    );
                    q.push_values(start..end, |mut b, i| {
                        b.push_bind(id)
                            .push_bind(seqs[i])
                            .push_bind(events[i].kind.as_str())
                            .push_bind(texts[i].as_str())
                            .push_bind(now);
                    });
                    q.push(" ON CONFLICT (task_id, seq) DO NOTHING");
                    inserted += q.build().execute(&mut *tx).await?.rows_affected();
                }
                tx.commit().await?;
                Ok(AppendResult {
                    inserted,
                    duplicates: events.len() as u64 - inserted,
                })
            }

            pub(super) async fn append_bulk(
                &self,
                events: &[BulkEvent],
                now: i64,
            ) -> Result<BulkAppendResult, StoreError> {
                let seqs = events
                    .iter()
                    .map(|e| stored_seq(&e.task_id, e.seq))
                    .collect::<Result<Vec<_>, _>>()?;
                let mut tx = self.write.begin_with($begin).await?;
                let mut named: Vec<&str> = Vec::new();
                for e in events {
                    if !named.contains(&e.task_id.as_str()) {
                        named.push(&e.task_id);
                    }
                }
                let mut known: HashSet<String> = HashSet::with_capacity(named.len());
                for chunk in named.chunks(EVENT_ROWS_PER_INSERT) {
                    let mut q = QueryBuilder::<$db>::new("SELECT id FROM tasks WHERE id IN (");
                    let mut sep = q.separated(", ");
                    for id in chunk {
                        sep.push_bind(*id);
                    }
                    q.push(")");
                    let ids: Vec<(String,)> = q.build_query_as().fetch_all(&mut *tx).await?;
                    known.extend(ids.into_iter().map(|(id,)| id));
                }
                let keep: Vec<usize> = (0..events.len())
                    .filter(|&i| known.contains(&events[i].task_id))
                    .collect();
                let texts: Vec<String> = keep.iter().map(|&i| json_text(&events[i].data)).collect();
                let mut inserted = 0;
                for start in (0..keep.len()).step_by(EVENT_ROWS_PER_INSERT) {
                    let end = (start + EVENT_ROWS_PER_INSERT).min(keep.len());
                    let mut q = QueryBuilder::<$db>::new(
                        "INSERT INTO task_events (task_id, seq, kind, data, at) ",
                    );
                    q.push_values(start..end, |mut b, k| {
                        let e = &events[keep[k]];
                        b.push_bind(e.task_id.as_str())
                            .push_bind(seqs[keep[k]])
                            .push_bind(e.kind.as_str())
                            .push_bind(texts[k].as_str())
                            .push_bind(now);
                    });
                    q.push(" ON CONFLICT (task_id, seq) DO NOTHING");
                    inserted += q.build().execute(&mut *tx).await?.rows_affected();
                }
                tx.commit().await?;
                let unknown_tasks = named
                    .into_iter()
                    .filter(|id| !known.contains(*id))
                    .map(str::to_string)
                    .collect();
                Ok(BulkAppendResult {
                    inserted,
                    duplicates: keep.len() as u64 - inserted,
                    unknown_tasks,
                })
            }

            pub(super) async fn events(
                &self,
                id: &str,
                since: u64,
                limit: u32,
            ) -> Result<Option<Vec<Event>>, StoreError> {
                let since = i64::try_from(since).unwrap_or(i64::MAX);
                let rows: Vec<EventRow> = sqlx::query_as(
                    "SELECT seq, kind, data, at FROM task_events \
                     WHERE task_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
                )
                .bind(id)
                .bind(since)
                .bind(i64::from(limit))
                .fetch_all(&self.read)
                .await?;
                if rows.is_empty() {
                    let exists = sqlx::query("SELECT 1 FROM tasks WHERE id = $1")
                        .bind(id)
                        .fetch_optional(&self.read)
                        .await?
                        .is_some();
                    if !exists {
                        return Ok(None);
                    }
                }
                rows.into_iter()
                    .map(|r| r.into_event(id))
                    .collect::<Result<Vec<_>, _>>()
                    .map(Some)
            }
        }
    };
}

store_queries!(SqliteStore, sqlx::Sqlite, "BEGIN IMMEDIATE", "");
store_queries!(PgStore, sqlx::Postgres, "BEGIN", " FOR UPDATE");
