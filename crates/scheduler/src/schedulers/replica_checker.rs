//! The replica checker: keeps every region at `max_replicas` voters on live stores.
//!
//! Rules, checked per region (regions without a known leader are skipped: only a leader's
//! heartbeat can carry the operator, and removing a peer must avoid the leader):
//! 1. fewer than `max_replicas` voters on stores that are not lost (Down, Offline,
//!    Tombstone, unknown): if a lost voter exists and the region already has its full
//!    voter count, move that voter (add elsewhere, then remove it); otherwise add a voter.
//!    The new voter goes to the Up store without a peer of the region that holds the
//!    fewest regions, leaving out stores low on space (`low_space_ratio`); with no such
//!    store the region waits (a missing replica is better than a full disk).
//! 2. more than `max_replicas` voters: remove one, preferring a voter on a lost store, then
//!    on a store that is not Up, then a pending one, then any follower. A healthy leader is
//!    never chosen; a leader on a lost (Offline, still running) store is, after the
//!    other lost voters, because the operator controller hands leadership to another
//!    voter before asking for the removal (otherwise such a region would churn forever).

use rand::RngCore;

use super::{is_lost, is_voter, ClusterView, ScheduleConfig, Scheduler, SchedulerLimits};
use crate::operator::Operator;
use crate::region_tree::RegionInfo;
use crate::store_info::StoreState;

/// Name used in operator descriptions.
pub const NAME: &str = "replica-checker";

/// Most regions one [`Scheduler::schedule`] call looks at (see `schedule`).
pub const PATROL_BATCH: usize = 4096;

/// See the module docs.
#[derive(Debug)]
pub struct ReplicaChecker {
    cfg: ScheduleConfig,
    /// Start key of the region after which the next scan starts, so one broken region
    /// that cannot be fixed (no target store) does not starve the others.
    cursor: Vec<u8>,
}

impl ReplicaChecker {
    /// A checker with `cfg`.
    pub fn new(cfg: ScheduleConfig) -> ReplicaChecker {
        ReplicaChecker {
            cfg,
            cursor: Vec::new(),
        }
    }

    /// The operator `region` needs, if any.
    pub fn check(&self, view: &ClusterView<'_>, region: &RegionInfo) -> Option<Operator> {
        let leader = region.leader?;
        let max = self.cfg.max_replicas.max(1);
        let voters: Vec<_> = region.region.peers.iter().filter(|p| is_voter(p)).collect();
        let live = voters
            .iter()
            .filter(|p| !is_lost(view.store_state(p.store_id)))
            .count();
        if live < max {
            let target = view.emptiest_target(region, self.cfg.low_space_ratio)?;
            let new_peer = view.new_peer(target.meta.id)?;
            // A lost leader (alive on an Offline store) is replaced last; the operator
            // controller moves leadership away before it asks to remove it.
            let lost = voters
                .iter()
                .filter(|p| is_lost(view.store_state(p.store_id)))
                .min_by_key(|p| (p.id == leader.id, p.id));
            return Some(match lost {
                Some(bad) if voters.len() >= max => {
                    Operator::move_peer(NAME, region, **bad, new_peer, view.now_ms)
                }
                _ => Operator::add_peer(NAME, region, new_peer, view.now_ms),
            });
        }
        if voters.len() > max {
            let pending = |id: u64| region.pending_peers.iter().any(|p| p.id == id);
            // The leader is removed only when its store is lost (draining): otherwise a
            // healthy follower would go and the next round would add one back, forever.
            // Removing it is safe: the controller transfers leadership first.
            let victim = voters
                .iter()
                .filter_map(|p| {
                    let state = view.store_state(p.store_id);
                    let rank = match (p.id == leader.id, is_lost(state)) {
                        (true, false) => return None,
                        (false, true) => 0,
                        (true, true) => 1,
                        _ if state != StoreState::Up => 2,
                        _ if pending(p.id) => 3,
                        _ => 4,
                    };
                    Some((rank, p.id, **p))
                })
                .min_by_key(|&(rank, id, _)| (rank, id))
                .map(|(_, _, p)| p)?;
            return Some(Operator::remove_peer(NAME, region, victim, view.now_ms));
        }
        None
    }
}

impl Scheduler for ReplicaChecker {
    fn name(&self) -> &str {
        NAME
    }

    fn schedule(&mut self, view: &ClusterView<'_>, _rng: &mut dyn RngCore) -> Option<Operator> {
        // Scan from the cursor to the end, then wrap around; at most PATROL_BATCH regions
        // per call, each at most once. The whole index every round cost 28 ms with
        // 100,000 healthy regions, under the region lock heartbeats wait for, five times
        // a second; a bounded patrol still passes every region within
        // regions / PATROL_BATCH rounds.
        let budget = view.regions.len().min(PATROL_BATCH);
        let mut last: Option<&RegionInfo> = None;
        for r in view
            .regions
            .iter_after(&self.cursor)
            .chain(view.regions.iter())
            .take(budget)
        {
            last = Some(r);
            if view.busy.contains(&r.id()) {
                continue;
            }
            if let Some(op) = self.check(view, r) {
                self.cursor = r.region.start_key.clone();
                return Some(op);
            }
        }
        // Nothing to do in this stretch: the next call goes on after it.
        if let Some(r) = last {
            self.cursor.clone_from(&r.region.start_key);
        }
        None
    }

    fn default_limits(&self) -> SchedulerLimits {
        // Repairs restore redundancy: many per tick, no gap.
        SchedulerLimits {
            min_interval_ms: 0,
            max_per_tick: 64,
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

    fn run(tree: &crate::RegionTree, states: &[(u64, StoreState)], max: usize) -> Option<Operator> {
        let ids = ids();
        let v = view(tree, states, &ids);
        let mut c = ReplicaChecker::new(ScheduleConfig {
            max_replicas: max,
            ..Default::default()
        });
        c.schedule(&v, &mut StdRng::seed_from_u64(1))
    }

    #[test]
    fn adds_peer_to_under_replicated_region_on_emptiest_store() {
        // Store 3 holds more regions than store 4: the new peer goes to 4.
        let t = tree(vec![
            region(1, &[(11, 1), (12, 2)], MIB),
            region(2, &[(21, 3)], MIB),
            region(3, &[(31, 3)], MIB),
        ]);
        let op = run(&t, &up(&[1, 2, 3, 4]), 3).expect("region 1 needs a peer");
        assert_eq!(op.region_id, 1);
        assert_eq!(op.steps, vec![OpStep::AddPeer(peer(1000, 4))]);
    }

    #[test]
    fn replaces_peer_on_down_store() {
        let t = tree(vec![region(1, &[(11, 1), (12, 2), (13, 3)], MIB)]);
        let mut states = up(&[1, 2, 4]);
        states.push((3, StoreState::Down));
        let op = run(&t, &states, 3).expect("peer on down store 3 must move");
        assert_eq!(
            op.steps,
            vec![
                OpStep::AddPeer(peer(1000, 4)),
                OpStep::RemovePeer(peer(13, 3))
            ]
        );
        // Tombstone and Offline stores count as lost too; Disconnected does not.
        for bad in [StoreState::Tombstone, StoreState::Offline] {
            states[3].1 = bad;
            assert!(run(&t, &states, 3).is_some(), "{bad:?}");
        }
        states[3].1 = StoreState::Disconnected;
        assert!(run(&t, &states, 3).is_none());
    }

    #[test]
    fn no_target_means_no_operator() {
        // Every Up store already holds the region; the Down one cannot take it.
        let t = tree(vec![region(1, &[(11, 1), (12, 2)], MIB)]);
        let mut states = up(&[1, 2]);
        states.push((3, StoreState::Down));
        assert!(run(&t, &states, 3).is_none());
    }

    #[test]
    fn removes_extra_peer_preferring_unhealthy_never_leader() {
        let t = tree(vec![region(1, &[(11, 1), (12, 2), (13, 3), (14, 4)], MIB)]);
        let mut states = up(&[1, 2, 3, 4]);
        let op = run(&t, &states, 3).expect("one peer too many");
        assert_eq!(op.steps, vec![OpStep::RemovePeer(peer(12, 2))]);
        states[2].1 = StoreState::Disconnected;
        let op = run(&t, &states, 3).unwrap();
        assert_eq!(op.steps, vec![OpStep::RemovePeer(peer(13, 3))]);
        // A leader on a store that is merely disconnected (not lost) is never chosen,
        // even when every other voter looks healthier.
        states[0].1 = StoreState::Disconnected;
        states[2].1 = StoreState::Up;
        let op = run(&t, &states, 3).unwrap();
        assert_eq!(op.steps, vec![OpStep::RemovePeer(peer(12, 2))]);
    }

    #[test]
    fn leader_on_offline_store_is_replaced_too() {
        let t = tree(vec![region(1, &[(11, 1), (12, 2), (13, 3)], MIB)]);
        let mut states = up(&[1, 2, 3, 4]);
        states[0].1 = StoreState::Offline;
        let op = run(&t, &states, 3).expect("leader's store drains");
        assert_eq!(
            op.steps,
            vec![
                OpStep::AddPeer(peer(1000, 4)),
                OpStep::RemovePeer(peer(11, 1))
            ]
        );
        // Already one voter too many: the draining leader is the one to go, not a
        // healthy follower (which would be added back next round).
        let t = tree(vec![region(1, &[(11, 1), (12, 2), (13, 3), (14, 4)], MIB)]);
        let op = run(&t, &states, 3).unwrap();
        assert_eq!(op.steps, vec![OpStep::RemovePeer(peer(11, 1))]);
    }

    #[test]
    fn patrol_is_bounded_per_call_and_reaches_every_region() {
        // Region 1 lacks a peer; the other regions sort before it and are healthy, more
        // of them than one call may look at.
        let healthy = PATROL_BATCH as u64 * 2 + 10;
        let mut regions: Vec<RegionInfo> = (0..healthy)
            .map(|i| {
                let id = 100 + i;
                let mut r = region(
                    id,
                    &[(id * 10 + 1, 1), (id * 10 + 2, 2), (id * 10 + 3, 3)],
                    MIB,
                );
                r.region.start_key = format!("a{i:08}").into_bytes();
                r.region.end_key = format!("a{:08}", i + 1).into_bytes();
                r
            })
            .collect();
        regions.push(region(1, &[(11, 1), (12, 2)], MIB));
        let t = tree(regions);
        let ids = ids();
        let v = view(&t, &up(&[1, 2, 3]), &ids);
        let mut c = ReplicaChecker::new(ScheduleConfig::default());
        let mut rng = StdRng::seed_from_u64(1);
        // The first two calls each cover PATROL_BATCH healthy regions and find nothing.
        assert!(c.schedule(&v, &mut rng).is_none());
        assert!(c.schedule(&v, &mut rng).is_none());
        let op = c
            .schedule(&v, &mut rng)
            .expect("the third call reaches region 1");
        assert_eq!(op.region_id, 1);
        // From there the patrol wraps around and comes back to it two calls later.
        assert!(c.schedule(&v, &mut rng).is_none());
        assert!(c.schedule(&v, &mut rng).is_none());
        assert_eq!(c.schedule(&v, &mut rng).map(|op| op.region_id), Some(1));
    }

    #[test]
    fn low_space_store_never_gets_a_new_replica() {
        // Region 1 lacks a voter. Store 3 is empty (the natural target), store 4 holds
        // two regions, store 5 one.
        let t = tree(vec![
            region(1, &[(11, 1), (12, 2)], MIB),
            region(2, &[(21, 4)], MIB),
            region(3, &[(31, 4)], MIB),
            region(4, &[(41, 5)], MIB),
        ]);
        let check = |space: &[(u64, u64, u64)]| {
            let ids = ids();
            let mut v = view(&t, &up(&[1, 2, 3, 4, 5]), &ids);
            for &(id, cap, avail) in space {
                // Under 8 GiB free: the few-regions exemption does not apply.
                let s = v.stores.iter_mut().find(|s| s.meta.id == id).unwrap();
                *s = with_space(s.clone(), cap, avail);
            }
            let c = ReplicaChecker::new(ScheduleConfig::default());
            let region = t.get(1).unwrap();
            c.check(&v, region).map(|op| op.steps)
        };
        let added = |store| Some(vec![OpStep::AddPeer(peer(1000, store))]);
        // Capacity unknown everywhere (0): as before, the emptiest store.
        assert_eq!(check(&[]), added(3));
        // Plenty of room on store 3 (30% used): still store 3.
        assert_eq!(check(&[(3, 100 * MIB, 70 * MIB)]), added(3));
        // Store 3 is 90% full: the next emptiest, store 5.
        assert_eq!(check(&[(3, 100 * MIB, 10 * MIB)]), added(5));
        // Stores 3 and 5 full: store 4.
        assert_eq!(
            check(&[(3, 100 * MIB, 10 * MIB), (5, 100 * MIB, 0)]),
            added(4)
        );
        // Every candidate full: nothing moves.
        assert_eq!(check(&[(3, 100, 10), (4, 100, 19), (5, 100, 0)]), None);
    }

    #[test]
    fn healthy_region_and_busy_regions_are_left_alone() {
        let t = tree(vec![region(1, &[(11, 1), (12, 2), (13, 3)], MIB)]);
        assert!(run(&t, &up(&[1, 2, 3, 4]), 3).is_none());
        let t = tree(vec![region(1, &[(11, 1)], MIB)]);
        let ids = ids();
        let mut v = view(&t, &up(&[1, 2, 3]), &ids);
        v.busy.insert(1);
        let mut c = ReplicaChecker::new(ScheduleConfig::default());
        assert!(c.schedule(&v, &mut StdRng::seed_from_u64(1)).is_none());
    }
}
