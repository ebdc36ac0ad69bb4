//! Durable state of a store: the raft log, peer storage, the log writer, bootstrap and the
//! startup cleanup of data no region holds.

pub mod bootstrap;
pub mod cleanup;
pub mod entry_cache;
pub mod log_engine;
pub mod log_fs;
pub mod peer_storage;
pub mod snapshot;
pub mod write;

pub use log_engine::{LogWriteBatch, RaftLogEngine};
pub use peer_storage::PeerStorage;
