//! [`SchedulerCluster`]: ids, timestamps, stores and regions behind one thread-safe handle.
//!
//! Locking: stores and regions each sit behind their own `RwLock`, so store heartbeats and
//! region heartbeats do not wait for each other. Only bootstrap and
//! [`SchedulerCluster::set_store_tombstone`] hold both, and always take stores first, then
//! regions; nothing else nests them, so there is no deadlock. Metadata is persisted while the lock is held, before memory changes: two
//! updates of the same region then reach the disk in the order they reached memory, and a
//! failed write leaves memory as it was (the caller gets the error and retries).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::{RwLock, RwLockReadGuard};
use proto::metapb;
use rand::Rng;

use crate::clock::Clock;
use crate::id::{IdAllocator, DEFAULT_ID_STEP};
use crate::meta_store::MetaStore;
use crate::region_tree::{HeartbeatOutcome, RegionInfo, RegionTree};
use crate::store_info::{StoreConfig, StoreInfo, StoreRegistry, StoreStats};
use crate::tso::{Tso, DEFAULT_SAVE_INTERVAL_MS};
use crate::{Error, Result};

/// Most regions one split request may ask ids for; bounds the work a bad request causes.
pub const MAX_SPLIT_COUNT: usize = 1000;

/// Cluster-wide settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterConfig {
    /// Ids per saved id window.
    pub id_step: u64,
    /// How far ahead (ms) each saved TSO limit reaches.
    pub tso_save_interval_ms: u64,
    /// Store liveness thresholds.
    pub store: StoreConfig,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            id_step: DEFAULT_ID_STEP,
            tso_save_interval_ms: DEFAULT_SAVE_INTERVAL_MS,
            store: StoreConfig::default(),
        }
    }
}

/// Ids for one new region of a split: the region id and one peer id per peer of the
/// region being split, in the same order (what the store's split needs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SplitIds {
    /// Id of the new region.
    pub new_region_id: u64,
    /// Peer ids, one per peer of the region being split, in its peer order.
    pub new_peer_ids: Vec<u64>,
}

/// The placement driver's view of the cluster.
pub struct SchedulerCluster {
    meta: MetaStore,
    clock: Arc<dyn Clock>,
    cluster_id: u64,
    bootstrapped: AtomicBool,
    ids: IdAllocator,
    tso: Tso,
    stores: RwLock<StoreRegistry>,
    regions: RwLock<RegionTree>,
    /// Guards the GC safe point's read-compare-save so concurrent updates cannot move it back.
    gc_safe_point: parking_lot::Mutex<u64>,
    /// Recent operators and traffic, for the dashboard (bounded; not persisted).
    history: crate::history::History,
}

impl std::fmt::Debug for SchedulerCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchedulerCluster")
            .field("cluster_id", &self.cluster_id)
            .field("bootstrapped", &self.is_bootstrapped())
            .field("stores", &self.stores.read().len())
            .field("regions", &self.regions.read().len())
            .finish()
    }
}

impl SchedulerCluster {
    /// Opens the cluster over `meta`, recovering whatever a previous run saved: cluster
    /// id, id and TSO windows, stores and regions (regions come back without leaders or
    /// sizes until their leaders heartbeat). A fresh `meta` gets a new random cluster id.
    pub fn open(meta: MetaStore, clock: Arc<dyn Clock>, cfg: ClusterConfig) -> Result<Self> {
        let cluster_id = match meta.load_cluster_id()? {
            Some(id) => id,
            None => {
                // Time in the high bits keeps ids of clusters made on one machine apart;
                // random low bits keep apart those made in the same second.
                let id =
                    ((clock.now_ms() / 1000) << 32) | u64::from(rand::thread_rng().gen::<u32>());
                let id = id.max(1);
                meta.save_cluster_id(id)?;
                id
            }
        };
        let ids = IdAllocator::open(meta.clone(), cfg.id_step)?;
        let tso = Tso::open(meta.clone(), clock.clone(), cfg.tso_save_interval_ms)?;
        let now = clock.now_ms();
        let mut stores = StoreRegistry::new(cfg.store.clone());
        for s in meta.load_stores()? {
            stores.put(s, now);
        }
        let mut regions = RegionTree::new();
        for r in meta.load_regions()? {
            // Saved regions never overlap (replaced ones are deleted in the same batch);
            // if they do, the metadata is damaged and silently dropping one would hide it.
            let info = RegionInfo::new(r);
            let corrupt =
                |why: String| Error::Corrupt(format!("saved region {}: {why}", info.id()));
            match regions.check(&info).map_err(|e| corrupt(e.to_string()))? {
                HeartbeatOutcome::MetaUpdated { replaced } if !replaced.is_empty() => {
                    return Err(corrupt(format!("overlaps saved regions {replaced:?}")));
                }
                _ => {}
            }
            regions.put(info);
        }
        let gc_safe_point = parking_lot::Mutex::new(meta.load_gc_safe_point()?.unwrap_or(0));
        Ok(SchedulerCluster {
            gc_safe_point,
            bootstrapped: AtomicBool::new(meta.is_bootstrapped()?),
            meta,
            clock,
            cluster_id,
            ids,
            tso,
            stores: RwLock::new(stores),
            regions: RwLock::new(regions),
            history: crate::history::History::new(),
        })
    }

    /// Recent operators and traffic (see [`crate::history`]).
    pub fn history(&self) -> &crate::history::History {
        &self.history
    }

    /// The time on the cluster's clock (ms), for callers that must agree with it
    /// (operator timeouts, store liveness).
    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    /// The cluster id.
    pub fn cluster_id(&self) -> u64 {
        self.cluster_id
    }

    /// True once [`SchedulerCluster::bootstrap`] has succeeded (in this run or before).
    pub fn is_bootstrapped(&self) -> bool {
        self.bootstrapped.load(Ordering::Acquire)
    }

    fn ensure_bootstrapped(&self) -> Result<()> {
        if self.is_bootstrapped() {
            Ok(())
        } else {
            Err(Error::NotBootstrapped)
        }
    }

    /// Bootstraps the cluster with its first store and first region (which must have a
    /// peer on that store). The ids they use are reserved, so the allocator never hands
    /// them out again.
    pub fn bootstrap(&self, store: metapb::Store, region: metapb::Region) -> Result<()> {
        let mut stores = self.stores.write();
        let mut regions = self.regions.write();
        if self.is_bootstrapped() {
            return Err(Error::AlreadyBootstrapped);
        }
        let store = stores.prepare_put(&store)?;
        let info = RegionInfo::new(region);
        crate::region_tree::validate(&info)?;
        if info.peer_on_store(store.id).is_none() {
            return Err(Error::InvalidArgument(format!(
                "first region {} has no peer on store {}",
                info.id(),
                store.id
            )));
        }
        let max_id = info
            .region
            .peers
            .iter()
            .map(|p| p.id)
            .chain([store.id, info.id()])
            .max()
            .unwrap_or(0);
        self.ids.ensure_above(max_id)?;
        self.meta.save_bootstrap(&store, &info.region)?;
        stores.put(store, self.clock.now_ms());
        regions.put(info);
        self.bootstrapped.store(true, Ordering::Release);
        Ok(())
    }

    /// Makes every later id greater than `id`: for ids a store chose itself before the
    /// scheduler knew about them (a cluster bootstrapped with several regions).
    pub fn ensure_id_above(&self, id: u64) -> Result<()> {
        self.ids.ensure_above(id)
    }

    /// The GC safe point: versions older than it may be collected.
    pub fn gc_safe_point(&self) -> u64 {
        *self.gc_safe_point.lock()
    }

    /// Moves the GC safe point to `safe_point` if that is later, saves it, and returns the
    /// safe point now in force. It never moves back: data below it may already be gone, so
    /// going back would promise readers versions that no longer exist.
    pub fn update_gc_safe_point(&self, safe_point: u64) -> Result<u64> {
        let mut cur = self.gc_safe_point.lock();
        if safe_point > *cur {
            self.meta.save_gc_safe_point(safe_point)?;
            *cur = safe_point;
        }
        Ok(*cur)
    }

    /// A new unique id.
    pub fn alloc_id(&self) -> Result<u64> {
        self.ids.alloc()
    }

    /// Reserves `count` timestamps and returns the last (see [`Tso::get`]).
    pub fn tso(&self, count: u32) -> Result<u64> {
        self.tso.get(count)
    }

    /// Registers a store, or updates its address and labels (an admin state set earlier
    /// is kept).
    pub fn put_store(&self, store: metapb::Store) -> Result<()> {
        self.ensure_bootstrapped()?;
        let mut stores = self.stores.write();
        let meta = stores.prepare_put(&store)?;
        self.meta.save_store(&meta)?;
        stores.put(meta, self.clock.now_ms());
        Ok(())
    }

    /// Store `id` with its state, last report, and counts from the region index.
    pub fn get_store(&self, id: u64) -> Option<StoreInfo> {
        let now = self.clock.now_ms();
        let info = self.stores.read().info(id, now)?;
        Some(self.with_region_stats(info))
    }

    /// Every store (tombstones included), in id order.
    pub fn all_stores(&self) -> Vec<StoreInfo> {
        let now = self.clock.now_ms();
        let infos: Vec<StoreInfo> = {
            let stores = self.stores.read();
            stores
                .ids()
                .into_iter()
                .filter_map(|id| stores.info(id, now))
                .collect()
        };
        infos
            .into_iter()
            .map(|i| self.with_region_stats(i))
            .collect()
    }

    fn with_region_stats(&self, mut info: StoreInfo) -> StoreInfo {
        let stats = self.regions.read().store_stats(info.meta.id);
        info.leader_count = stats.leader_count;
        info.region_count = stats.region_count;
        info.pending_peer_count = stats.pending_peer_count;
        info.leader_size = stats.leader_size;
        info.region_size = stats.region_size;
        info
    }

    /// Records a store heartbeat.
    pub fn store_heartbeat(&self, stats: &StoreStats) -> Result<()> {
        self.ensure_bootstrapped()?;
        self.stores.write().heartbeat(stats, self.clock.now_ms())
    }

    /// Starts draining store `id` (admin).
    pub fn set_store_offline(&self, id: u64) -> Result<()> {
        let mut stores = self.stores.write();
        let meta = stores.prepare_offline(id)?;
        self.meta.save_store(&meta)?;
        stores.put(meta, self.clock.now_ms());
        Ok(())
    }

    /// Removes an offline store that holds no region any more (admin).
    pub fn set_store_tombstone(&self, id: u64) -> Result<()> {
        let mut stores = self.stores.write();
        // Read under the stores lock: no heartbeat can register the store meanwhile, and
        // a region moving onto an Offline store is a scheduler bug, not a race to close.
        let held = self.regions.read().store_stats(id).region_count;
        let meta = stores.prepare_tombstone(id, held)?;
        self.meta.save_store(&meta)?;
        stores.put(meta, self.clock.now_ms());
        Ok(())
    }

    /// Processes a region heartbeat: rejects it if stale, persists metadata changes, then
    /// updates the index.
    pub fn region_heartbeat(&self, info: RegionInfo) -> Result<HeartbeatOutcome> {
        self.ensure_bootstrapped()?;
        let mut regions = self.regions.write();
        let outcome = regions.check(&info)?;
        match &outcome {
            HeartbeatOutcome::Unchanged => return Ok(outcome),
            HeartbeatOutcome::StatsUpdated => {}
            HeartbeatOutcome::MetaUpdated { replaced } => {
                self.meta.save_region(&info.region, replaced)?;
            }
        }
        let removed = regions.put(info);
        if !removed.is_empty() {
            tracing::debug!(
                removed = ?removed.iter().map(|r| r.id()).collect::<Vec<_>>(),
                "region heartbeat replaced overlapped regions"
            );
        }
        Ok(outcome)
    }

    /// Allocates ids for `count` new regions split off `region`. Refused when the
    /// scheduler knows a newer epoch of the region, or a newer region overlapping it: the
    /// split would be rejected by the store anyway. A region the scheduler has not heard
    /// of yet is allowed (a region fresh from a split may want to split again before its
    /// first heartbeat); the overlap rule still catches an outdated one.
    pub fn ask_batch_split(&self, region: &metapb::Region, count: usize) -> Result<Vec<SplitIds>> {
        self.ensure_bootstrapped()?;
        if count == 0 || count > MAX_SPLIT_COUNT {
            return Err(Error::InvalidArgument(format!(
                "split count {count} is not in 1..={MAX_SPLIT_COUNT}"
            )));
        }
        crate::region_tree::validate(&RegionInfo::new(region.clone()))?;
        self.regions.read().check_stale(region)?;
        let mut out = Vec::with_capacity(count);
        for _ in 0..count {
            let new_region_id = self.ids.alloc()?;
            let n = region.peers.len() as u64;
            let first = self.ids.alloc_many(n)?;
            out.push(SplitIds {
                new_region_id,
                new_peer_ids: (first..first + n).collect(),
            });
        }
        Ok(out)
    }

    /// Learns the regions a batch split produced, all at once, so no key range is left
    /// uncovered until each new region's leader heartbeats. Each region keeps the leader
    /// known for its id if that peer is still a member; sizes come with the next heartbeat.
    /// Applied one by one with the heartbeat rules; the first error is returned.
    pub fn report_batch_split(&self, regions: &[metapb::Region]) -> Result<()> {
        self.ensure_bootstrapped()?;
        for pair in regions.windows(2) {
            if pair[0].end_key != pair[1].start_key {
                return Err(Error::InvalidArgument(format!(
                    "split regions {} and {} are not adjacent",
                    pair[0].id, pair[1].id
                )));
            }
        }
        let mut first_err = None;
        for r in regions {
            let mut info = RegionInfo::new(r.clone());
            if let Some(known) = self.regions.read().get(r.id) {
                info.leader = known
                    .leader
                    .filter(|l| r.peers.iter().any(|p| p.id == l.id));
                info.approximate_size = known.approximate_size;
                info.approximate_keys = known.approximate_keys;
            }
            if let Err(e) = self.region_heartbeat(info) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Read access to the region index, for queries that need a consistent view of
    /// several regions (schedulers). Heartbeats wait while the guard is held: keep it short.
    pub fn regions(&self) -> RwLockReadGuard<'_, RegionTree> {
        self.regions.read()
    }

    /// The region containing `key`.
    pub fn get_region(&self, key: &[u8]) -> Option<RegionInfo> {
        self.regions.read().get_by_key(key).cloned()
    }

    /// The region right before the one containing `key`, if adjacent.
    pub fn get_prev_region(&self, key: &[u8]) -> Option<RegionInfo> {
        self.regions.read().get_prev(key).cloned()
    }

    /// The region with id `id`.
    pub fn get_region_by_id(&self, id: u64) -> Option<RegionInfo> {
        self.regions.read().get(id).cloned()
    }

    /// Up to `limit` regions (0 = all) overlapping `[start, end)`, in key order.
    pub fn scan_regions(&self, start: &[u8], end: &[u8], limit: usize) -> Vec<RegionInfo> {
        self.regions
            .read()
            .scan(start, end, limit)
            .into_iter()
            .cloned()
            .collect()
    }

    /// Number of known regions.
    pub fn region_count(&self) -> usize {
        self.regions.read().len()
    }
}
