//! Scheduler errors, grouped by what the caller should do about them.
//!
//! - Refresh your view and retry: [`Error::StaleRegion`] (the scheduler knows a newer epoch
//!   of the region or of a region overlapping it), [`Error::NotBootstrapped`] (bootstrap
//!   first, or wait for whoever is bootstrapping).
//! - Fix the request; retrying it unchanged will fail again: [`Error::InvalidArgument`],
//!   [`Error::AlreadyBootstrapped`], [`Error::StoreNotFound`], [`Error::StoreTombstone`],
//!   [`Error::InvalidStoreState`].
//! - Internal failures; the scheduler cannot serve until an operator looks at it:
//!   [`Error::Engine`], [`Error::Corrupt`], [`Error::IdExhausted`].

use proto::metapb;

/// Result alias for scheduler operations.
pub type Result<T> = std::result::Result<T, Error>;

/// An error from the scheduler core.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The cluster has not been bootstrapped yet.
    #[error("cluster is not bootstrapped")]
    NotBootstrapped,
    /// The caller's copy of a region is older than one the scheduler already knows.
    #[error("stale region {region_id}: {reason}")]
    StaleRegion {
        /// The region the caller sent.
        region_id: u64,
        /// Which known region is newer, and how.
        reason: String,
        /// The newer region the scheduler knows, so the caller can refresh.
        current: Option<Box<metapb::Region>>,
    },
    /// The request is malformed (bad key range, leader not among the peers, ...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A second bootstrap of an already bootstrapped cluster.
    #[error("cluster is already bootstrapped")]
    AlreadyBootstrapped,
    /// The store was never registered.
    #[error("store {0} not found")]
    StoreNotFound(u64),
    /// The store has been removed for good; it may not come back.
    #[error("store {0} is tombstone")]
    StoreTombstone(u64),
    /// An admin state change that the store's current state does not allow.
    #[error("store {store_id}: {reason}")]
    InvalidStoreState {
        /// The store.
        store_id: u64,
        /// Why the change is refused.
        reason: String,
    },
    /// The id space is used up (would take 2^64 allocations; means corrupt metadata).
    #[error("id space exhausted")]
    IdExhausted,
    /// A failure of the engine holding the metadata.
    #[error("engine: {0}")]
    Engine(#[from] engine::Error),
    /// Persisted metadata that cannot be decoded.
    #[error("corrupt metadata: {0}")]
    Corrupt(String),
}

impl Error {
    /// True when retrying after refreshing the caller's view (or waiting) may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::StaleRegion { .. } | Error::NotBootstrapped)
    }
}
