//! What PD tells a store to do, as this client hands it over: the ids a split needs and
//! the operators that arrive on the region heartbeat stream.
//!
//! These are the client's own types, not the store's: the crate that puts a store
//! together (`node`) maps them onto raftstore's, so this client does not depend on the
//! store it serves.

use std::sync::Arc;

use proto::metapb;

/// Ids for one new region of a split: the region id and one peer id per existing peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SplitIds {
    /// Id of the new region.
    pub new_region_id: u64,
    /// Peer ids, one per peer of the region being split, in the same order.
    pub new_peer_ids: Vec<u64>,
}

/// An instruction PD sends back to a region's leader.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Operator {
    /// Add this peer (a voter).
    AddPeer(metapb::Peer),
    /// Add this peer as a learner.
    AddLearner(metapb::Peer),
    /// Remove this peer.
    RemovePeer(metapb::Peer),
    /// Move leadership to this peer.
    TransferLeader(metapb::Peer),
    /// Split the region at these keys.
    Split(Vec<Vec<u8>>),
}

/// For logs: peers by id and store, split keys as escaped text (not byte lists).
impl std::fmt::Display for Operator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (what, p) = match self {
            Operator::AddPeer(p) => ("add peer", p),
            Operator::AddLearner(p) => ("add learner", p),
            Operator::RemovePeer(p) => ("remove peer", p),
            Operator::TransferLeader(p) => ("transfer leader to peer", p),
            Operator::Split(keys) => {
                let keys: Vec<String> = keys.iter().map(|k| codec::escape::escape(k)).collect();
                return write!(f, "split at {}", keys.join(", "));
            }
        };
        write!(f, "{what} {} on store {}", p.id, p.store_id)
    }
}

/// An operator from PD's answer to a region heartbeat, with what the leader needs to
/// address the admin command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushedOperator {
    /// The region to change.
    pub region_id: u64,
    /// The region's epoch as PD last saw it (the store checks the command against it, so
    /// an operator decided on stale information is refused).
    pub region_epoch: Option<metapb::RegionEpoch>,
    /// The peer the command is addressed to: the leader that sent the heartbeat.
    pub leader: metapb::Peer,
    /// What to do.
    pub op: Operator,
}

/// Where the client delivers operators ([`crate::PdClient::set_operator_sink`]). Called
/// on the client runtime's threads, so it must not block.
pub type OperatorSink = Arc<dyn Fn(PushedOperator) + Send + Sync>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operators_print_peers_and_escaped_keys() {
        let p = metapb::Peer {
            id: 7,
            store_id: 3,
            ..Default::default()
        };
        assert_eq!(
            Operator::TransferLeader(p).to_string(),
            "transfer leader to peer 7 on store 3"
        );
        assert_eq!(
            Operator::Split(vec![b"a\xff".to_vec(), b"b".to_vec()]).to_string(),
            "split at a\\xff, b"
        );
    }
}
