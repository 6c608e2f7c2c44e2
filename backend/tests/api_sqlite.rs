//! The REST API on SQLite (the same scenarios as `api_postgres.rs`).

mod common;

scenarios!(common::sqlite);
