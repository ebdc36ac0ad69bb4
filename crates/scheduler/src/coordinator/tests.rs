//! Coordinator tests: a small simulated cluster whose regions carry out the steps they are
//! answered with and heartbeat again, until the schedulers have nothing left to do.

use std::collections::{BTreeMap, HashSet};

use engine::MemEngine;
use proto::metapb;

use super::*;
use crate::clock::ManualClock;
use crate::cluster::ClusterConfig;
use crate::meta_store::MetaStore;
use crate::store_info::StoreStats;

const MIB: u64 = 1 << 20;
/// Bootstrap region peers get ids above every other test id, so the allocator (which
/// starts above the bootstrap region's ids) never repeats one.
const BOOT_PEER_BASE: u64 = 1_000_000;

fn key(i: u64) -> Vec<u8> {
    format!("r{i:04}").into_bytes()
}

struct Sim {
    clock: Arc<ManualClock>,
    coord: Coordinator,
    /// The truth: regions as their leaders know them.
    model: BTreeMap<u64, RegionInfo>,
    stores: Vec<u64>,
    /// Stores that stopped heartbeating.
    dead: HashSet<u64>,
}

impl Sim {
    /// `n` regions covering the whole key space; region `i` has voters on
    /// `placement(i)`, the first one leading.
    fn new(
        stores: &[u64],
        n: u64,
        placement: impl Fn(u64) -> Vec<u64>,
        schedulers: Option<Vec<Box<dyn Scheduler>>>,
    ) -> Sim {
        Sim::with_seed(stores, n, placement, schedulers, 42)
    }

    fn with_seed(
        stores: &[u64],
        n: u64,
        placement: impl Fn(u64) -> Vec<u64>,
        schedulers: Option<Vec<Box<dyn Scheduler>>>,
        seed: u64,
    ) -> Sim {
        let clock = Arc::new(ManualClock::new(1_700_000_000_000));
        let cluster = Arc::new(
            SchedulerCluster::open(
                MetaStore::new(MemEngine::new()),
                clock.clone(),
                ClusterConfig::default(),
            )
            .unwrap(),
        );
        let mut model = BTreeMap::new();
        for i in 1..=n {
            let peers: Vec<metapb::Peer> = placement(i)
                .into_iter()
                .map(|s| metapb::Peer {
                    id: if i == 1 {
                        BOOT_PEER_BASE + s
                    } else {
                        i * 100 + s
                    },
                    store_id: s,
                    ..Default::default()
                })
                .collect();
            let region = metapb::Region {
                id: i,
                start_key: if i == 1 { vec![] } else { key(i) },
                end_key: if i == n { vec![] } else { key(i + 1) },
                region_epoch: Some(metapb::RegionEpoch {
                    conf_ver: 1,
                    version: 1,
                }),
                peers: peers.clone(),
                ..Default::default()
            };
            model.insert(
                i,
                RegionInfo {
                    region,
                    leader: peers.first().copied(),
                    pending_peers: vec![],
                    approximate_size: MIB,
                    approximate_keys: 1000,
                },
            );
        }
        let store_meta = |id: u64| metapb::Store {
            id,
            address: format!("s{id}"),
            ..Default::default()
        };
        let first = model[&1].region.peers[0].store_id;
        cluster
            .bootstrap(store_meta(first), model[&1].region.clone())
            .unwrap();
        for &s in stores {
            cluster.put_store(store_meta(s)).unwrap();
        }
        let coord = match schedulers {
            Some(s) => Coordinator::with_schedulers(cluster, s, seed),
            None => Coordinator::new(cluster, ScheduleConfig::default(), seed),
        };
        let sim = Sim {
            clock,
            coord,
            model,
            stores: stores.to_vec(),
            dead: HashSet::new(),
        };
        // Let the cluster learn every region before any scheduling.
        for r in sim.model.values() {
            sim.coord.cluster().region_heartbeat(r.clone()).unwrap();
        }
        sim
    }

    fn add_store(&mut self, id: u64) {
        let meta = metapb::Store {
            id,
            address: format!("s{id}"),
            ..Default::default()
        };
        self.coord.cluster().put_store(meta).unwrap();
        self.stores.push(id);
    }

    /// One second: store heartbeats, a scheduling tick, then every region heartbeats and
    /// carries out the step it gets. Returns operators added plus steps received.
    fn round(&mut self) -> usize {
        self.clock.advance(1000);
        for &s in &self.stores {
            if !self.dead.contains(&s) {
                let stats = StoreStats {
                    store_id: s,
                    ..Default::default()
                };
                self.coord.cluster().store_heartbeat(&stats).unwrap();
            }
        }
        let mut activity = self.coord.tick();
        for r in self.model.values_mut() {
            // Peers added last round have caught up (each shows pending exactly once).
            r.pending_peers.clear();
            let leader_dead = r.leader.is_some_and(|l| self.dead.contains(&l.store_id));
            if leader_dead {
                // Raft elects a leader among the survivors.
                r.leader = r
                    .region
                    .peers
                    .iter()
                    .find(|p| !self.dead.contains(&p.store_id))
                    .copied();
            }
            let step = self
                .coord
                .region_heartbeat_with_operator(r.clone())
                .unwrap();
            if let Some(step) = step {
                activity += 1;
                apply(r, &step);
            }
        }
        activity
    }

    /// Rounds until nothing happens twice in a row; panics after `max` rounds.
    fn settle(&mut self, max: usize) -> usize {
        let mut quiet = 0;
        for i in 0..max {
            if self.round() == 0 && self.coord.operator_count() == 0 {
                quiet += 1;
                if quiet == 2 {
                    return i;
                }
            } else {
                quiet = 0;
            }
        }
        panic!(
            "not settled after {max} rounds: regions {:?} leaders {:?} ops {} {:?}",
            self.counts(|s| s.region_count),
            self.counts(|s| s.leader_count),
            self.coord.operator_count(),
            self.coord.counters()
        );
    }

    fn counts(&self, f: impl Fn(&crate::StoreInfo) -> u64) -> Vec<u64> {
        self.stores
            .iter()
            .map(|&s| f(&self.coord.cluster().get_store(s).unwrap()))
            .collect()
    }

    /// Index consistent, and it agrees with the model; every region has `replicas`
    /// voters on distinct stores.
    fn check_consistent(&self, replicas: usize) {
        let regions = self.coord.cluster().regions();
        regions.verify().unwrap();
        for (id, r) in &self.model {
            let known = regions.get(*id).unwrap();
            assert_eq!(known.region.peers, r.region.peers, "region {id}");
            let stores: HashSet<u64> = r.region.peers.iter().map(|p| p.store_id).collect();
            assert_eq!(stores.len(), r.region.peers.len(), "region {id} doubled");
            assert_eq!(r.region.peers.len(), replicas, "region {id}");
        }
    }
}

/// What a store's raft would do with `step`.
fn apply(r: &mut RegionInfo, step: &OpStep) {
    let epoch = r.region.region_epoch.get_or_insert_with(Default::default);
    match step {
        OpStep::AddPeer(p) => {
            if r.region.peers.iter().all(|q| q.store_id != p.store_id) {
                r.region.peers.push(*p);
                r.pending_peers.push(*p);
                epoch.conf_ver += 1;
            }
        }
        OpStep::RemovePeer(p) => {
            assert_ne!(r.leader.map(|l| l.id), Some(p.id), "asked to remove leader");
            let before = r.region.peers.len();
            r.region.peers.retain(|q| q.id != p.id);
            if r.region.peers.len() != before {
                epoch.conf_ver += 1;
            }
        }
        OpStep::TransferLeader(p) => {
            if r.region.peers.iter().any(|q| q.id == p.id) {
                r.leader = Some(*p);
            }
        }
        OpStep::SplitRegion(_) => panic!("the schedulers under test never split"),
    }
}

fn within(counts: &[u64], frac: f64) -> bool {
    let mean = counts.iter().sum::<u64>() as f64 / counts.len() as f64;
    counts
        .iter()
        .all(|&c| (c as f64 - mean).abs() <= mean * frac)
}

#[test]
fn two_new_stores_get_their_share_of_regions_and_leaders() {
    // Several seeds: convergence must not depend on lucky random picks.
    for seed in 0..6 {
        // Leaders round-robin over stores 1-3: already balanced among themselves.
        let mut sim = Sim::with_seed(
            &[1, 2, 3],
            50,
            |i| {
                let mut v = vec![1, 2, 3];
                v.rotate_left((i % 3) as usize);
                v
            },
            None,
            seed,
        );
        for _ in 0..5 {
            sim.round();
        }
        assert_eq!(sim.coord.counters().added, 0, "balanced cluster left alone");

        sim.add_store(4);
        sim.add_store(5);
        sim.settle(2000);
        sim.check_consistent(3);
        let regions = sim.counts(|s| s.region_count);
        let leaders = sim.counts(|s| s.leader_count);
        assert_eq!(regions.iter().sum::<u64>(), 150);
        assert_eq!(leaders.iter().sum::<u64>(), 50);
        // Mean 30 regions and 10 leaders per store.
        assert!(
            within(&regions, 0.2),
            "seed {seed}: regions per store {regions:?}"
        );
        assert!(
            within(&leaders, 0.2),
            "seed {seed}: leaders per store {leaders:?}"
        );
        let c = sim.coord.counters();
        assert_eq!(c.added, c.finished, "seed {seed}: {c:?}");
        assert_eq!(c.cancelled + c.timed_out, 0, "seed {seed}: {c:?}");
        assert!(c.finished > 0);
    }
}

#[test]
fn balance_leader_converges_within_one() {
    let schedulers: Vec<Box<dyn Scheduler>> = vec![Box::new(BalanceLeaderScheduler::new(
        ScheduleConfig::default(),
    ))];
    let mut sim = Sim::new(
        &[1, 2, 3, 4],
        30,
        |i| {
            // Store 1 leads everything; followers spread over 2-4.
            let mut others = [2, 3, 4];
            others.rotate_left((i % 3) as usize);
            vec![1, others[0], others[1]]
        },
        Some(schedulers),
    );
    sim.settle(500);
    sim.check_consistent(3);
    let leaders = sim.counts(|s| s.leader_count);
    let (max, min) = (leaders.iter().max().unwrap(), leaders.iter().min().unwrap());
    assert!(max - min <= 1, "leaders per store {leaders:?}");
    assert_eq!(leaders.iter().sum::<u64>(), 30);
}

#[test]
fn replica_checker_repairs_under_replicated_and_down_store() {
    let mut sim = Sim::new(&[1, 2, 3, 4], 10, |_| vec![1], None);
    sim.settle(500);
    sim.check_consistent(3);

    // Store 2 goes silent for longer than the down threshold: its replicas are rebuilt.
    let had = sim.counts(|s| s.region_count)[1];
    assert!(had > 0);
    sim.dead.insert(2);
    sim.clock
        .advance(crate::store_info::DEFAULT_DOWN_AFTER_MS + 1000);
    sim.settle(500);
    sim.check_consistent(3);
    assert_eq!(sim.counts(|s| s.region_count)[1], 0, "store 2 drained");
    assert_eq!(sim.coord.counters().cancelled, 0);
}

#[test]
fn stale_heartbeat_is_refused_and_keeps_the_operator() {
    let sim = Sim::new(&[1, 2, 3], 3, |_| vec![1], None);
    assert!(sim.coord.tick() > 0);
    let mut r = sim.model[&1].clone();
    let op = sim.coord.operator(1).expect("region 1 gets a peer");
    r.region.region_epoch = Some(metapb::RegionEpoch {
        conf_ver: 0,
        version: 1,
    });
    assert!(sim.coord.region_heartbeat_with_operator(r).is_err());
    assert_eq!(sim.coord.operator(1), Some(op.clone()));
    let step = sim
        .coord
        .region_heartbeat_with_operator(sim.model[&1].clone())
        .unwrap();
    assert_eq!(step.as_ref(), op.current_step());
}

#[test]
fn min_interval_limits_a_scheduler() {
    let schedulers: Vec<Box<dyn Scheduler>> = vec![Box::new(BalanceRegionScheduler::new(
        ScheduleConfig::default(),
    ))];
    let mut sim = Sim::new(&[1, 2, 3], 20, |_| vec![1, 2, 3], Some(schedulers));
    assert!(sim.coord.set_limits(
        "balance-region",
        SchedulerLimits {
            min_interval_ms: 5_000,
            max_per_tick: 10,
        }
    ));
    assert!(!sim.coord.set_limits(
        "no-such",
        SchedulerLimits {
            min_interval_ms: 0,
            max_per_tick: 1
        }
    ));
    sim.add_store(4);
    // Rounds are 1 s apart: one operator in the first 5 s, a second at 5 s.
    for _ in 0..5 {
        sim.round();
    }
    assert_eq!(sim.coord.counters().added, 1);
    sim.round();
    assert_eq!(sim.coord.counters().added, 2);
}

#[test]
fn in_flight_operators_count_in_the_view() {
    let mut stores: Vec<crate::StoreInfo> = [1u64, 2, 3]
        .iter()
        .map(|&id| sim_store(id, 5, 10))
        .collect();
    let peer = |id, store_id| metapb::Peer {
        id,
        store_id,
        ..Default::default()
    };
    let region = RegionInfo {
        region: metapb::Region {
            id: 9,
            peers: vec![peer(1, 1), peer(2, 2)],
            ..Default::default()
        },
        leader: Some(peer(1, 1)),
        approximate_size: MIB,
        ..Default::default()
    };
    let mv = Operator::move_peer("t", &region, peer(1, 1), peer(3, 3), 0);
    add_influence(&mut stores, &mv, &region);
    assert_eq!(
        stores.iter().map(|s| s.region_count).collect::<Vec<_>>(),
        vec![9, 10, 11]
    );
    assert_eq!(stores[0].region_size, 9 * MIB);
    let tl = Operator::transfer_leader("t", &region, peer(2, 2), 0);
    add_influence(&mut stores, &tl, &region);
    assert_eq!(
        stores.iter().map(|s| s.leader_count).collect::<Vec<_>>(),
        vec![4, 6, 5]
    );
    // A step the index already shows is not counted twice.
    let mut done = region.clone();
    done.leader = Some(peer(2, 2));
    add_influence(&mut stores, &tl, &done);
    assert_eq!(stores[1].leader_count, 6);
}

fn sim_store(id: u64, leaders: u64, regions: u64) -> crate::StoreInfo {
    crate::StoreInfo {
        meta: metapb::Store {
            id,
            ..Default::default()
        },
        state: crate::StoreState::Up,
        stats: StoreStats::default(),
        last_heartbeat_ms: None,
        leader_count: leaders,
        region_count: regions,
        pending_peer_count: 0,
        leader_size: leaders * MIB,
        region_size: regions * MIB,
    }
}

#[test]
fn coordinator_can_be_shared_between_threads() {
    fn shareable<T: Send + Sync>() {}
    shareable::<Coordinator>();
}

#[test]
fn offline_store_is_drained_leaders_included_then_can_be_tombstoned() {
    let mut sim = Sim::new(
        &[1, 2, 3, 4],
        12,
        |i| {
            let mut v = vec![1, 2, 3];
            v.rotate_left((i % 3) as usize);
            v
        },
        None,
    );
    sim.settle(500);
    let led_by_1 = sim.counts(|s| s.leader_count)[0];
    assert!(led_by_1 > 0);
    sim.coord.cluster().set_store_offline(1).unwrap();
    sim.settle(1000);
    sim.check_consistent(3);
    let store1 = sim.coord.cluster().get_store(1).unwrap();
    assert_eq!((store1.region_count, store1.leader_count), (0, 0));
    sim.coord.cluster().set_store_tombstone(1).unwrap();
    let c = sim.coord.counters();
    assert_eq!(c.cancelled + c.timed_out, 0, "{c:?}");
}

#[test]
fn admin_requests_are_checked_then_carried_out_like_any_operator() {
    // Three stores, two regions on stores 1 and 2; no schedulers of its own.
    let mut sim = Sim::new(&[1, 2, 3], 2, |_| vec![1, 2], Some(vec![]));
    let coord = &sim.coord;
    let err = |r| coord.admin(r).unwrap_err();
    assert_eq!(
        err(AdminRequest::AddPeer {
            region_id: 9,
            store_id: 3
        }),
        AdminError::RegionNotFound(9)
    );
    assert_eq!(
        err(AdminRequest::AddPeer {
            region_id: 1,
            store_id: 8
        }),
        AdminError::StoreNotFound(8)
    );
    assert!(matches!(
        err(AdminRequest::AddPeer {
            region_id: 1,
            store_id: 2
        }),
        AdminError::Invalid(_)
    ));
    assert!(matches!(
        err(AdminRequest::TransferLeader {
            region_id: 1,
            to_store_id: 1
        }),
        AdminError::Invalid(_)
    ));
    assert!(matches!(
        err(AdminRequest::RemovePeer {
            region_id: 1,
            store_id: 3
        }),
        AdminError::Invalid(_)
    ));
    // Region 1 is [, r0002): keys must be ascending and strictly inside.
    for keys in [
        vec![],
        vec![b"r9".to_vec()],
        vec![b"b".to_vec(), b"a".to_vec()],
    ] {
        assert!(matches!(
            err(AdminRequest::Split { region_id: 1, keys }),
            AdminError::Invalid(_)
        ));
    }

    coord
        .admin(AdminRequest::AddPeer {
            region_id: 1,
            store_id: 3,
        })
        .unwrap();
    assert_eq!(
        err(AdminRequest::TransferLeader {
            region_id: 1,
            to_store_id: 2
        }),
        AdminError::Busy(1)
    );
    coord
        .admin(AdminRequest::TransferLeader {
            region_id: 2,
            to_store_id: 2,
        })
        .unwrap();
    sim.settle(10);
    assert!(sim.model[&1].region.peers.iter().any(|p| p.store_id == 3));
    assert_eq!(sim.model[&2].leader.unwrap().store_id, 2);
    assert_eq!(sim.coord.counters().finished, 2);
}
