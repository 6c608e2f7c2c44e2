//! The REST API on a throwaway PostgreSQL cluster (the same scenarios as `api_sqlite.rs`).

mod common;

scenarios!(common::postgres);
