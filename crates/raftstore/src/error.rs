//! Raftstore errors, grouped by what the caller should do about them.
//!
//! - Retry elsewhere or later: [`Error::NotLeader`], [`Error::StaleCommand`],
//!   [`Error::RegionNotFound`], [`Error::StoreNotMatch`], [`Error::ServerIsBusy`].
//! - Refresh the region cache and retry: [`Error::EpochNotMatch`], [`Error::KeyNotInRegion`],
//!   [`Error::MismatchPeerId`].
//! - Fix the request: [`Error::RaftEntryTooLarge`], [`Error::InvalidRequest`].
//! - Internal failures: everything else (the store logs them; the client sees a message).
//!
//! Every variant converts into an `errorpb::Error` so it crosses the wire the way TiKV
//! clients expect.

use proto::errorpb;
use proto::metapb;

/// Result alias for raftstore operations.
pub type Result<T> = std::result::Result<T, Error>;

/// An error from the raftstore.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// This peer is not the leader; `leader` is the last known leader, if any.
    #[error("peer of region {region_id} is not leader (leader hint {leader:?})")]
    NotLeader {
        /// The region asked.
        region_id: u64,
        /// The leader this store last heard of.
        leader: Option<metapb::Peer>,
    },
    /// This store has no peer of the region.
    #[error("region {0} not found")]
    RegionNotFound(u64),
    /// This store's peer was destroyed (removed from the region) while the command was
    /// proposed and not yet applied here. The other peers may still commit and apply it,
    /// so its outcome is unknown; unlike [`Error::RegionNotFound`] it is not a refusal, and
    /// it crosses the wire as a region error with a message only (no field a client
    /// retries on).
    #[error(
        "region {0}: this store's peer was removed with the command pending; the other \
         peers may still apply it"
    )]
    RemovedWithProposal(u64),
    /// The key lies outside the region's range.
    #[error(
        "key {} is not in region {region_id} {}",
        codec::escape::Escaped(key),
        codec::escape::Range(start_key, end_key)
    )]
    KeyNotInRegion {
        /// The offending key.
        key: Vec<u8>,
        /// The region asked.
        region_id: u64,
        /// Region start key.
        start_key: Vec<u8>,
        /// Region end key (empty = unbounded).
        end_key: Vec<u8>,
    },
    /// The request's region epoch differs from the current one.
    #[error("epoch not match: {0}")]
    EpochNotMatch(String, Vec<metapb::Region>),
    /// The proposal was overtaken by another leader's entries, or its term is stale.
    #[error("stale command")]
    StaleCommand,
    /// The request addressed another store.
    #[error("store not match: request for store {to_store_id}, this is store {my_store_id}")]
    StoreNotMatch {
        /// Store named in the request.
        to_store_id: u64,
        /// This store.
        my_store_id: u64,
    },
    /// The request named a peer of the region that this store no longer hosts (the
    /// region was moved off and back onto this store with a new peer id); the client's
    /// region information is stale.
    #[error("mismatch peer id: request for peer {request_peer_id}, this store's peer is {store_peer_id}")]
    MismatchPeerId {
        /// Peer named in the request.
        request_peer_id: u64,
        /// This store's peer of the region.
        store_peer_id: u64,
    },
    /// The encoded command is larger than the raft entry limit.
    #[error("raft entry of region {region_id} too large: {entry_size} bytes")]
    RaftEntryTooLarge {
        /// The region asked.
        region_id: u64,
        /// Size of the proposal.
        entry_size: u64,
    },
    /// The store is overloaded; back off and retry.
    #[error("server is busy: {0}")]
    ServerIsBusy(String),
    /// The request is malformed.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The store is shutting down or the poller is gone.
    #[error("store stopped")]
    StoreStopped,
    /// A failure of the KV engine.
    #[error("engine: {0}")]
    Engine(#[from] engine::Error),
    /// A failure of the raft log engine.
    #[error("raft engine: {0}")]
    RaftEngine(String),
    /// An error from raft-rs.
    #[error("raft: {0}")]
    Raft(#[from] raft::Error),
    /// A protobuf decode failure of stored or received data.
    #[error("decode: {0}")]
    Decode(String),
    /// Anything else.
    #[error("{0}")]
    Other(String),
}

impl From<raft_engine::Error> for Error {
    fn from(e: raft_engine::Error) -> Self {
        Error::RaftEngine(e.to_string())
    }
}

impl From<prost::DecodeError> for Error {
    fn from(e: prost::DecodeError) -> Self {
        Error::Decode(e.to_string())
    }
}

impl From<Error> for errorpb::Error {
    fn from(e: Error) -> errorpb::Error {
        let mut err = errorpb::Error {
            message: e.to_string(),
            ..Default::default()
        };
        match e {
            Error::NotLeader { region_id, leader } => {
                err.not_leader = Some(errorpb::NotLeader { region_id, leader });
            }
            Error::RegionNotFound(region_id) => {
                err.region_not_found = Some(errorpb::RegionNotFound { region_id });
            }
            Error::KeyNotInRegion {
                key,
                region_id,
                start_key,
                end_key,
            } => {
                err.key_not_in_region = Some(errorpb::KeyNotInRegion {
                    key,
                    region_id,
                    start_key,
                    end_key,
                });
            }
            Error::EpochNotMatch(_, current_regions) => {
                err.epoch_not_match = Some(errorpb::EpochNotMatch { current_regions });
            }
            Error::StaleCommand => err.stale_command = Some(errorpb::StaleCommand {}),
            Error::StoreNotMatch {
                to_store_id,
                my_store_id,
            } => {
                err.store_not_match = Some(errorpb::StoreNotMatch {
                    request_store_id: to_store_id,
                    actual_store_id: my_store_id,
                });
            }
            Error::MismatchPeerId {
                request_peer_id,
                store_peer_id,
            } => {
                err.mismatch_peer_id = Some(errorpb::MismatchPeerId {
                    request_peer_id,
                    store_peer_id,
                });
            }
            Error::RaftEntryTooLarge {
                region_id,
                entry_size,
            } => {
                err.raft_entry_too_large = Some(errorpb::RaftEntryTooLarge {
                    region_id,
                    entry_size,
                });
            }
            Error::ServerIsBusy(reason) => {
                err.server_is_busy = Some(errorpb::ServerIsBusy {
                    reason,
                    ..Default::default()
                });
            }
            _ => {}
        }
        err
    }
}

/// Whether a client may take region error `e` as proof that the command was not applied
/// (the fields TiKV clients retry on): raftstore sets them only on a command it refused
/// before proposing it, or on one it knows was not committed. The test harnesses' clients
/// build their retry rules on this.
pub fn is_refusal(e: &errorpb::Error) -> bool {
    e.not_leader.is_some()
        || e.region_not_found.is_some()
        || e.key_not_in_region.is_some()
        || e.epoch_not_match.is_some()
        || e.server_is_busy.is_some()
        || e.stale_command.is_some()
        || e.store_not_match.is_some()
        || e.mismatch_peer_id.is_some()
}

#[cfg(test)]
mod tests {
    use super::{is_refusal as refusal, Error};
    use proto::errorpb;

    /// Regression (simulator seed 1178 of the CAS/transactions sweep): a leader whose peer
    /// was removed answered its pending put with "region not found"; the new leader had
    /// committed the put, the client retried it and the put took effect twice.
    #[test]
    fn a_command_pending_when_its_peer_is_destroyed_is_not_a_refusal() {
        let e: errorpb::Error = Error::RemovedWithProposal(7).into();
        assert!(!refusal(&e), "{e:?}");
        assert!(e.message.contains("may still apply"), "{}", e.message);
        let refused: errorpb::Error = Error::RegionNotFound(7).into();
        assert!(refusal(&refused));
    }
}
