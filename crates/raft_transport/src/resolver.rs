//! Finding where a store listens.
//!
//! The transport asks a [`StoreResolver`] for a store's address each time it (re)connects,
//! never per message, so a resolver may be a network call (the server's implementation
//! asks the scheduler with `GetStore`). A store that cannot be resolved is retried after
//! the connection backoff, not in a loop.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;

use parking_lot::RwLock;

/// Why a store's address is not known.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ResolveError {
    /// No such store, or it has no address yet.
    #[error("store {0} is unknown")]
    Unknown(u64),
    /// The store was removed from the cluster for good; nothing will reach it again.
    #[error("store {0} is a tombstone")]
    Tombstone(u64),
    /// The lookup itself failed (e.g. the scheduler is unreachable).
    #[error("resolving store {store_id} failed: {reason}")]
    Failed {
        /// The store looked up.
        store_id: u64,
        /// What went wrong.
        reason: String,
    },
}

/// The future a [`StoreResolver`] returns.
pub type ResolveFuture<'a> =
    Pin<Box<dyn Future<Output = Result<String, ResolveError>> + Send + 'a>>;

/// Maps a store id to the `host:port` its raft service listens on.
pub trait StoreResolver: Send + Sync + 'static {
    /// Looks up `store_id`. Called from the transport's tokio tasks, once per connection
    /// attempt; it may wait on the network (the transport bounds it by its connect timeout).
    fn resolve(&self, store_id: u64) -> ResolveFuture<'_>;
}

/// A resolver over a fixed table that can be changed at run time: for tests, and for
/// deployments whose store addresses are configured rather than discovered.
#[derive(Default)]
pub struct StaticResolver {
    addrs: RwLock<HashMap<u64, String>>,
}

impl StaticResolver {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets (or replaces) the address of `store_id`; the next connection attempt uses it.
    pub fn insert(&self, store_id: u64, addr: impl Into<String>) {
        self.addrs.write().insert(store_id, addr.into());
    }

    /// Forgets `store_id`: later connection attempts fail with [`ResolveError::Unknown`].
    pub fn remove(&self, store_id: u64) {
        self.addrs.write().remove(&store_id);
    }
}

impl StoreResolver for StaticResolver {
    fn resolve(&self, store_id: u64) -> ResolveFuture<'_> {
        let found = self.addrs.read().get(&store_id).cloned();
        Box::pin(async move { found.ok_or(ResolveError::Unknown(store_id)) })
    }
}
