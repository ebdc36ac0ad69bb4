//! Small pure helpers over regions, epochs and command headers.

use std::collections::hash_map::DefaultHasher;
use std::hash::BuildHasherDefault;

use proto::metapb;
use proto::raft_cmdpb::{AdminCmdType, RaftCmdRequest, RaftCmdResponse, RaftResponseHeader};
use raft::eraftpb::ConfState;

use crate::{Error, Result};

/// First index and term of a region created from known metadata (bootstrap or split).
/// Starting above zero lets such a peer tell itself apart from a peer created from a raft
/// message, which starts empty and must be caught up by a snapshot.
pub const RAFT_INIT_LOG_INDEX: u64 = 5;
/// Term that goes with [`RAFT_INIT_LOG_INDEX`].
pub const RAFT_INIT_LOG_TERM: u64 = 5;
/// Epoch of a freshly bootstrapped region.
pub const INIT_EPOCH_VER: u64 = 1;
/// Conf version of a freshly bootstrapped region.
pub const INIT_EPOCH_CONF_VER: u64 = 1;

/// A hash map whose iteration order is the same in every run for the same inserts and
/// removals (SipHash with fixed keys, not a per-process random seed). Used where the order
/// of iteration decides what is sent, proposed or written, so a seeded simulation replays.
pub type DetHashMap<K, V> = std::collections::HashMap<K, V, BuildHasherDefault<DefaultHasher>>;

/// Builds a response carrying `err`.
pub fn err_resp(err: Error, term: u64) -> RaftCmdResponse {
    RaftCmdResponse {
        header: Some(RaftResponseHeader {
            error: Some(err.into()),
            current_term: term,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// True when `key` lies in `[region.start_key, region.end_key)`.
pub fn key_in_region(key: &[u8], region: &metapb::Region) -> bool {
    key >= region.start_key.as_slice()
        && (region.end_key.is_empty() || key < region.end_key.as_slice())
}

/// `KeyNotInRegion` unless `key` lies in the region.
pub fn check_key_in_region(key: &[u8], region: &metapb::Region) -> Result<()> {
    if key_in_region(key, region) {
        Ok(())
    } else {
        Err(Error::KeyNotInRegion {
            key: key.to_vec(),
            region_id: region.id,
            start_key: region.start_key.clone(),
            end_key: region.end_key.clone(),
        })
    }
}

/// The peer of `region` on `store_id`.
pub fn find_peer(region: &metapb::Region, store_id: u64) -> Option<&metapb::Peer> {
    region.peers.iter().find(|p| p.store_id == store_id)
}

/// The peer of `region` with id `peer_id`.
pub fn find_peer_by_id(region: &metapb::Region, peer_id: u64) -> Option<&metapb::Peer> {
    region.peers.iter().find(|p| p.id == peer_id)
}

/// True for learner peers.
pub fn is_learner(peer: &metapb::Peer) -> bool {
    peer.role == metapb::PeerRole::Learner as i32
}

/// The raft configuration that `region`'s peer list describes.
pub fn conf_state_from_region(region: &metapb::Region) -> ConfState {
    let mut cs = ConfState::default();
    for p in &region.peers {
        if is_learner(p) {
            cs.mut_learners().push(p.id);
        } else {
            cs.mut_voters().push(p.id);
        }
    }
    cs
}

/// The epoch of `region` (default when missing).
pub fn epoch(region: &metapb::Region) -> metapb::RegionEpoch {
    region.region_epoch.unwrap_or_default()
}

/// True if epoch `a` is older than `b` in either dimension.
pub fn is_epoch_stale(a: &metapb::RegionEpoch, b: &metapb::RegionEpoch) -> bool {
    a.version < b.version || a.conf_ver < b.conf_ver
}

/// Which parts of the epoch a command must match: (version, conf_ver).
fn epoch_checks(req: &RaftCmdRequest) -> (bool, bool) {
    match req.admin_request.as_ref() {
        None => (true, false),
        Some(admin) => match AdminCmdType::try_from(admin.cmd_type) {
            Ok(AdminCmdType::CompactLog) | Ok(AdminCmdType::InvalidAdmin) | Err(_) => {
                (false, false)
            }
            Ok(AdminCmdType::ChangePeer) | Ok(AdminCmdType::ChangePeerV2) => (false, true),
            Ok(AdminCmdType::Split)
            | Ok(AdminCmdType::BatchSplit)
            | Ok(AdminCmdType::TransferLeader)
            | Ok(AdminCmdType::PrepareMerge)
            | Ok(AdminCmdType::CommitMerge)
            | Ok(AdminCmdType::RollbackMerge) => (true, true),
            Ok(_) => (false, false),
        },
    }
}

/// Checks the request's epoch against `region` following TiKV's rules: reads and writes
/// check `version`, conf changes check `conf_ver`, split and leader transfer check both.
pub fn check_region_epoch(req: &RaftCmdRequest, region: &metapb::Region) -> Result<()> {
    let (check_ver, check_conf_ver) = epoch_checks(req);
    if !check_ver && !check_conf_ver {
        return Ok(());
    }
    let from = req
        .header
        .as_ref()
        .and_then(|h| h.region_epoch)
        .ok_or_else(|| Error::InvalidRequest("missing region epoch".into()))?;
    let current = epoch(region);
    if (check_conf_ver && from.conf_ver != current.conf_ver)
        || (check_ver && from.version != current.version)
    {
        return Err(Error::EpochNotMatch(
            format!(
                "current epoch of region {} is {:?}, but you sent {:?}",
                region.id, current, from
            ),
            vec![region.clone()],
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::raft_cmdpb::{AdminRequest, RaftRequestHeader};

    fn region(start: &[u8], end: &[u8], ver: u64, conf_ver: u64) -> metapb::Region {
        metapb::Region {
            id: 1,
            start_key: start.to_vec(),
            end_key: end.to_vec(),
            region_epoch: Some(metapb::RegionEpoch {
                conf_ver,
                version: ver,
            }),
            peers: vec![],
            ..Default::default()
        }
    }

    fn req(ver: u64, conf_ver: u64, admin: Option<AdminCmdType>) -> RaftCmdRequest {
        RaftCmdRequest {
            header: Some(RaftRequestHeader {
                region_id: 1,
                region_epoch: Some(metapb::RegionEpoch {
                    conf_ver,
                    version: ver,
                }),
                ..Default::default()
            }),
            admin_request: admin.map(|t| AdminRequest {
                cmd_type: t as i32,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn key_range_bounds() {
        let r = region(b"b", b"d", 1, 1);
        assert!(!key_in_region(b"a", &r));
        assert!(key_in_region(b"b", &r));
        assert!(key_in_region(b"c\xff", &r));
        assert!(!key_in_region(b"d", &r));
        let unbounded = region(b"", b"", 1, 1);
        assert!(key_in_region(b"", &unbounded));
        assert!(key_in_region(b"\xff\xff", &unbounded));
        assert!(matches!(
            check_key_in_region(b"z", &r),
            Err(Error::KeyNotInRegion { .. })
        ));
    }

    #[test]
    fn epoch_rules_follow_command_kind() {
        let r = region(b"", b"", 3, 5);
        // Normal commands check only the version.
        assert!(check_region_epoch(&req(3, 1, None), &r).is_ok());
        assert!(check_region_epoch(&req(2, 5, None), &r).is_err());
        // Conf change checks only conf_ver.
        assert!(check_region_epoch(&req(1, 5, Some(AdminCmdType::ChangePeer)), &r).is_ok());
        assert!(check_region_epoch(&req(3, 4, Some(AdminCmdType::ChangePeer)), &r).is_err());
        // Split and transfer leader check both.
        assert!(check_region_epoch(&req(3, 5, Some(AdminCmdType::BatchSplit)), &r).is_ok());
        assert!(check_region_epoch(&req(3, 4, Some(AdminCmdType::BatchSplit)), &r).is_err());
        assert!(check_region_epoch(&req(2, 5, Some(AdminCmdType::TransferLeader)), &r).is_err());
        // CompactLog checks nothing.
        assert!(check_region_epoch(&req(0, 0, Some(AdminCmdType::CompactLog)), &r).is_ok());
        // The error carries the current region.
        match check_region_epoch(&req(2, 5, None), &r) {
            Err(Error::EpochNotMatch(_, regions)) => assert_eq!(regions, vec![r.clone()]),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn conf_state_splits_voters_and_learners() {
        let mut r = region(b"", b"", 1, 1);
        r.peers = vec![
            metapb::Peer {
                id: 1,
                store_id: 1,
                ..Default::default()
            },
            metapb::Peer {
                id: 2,
                store_id: 2,
                role: metapb::PeerRole::Learner as i32,
                ..Default::default()
            },
        ];
        let cs = conf_state_from_region(&r);
        assert_eq!(cs.get_voters(), &[1]);
        assert_eq!(cs.get_learners(), &[2]);
    }
}
