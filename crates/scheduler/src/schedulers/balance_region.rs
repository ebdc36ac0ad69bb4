//! Balance-region: moves replicas from the store with the highest region score to the one
//! with the lowest (the TinyKV 3C rules, with PD's regard for disk space).
//!
//! * Candidate stores are the Up ones (Up already means "heard from recently"; a store
//!   silent longer than the disconnect threshold is neither source nor target).
//! * Sources are tried by score, highest first. On a source, a random region is
//!   picked: first one whose peer there is pending (it is behind anyway, moving it costs
//!   least), then a follower, then a leader. Regions with fewer voters than
//!   `max_replicas` are skipped: the replica checker must repair them first.
//! * The target is the candidate store with the lowest score that holds no peer of the
//!   region and is not low on space (`low_space_ratio`, [`StoreInfo::is_low_space`]); a
//!   store low on space only gives regions away.
//! * The move happens only if, counting the region moved (its size off the source's
//!   region size and onto its free space, the reverse on the target), the target still
//!   scores below the source: otherwise the move would just swap which store is bigger
//!   and the next round would move it back. With scores equal to region sizes this is
//!   `source size - target size > 2 * region size`.
//!
//! # The score
//!
//! [`region_score`] of a store with region data `R` (the sum of its regions' approximate
//! sizes), disk capacity `C` and free space `A`, with `u = 1 - A / C` the share of the
//! disk in use, `h` = `high_space_ratio` and `l` = `low_space_ratio`:
//!
//! ```text
//! C unknown (0), or u <= h:   R                                 space is plentiful
//! h < u <= l:                 R * (1 + (K - 1) * t^2)           t = (u - h) / (l - h)
//! u > l:                      K * (R + (u - l) * C)             low on space
//! ```
//!
//! with `K` = [`SPACE_AMPLIFICATION`]. While space is plentiful stores are balanced by
//! region data, as before. Past `h` a store's data weighs more and more (by the square of
//! how far it is into the band, so the first few percent change little and the last ones
//! a lot), up to `K` times at `l`: regions flow away from filling disks towards emptier
//! ones even when the sizes alone are even (a store may share its disk with other data).
//! Past `l` the bytes in use beyond the low mark are added too, so among full stores the
//! fullest disk sheds first even if it holds little region data. The score is continuous
//! and never decreases as used space grows (or as region data grows), which keeps the
//! "target still below source after the move" rule from oscillating.

use rand::RngCore;

use super::{is_voter, ClusterView, ScheduleConfig, Scheduler, SchedulerLimits};
use crate::operator::Operator;
use crate::region_tree::{PeerKind, RegionInfo};
use crate::store_info::{StoreInfo, StoreState};

/// Name used in operator descriptions.
pub const NAME: &str = "balance-region";

/// How much more a store's region data weighs once its disk is `low_space_ratio` full
/// than while space is plentiful (`K` in the module docs).
pub const SPACE_AMPLIFICATION: f64 = 16.0;

/// The balance score of `store` (see the module docs) if `delta` bytes of region data
/// moved onto it (negative: off it); the move takes (or frees) as much of its free space.
pub fn region_score(store: &StoreInfo, cfg: &ScheduleConfig, delta: i64) -> f64 {
    let size = (store.region_size as f64 + delta as f64).max(0.0);
    let capacity = store.stats.capacity;
    if capacity == 0 {
        return size;
    }
    let c = capacity as f64;
    let available = (store.stats.available.min(capacity) as f64 - delta as f64).clamp(0.0, c);
    let used = 1.0 - available / c;
    let (h, l) = (cfg.high_space_ratio, cfg.low_space_ratio);
    if used <= h {
        size
    } else if used <= l {
        let t = (used - h) / (l - h);
        size * (1.0 + (SPACE_AMPLIFICATION - 1.0) * t * t)
    } else {
        SPACE_AMPLIFICATION * (size + (used - l) * c)
    }
}

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

    fn score(&self, store: &StoreInfo, delta: i64) -> f64 {
        region_score(store, &self.cfg, delta)
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
            .filter(|s| !s.is_low_space(self.cfg.low_space_ratio))
            .min_by(|a, b| {
                let (sa, sb) = (self.score(a, 0), self.score(b, 0));
                sa.total_cmp(&sb).then(a.meta.id.cmp(&b.meta.id))
            })?;
        let moved = i64::try_from(region.approximate_size).unwrap_or(i64::MAX);
        if self.score(target, moved) >= self.score(source, -moved) {
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
        candidates.sort_by(|a, b| {
            let (sa, sb) = (self.score(a, 0), self.score(b, 0));
            sb.total_cmp(&sa).then(a.meta.id.cmp(&b.meta.id))
        });
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

    /// A store with `region_size` bytes of regions on a disk of `capacity` with
    /// `available` free.
    fn store_with(region_size: u64, capacity: u64, available: u64) -> StoreInfo {
        let t = tree(vec![]);
        let mut s = with_space(store(1, StoreState::Up, &t), capacity, available);
        s.region_size = region_size;
        s
    }

    #[test]
    fn score_grows_with_used_space_and_region_size() {
        let cfg = ScheduleConfig::default();
        let cap = 100 * 1024 * MIB;
        let score = |size, available| region_score(&store_with(size, cap, available), &cfg, 0);
        // Capacity unknown: the region size, whatever the free space says.
        assert_eq!(
            region_score(&store_with(5 * MIB, 0, 0), &cfg, 0),
            (5 * MIB) as f64
        );
        let mut last = 0.0;
        for pct in 0..=100u64 {
            let available = cap - cap / 100 * pct;
            let sc = score(10 * MIB, available);
            assert!(sc >= last, "score fell from {last} to {sc} at {pct}% used");
            if pct <= 70 {
                assert_eq!(sc, (10 * MIB) as f64, "plentiful at {pct}%");
            } else {
                assert!(sc > last, "not growing at {pct}% used");
            }
            // More region data never scores lower.
            assert!(score(11 * MIB, available) > sc);
            last = sc;
        }
        // Steep: 16 times the data's weight at the low mark, more beyond it.
        let at_low = score(10 * MIB, cap / 5);
        assert!((at_low / (10 * MIB) as f64 - SPACE_AMPLIFICATION).abs() < 1e-6);
        assert!(
            score(0, cap / 10) > at_low,
            "a fuller disk outranks region data"
        );
        // Moving data on takes free space too: the score with a delta is the score of
        // the store after the move.
        let s = store_with(10 * MIB, cap, cap / 4);
        let moved = region_score(&s, &cfg, 5 * MIB as i64);
        assert_eq!(moved, score(15 * MIB, cap / 4 - 5 * MIB));
    }

    /// Regions 1-10 of 1 MiB on stores 1-3; stores 4 (id first, the natural target) and 5
    /// are empty. `space` sets a store's disk.
    fn low_space_view_op(space: &[(u64, u64, u64)], seed: u64) -> Option<Operator> {
        let t = tree(regions_on(1, 10, &[1, 2, 3], MIB));
        let ids = ids();
        let mut v = view(&t, &up(&[1, 2, 3, 4, 5]), &ids);
        for &(id, cap, avail) in space {
            let s = v.stores.iter_mut().find(|s| s.meta.id == id).unwrap();
            *s = with_space(s.clone(), cap, avail);
        }
        let mut s = BalanceRegionScheduler::new(ScheduleConfig::default());
        s.schedule(&v, &mut StdRng::seed_from_u64(seed))
    }

    fn target_of(op: &Operator) -> u64 {
        let OpStep::AddPeer(p) = op.steps[0] else {
            panic!("first step adds")
        };
        p.store_id
    }

    #[test]
    fn low_space_store_is_never_a_target() {
        let g = 1024 * MIB;
        for seed in 0..10 {
            // Unknown capacity, or plenty of room: store 4 (lowest id among the emptiest).
            let op = low_space_view_op(&[], seed).unwrap();
            assert_eq!(target_of(&op), 4, "seed {seed}");
            let op = low_space_view_op(&[(4, 100 * g, 90 * g)], seed).unwrap();
            assert_eq!(target_of(&op), 4, "seed {seed}");
            // Store 4's disk is 87.5% used (by other data): store 5 instead.
            let op = low_space_view_op(&[(4, 8 * g, g)], seed).unwrap();
            assert_eq!(target_of(&op), 5, "seed {seed}");
            // Both empty stores are low: nothing moves (either would win on score).
            assert!(low_space_view_op(&[(4, 100 * MIB, 0), (5, 100 * MIB, MIB)], seed).is_none());
        }
    }

    #[test]
    fn a_filling_disk_sheds_regions_even_when_sizes_are_even() {
        // One replica per region; stores 1 and 2 hold 10 MiB each.
        let mut regions = regions_on(1, 10, &[1], MIB);
        regions.extend(regions_on(20, 10, &[2], MIB));
        let t = tree(regions);
        let ids = ids();
        let mut v = view(&t, &up(&[1, 2]), &ids);
        let mut s = BalanceRegionScheduler::new(ScheduleConfig {
            max_replicas: 1,
            ..Default::default()
        });
        assert!(s.schedule(&v, &mut StdRng::seed_from_u64(1)).is_none());
        // Store 2's disk is 78% used (between the ratios), store 1's 10%.
        let cap = 100 * 1024 * MIB;
        v.stores[0] = with_space(v.stores[0].clone(), cap, cap / 10 * 9);
        v.stores[1] = with_space(v.stores[1].clone(), cap, cap / 100 * 22);
        let op = s
            .schedule(&v, &mut StdRng::seed_from_u64(1))
            .expect("sheds");
        assert_eq!(target_of(&op), 1);
        assert!(op.region_id >= 20, "moves a region of store 2");
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
