//! The hub's persistence ([`orchestra_hub::Persist`]).
//!
//! Interim: until the backend client (`orchestra_backend::client`) is in this tree, the gateway
//! keeps agents, tasks and events in the hub's in-memory store ([`MemoryPersist`]): everything
//! but durability across a gateway restart works. The backend client replaces it here.

use std::sync::Arc;

use orchestra_hub::{MemoryPersist, Persist};

/// The store the hub writes to.
pub fn persist() -> Arc<dyn Persist> {
    MemoryPersist::new()
}
