//! Cluster operations at random steps of the load phase, and the clients' region cache.
//!
//! The operations are what a scheduler and an operator do to a live cluster, sent the way
//! they are in production:
//! - **transfer leader**: a `TransferLeader` admin command through the router of every
//!   running store that holds a peer of the region (only the leader acts on it; the others
//!   answer "not leader"), to a random peer of the region;
//! - **split**: `PeerMsg::AskSplit` at a hot key (the keys are the user keys the clients
//!   send, the same key space as the region's start and end keys) through the router of
//!   every running store holding the region, as the scheduler's split operator does; the
//!   leader checks the epoch, asks the scheduler for the new region's ids
//!   ([`crate::sched::SimScheduler`]: never handed out twice) and proposes the BatchSplit;
//! - **conf change**: a scheduler operator (`Operator::RemovePeer`) removes a random peer;
//!   a membership repair later gives every region that lacks a peer on some store a new
//!   peer there (`Operator::AddPeer`, a fresh peer id), and comes back until every region
//!   has a peer on every store again (or the load phase ends).
//!
//! Clients learn regions as a client of the real cluster learns them from the scheduler:
//! [`Sim::refresh_regions`] reads the region states every store holds (running or not) and
//! keeps the newest copy of each, without overlaps. A client refreshes after every refusal
//! that names no leader (epoch not match, key not in region, region not found...), so it
//! follows splits and membership changes.

use std::collections::BTreeMap;

use proto::metapb;
use proto::raft_cmdpb::{
    AdminCmdType, AdminRequest, RaftCmdRequest, RaftRequestHeader, TransferLeaderRequest,
};
use raftstore::msg::PeerMsg;
use raftstore::scheduler_client::Operator;
use raftstore::storage::bootstrap::load_region_states;
use rand::Rng;

use crate::client::show;
use crate::world::Sim;

/// (version, conf_ver) of a region: which of two copies is newer.
fn version(r: &metapb::Region) -> (u64, u64) {
    let e = r.region_epoch.unwrap_or_default();
    (e.version, e.conf_ver)
}

fn overlaps(a: &metapb::Region, b: &metapb::Region) -> bool {
    (a.end_key.is_empty() || b.start_key < a.end_key)
        && (b.end_key.is_empty() || a.start_key < b.end_key)
}

/// Whether `key` is in `r`.
pub fn key_in(r: &metapb::Region, key: &[u8]) -> bool {
    r.start_key.as_slice() <= key && (r.end_key.is_empty() || key < r.end_key.as_slice())
}

/// The newest copy of each region the engines `kvs` hold (newer versions first where
/// copies overlap), without overlaps, in key order: what a client learns from the
/// scheduler.
pub fn newest_regions<'a>(kvs: impl Iterator<Item = &'a engine::MemEngine>) -> Vec<metapb::Region> {
    let mut best: BTreeMap<u64, metapb::Region> = BTreeMap::new();
    for kv in kvs {
        let Ok(states) = load_region_states(kv) else {
            continue;
        };
        for st in states {
            if st.state != proto::raft_serverpb::PeerState::Normal as i32 {
                continue;
            }
            let Some(r) = st.region else { continue };
            match best.get(&r.id) {
                Some(b) if version(b) >= version(&r) => {}
                _ => {
                    best.insert(r.id, r);
                }
            }
        }
    }
    let mut regions: Vec<metapb::Region> = best.into_values().collect();
    // Stable sort: among equal versions, lower region ids first (deterministic).
    regions.sort_by_key(|r| std::cmp::Reverse(r.region_epoch.unwrap_or_default().version));
    let mut chosen: Vec<metapb::Region> = Vec::new();
    for r in regions {
        if !chosen.iter().any(|c| overlaps(c, &r)) {
            chosen.push(r);
        }
    }
    chosen.sort_by(|a, b| a.start_key.cmp(&b.start_key));
    chosen
}

impl Sim {
    /// Rebuilds the region cache from the region states every store holds: the newest copy
    /// of each region, newer versions first where copies overlap.
    pub(crate) fn refresh_regions(&mut self) {
        let chosen = newest_regions(self.stores.iter().map(|s| s.kv()));
        if !chosen.is_empty() {
            self.regions = chosen;
        }
    }

    /// The cached region holding `key` (the first one if the cache has a gap there: the
    /// store's refusal then makes the client refresh).
    pub(crate) fn region_for_key(&self, key: &[u8]) -> metapb::Region {
        self.regions
            .iter()
            .find(|r| key_in(r, key))
            .unwrap_or(&self.regions[0])
            .clone()
    }

    /// Asks the region's leader to hand leadership to a random peer.
    pub(crate) fn op_transfer_leader(&mut self) {
        self.refresh_regions();
        let region = self.regions[self.rng.gen_range(0..self.regions.len())].clone();
        let target = region.peers[self.rng.gen_range(0..region.peers.len())];
        let mut asked = Vec::new();
        for p in &region.peers {
            let Some(live) = self.store(p.store_id).and_then(|s| s.live.as_ref()) else {
                continue;
            };
            let req = RaftCmdRequest {
                header: Some(RaftRequestHeader {
                    region_id: region.id,
                    peer: Some(*p),
                    region_epoch: region.region_epoch,
                    ..Default::default()
                }),
                admin_request: Some(AdminRequest {
                    cmd_type: AdminCmdType::TransferLeader as i32,
                    transfer_leader: Some(TransferLeaderRequest {
                        peer: Some(target),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            };
            // Fire and forget, as the pd worker sends an operator's command.
            live.parts.router.send_command(req, Box::new(|_| {}));
            asked.push(p.store_id);
        }
        self.faults.transfers += 1;
        self.log(format_args!(
            "op: transfer leader of region {} to s{} (peer {}), asked {asked:?}",
            region.id, target.store_id, target.id
        ));
    }

    /// Asks the region holding a random hot key (not the first) to split at that key.
    pub(crate) fn op_split(&mut self) {
        self.refresh_regions();
        if self.keys.len() < 2 {
            self.log(format_args!("op: nothing (one key, no split point)"));
            return;
        }
        let key = self.keys[self.rng.gen_range(1..self.keys.len())].clone();
        let region = self.region_for_key(&key);
        if region.start_key == key || !key_in(&region, &key) {
            self.log(format_args!(
                "op: nothing (region {} already starts at {})",
                region.id,
                show(&key)
            ));
            return;
        }
        let mut asked = Vec::new();
        for p in &region.peers {
            let Some(live) = self.store(p.store_id).and_then(|s| s.live.as_ref()) else {
                continue;
            };
            let _ = live.parts.router.send(
                region.id,
                PeerMsg::AskSplit {
                    epoch: region.region_epoch.unwrap_or_default(),
                    split_keys: vec![key.clone()],
                },
            );
            asked.push(p.store_id);
        }
        self.faults.splits += 1;
        self.log(format_args!(
            "op: split region {} at {}, asked {asked:?}",
            region.id,
            show(&key)
        ));
    }

    /// Has the scheduler remove a random peer of a random region; a membership repair
    /// adds a new peer back later.
    pub(crate) fn op_remove_peer(&mut self) -> bool {
        self.refresh_regions();
        let region = self.regions[self.rng.gen_range(0..self.regions.len())].clone();
        // Removing from a region that already lacks a peer could leave one voter.
        if region.peers.len() < self.stores.len() {
            self.log(format_args!(
                "op: nothing (region {} is missing a peer already)",
                region.id
            ));
            return false;
        }
        let victim = region.peers[self.rng.gen_range(0..region.peers.len())];
        let scheduled = self
            .scheduler
            .add_operator(region.id, Operator::RemovePeer(victim));
        if scheduled {
            self.faults.conf_changes += 1;
            // A peer once removed is a tombstone on its store: adding its id back would
            // name a peer that can never be created again (the region then waits for it
            // forever). The repair must ask for a fresh id, as the real scheduler would.
            if self.pending_adds.get(&region.id).map(|p| p.id) == Some(victim.id) {
                self.pending_adds.remove(&region.id);
            }
        }
        self.log(format_args!(
            "op: remove peer {} (s{}) of region {} (scheduled: {scheduled})",
            victim.id, victim.store_id, region.id
        ));
        scheduled
    }

    /// Gives every region that lacks a peer on some store a new peer there (one operator
    /// per region). True if every region has a peer on every store.
    pub(crate) fn repair_membership(&mut self) -> bool {
        self.refresh_regions();
        let mut complete = true;
        let regions = self.regions.clone();
        for r in regions {
            let Some(store) = self
                .stores
                .iter()
                .map(|s| s.id)
                .find(|s| raftstore::util::find_peer(&r, *s).is_none())
            else {
                continue;
            };
            complete = false;
            // The same new peer as last time if it is still for this store: a second id
            // would be a second peer of the region on one store.
            let peer = match self.pending_adds.get(&r.id) {
                Some(p) if p.store_id == store => *p,
                _ => metapb::Peer {
                    id: self.scheduler.alloc_id(),
                    store_id: store,
                    ..Default::default()
                },
            };
            self.pending_adds.insert(r.id, peer);
            let scheduled = self.scheduler.add_operator(r.id, Operator::AddPeer(peer));
            self.faults.peers_added += u64::from(scheduled);
            self.log(format_args!(
                "op: add peer {} on s{store} to region {} (scheduled: {scheduled})",
                peer.id, r.id
            ));
        }
        complete
    }
}
