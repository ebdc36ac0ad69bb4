//! Balance-region: moves replicas from the store with the most region data to the one
//! with the least (the TinyKV 3C rules).
//!
//! * Candidate stores are the Up ones (Up already means "heard from recently"; a store
//!   silent longer than the disconnect threshold is neither source nor target).
//! * Sources are tried by region size, largest first. On a source, a random region is
//!   picked: first one whose peer there is pending (it is behind anyway, moving it costs
//!   least), then a follower, then a leader. Regions with fewer voters than
//!   `max_replicas` are skipped: the replica checker must repair them first.
//! * The target is the candidate store with the smallest region size that holds no peer of
//!   the region.
//! * The move happens only if `source size - target size > 2 * region size`: otherwise
//!   the move would just swap which store is bigger and the next round would move it back.

use rand::RngCore;

use super::{is_voter, ClusterView, ScheduleConfig, Scheduler, SchedulerLimits};
use crate::operator::Operator;
use crate::region_tree::{PeerKind, RegionInfo};
use crate::store_info::{StoreInfo, StoreState};

/// Name used in operator descriptions.
pub const NAME: &str = "balance-region";

/// Random picks per store and peer kind before giving up on that kind (busy regions and
/// regions without a target are retried with another pick).
const PICKS_PER_KIND: usize = 10;

/// See the module docs.
#[derive(Debug)]
pub struct BalanceRegionScheduler {
    cfg: ScheduleConfig,
}

impl BalanceRegionScheduler {
    /// A scheduler with `cfg`.
    pub fn new(cfg: ScheduleConfig) -> BalanceRegionScheduler {
        BalanceRegionScheduler { cfg }
    }

    fn try_region(
        &self,
        view: &ClusterView<'_>,
        candidates: &[&StoreInfo],
        source: &StoreInfo,
        region: &RegionInfo,
    ) -> Option<Operator> {
        if view.busy.contains(&region.id()) {
            return None;
        }
        let voters = region.region.peers.iter().filter(|p| is_voter(p)).count();
        if voters < self.cfg.max_replicas {
            return None;
        }
        // A region with a replica on a store that is not up is the replica checker's to
        // repair first; moving it meanwhile could leave it without a quorum.
        if region
            .region
            .peers
            .iter()
            .any(|p| view.store_state(p.store_id) != StoreState::Up)
        {
            return None;
        }
        let old = *region.peer_on_store(source.meta.id)?;
        let target = candidates
            .iter()
            .filter(|s| region.peer_on_store(s.meta.id).is_none())
            .min_by_key(|s| (s.region_size, s.meta.id))?;
        let gap = source.region_size.saturating_sub(target.region_size);
        if gap <= region.approximate_size.saturating_mul(2) {
            return None;
        }
        let new = view.new_peer(target.meta.id)?;
        Some(Operator::move_peer(NAME, region, old, new, view.now_ms))
    }
}

impl Scheduler for BalanceRegionScheduler {
    fn name(&self) -> &str {
        NAME
    }

    fn schedule(&mut self, view: &ClusterView<'_>, rng: &mut dyn RngCore) -> Option<Operator> {
        let mut candidates: Vec<&StoreInfo> = view.stores.iter().filter(|s| s.is_up()).collect();
        if candidates.len() < 2 {
            return None;
        }
        candidates.sort_by_key(|s| (std::cmp::Reverse(s.region_size), s.meta.id));
        for source in &candidates {
            for kind in [PeerKind::Pending, PeerKind::Follower, PeerKind::Leader] {
                for _ in 0..PICKS_PER_KIND {
                    let Some(region) = view.regions.random_region(source.meta.id, kind, rng) else {
                        break;
                    };
                    if let Some(op) = self.try_region(view, &candidates, source, region) {
                        return Some(op);
                    }
                }
            }
        }
        None
    }

    fn default_limits(&self) -> SchedulerLimits {
        // Store sizes only change when heartbeats show a move done; one move per tick
        // keeps the scheduler from piling moves onto the same target on stale numbers.
        SchedulerLimits {
            min_interval_ms: 0,
            max_per_tick: 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    use super::super::test_util::*;
    use super::*;
    use crate::operator::OpStep;
    use crate::store_info::StoreState;
    use crate::RegionTree;

    fn run(t: &RegionTree, states: &[(u64, StoreState)], max: usize) -> Option<Operator> {
        let ids = ids();
        let v = view(t, states, &ids);
        let mut s = BalanceRegionScheduler::new(ScheduleConfig {
            max_replicas: max,
            ..Default::default()
        });
        s.schedule(&v, &mut StdRng::seed_from_u64(7))
    }

    /// `n` regions of `size` with peers on `stores` (leader on the first).
    fn regions_on(first_id: u64, n: u64, stores: &[u64], size: u64) -> Vec<RegionInfo> {
        (first_id..first_id + n)
            .map(|id| {
                let peers: Vec<(u64, u64)> = stores.iter().map(|&s| (id * 10 + s, s)).collect();
                region(id, &peers, size)
            })
            .collect()
    }

    #[test]
    fn one_replica_moves_from_full_to_empty_store() {
        let t = tree(regions_on(1, 10, &[1], MIB));
        let op = run(&t, &up(&[1, 2]), 1).expect("10 MiB vs 0 must move");
        assert_eq!(op.steps.len(), 2);
        assert_eq!(op.steps[0], OpStep::AddPeer(peer(1000, 2)));
        assert!(matches!(op.steps[1], OpStep::RemovePeer(p) if p.store_id == 1));
        // With max_replicas 3 the 1-peer regions are not moved (repair comes first).
        assert!(run(&t, &up(&[1, 2]), 3).is_none());
    }

    #[test]
    fn three_replicas_target_is_the_store_without_the_region() {
        // Stores 1-3 hold all regions; store 4 is empty and the only valid target.
        let t = tree(regions_on(1, 10, &[1, 2, 3], MIB));
        let op = run(&t, &up(&[1, 2, 3, 4]), 3).unwrap();
        let OpStep::AddPeer(p) = op.steps[0] else {
            panic!("first step adds")
        };
        assert_eq!(p.store_id, 4);
        let region = t.get(op.region_id).unwrap();
        assert!(region.peer_on_store(4).is_none());
    }

    #[test]
    fn five_replicas_on_five_stores_cannot_move() {
        let mut regions = regions_on(1, 10, &[1, 2, 3, 4, 5], MIB);
        // Unequal sizes would tempt a move, but every store holds every region.
        regions.extend(regions_on(20, 1, &[1, 2, 3, 4, 5], 50 * MIB));
        let t = tree(regions);
        assert!(run(&t, &up(&[1, 2, 3, 4, 5]), 5).is_none());
        // A sixth empty store makes moves possible again.
        assert!(run(&t, &up(&[1, 2, 3, 4, 5, 6]), 5).is_some());
    }

    #[test]
    fn size_gap_must_exceed_twice_region_size() {
        // Store 1: 3 regions of 10 MiB = 30 MiB; store 2: 1 region = 10 MiB. Gap 20 = 2x.
        let mut regions = regions_on(1, 3, &[1], 10 * MIB);
        regions.extend(regions_on(10, 1, &[2], 10 * MIB));
        let t = tree(regions.clone());
        assert!(run(&t, &up(&[1, 2]), 1).is_none());
        // One more MiB of gap and it moves.
        regions.extend(regions_on(20, 1, &[1], MIB));
        let t = tree(regions);
        assert!(run(&t, &up(&[1, 2]), 1).is_some());
    }

    #[test]
    fn pending_region_is_preferred() {
        let mut regions = regions_on(1, 20, &[1, 2, 3], MIB);
        // Region 7: store 1's peer is pending and not the leader.
        let r7 = &mut regions[6];
        r7.leader = Some(peer(72, 2));
        r7.pending_peers = vec![peer(71, 1)];
        let t = tree(regions);
        // Store 1 is the fullest (ties broken by id) and holds the only pending peer.
        for seed in 0..5 {
            let ids = ids();
            let v = view(&t, &up(&[1, 2, 3, 4]), &ids);
            let mut s = BalanceRegionScheduler::new(ScheduleConfig::default());
            let op = s.schedule(&v, &mut StdRng::seed_from_u64(seed)).unwrap();
            assert_eq!(op.region_id, 7, "seed {seed}");
            assert_eq!(op.steps[1], OpStep::RemovePeer(peer(71, 1)));
        }
    }

    #[test]
    fn followers_before_leaders() {
        // Store 1 leads regions 1-5 and follows regions 6-10.
        let mut regions = regions_on(1, 5, &[1, 2, 3], MIB);
        regions.extend(regions_on(6, 5, &[2, 1, 3], MIB));
        let t = tree(regions);
        for seed in 0..5 {
            let ids = ids();
            let v = view(&t, &up(&[1, 2, 3, 4]), &ids);
            let mut s = BalanceRegionScheduler::new(ScheduleConfig::default());
            let op = s.schedule(&v, &mut StdRng::seed_from_u64(seed)).unwrap();
            assert!(op.region_id >= 6, "seed {seed} moved a led region");
        }
    }

    #[test]
    fn down_store_is_never_a_target() {
        let mut regions = regions_on(1, 10, &[1, 2, 3], MIB);
        regions.extend(regions_on(20, 10, &[1, 2, 5], MIB));
        let t = tree(regions);
        let mut states = up(&[1, 2, 3, 5]);
        states.push((4, StoreState::Down));
        for seed in 0..10 {
            let ids = ids();
            let v = view(&t, &states, &ids);
            let mut s = BalanceRegionScheduler::new(ScheduleConfig::default());
            if let Some(op) = s.schedule(&v, &mut StdRng::seed_from_u64(seed)) {
                let OpStep::AddPeer(p) = op.steps[0] else {
                    panic!("first step adds")
                };
                assert_ne!(p.store_id, 4);
                assert!(t
                    .get(op.region_id)
                    .unwrap()
                    .peer_on_store(p.store_id)
                    .is_none());
            }
        }
        // With only the Down store empty nothing can move from 1/2 to 3/5 profitably.
        let t = tree(regions_on(1, 10, &[1, 2, 3], MIB));
        let mut states = up(&[1, 2, 3]);
        states.push((4, StoreState::Down));
        assert!(run(&t, &states, 3).is_none());
    }
}
