//! Translation of PD's answers into the client's own types ([`crate::operator`]) and
//! timestamps.
//!
//! Everything coming from the server is checked here and a malformed answer becomes an
//! [`Error::BadResponse`], never a panic or a half-filled operator. (What a store reports
//! goes out as `pdpb` messages its caller builds: see `node`'s PD adapter.)

use proto::eraftpb::ConfChangeType;
use proto::metapb;
use proto::pdpb;

use crate::error::{Error, Result};
use crate::operator::{Operator, PushedOperator, SplitIds};

/// Bits of a TSO timestamp's logical part (`physical_ms << 18 | logical`).
pub const LOGICAL_BITS: u32 = 18;

/// AskBatchSplit's ids, checked against the request: `count` sets of ids, each with one
/// peer id per peer of `region` (the split would otherwise create a region with a peer
/// missing or without an id).
pub fn split_ids_from_pb(
    ids: Vec<pdpb::SplitId>,
    region: &metapb::Region,
    count: usize,
) -> Result<Vec<SplitIds>> {
    const CALL: &str = "AskBatchSplit";
    if ids.len() != count {
        return Err(Error::bad_response(
            CALL,
            format!("asked for {count} id sets, got {}", ids.len()),
        ));
    }
    ids.into_iter()
        .map(|s| {
            if s.new_region_id == 0 {
                return Err(Error::bad_response(CALL, "new region id 0"));
            }
            if s.new_peer_ids.len() != region.peers.len() || s.new_peer_ids.contains(&0) {
                return Err(Error::bad_response(
                    CALL,
                    format!(
                        "region {} has {} peers, got peer ids {:?}",
                        region.id,
                        region.peers.len(),
                        s.new_peer_ids
                    ),
                ));
            }
            Ok(SplitIds {
                new_region_id: s.new_region_id,
                new_peer_ids: s.new_peer_ids,
            })
        })
        .collect()
}

/// A TSO answer as one `u64`: physical milliseconds above 18 logical bits.
pub fn timestamp_from_pb(ts: &pdpb::Timestamp) -> Result<u64> {
    const CALL: &str = "Tso";
    let physical = u64::try_from(ts.physical)
        .ok()
        .filter(|p| p.leading_zeros() >= LOGICAL_BITS)
        .ok_or_else(|| {
            Error::bad_response(CALL, format!("physical {} out of range", ts.physical))
        })?;
    let logical = u64::try_from(ts.logical)
        .ok()
        .filter(|l| *l < 1 << LOGICAL_BITS)
        .ok_or_else(|| Error::bad_response(CALL, format!("logical {} out of range", ts.logical)))?;
    Ok(physical << LOGICAL_BITS | logical)
}

/// The operator in a region heartbeat answer, addressed to the leader it names; `None`
/// when the answer carries no operation. Operations this store cannot carry out (merge,
/// a split without keys, joint-consensus changes) and malformed answers are errors, for the caller
/// to log: ignoring them silently would hide a scheduler waiting forever on this store.
pub fn operator_from_response(
    resp: &pdpb::RegionHeartbeatResponse,
) -> Result<Option<PushedOperator>> {
    const CALL: &str = "RegionHeartbeat";
    let op = match (&resp.change_peer, &resp.transfer_leader) {
        (None, None)
            if resp.split_region.as_ref().is_some_and(|s| {
                s.policy == pdpb::CheckPolicy::Usekey as i32 && !s.keys.is_empty()
            }) =>
        {
            Operator::Split(resp.split_region.clone().unwrap_or_default().keys)
        }
        (Some(_), Some(_)) => {
            return Err(Error::bad_response(
                CALL,
                "both change_peer and transfer_leader set",
            ))
        }
        (Some(cp), None) => {
            let peer = cp
                .peer
                .ok_or_else(|| Error::bad_response(CALL, "change_peer without a peer"))?;
            match ConfChangeType::try_from(cp.change_type) {
                Ok(ConfChangeType::AddNode) => Operator::AddPeer(peer),
                Ok(ConfChangeType::AddLearnerNode) => Operator::AddLearner(peer),
                Ok(ConfChangeType::RemoveNode) => Operator::RemovePeer(peer),
                Err(_) => {
                    return Err(Error::bad_response(
                        CALL,
                        format!("unknown change type {}", cp.change_type),
                    ))
                }
            }
        }
        (None, Some(tl)) => Operator::TransferLeader(
            tl.peer
                .ok_or_else(|| Error::bad_response(CALL, "transfer_leader without a peer"))?,
        ),
        (None, None) => {
            let unsupported = if resp.merge.is_some() {
                Some("merge")
            } else if resp.split_region.is_some() {
                // Splits with keys are handled above; choosing the keys (SCAN,
                // APPROXIMATE) is not offered.
                Some("split_region without keys")
            } else if resp.change_peer_v2.is_some() {
                Some("change_peer_v2")
            } else {
                None
            };
            return match unsupported {
                Some(what) => Err(Error::bad_response(
                    CALL,
                    format!("region {}: {what} is not supported", resp.region_id),
                )),
                None => Ok(None),
            };
        }
    };
    if resp.region_id == 0 {
        return Err(Error::bad_response(CALL, "operator without a region id"));
    }
    let leader = resp
        .target_peer
        .filter(|p| p.id != 0)
        .ok_or_else(|| Error::bad_response(CALL, "operator without a target peer"))?;
    Ok(Some(PushedOperator {
        region_id: resp.region_id,
        region_epoch: resp.region_epoch,
        leader,
        op,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(id: u64, store_id: u64) -> metapb::Peer {
        metapb::Peer {
            id,
            store_id,
            ..Default::default()
        }
    }

    fn epoch() -> Option<metapb::RegionEpoch> {
        Some(metapb::RegionEpoch {
            conf_ver: 5,
            version: 2,
        })
    }

    /// An answer shaped like pd_server's: region, epoch and target peer from the heartbeat.
    fn answer() -> pdpb::RegionHeartbeatResponse {
        pdpb::RegionHeartbeatResponse {
            region_id: 4,
            region_epoch: epoch(),
            target_peer: Some(peer(41, 1)),
            ..Default::default()
        }
    }

    fn change(t: ConfChangeType) -> Option<pdpb::ChangePeer> {
        Some(pdpb::ChangePeer {
            peer: Some(peer(44, 3)),
            change_type: t as i32,
        })
    }

    #[test]
    fn change_peer_answers_become_peer_operators() {
        let cases = [
            (ConfChangeType::AddNode, Operator::AddPeer(peer(44, 3))),
            (
                ConfChangeType::AddLearnerNode,
                Operator::AddLearner(peer(44, 3)),
            ),
            (
                ConfChangeType::RemoveNode,
                Operator::RemovePeer(peer(44, 3)),
            ),
        ];
        for (t, want) in cases {
            let resp = pdpb::RegionHeartbeatResponse {
                change_peer: change(t),
                ..answer()
            };
            let got = operator_from_response(&resp).unwrap().unwrap();
            assert_eq!(
                got,
                PushedOperator {
                    region_id: 4,
                    region_epoch: epoch(),
                    leader: peer(41, 1),
                    op: want,
                }
            );
        }
    }

    #[test]
    fn transfer_leader_answer_becomes_a_transfer() {
        let resp = pdpb::RegionHeartbeatResponse {
            transfer_leader: Some(pdpb::TransferLeader {
                peer: Some(peer(42, 2)),
                peers: Vec::new(),
            }),
            ..answer()
        };
        let got = operator_from_response(&resp).unwrap().unwrap();
        assert_eq!(got.op, Operator::TransferLeader(peer(42, 2)));
        let split = pdpb::RegionHeartbeatResponse {
            split_region: Some(pdpb::SplitRegion {
                policy: pdpb::CheckPolicy::Usekey as i32,
                keys: vec![b"m".to_vec()],
            }),
            ..answer()
        };
        let got = operator_from_response(&split).unwrap().unwrap();
        assert_eq!(got.op, Operator::Split(vec![b"m".to_vec()]));
        assert_eq!(got.leader, peer(41, 1));
    }

    #[test]
    fn an_answer_without_an_operation_is_nothing() {
        assert_eq!(operator_from_response(&answer()).unwrap(), None);
        assert_eq!(
            operator_from_response(&pdpb::RegionHeartbeatResponse::default()).unwrap(),
            None
        );
    }

    #[test]
    fn malformed_or_unsupported_answers_are_errors() {
        let bad = [
            // Joint-consensus change, merge, split without keys: not carried out here.
            pdpb::RegionHeartbeatResponse {
                change_peer_v2: Some(pdpb::ChangePeerV2::default()),
                ..answer()
            },
            pdpb::RegionHeartbeatResponse {
                merge: Some(pdpb::Merge::default()),
                ..answer()
            },
            pdpb::RegionHeartbeatResponse {
                split_region: Some(pdpb::SplitRegion::default()),
                ..answer()
            },
            // Conf change types outside the enum.
            pdpb::RegionHeartbeatResponse {
                change_peer: Some(pdpb::ChangePeer {
                    peer: Some(peer(44, 3)),
                    change_type: 17,
                }),
                ..answer()
            },
            // Missing pieces.
            pdpb::RegionHeartbeatResponse {
                change_peer: Some(pdpb::ChangePeer {
                    peer: None,
                    change_type: 0,
                }),
                ..answer()
            },
            pdpb::RegionHeartbeatResponse {
                transfer_leader: Some(pdpb::TransferLeader::default()),
                ..answer()
            },
            pdpb::RegionHeartbeatResponse {
                change_peer: change(ConfChangeType::AddNode),
                target_peer: None,
                ..answer()
            },
            pdpb::RegionHeartbeatResponse {
                change_peer: change(ConfChangeType::AddNode),
                region_id: 0,
                ..answer()
            },
            // Two operations at once.
            pdpb::RegionHeartbeatResponse {
                change_peer: change(ConfChangeType::AddNode),
                transfer_leader: Some(pdpb::TransferLeader {
                    peer: Some(peer(42, 2)),
                    peers: Vec::new(),
                }),
                ..answer()
            },
        ];
        for resp in bad {
            let e = operator_from_response(&resp).unwrap_err();
            assert!(matches!(e, Error::BadResponse { .. }), "{resp:?} gave {e}");
        }
    }

    #[test]
    fn split_ids_must_match_the_request() {
        let region = metapb::Region {
            id: 4,
            peers: vec![peer(41, 1), peer(42, 2)],
            ..Default::default()
        };
        let ids = |n: usize, peers: Vec<u64>| -> Vec<pdpb::SplitId> {
            (0..n)
                .map(|i| pdpb::SplitId {
                    new_region_id: 100 + i as u64,
                    new_peer_ids: peers.clone(),
                })
                .collect()
        };
        let ok = split_ids_from_pb(ids(2, vec![7, 8]), &region, 2).unwrap();
        assert_eq!(ok.len(), 2);
        assert_eq!(ok[1].new_region_id, 101);
        assert_eq!(ok[1].new_peer_ids, vec![7, 8]);
        assert!(split_ids_from_pb(ids(1, vec![7, 8]), &region, 2).is_err());
        assert!(split_ids_from_pb(ids(2, vec![7]), &region, 2).is_err());
        assert!(split_ids_from_pb(ids(2, vec![7, 0]), &region, 2).is_err());
        let mut zero = ids(1, vec![7, 8]);
        zero[0].new_region_id = 0;
        assert!(split_ids_from_pb(zero, &region, 1).is_err());
    }

    #[test]
    fn timestamps_compose_and_reject_out_of_range_parts() {
        let ts = |physical, logical| pdpb::Timestamp {
            physical,
            logical,
            suffix_bits: 0,
        };
        assert_eq!(timestamp_from_pb(&ts(5, 3)).unwrap(), (5 << 18) | 3);
        assert!(timestamp_from_pb(&ts(-1, 0)).is_err());
        assert!(timestamp_from_pb(&ts(1, 1 << 18)).is_err());
        assert!(timestamp_from_pb(&ts(1, -1)).is_err());
        assert!(timestamp_from_pb(&ts(i64::MAX, 0)).is_err());
    }
}
