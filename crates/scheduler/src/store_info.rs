//! Stores: registration, heartbeats and the liveness/admin state machine.
//!
//! ```text
//!            no heartbeat for          no heartbeat for
//!            disconnect_after          down_after
//!     Up ─────────────────► Disconnected ─────────► Down
//!      ▲  ◄──────────────────────┴──────────────────┘
//!      │        any heartbeat
//!      │
//!      └─ (admin) ─► Offline ─(admin, once it holds no region)─► Tombstone
//! ```
//! Up, Disconnected and Down are not stored: they are derived from the time of the last
//! heartbeat whenever someone asks, so they cannot go stale and need no timer. Offline and
//! Tombstone are admin decisions, persisted in `metapb::Store::state`.
//!
//! This module knows nothing about regions: the per-store leader and region counts come
//! from the region index and are joined in by the cluster when it builds a [`StoreInfo`].

use std::collections::HashMap;

use proto::metapb;

use crate::{Error, Result};

/// A store holding fewer regions than this with more than [`LOW_SPACE_MIN_FREE`] bytes
/// free is never low on space, whatever its ratio (as PD does for a new cluster): a
/// fresh cluster on a big disk mostly filled by other files (a laptop, a CI machine)
/// would otherwise be refused its first replicas, while such a store is in no danger.
pub const LOW_SPACE_MIN_REGIONS: u64 = 50;
/// See [`LOW_SPACE_MIN_REGIONS`] (8 GiB).
pub const LOW_SPACE_MIN_FREE: u64 = 8 << 30;

/// Default time without a heartbeat before a store counts as disconnected (20 s).
pub const DEFAULT_DISCONNECT_AFTER_MS: u64 = 20_000;
/// Default time without a heartbeat before a store counts as down (30 min, as PD's
/// max-store-down-time): its replicas should then be rebuilt elsewhere.
pub const DEFAULT_DOWN_AFTER_MS: u64 = 30 * 60 * 1000;

/// Liveness thresholds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreConfig {
    /// Silence after which a store is [`StoreState::Disconnected`].
    pub disconnect_after_ms: u64,
    /// Silence after which a store is [`StoreState::Down`].
    pub down_after_ms: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            disconnect_after_ms: DEFAULT_DISCONNECT_AFTER_MS,
            down_after_ms: DEFAULT_DOWN_AFTER_MS,
        }
    }
}

/// A store's state as the scheduler sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StoreState {
    /// Heartbeating.
    Up,
    /// Silent for a short while; do not move data to it, do not give up on it.
    Disconnected,
    /// Silent for long; its replicas are lost for scheduling purposes.
    Down,
    /// Being drained by an admin; regions are moved away, none are moved to it.
    Offline,
    /// Removed for good.
    Tombstone,
}

/// What a store reports about itself in a heartbeat.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// The reporting store.
    pub store_id: u64,
    /// Disk capacity in bytes (0 if unknown).
    pub capacity: u64,
    /// Free bytes (0 if unknown).
    pub available: u64,
    /// Bytes used by the store's engines.
    pub used_size: u64,
    /// Regions the store says it hosts (the region index has the scheduler's own count).
    pub region_count: u64,
}

/// A snapshot of one store: metadata, liveness, its last report and what the region index
/// says it holds.
#[derive(Clone, Debug, PartialEq)]
pub struct StoreInfo {
    /// The store's metadata (address, labels, admin state).
    pub meta: metapb::Store,
    /// State at the time the snapshot was taken.
    pub state: StoreState,
    /// The last heartbeat's numbers (all zero before the first).
    pub stats: StoreStats,
    /// When the last heartbeat arrived, if one has since the scheduler started.
    pub last_heartbeat_ms: Option<u64>,
    /// Regions whose leader is on this store (from the region index).
    pub leader_count: u64,
    /// Regions with a peer of any role on this store (from the region index).
    pub region_count: u64,
    /// Peers on this store that their leaders report as pending.
    pub pending_peer_count: u64,
    /// Sum of the approximate sizes (bytes) of the regions it leads.
    pub leader_size: u64,
    /// Sum of the approximate sizes (bytes) of all regions it holds a peer of.
    pub region_size: u64,
}

impl StoreInfo {
    /// True when the store may receive new replicas or leaders.
    pub fn is_up(&self) -> bool {
        self.state == StoreState::Up
    }

    /// Share of the store's disk in use (`1 - available / capacity`, in 0..=1); `None`
    /// while the capacity is unknown (0: no heartbeat yet, or a store that cannot tell).
    pub fn used_ratio(&self) -> Option<f64> {
        let c = self.stats.capacity;
        if c == 0 {
            return None;
        }
        let available = self.stats.available.min(c);
        Some(1.0 - available as f64 / c as f64)
    }

    /// True when the store is low on space: more than `low_space_ratio` of its disk is in
    /// use (PD's `low-space-ratio`). Such a store receives no new replicas. A store of
    /// unknown capacity never is, nor one that holds few regions with gigabytes free (see
    /// [`LOW_SPACE_MIN_REGIONS`]).
    pub fn is_low_space(&self, low_space_ratio: f64) -> bool {
        let Some(used) = self.used_ratio() else {
            return false;
        };
        if self.region_count < LOW_SPACE_MIN_REGIONS && self.stats.available > LOW_SPACE_MIN_FREE {
            return false;
        }
        used > low_space_ratio
    }
}

/// What the registry keeps per store.
#[derive(Clone, Debug)]
struct Entry {
    meta: metapb::Store,
    stats: StoreStats,
    last_heartbeat_ms: Option<u64>,
    /// Reference point for liveness: the last heartbeat, or when the store was registered
    /// or loaded (a store that never heartbeats still becomes Disconnected, then Down, but
    /// a scheduler restart does not declare every store down at once).
    last_seen_ms: u64,
}

fn is_tombstone(store: &metapb::Store) -> bool {
    store.state == metapb::StoreState::Tombstone as i32
}

fn is_offline(store: &metapb::Store) -> bool {
    store.state == metapb::StoreState::Offline as i32
}

/// All known stores. Not synchronised; the cluster wraps it in a lock and persists
/// metadata changes before applying them here.
#[derive(Debug, Default)]
pub struct StoreRegistry {
    cfg: StoreConfig,
    stores: HashMap<u64, Entry>,
}

impl StoreRegistry {
    /// An empty registry.
    pub fn new(cfg: StoreConfig) -> StoreRegistry {
        StoreRegistry {
            cfg,
            stores: HashMap::new(),
        }
    }

    /// Number of stores, tombstones included.
    pub fn len(&self) -> usize {
        self.stores.len()
    }

    /// True when no store is known.
    pub fn is_empty(&self) -> bool {
        self.stores.is_empty()
    }

    /// The metadata of store `id`.
    pub fn meta(&self, id: u64) -> Option<&metapb::Store> {
        self.stores.get(&id).map(|e| &e.meta)
    }

    /// Checks a registration (or re-registration) of `store` and returns the metadata to
    /// save: the store as sent, but keeping an admin state set earlier (a restarting store
    /// re-registers as Up; that must not cancel an admin's Offline).
    pub fn prepare_put(&self, store: &metapb::Store) -> Result<metapb::Store> {
        if store.id == 0 {
            return Err(Error::InvalidArgument("store id 0".into()));
        }
        if is_tombstone(store) {
            return Err(Error::InvalidArgument(format!(
                "store {} registers as tombstone",
                store.id
            )));
        }
        if !store.address.is_empty() {
            let clash = self.stores.values().find(|e| {
                e.meta.id != store.id && e.meta.address == store.address && !is_tombstone(&e.meta)
            });
            if let Some(other) = clash {
                return Err(Error::InvalidArgument(format!(
                    "store {} has the address {:?} of store {}",
                    store.id, store.address, other.meta.id
                )));
            }
        }
        let mut meta = store.clone();
        if let Some(old) = self.stores.get(&store.id) {
            if is_tombstone(&old.meta) {
                return Err(Error::StoreTombstone(store.id));
            }
            meta.state = old.meta.state;
        }
        Ok(meta)
    }

    /// Inserts or replaces a store's metadata (already checked and saved), keeping its
    /// heartbeat history.
    pub fn put(&mut self, meta: metapb::Store, now_ms: u64) {
        match self.stores.get_mut(&meta.id) {
            Some(e) => e.meta = meta,
            None => {
                self.stores.insert(
                    meta.id,
                    Entry {
                        stats: StoreStats {
                            store_id: meta.id,
                            ..Default::default()
                        },
                        meta,
                        last_heartbeat_ms: None,
                        last_seen_ms: now_ms,
                    },
                );
            }
        }
    }

    /// Records a heartbeat; any heartbeat brings a Disconnected or Down store back Up.
    pub fn heartbeat(&mut self, stats: &StoreStats, now_ms: u64) -> Result<()> {
        let e = self
            .stores
            .get_mut(&stats.store_id)
            .ok_or(Error::StoreNotFound(stats.store_id))?;
        if is_tombstone(&e.meta) {
            return Err(Error::StoreTombstone(stats.store_id));
        }
        e.stats = stats.clone();
        e.last_heartbeat_ms = Some(now_ms);
        // max: a clock step back must not make the store look silent for longer.
        e.last_seen_ms = e.last_seen_ms.max(now_ms);
        Ok(())
    }

    /// The state of store `id` at `now_ms`.
    pub fn state(&self, id: u64, now_ms: u64) -> Option<StoreState> {
        self.stores.get(&id).map(|e| self.state_of(e, now_ms))
    }

    fn state_of(&self, e: &Entry, now_ms: u64) -> StoreState {
        if is_tombstone(&e.meta) {
            return StoreState::Tombstone;
        }
        if is_offline(&e.meta) {
            return StoreState::Offline;
        }
        let silent = now_ms.saturating_sub(e.last_seen_ms);
        if silent >= self.cfg.down_after_ms {
            StoreState::Down
        } else if silent >= self.cfg.disconnect_after_ms {
            StoreState::Disconnected
        } else {
            StoreState::Up
        }
    }

    /// The metadata to save to mark store `id` Offline (an admin starting to drain it).
    pub fn prepare_offline(&self, id: u64) -> Result<metapb::Store> {
        let e = self.stores.get(&id).ok_or(Error::StoreNotFound(id))?;
        if is_tombstone(&e.meta) {
            return Err(Error::StoreTombstone(id));
        }
        let mut meta = e.meta.clone();
        meta.state = metapb::StoreState::Offline as i32;
        Ok(meta)
    }

    /// The metadata to save to mark store `id` Tombstone. Only an Offline store that holds
    /// no region (`regions_on_store`, from the region index) may become one: a tombstone
    /// with data left on it would lose those replicas.
    pub fn prepare_tombstone(&self, id: u64, regions_on_store: u64) -> Result<metapb::Store> {
        let e = self.stores.get(&id).ok_or(Error::StoreNotFound(id))?;
        if is_tombstone(&e.meta) {
            return Err(Error::StoreTombstone(id));
        }
        if !is_offline(&e.meta) {
            return Err(Error::InvalidStoreState {
                store_id: id,
                reason: "only an offline store can become tombstone".into(),
            });
        }
        if regions_on_store > 0 {
            return Err(Error::InvalidStoreState {
                store_id: id,
                reason: format!("still holds {regions_on_store} regions"),
            });
        }
        let mut meta = e.meta.clone();
        meta.state = metapb::StoreState::Tombstone as i32;
        Ok(meta)
    }

    /// A snapshot of store `id`, with the region-derived counts left at zero for the
    /// caller to fill in.
    pub fn info(&self, id: u64, now_ms: u64) -> Option<StoreInfo> {
        let e = self.stores.get(&id)?;
        Some(StoreInfo {
            meta: e.meta.clone(),
            state: self.state_of(e, now_ms),
            stats: e.stats.clone(),
            last_heartbeat_ms: e.last_heartbeat_ms,
            leader_count: 0,
            region_count: 0,
            pending_peer_count: 0,
            leader_size: 0,
            region_size: 0,
        })
    }

    /// Ids of every store, in increasing order.
    pub fn ids(&self) -> Vec<u64> {
        let mut ids: Vec<u64> = self.stores.keys().copied().collect();
        ids.sort_unstable();
        ids
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(id: u64, addr: &str) -> metapb::Store {
        metapb::Store {
            id,
            address: addr.into(),
            ..Default::default()
        }
    }

    fn registry() -> StoreRegistry {
        StoreRegistry::new(StoreConfig {
            disconnect_after_ms: 20_000,
            down_after_ms: 60_000,
        })
    }

    fn put(r: &mut StoreRegistry, s: &metapb::Store, now: u64) {
        let meta = r.prepare_put(s).unwrap();
        r.put(meta, now);
    }

    fn hb(id: u64) -> StoreStats {
        StoreStats {
            store_id: id,
            capacity: 100,
            available: 60,
            used_size: 40,
            region_count: 3,
        }
    }

    #[test]
    fn silence_makes_a_store_disconnected_then_down_and_a_heartbeat_revives_it() {
        let mut r = registry();
        put(&mut r, &store(1, "a"), 1_000);
        assert_eq!(r.state(1, 1_000), Some(StoreState::Up));
        assert_eq!(r.state(1, 20_999), Some(StoreState::Up));
        assert_eq!(r.state(1, 21_000), Some(StoreState::Disconnected));
        assert_eq!(r.state(1, 61_000), Some(StoreState::Down));

        r.heartbeat(&hb(1), 100_000).unwrap();
        assert_eq!(r.state(1, 100_000), Some(StoreState::Up));
        let info = r.info(1, 100_000).unwrap();
        assert_eq!(info.stats, hb(1));
        assert_eq!(info.last_heartbeat_ms, Some(100_000));
        assert_eq!(r.state(1, 120_000), Some(StoreState::Disconnected));
        // A heartbeat stamped earlier (clock stepped back) does not age the store.
        r.heartbeat(&hb(1), 50_000).unwrap();
        assert_eq!(r.state(1, 100_000), Some(StoreState::Up));
        assert_eq!(r.state(2, 0), None);
    }

    #[test]
    fn low_space_follows_the_used_ratio_unless_capacity_is_unknown() {
        let mut r = registry();
        put(&mut r, &store(1, "a"), 0);
        let mut info = r.info(1, 0).unwrap();
        // Before any heartbeat the capacity is unknown: never low.
        assert_eq!(info.used_ratio(), None);
        assert!(!info.is_low_space(0.8));
        info.region_count = LOW_SPACE_MIN_REGIONS;
        let with = |info: &StoreInfo, capacity, available| {
            let mut i = info.clone();
            i.stats.capacity = capacity;
            i.stats.available = available;
            i
        };
        assert!(!with(&info, 100, 21).is_low_space(0.8));
        assert!(
            !with(&info, 100, 20).is_low_space(0.8),
            "exactly at the ratio"
        );
        assert!(with(&info, 100, 19).is_low_space(0.8));
        assert!(with(&info, 100, 0).is_low_space(0.8));
        // A report of more free space than capacity counts as an empty disk.
        assert_eq!(with(&info, 100, 500).used_ratio(), Some(0.0));
        // Few regions and gigabytes free: not low, even past the ratio ...
        let big = 100 * LOW_SPACE_MIN_FREE;
        info.region_count = LOW_SPACE_MIN_REGIONS - 1;
        assert!(!with(&info, big, 2 * LOW_SPACE_MIN_FREE).is_low_space(0.8));
        // ... but few regions and little free space is low ...
        assert!(with(&info, 100, 10).is_low_space(0.8));
        // ... and so is a store that already holds many regions.
        info.region_count = LOW_SPACE_MIN_REGIONS;
        assert!(with(&info, big, 2 * LOW_SPACE_MIN_FREE).is_low_space(0.8));
    }

    #[test]
    fn offline_then_tombstone_only_when_empty() {
        let mut r = registry();
        put(&mut r, &store(1, "a"), 0);
        assert!(matches!(
            r.prepare_tombstone(1, 0),
            Err(Error::InvalidStoreState { .. })
        ));
        let off = r.prepare_offline(1).unwrap();
        r.put(off, 0);
        assert_eq!(r.state(1, 0), Some(StoreState::Offline));
        // Heartbeats keep coming while draining; the store stays Offline.
        r.heartbeat(&hb(1), 10).unwrap();
        assert_eq!(r.state(1, 10), Some(StoreState::Offline));
        // Re-registering (a store restart) does not cancel the admin's decision.
        put(&mut r, &store(1, "a"), 20);
        assert_eq!(r.state(1, 20), Some(StoreState::Offline));

        assert!(matches!(
            r.prepare_tombstone(1, 2),
            Err(Error::InvalidStoreState { .. })
        ));
        let tomb = r.prepare_tombstone(1, 0).unwrap();
        r.put(tomb, 30);
        assert_eq!(r.state(1, 30), Some(StoreState::Tombstone));
        assert!(matches!(
            r.heartbeat(&hb(1), 40),
            Err(Error::StoreTombstone(1))
        ));
        assert!(matches!(
            r.prepare_put(&store(1, "a")),
            Err(Error::StoreTombstone(1))
        ));
        assert!(matches!(
            r.prepare_offline(1),
            Err(Error::StoreTombstone(1))
        ));
    }

    #[test]
    fn bad_registrations_are_rejected() {
        let mut r = registry();
        put(&mut r, &store(1, "a"), 0);
        assert!(matches!(
            r.prepare_put(&store(0, "z")),
            Err(Error::InvalidArgument(_))
        ));
        assert!(matches!(
            r.prepare_put(&store(2, "a")),
            Err(Error::InvalidArgument(_))
        ));
        let mut tomb = store(3, "c");
        tomb.state = metapb::StoreState::Tombstone as i32;
        assert!(matches!(
            r.prepare_put(&tomb),
            Err(Error::InvalidArgument(_))
        ));
        assert!(matches!(
            r.heartbeat(&hb(9), 0),
            Err(Error::StoreNotFound(9))
        ));
        // Same store, new address: allowed.
        put(&mut r, &store(1, "a2"), 0);
        assert_eq!(r.meta(1).unwrap().address, "a2");
        assert_eq!(r.ids(), vec![1]);
    }
}
