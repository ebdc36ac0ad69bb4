//! Store addresses for the raft transport, looked up in the scheduler.
//!
//! The transport asks once per connection attempt (not per message), so there is no cache:
//! a store that restarts on another address is found on the next reconnect.

use pd_client::PdClient;
use raft_transport::{ResolveError, ResolveFuture, StoreResolver};

/// Resolves store ids with GetStore.
pub struct PdResolver {
    pd: PdClient,
}

impl PdResolver {
    /// A resolver asking `pd`.
    pub fn new(pd: PdClient) -> PdResolver {
        PdResolver { pd }
    }
}

impl StoreResolver for PdResolver {
    fn resolve(&self, store_id: u64) -> ResolveFuture<'_> {
        Box::pin(async move {
            match self.pd.get_store(store_id).await {
                Ok(s) if s.state == proto::metapb::StoreState::Tombstone as i32 => {
                    Err(ResolveError::Tombstone(store_id))
                }
                Ok(s) if s.address.is_empty() => Err(ResolveError::Unknown(store_id)),
                Ok(s) => Ok(s.address),
                Err(pd_client::Error::StoreTombstone(_)) => Err(ResolveError::Tombstone(store_id)),
                Err(e) => Err(ResolveError::Failed {
                    store_id,
                    reason: e.to_string(),
                }),
            }
        })
    }
}
