//! The KV engine every Tessera store writes through.
//!
//! # What it owns
//! The [`Engine`] abstraction (column families `default`, `lock`, `write` for user data
//! and `raft` for region metadata; atomic cross-CF batches; consistent snapshots; explicit
//! durability), two implementations — [`MemEngine`] for tests and [`FjallEngine`] on disk —
//! and a [`conformance`] suite that every implementation must pass.
//!
//! # How data moves through it
//! raftstore's apply stage collects a round's writes into one [`WriteBatch`] and commits it
//! with [`Engine::write`]; readers take a [`Snapshot`] and scan or get from it. Durability is
//! explicit: nothing is fsynced unless `write(.., sync = true)` or [`Engine::sync`] is called.

pub mod conformance;
mod fjall;
mod mem;
mod traits;

pub use self::fjall::{FjallConfig, FjallEngine, FjallSnapshot, FjallWriteBatch};
pub use mem::{MemEngine, MemSnapshot, MemWriteBatch};
pub use traits::*;

/// An engine failure.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O failure.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// A failure reported by the storage library.
    #[error("engine: {0}")]
    Engine(String),
    /// A key that is empty or longer than [`MAX_KEY_LEN`].
    #[error("invalid key of {0} bytes")]
    InvalidKey(usize),
    /// A column family that does not exist.
    #[error("unknown column family {0:?}")]
    InvalidCf(String),
}

/// Result alias for engine operations.
pub type Result<T> = std::result::Result<T, Error>;

/// Position of `cf` in [`ALL_CFS`].
pub(crate) fn cf_index(cf: CfName) -> usize {
    ALL_CFS.iter().position(|c| *c == cf).unwrap_or_else(|| {
        panic!("unknown column family {cf:?}: CF names are compile-time constants")
    })
}

/// Checks a key against the engine contract (1 to [`MAX_KEY_LEN`] bytes).
pub(crate) fn check_key(key: &[u8]) -> Result<()> {
    if key.is_empty() || key.len() > MAX_KEY_LEN {
        return Err(Error::InvalidKey(key.len()));
    }
    Ok(())
}
