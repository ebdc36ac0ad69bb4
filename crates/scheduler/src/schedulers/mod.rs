//! Schedulers: checkers and balancers that look at a snapshot of the cluster and propose
//! [`Operator`]s.
//!
//! Every scheduler implements [`Scheduler`] and sees the cluster through a
//! [`ClusterView`]: the region index, a snapshot of every store (with its counts from the
//! index), the time, and the regions that already have an operator in flight (which it
//! must leave alone). The [`crate::coordinator::Coordinator`] runs them, repair first,
//! with per-scheduler rate limits ([`SchedulerLimits`]).

use std::collections::HashSet;

use proto::metapb;
use rand::RngCore;

use crate::operator::Operator;
use crate::region_tree::{RegionInfo, RegionTree};
use crate::store_info::{StoreInfo, StoreState};
use crate::Result;

pub mod balance_leader;
pub mod balance_region;
pub mod replica_checker;

pub use balance_leader::BalanceLeaderScheduler;
pub use balance_region::BalanceRegionScheduler;
pub use replica_checker::ReplicaChecker;

/// Default number of voters each region should have.
pub const DEFAULT_MAX_REPLICAS: usize = 3;

/// Default [`ScheduleConfig::low_space_ratio`] (PD's `low-space-ratio`).
pub const DEFAULT_LOW_SPACE_RATIO: f64 = 0.8;
/// Default [`ScheduleConfig::high_space_ratio`] (PD's `high-space-ratio`).
pub const DEFAULT_HIGH_SPACE_RATIO: f64 = 0.7;

/// Settings shared by the schedulers.
#[derive(Clone, Debug, PartialEq)]
pub struct ScheduleConfig {
    /// Voters each region should have.
    pub max_replicas: usize,
    /// Balance-leader moves a leader only when the source leads more than this many
    /// regions above the target (1: a move must not just swap which store has one extra).
    pub leader_tolerance: u64,
    /// A store with more than this share of its disk in use is low on space
    /// ([`StoreInfo::is_low_space`]): the replica checker and balance-region place no new
    /// replica on it, and balance-region scores it as needing to shed regions.
    pub low_space_ratio: f64,
    /// Below this share of its disk in use a store has space to spare and balance-region
    /// compares region sizes alone; from here to `low_space_ratio` its score grows
    /// steeply (see [`balance_region`]).
    pub high_space_ratio: f64,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        ScheduleConfig {
            max_replicas: DEFAULT_MAX_REPLICAS,
            leader_tolerance: 1,
            low_space_ratio: DEFAULT_LOW_SPACE_RATIO,
            high_space_ratio: DEFAULT_HIGH_SPACE_RATIO,
        }
    }
}

impl ScheduleConfig {
    /// Checks the space ratios: `0 < high_space_ratio < low_space_ratio <= 1`.
    pub fn validate(&self) -> std::result::Result<(), String> {
        let (h, l) = (self.high_space_ratio, self.low_space_ratio);
        if !(h > 0.0 && h < l && l <= 1.0) {
            return Err(format!(
                "high_space_ratio ({h}) must be above 0 and below low_space_ratio ({l}), \
                 which must be at most 1"
            ));
        }
        Ok(())
    }
}

/// How often one scheduler may produce operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SchedulerLimits {
    /// Least time between two operators of this scheduler (0: no gap).
    pub min_interval_ms: u64,
    /// Most operators it may produce in one coordinator tick.
    pub max_per_tick: usize,
}

/// What a scheduler sees.
pub struct ClusterView<'a> {
    /// The region index.
    pub regions: &'a RegionTree,
    /// Every store, with counts and sizes from `regions`, in id order.
    pub stores: Vec<StoreInfo>,
    /// The time of the snapshot (ms).
    pub now_ms: u64,
    /// Regions with an operator in flight: not to be touched.
    pub busy: HashSet<u64>,
    ids: &'a dyn Fn() -> Result<u64>,
}

impl std::fmt::Debug for ClusterView<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterView")
            .field("regions", &self.regions.len())
            .field("stores", &self.stores.len())
            .field("now_ms", &self.now_ms)
            .field("busy", &self.busy.len())
            .finish()
    }
}

impl<'a> ClusterView<'a> {
    /// A view over `regions` and `stores`; `ids` hands out new peer ids.
    pub fn new(
        regions: &'a RegionTree,
        stores: Vec<StoreInfo>,
        now_ms: u64,
        busy: HashSet<u64>,
        ids: &'a dyn Fn() -> Result<u64>,
    ) -> Self {
        ClusterView {
            regions,
            stores,
            now_ms,
            busy,
            ids,
        }
    }

    /// Store `id`, if known.
    pub fn store(&self, id: u64) -> Option<&StoreInfo> {
        self.stores.iter().find(|s| s.meta.id == id)
    }

    /// The state of store `id`; an unknown store counts as Tombstone (its replicas are as
    /// good as gone).
    pub fn store_state(&self, id: u64) -> StoreState {
        self.store(id).map_or(StoreState::Tombstone, |s| s.state)
    }

    /// A new voter on `store_id` with a fresh id, or `None` when no id can be had (the
    /// scheduler then proposes nothing this round rather than failing).
    pub fn new_peer(&self, store_id: u64) -> Option<metapb::Peer> {
        match (self.ids)() {
            Ok(id) => Some(metapb::Peer {
                id,
                store_id,
                ..Default::default()
            }),
            Err(e) => {
                tracing::warn!(error = %e, "no id for a new peer");
                None
            }
        }
    }

    /// The Up store without a peer of `region` and not low on space (by
    /// `low_space_ratio`) that holds the fewest regions (then the smallest id, so the
    /// choice is reproducible). `None` when every candidate is full: the region then
    /// waits rather than filling a disk.
    pub fn emptiest_target(&self, region: &RegionInfo, low_space_ratio: f64) -> Option<&StoreInfo> {
        self.stores
            .iter()
            .filter(|s| s.is_up() && region.peer_on_store(s.meta.id).is_none())
            .filter(|s| !s.is_low_space(low_space_ratio))
            .min_by_key(|s| (s.region_count, s.meta.id))
    }
}

/// Store states whose replicas must be rebuilt elsewhere. Disconnected is not among them:
/// it is a short silence by definition, and rebuilding on every blip would churn data.
pub fn is_lost(state: StoreState) -> bool {
    matches!(
        state,
        StoreState::Down | StoreState::Offline | StoreState::Tombstone
    )
}

/// True for peers that vote (learners are not replicas for durability).
pub fn is_voter(p: &metapb::Peer) -> bool {
    p.role != metapb::PeerRole::Learner as i32
}

/// Something that proposes operators.
pub trait Scheduler: Send {
    /// A short stable name (used in operator descriptions and logs).
    fn name(&self) -> &str;

    /// One operator to run next, or `None` when nothing is worth doing now.
    fn schedule(&mut self, view: &ClusterView<'_>, rng: &mut dyn RngCore) -> Option<Operator>;

    /// Default limits for this scheduler.
    fn default_limits(&self) -> SchedulerLimits {
        SchedulerLimits {
            min_interval_ms: 0,
            max_per_tick: 1,
        }
    }
}

/// Helpers for the schedulers' unit tests: build stores and regions without a cluster.
#[cfg(test)]
pub(crate) mod test_util {
    use std::cell::Cell;

    use super::*;
    use crate::store_info::StoreStats;

    pub const MIB: u64 = 1 << 20;

    pub fn peer(id: u64, store_id: u64) -> metapb::Peer {
        metapb::Peer {
            id,
            store_id,
            ..Default::default()
        }
    }

    /// Region `id` over its own key range, with peers `(peer id, store)`, the first leading.
    pub fn region(id: u64, peers: &[(u64, u64)], size: u64) -> RegionInfo {
        let peers: Vec<_> = peers.iter().map(|&(p, s)| peer(p, s)).collect();
        RegionInfo {
            leader: peers.first().copied(),
            region: metapb::Region {
                id,
                start_key: format!("k{id:06}").into_bytes(),
                end_key: format!("k{id:06}~").into_bytes(),
                region_epoch: Some(metapb::RegionEpoch {
                    conf_ver: 1,
                    version: 1,
                }),
                peers,
                ..Default::default()
            },
            approximate_size: size,
            approximate_keys: 1,
            pending_peers: vec![],
        }
    }

    /// A store snapshot with counts from `tree`.
    pub fn store(id: u64, state: StoreState, tree: &RegionTree) -> StoreInfo {
        let st = tree.store_stats(id);
        StoreInfo {
            meta: metapb::Store {
                id,
                ..Default::default()
            },
            state,
            stats: StoreStats::default(),
            last_heartbeat_ms: Some(0),
            leader_count: st.leader_count,
            region_count: st.region_count,
            pending_peer_count: st.pending_peer_count,
            leader_size: st.leader_size,
            region_size: st.region_size,
        }
    }

    /// `store` reporting a disk of `capacity` bytes with `available` free.
    pub fn with_space(mut store: StoreInfo, capacity: u64, available: u64) -> StoreInfo {
        store.stats.capacity = capacity;
        store.stats.available = available;
        store
    }

    /// Hands out ids from 1000 up.
    pub fn ids() -> impl Fn() -> Result<u64> {
        let next = Cell::new(1000);
        move || {
            let id = next.get();
            next.set(id + 1);
            Ok(id)
        }
    }

    /// A view where every listed store has `state` given by `states`.
    pub fn view<'a>(
        tree: &'a RegionTree,
        states: &[(u64, StoreState)],
        ids: &'a dyn Fn() -> Result<u64>,
    ) -> ClusterView<'a> {
        let stores = states.iter().map(|&(id, s)| store(id, s, tree)).collect();
        ClusterView::new(tree, stores, 0, HashSet::new(), ids)
    }

    pub fn tree(regions: Vec<RegionInfo>) -> RegionTree {
        let mut t = RegionTree::new();
        for r in regions {
            t.put(r);
        }
        t
    }

    pub fn up(ids: &[u64]) -> Vec<(u64, StoreState)> {
        ids.iter().map(|&i| (i, StoreState::Up)).collect()
    }
}
