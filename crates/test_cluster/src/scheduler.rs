//! An in-process scheduler for the harness: allocates ids, learns regions and leaders from
//! heartbeats (rejecting stale ones), and hands out test operators, like TinyKV's
//! MockSchedulerClient. The real scheduler service replaces it outside tests.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use proto::metapb;
use raftstore::scheduler_client::{
    Operator, RegionHeartbeat, SchedulerClient, SplitIds, StoreHeartbeat,
};
use raftstore::util::{epoch, is_epoch_stale};
use raftstore::{Error, Result};

/// The harness's scheduler.
pub struct MockScheduler {
    next_id: AtomicU64,
    regions: Mutex<HashMap<u64, metapb::Region>>,
    leaders: Mutex<HashMap<u64, metapb::Peer>>,
    stores: Mutex<HashMap<u64, StoreHeartbeat>>,
    operators: Mutex<HashMap<u64, Operator>>,
    /// Region heartbeats received.
    pub region_heartbeats: AtomicU64,
    /// Split id requests served.
    pub split_asks: AtomicU64,
    heartbeats_by_region: Mutex<HashMap<u64, u64>>,
    /// The approximate size each region's latest heartbeat reported.
    sizes: Mutex<HashMap<u64, u64>>,
}

impl Default for MockScheduler {
    fn default() -> Self {
        MockScheduler {
            // Above every id the harness bootstraps with.
            next_id: AtomicU64::new(1_000_000),
            regions: Mutex::default(),
            leaders: Mutex::default(),
            stores: Mutex::default(),
            operators: Mutex::default(),
            region_heartbeats: AtomicU64::new(0),
            split_asks: AtomicU64::new(0),
            heartbeats_by_region: Mutex::default(),
            sizes: Mutex::default(),
        }
    }
}

impl MockScheduler {
    /// A fresh, globally unique id.
    pub fn alloc_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Region heartbeats received for one region.
    pub fn heartbeats_of(&self, region_id: u64) -> u64 {
        self.heartbeats_by_region
            .lock()
            .get(&region_id)
            .copied()
            .unwrap_or(0)
    }

    /// The approximate size the latest heartbeat of `region_id` reported, if any came.
    pub fn reported_size(&self, region_id: u64) -> Option<u64> {
        self.sizes.lock().get(&region_id).copied()
    }

    /// Every region the scheduler knows, newest copies.
    pub fn regions(&self) -> Vec<metapb::Region> {
        self.regions.lock().values().cloned().collect()
    }

    /// The leader last reported for a region.
    pub fn leader(&self, region_id: u64) -> Option<metapb::Peer> {
        self.leaders.lock().get(&region_id).copied()
    }

    /// The last heartbeat of a store.
    pub fn store(&self, store_id: u64) -> Option<StoreHeartbeat> {
        self.stores.lock().get(&store_id).cloned()
    }

    /// Schedules `op` for a region; it is handed to the leader until it is done.
    pub fn add_operator(&self, region_id: u64, op: Operator) {
        self.operators.lock().insert(region_id, op);
    }

    fn learn(&self, region: &metapb::Region) -> bool {
        let mut regions = self.regions.lock();
        if let Some(known) = regions.get(&region.id) {
            if is_epoch_stale(&epoch(region), &epoch(known)) {
                return false;
            }
        }
        // Drop older regions this one now covers (splits reported out of order).
        let ep = epoch(region);
        regions.retain(|id, r| {
            *id == region.id || !overlaps(r, region) || epoch(r).version > ep.version
        });
        regions.insert(region.id, region.clone());
        true
    }

    fn operator_done(op: &Operator, region: &metapb::Region, leader: &metapb::Peer) -> bool {
        match op {
            Operator::AddPeer(p) | Operator::AddLearner(p) => {
                region.peers.iter().any(|x| x.id == p.id)
            }
            Operator::RemovePeer(p) => !region.peers.iter().any(|x| x.id == p.id),
            Operator::TransferLeader(p) => leader.id == p.id,
            // The region keeps its id for the leftmost part.
            Operator::Split(keys) => keys
                .first()
                .is_some_and(|k| !region.end_key.is_empty() && region.end_key <= *k),
        }
    }
}

fn overlaps(a: &metapb::Region, b: &metapb::Region) -> bool {
    (a.end_key.is_empty() || b.start_key < a.end_key)
        && (b.end_key.is_empty() || a.start_key < b.end_key)
}

impl SchedulerClient for MockScheduler {
    fn ask_batch_split(&self, region: &metapb::Region, count: usize) -> Result<Vec<SplitIds>> {
        if let Some(known) = self.regions.lock().get(&region.id) {
            if is_epoch_stale(&epoch(region), &epoch(known)) {
                return Err(Error::EpochNotMatch(
                    "stale region asks to split".into(),
                    vec![known.clone()],
                ));
            }
        }
        self.split_asks.fetch_add(1, Ordering::Relaxed);
        Ok((0..count)
            .map(|_| SplitIds {
                new_region_id: self.alloc_id(),
                new_peer_ids: region.peers.iter().map(|_| self.alloc_id()).collect(),
            })
            .collect())
    }

    fn region_heartbeat(&self, hb: &RegionHeartbeat) -> Result<Option<Operator>> {
        self.region_heartbeats.fetch_add(1, Ordering::Relaxed);
        *self
            .heartbeats_by_region
            .lock()
            .entry(hb.region.id)
            .or_default() += 1;
        if !self.learn(&hb.region) {
            return Err(Error::Other(format!(
                "stale heartbeat of region {}",
                hb.region.id
            )));
        }
        self.leaders.lock().insert(hb.region.id, hb.leader);
        self.sizes.lock().insert(hb.region.id, hb.approximate_size);
        let mut ops = self.operators.lock();
        if let Some(op) = ops.get(&hb.region.id).cloned() {
            if Self::operator_done(&op, &hb.region, &hb.leader) {
                ops.remove(&hb.region.id);
                return Ok(None);
            }
            return Ok(Some(op));
        }
        Ok(None)
    }

    fn store_heartbeat(&self, hb: &StoreHeartbeat) -> Result<()> {
        self.stores.lock().insert(hb.store_id, hb.clone());
        Ok(())
    }

    fn report_batch_split(&self, regions: &[metapb::Region]) -> Result<()> {
        for r in regions {
            self.learn(r);
        }
        Ok(())
    }
}
