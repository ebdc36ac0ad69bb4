//! Membership and leadership helpers: the TinyKV harness's MustAddPeer, MustRemovePeer and
//! MustTransferLeader, sent as admin commands to the region's leader.

use std::time::{Duration, Instant};

use proto::eraftpb::ConfChangeType;
use proto::metapb;
use proto::raft_cmdpb::{
    AdminCmdType, AdminRequest, ChangePeerRequest, RaftCmdRequest, TransferLeaderRequest,
};

use crate::cluster::Cluster;

const WAIT: Duration = Duration::from_secs(5);

impl Cluster {
    /// The newest copy of region `region_id` any running store has.
    pub fn region_by_id(&self, region_id: u64) -> Option<metapb::Region> {
        self.refresh_regions();
        self.region_cache
            .lock()
            .iter()
            .find(|r| r.id == region_id)
            .cloned()
    }

    fn admin(&self, region_id: u64, admin: AdminRequest) -> Result<(), String> {
        let region = self
            .region_by_id(region_id)
            .ok_or_else(|| format!("region {region_id} unknown"))?;
        let cmd = RaftCmdRequest {
            admin_request: Some(admin),
            ..Default::default()
        };
        self.try_request(&region.start_key, cmd, WAIT).map(|_| ())
    }

    fn change_peer(
        &self,
        region_id: u64,
        change: ConfChangeType,
        peer: metapb::Peer,
    ) -> Result<(), String> {
        self.admin(
            region_id,
            AdminRequest {
                cmd_type: AdminCmdType::ChangePeer as i32,
                change_peer: Some(ChangePeerRequest {
                    change_type: change as i32,
                    peer: Some(peer),
                }),
                ..Default::default()
            },
        )
    }

    fn wait_region(&self, region_id: u64, what: &str, ok: impl Fn(&metapb::Region) -> bool) {
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if self.region_by_id(region_id).is_some_and(|r| ok(&r)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "region {region_id}: {what} not observed within {WAIT:?} (seed {})",
            self.seed
        );
    }

    /// Adds `peer` to the region as a voter (or promotes it if it is a learner) and waits
    /// until the region shows it as a voter.
    pub fn must_add_peer(&self, region_id: u64, peer: metapb::Peer) {
        self.must_change_to_member(region_id, peer, ConfChangeType::AddNode);
    }

    /// Adds `peer` to the region as a learner and waits until the region shows it.
    pub fn must_add_learner(&self, region_id: u64, peer: metapb::Peer) {
        self.must_change_to_member(region_id, peer, ConfChangeType::AddLearnerNode);
    }

    fn must_change_to_member(&self, region_id: u64, peer: metapb::Peer, change: ConfChangeType) {
        let role = if change == ConfChangeType::AddLearnerNode {
            metapb::PeerRole::Learner
        } else {
            metapb::PeerRole::Voter
        } as i32;
        let has =
            move |r: &metapb::Region| r.peers.iter().any(|p| p.id == peer.id && p.role == role);
        let deadline = Instant::now() + WAIT * 2;
        loop {
            if self.region_by_id(region_id).is_some_and(|r| has(&r)) {
                break;
            }
            match self.change_peer(region_id, change, peer) {
                Ok(()) => break,
                // An earlier attempt whose answer was lost already did it.
                Err(e) if e.contains("is already a member") => break,
                Err(e) if Instant::now() > deadline => {
                    panic!(
                        "adding {peer:?} ({change:?}) to region {region_id} failed: {e} (seed {})",
                        self.seed
                    )
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
        self.wait_region(region_id, "added peer", has);
    }

    /// Removes `peer` from the region and waits until the region no longer shows it.
    pub fn must_remove_peer(&self, region_id: u64, peer: metapb::Peer) {
        let deadline = Instant::now() + WAIT * 2;
        loop {
            if self
                .region_by_id(region_id)
                .is_some_and(|r| !r.peers.iter().any(|p| p.id == peer.id))
            {
                break;
            }
            match self.change_peer(region_id, ConfChangeType::RemoveNode, peer) {
                Ok(()) => break,
                // An earlier attempt whose answer was lost already did it.
                Err(e) if e.contains("is not a member") => break,
                Err(e) if Instant::now() > deadline => {
                    panic!(
                        "removing {peer:?} from region {region_id} failed: {e} (seed {})",
                        self.seed
                    )
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
        self.wait_region(region_id, "removed peer", |r| {
            !r.peers.iter().any(|p| p.id == peer.id)
        });
    }

    /// Makes `peer` the leader of the region, retrying for a few seconds.
    pub fn must_transfer_leader(&self, region_id: u64, peer: metapb::Peer) {
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if self.leader_of_region(region_id) == Some(peer.store_id) {
                return;
            }
            let _ = self.admin(
                region_id,
                AdminRequest {
                    cmd_type: AdminCmdType::TransferLeader as i32,
                    transfer_leader: Some(TransferLeaderRequest {
                        peer: Some(peer),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            );
            std::thread::sleep(Duration::from_millis(100));
            self.leader_hints.lock().remove(&region_id);
        }
        panic!(
            "leadership of region {region_id} never moved to {peer:?} (seed {})",
            self.seed
        );
    }
}
