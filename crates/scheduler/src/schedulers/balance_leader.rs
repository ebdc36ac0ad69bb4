//! Balance-leader: moves leadership from stores leading many regions to stores leading
//! few, so client load (reads and writes go to leaders) spreads evenly.
//!
//! Sources are the Up stores by leader count, most first. For each source, its led
//! regions are examined (from a random start, a bounded number): the target is the
//! region's caught-up voter on an Up store with the fewest leaders. A transfer is made
//! only when `source leaders - target leaders > leader_tolerance` (default 1): a gap of
//! one would only swap which store has the extra leader.

use rand::{Rng, RngCore};

use super::{is_voter, ClusterView, ScheduleConfig, Scheduler, SchedulerLimits};
use crate::operator::Operator;
use crate::region_tree::PeerKind;
use crate::store_info::{StoreInfo, StoreState};

/// Name used in operator descriptions.
pub const NAME: &str = "balance-leader";

/// Led regions examined per source store per round (bounds the work on big stores).
const REGIONS_PER_SOURCE: usize = 64;

/// See the module docs.
#[derive(Debug)]
pub struct BalanceLeaderScheduler {
    cfg: ScheduleConfig,
}

impl BalanceLeaderScheduler {
    /// A scheduler with `cfg`.
    pub fn new(cfg: ScheduleConfig) -> BalanceLeaderScheduler {
        BalanceLeaderScheduler { cfg }
    }
}

impl Scheduler for BalanceLeaderScheduler {
    fn name(&self) -> &str {
        NAME
    }

    fn schedule(&mut self, view: &ClusterView<'_>, rng: &mut dyn RngCore) -> Option<Operator> {
        let mut up: Vec<&StoreInfo> = view.stores.iter().filter(|s| s.is_up()).collect();
        up.sort_by_key(|s| (std::cmp::Reverse(s.leader_count), s.meta.id));
        let min_leaders = up.iter().map(|s| s.leader_count).min()?;
        for source in &up {
            if source.leader_count.saturating_sub(min_leaders) <= self.cfg.leader_tolerance {
                // Sorted by count: no later source can have a big enough gap either.
                break;
            }
            let led = view
                .regions
                .store_region_ids(source.meta.id, PeerKind::Leader);
            if led.is_empty() {
                continue;
            }
            let start = rng.gen_range(0..led.len());
            let mut best: Option<(u64, Operator)> = None;
            for i in 0..led.len().min(REGIONS_PER_SOURCE) {
                let id = led[(start + i) % led.len()];
                let Some(region) = view.regions.get(id) else {
                    continue;
                };
                if view.busy.contains(&id) {
                    continue;
                }
                let pending = |pid: u64| region.pending_peers.iter().any(|p| p.id == pid);
                let target = region
                    .region
                    .peers
                    .iter()
                    .filter(|p| {
                        p.store_id != source.meta.id
                            && is_voter(p)
                            && !pending(p.id)
                            && view.store_state(p.store_id) == StoreState::Up
                    })
                    .filter_map(|p| {
                        let s = up.iter().find(|s| s.meta.id == p.store_id)?;
                        Some((s.leader_count, s.meta.id, *p))
                    })
                    .min_by_key(|&(count, store, _)| (count, store));
                let Some((count, _, to)) = target else {
                    continue;
                };
                if source.leader_count.saturating_sub(count) <= self.cfg.leader_tolerance {
                    continue;
                }
                if best.as_ref().is_none_or(|(c, _)| count < *c) {
                    best = Some((
                        count,
                        Operator::transfer_leader(NAME, region, to, view.now_ms),
                    ));
                    if count == min_leaders {
                        break; // cannot do better
                    }
                }
            }
            if let Some((_, op)) = best {
                return Some(op);
            }
        }
        None
    }

    fn default_limits(&self) -> SchedulerLimits {
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

    #[test]
    fn moves_leader_to_follower_on_store_with_fewest_leaders() {
        // Store 1 leads 4 regions, store 2 leads 1, store 3 none.
        let mut regions: Vec<_> = (1..=4)
            .map(|id| {
                region(
                    id,
                    &[(id * 10 + 1, 1), (id * 10 + 2, 2), (id * 10 + 3, 3)],
                    MIB,
                )
            })
            .collect();
        regions.push(region(5, &[(52, 2), (51, 1), (53, 3)], MIB));
        let t = tree(regions);
        let ids = ids();
        let v = view(&t, &up(&[1, 2, 3]), &ids);
        let mut s = BalanceLeaderScheduler::new(ScheduleConfig::default());
        let op = s.schedule(&v, &mut StdRng::seed_from_u64(3)).unwrap();
        assert!(op.region_id <= 4);
        let OpStep::TransferLeader(to) = op.steps[0] else {
            panic!("leader op")
        };
        assert_eq!(to.store_id, 3);
    }

    #[test]
    fn balanced_within_tolerance_does_nothing() {
        let t = tree(vec![
            region(1, &[(11, 1), (12, 2)], MIB),
            region(2, &[(21, 1), (22, 2)], MIB),
            region(3, &[(32, 2), (31, 1)], MIB),
        ]);
        let ids = ids();
        let v = view(&t, &up(&[1, 2]), &ids);
        let mut s = BalanceLeaderScheduler::new(ScheduleConfig::default());
        assert!(s.schedule(&v, &mut StdRng::seed_from_u64(3)).is_none());
    }
}
