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
        self.must_change_peer(region_id, peer, change, "is already a member", move |r| {
            r.peers.iter().any(|p| p.id == peer.id && p.role == role)
        });
    }

    /// Removes `peer` from the region and waits until the region no longer shows it.
    pub fn must_remove_peer(&self, region_id: u64, peer: metapb::Peer) {
        self.must_change_peer(
            region_id,
            peer,
            ConfChangeType::RemoveNode,
            "is not a member",
            move |r| !r.peers.iter().any(|p| p.id == peer.id),
        );
    }

    /// Proposes `change` of `peer` until it is accepted or the region already shows `done`,
    /// then waits for every store's view to show it. `already` is the refusal a store gives
    /// when an earlier attempt, whose answer was lost, already made the change.
    fn must_change_peer(
        &self,
        region_id: u64,
        peer: metapb::Peer,
        change: ConfChangeType,
        already: &str,
        done: impl Fn(&metapb::Region) -> bool,
    ) {
        let deadline = Instant::now() + WAIT * 2;
        loop {
            if self.region_by_id(region_id).is_some_and(|r| done(&r)) {
                break;
            }
            match self.change_peer(region_id, change, peer) {
                Ok(()) => break,
                Err(e) if e.contains(already) => break,
                Err(e) if Instant::now() > deadline => panic!(
                    "{change:?} of {peer:?} in region {region_id} failed: {e} (seed {})",
                    self.seed
                ),
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
        self.wait_region(region_id, "the membership change", done);
    }

    /// Splits region `region_id` at `key` the way a split operator does (AskSplit to the
    /// leader, which asks the scheduler for ids and proposes the BatchSplit), asking again
    /// until some store holds a region that starts at `key`.
    pub fn must_split(&self, region_id: u64, key: &[u8]) {
        let deadline = Instant::now() + WAIT * 2;
        loop {
            self.refresh_regions();
            if self.cached_regions().iter().any(|r| r.start_key == key) {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "region {region_id} never split at {:?} (seed {})",
                    String::from_utf8_lossy(key),
                    self.seed
                );
            }
            let region = self.region_by_id(region_id);
            let leader = self.leader_of_region(region_id);
            if let (Some(region), Some(router)) = (region, leader.and_then(|s| self.router(s))) {
                let _ = router.send(
                    region_id,
                    raftstore::msg::PeerMsg::AskSplit {
                        epoch: region.region_epoch.unwrap_or_default(),
                        split_keys: vec![key.to_vec()],
                    },
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Asks the region's believed leader, once, to hand leadership to `peer`; true when
    /// the request was accepted (the transfer itself may still not happen). For chaos
    /// threads, which must not fail the test when a fault gets in the way.
    pub fn try_transfer_leader(&self, region_id: u64, peer: metapb::Peer) -> bool {
        let Some(region) = self.region_by_id(region_id) else {
            return false;
        };
        let cmd = RaftCmdRequest {
            admin_request: Some(AdminRequest {
                cmd_type: AdminCmdType::TransferLeader as i32,
                transfer_leader: Some(TransferLeaderRequest {
                    peer: Some(peer),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        matches!(
            self.send_once(&region.start_key, None, cmd, Duration::from_secs(1), 1),
            crate::recorded::Attempt::Answer { .. }
        )
    }

    /// Asks every running store holding the region of `key` to split it at `key` (only
    /// its leader acts on it), without waiting; false if no store could be asked.
    pub fn ask_split_at(&self, key: &[u8]) -> bool {
        self.refresh_regions();
        let Some(region) = self.region_for_key(key) else {
            return false;
        };
        if region.start_key == key {
            return false;
        }
        let mut asked = false;
        for p in &region.peers {
            if let Some(router) = self.router(p.store_id) {
                asked |= router
                    .send(
                        region.id,
                        raftstore::msg::PeerMsg::AskSplit {
                            epoch: region.region_epoch.unwrap_or_default(),
                            split_keys: vec![key.to_vec()],
                        },
                    )
                    .is_ok();
            }
        }
        asked
    }

    /// Makes `peer` the leader of the region, retrying for a few seconds.
    pub fn must_transfer_leader(&self, region_id: u64, peer: metapb::Peer) {
        // As for membership changes, twice the request timeout: one attempt that meets an
        // election in progress can use a whole request timeout by itself.
        let deadline = Instant::now() + WAIT * 2;
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
