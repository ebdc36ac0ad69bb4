//! Operators asked for by an administrator (`tessera ctl`, PD's HTTP operator API): each
//! request is checked against the cluster as the scheduler sees it, turned into an
//! [`Operator`], and queued like a scheduler's own. The leader carries it out on its next
//! heartbeats; the request returns as soon as the operator is queued.

use codec::escape::Escaped;
use proto::metapb;

use super::Coordinator;
use crate::operator::Operator;
use crate::store_info::StoreState;

/// What an administrator may ask for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AdminRequest {
    /// Add a voter of `region_id` on `store_id`.
    AddPeer {
        /// The region.
        region_id: u64,
        /// The store that gets the new replica.
        store_id: u64,
    },
    /// Remove the replica of `region_id` on `store_id`.
    RemovePeer {
        /// The region.
        region_id: u64,
        /// The store whose replica goes.
        store_id: u64,
    },
    /// Move the leadership of `region_id` to its replica on `to_store_id`.
    TransferLeader {
        /// The region.
        region_id: u64,
        /// The store that should lead it.
        to_store_id: u64,
    },
    /// Split `region_id` at `keys` (ascending, strictly inside the region).
    Split {
        /// The region.
        region_id: u64,
        /// Where to cut.
        keys: Vec<Vec<u8>>,
    },
}

/// Why an admin request was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AdminError {
    /// No such region (or no heartbeat from it yet).
    #[error("region {0} not found")]
    RegionNotFound(u64),
    /// No such store.
    #[error("store {0} not found")]
    StoreNotFound(u64),
    /// The request does not fit the region or store as they are now.
    #[error("{0}")]
    Invalid(String),
    /// The region already has an operator in flight; try again when it is done.
    #[error("region {0} already has an operator in flight")]
    Busy(u64),
    /// Allocating an id failed.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Coordinator {
    /// Checks `req`, queues the operator for it and returns that operator.
    pub fn admin(&self, req: AdminRequest) -> Result<Operator, AdminError> {
        let cluster = self.cluster();
        let region_id = match &req {
            AdminRequest::AddPeer { region_id, .. }
            | AdminRequest::RemovePeer { region_id, .. }
            | AdminRequest::TransferLeader { region_id, .. }
            | AdminRequest::Split { region_id, .. } => *region_id,
        };
        let region = cluster
            .get_region_by_id(region_id)
            .ok_or(AdminError::RegionNotFound(region_id))?;
        let now = cluster.now_ms();
        let op = match req {
            AdminRequest::AddPeer { store_id, .. } => {
                let store = cluster
                    .get_store(store_id)
                    .ok_or(AdminError::StoreNotFound(store_id))?;
                if store.state != StoreState::Up {
                    return Err(AdminError::Invalid(format!(
                        "store {store_id} is {:?}, not up",
                        store.state
                    )));
                }
                if region.peer_on_store(store_id).is_some() {
                    return Err(AdminError::Invalid(format!(
                        "region {region_id} already has a replica on store {store_id}"
                    )));
                }
                let id = cluster
                    .alloc_id()
                    .map_err(|e| AdminError::Internal(e.to_string()))?;
                let peer = metapb::Peer {
                    id,
                    store_id,
                    ..Default::default()
                };
                Operator::add_peer("admin-add-peer", &region, peer, now)
            }
            AdminRequest::RemovePeer { store_id, .. } => {
                let peer = *region.peer_on_store(store_id).ok_or_else(|| {
                    AdminError::Invalid(format!(
                        "region {region_id} has no replica on store {store_id}"
                    ))
                })?;
                if region.region.peers.len() == 1 {
                    return Err(AdminError::Invalid(format!(
                        "store {store_id} holds the last replica of region {region_id}"
                    )));
                }
                Operator::remove_peer("admin-remove-peer", &region, peer, now)
            }
            AdminRequest::TransferLeader { to_store_id, .. } => {
                let peer = *region.peer_on_store(to_store_id).ok_or_else(|| {
                    AdminError::Invalid(format!(
                        "region {region_id} has no replica on store {to_store_id}"
                    ))
                })?;
                if peer.role == metapb::PeerRole::Learner as i32 {
                    return Err(AdminError::Invalid(format!(
                        "the replica on store {to_store_id} is a learner and cannot lead"
                    )));
                }
                if region.leader.is_some_and(|l| l.id == peer.id) {
                    return Err(AdminError::Invalid(format!(
                        "store {to_store_id} already leads region {region_id}"
                    )));
                }
                Operator::transfer_leader("admin-transfer-leader", &region, peer, now)
            }
            AdminRequest::Split { keys, .. } => {
                check_split_keys(&region.region, &keys).map_err(AdminError::Invalid)?;
                Operator::split("admin-split", &region, keys, now)
            }
        };
        self.add_operator(op.clone())
            .map_err(|_| AdminError::Busy(region_id))?;
        Ok(op)
    }
}

fn check_split_keys(region: &metapb::Region, keys: &[Vec<u8>]) -> Result<(), String> {
    if keys.is_empty() {
        return Err("a split needs at least one key".into());
    }
    let mut prev: &[u8] = &region.start_key;
    for k in keys {
        if k.as_slice() <= prev {
            return Err(format!(
                "split keys must be ascending and after the region's start key; {} is not",
                Escaped(k)
            ));
        }
        if !region.end_key.is_empty() && k.as_slice() >= region.end_key.as_slice() {
            return Err(format!(
                "split key {} is not before the region's end key {}",
                Escaped(k),
                Escaped(&region.end_key)
            ));
        }
        prev = k;
    }
    Ok(())
}
