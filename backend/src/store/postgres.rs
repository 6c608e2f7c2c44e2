//! Opening a PostgreSQL database: one pool for reads and writes (PostgreSQL's MVCC lets writers
//! run concurrently; a task's state change locks its row with `SELECT ... FOR UPDATE`).

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use super::StoreError;

/// Connections in the pool.
const CONNECTIONS: u32 = 8;

/// A PostgreSQL database.
#[derive(Debug, Clone)]
pub struct PgStore {
    pub(super) write: PgPool,
    pub(super) read: PgPool,
    host: String,
}

impl PgStore {
    /// Connects to `url` and migrates the database.
    pub async fn open(url: &str) -> Result<PgStore, StoreError> {
        let opts: PgConnectOptions = url.parse()?;
        let host = format!(
            "{}:{}/{}",
            opts.get_host(),
            opts.get_port(),
            opts.get_database().unwrap_or("")
        );
        let pool = PgPoolOptions::new()
            .max_connections(CONNECTIONS)
            .connect_with(opts)
            .await?;
        sqlx::migrate!("migrations/postgres").run(&pool).await?;
        Ok(PgStore {
            write: pool.clone(),
            read: pool,
            host,
        })
    }

    pub(super) fn describe(&self) -> String {
        format!("postgres {}", self.host)
    }

    pub(super) async fn close(&self) {
        self.write.close().await;
    }
}
