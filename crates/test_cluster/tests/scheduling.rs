//! The real scheduler core driving a cluster: a store lost for good has its replicas
//! rebuilt elsewhere without losing an acknowledged write, and stores that join empty get
//! their share of regions and leaders. The stores talk to `scheduler::SchedulerCluster`
//! and its `Coordinator` in process, through the same trait a networked client implements.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use proto::metapb;
use proto::raft_serverpb::PeerState;
use test_cluster::pd::CoreScheduler;
use test_cluster::scenario::scenario_lock;
use test_cluster::scheduler::MockScheduler;
use test_cluster::Cluster;

/// Regions cut at `n - 1` keys, as the harness bootstraps them.
fn split_keys(n: usize) -> Vec<Vec<u8>> {
    (1..n).map(|i| format!("r{i:03}").into_bytes()).collect()
}

/// Every region stored on `store` and not tombstoned.
fn regions_on(cluster: &Cluster, store: u64) -> Vec<metapb::Region> {
    cluster
        .stored_regions()
        .into_iter()
        .filter(|(s, st)| *s == store && st.state == PeerState::Normal as i32)
        .filter_map(|(_, st)| st.region)
        .collect()
}

fn cluster_with_core(stores: u64, down_after: Duration) -> (Arc<Cluster>, Arc<CoreScheduler>) {
    let cfg = raftstore::Config::for_tests();
    let core = CoreScheduler::new(down_after, Duration::from_millis(100), 7);
    let cluster = Arc::new(Cluster::with_scheduler(
        stores,
        cfg,
        Arc::new(MockScheduler::default()),
        core.clone(),
    ));
    (cluster, core)
}

#[test]
fn lost_store_has_its_replicas_rebuilt_without_losing_writes() {
    let _g = scenario_lock();
    let (cluster, core) = cluster_with_core(4, Duration::from_secs(3));
    let keys = split_keys(6);
    cluster.run_on_stores(&[1, 2, 3], &keys);
    core.bootstrap(&[1, 2, 3, 4], &cluster.cached_regions());
    cluster.start_store(4);

    let mut acked = Vec::new();
    for i in 0..6 {
        for j in 0..20 {
            let key = format!("r{i:03}-{j:03}").into_bytes();
            let value = format!("v{i}-{j}").into_bytes();
            cluster.must_put(&key, &value);
            acked.push((key, value));
        }
    }
    // Store 3 is lost for good.
    cluster.stop_store(3);
    let lost_at = Instant::now();
    let deadline = lost_at + Duration::from_secs(60);
    loop {
        let regions = core.cluster().scan_regions(b"", b"", 0);
        let healed = regions.len() == 6
            && regions.iter().all(|r| {
                let stores: Vec<u64> = r.region.peers.iter().map(|p| p.store_id).collect();
                stores.len() == 3 && !stores.contains(&3)
            });
        if healed {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "replicas not rebuilt within 60 s: {:?} (seed {})",
            regions.iter().map(|r| &r.region.peers).collect::<Vec<_>>(),
            cluster.seed
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!(
        "all regions back to 3 healthy replicas {:?} after losing store 3",
        lost_at.elapsed()
    );
    // The stores agree: store 4 now holds every region, with the data.
    let deadline = Instant::now() + Duration::from_secs(10);
    while regions_on(&cluster, 4).len() < 6 {
        assert!(
            Instant::now() < deadline,
            "store 4 holds {} regions",
            regions_on(&cluster, 4).len()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    for (k, v) in &acked {
        cluster.must_get_equal(4, k, v);
        assert_eq!(cluster.must_get(k).as_deref(), Some(v.as_slice()));
    }
    // Writes still work with store 3 gone.
    cluster.must_put(b"r002-after", b"still writable");
    assert_eq!(
        cluster.must_get(b"r002-after").as_deref(),
        Some(&b"still writable"[..])
    );
}

#[test]
fn empty_stores_get_their_share_of_regions_and_leaders() {
    let _g = scenario_lock();
    let (cluster, core) = cluster_with_core(5, Duration::from_secs(60));
    let count = 51usize;
    cluster.run_on_stores(&[1, 2, 3], &split_keys(count));
    core.bootstrap(&[1, 2, 3], &cluster.cached_regions());
    // Some data in every region, so each has a size the balancer can weigh.
    for i in 0..count {
        for j in 0..4 {
            let key = format!("r{i:03}-{j}").into_bytes();
            cluster.must_put(&key, &[b'x'; 256]);
        }
    }
    core.add_store(4);
    core.add_store(5);
    cluster.start_store(4);
    cluster.start_store(5);

    let started = Instant::now();
    let deadline = started + Duration::from_secs(120);
    let within = |n: u64, mean: f64| (n as f64 - mean).abs() <= mean * 0.2;
    loop {
        let stores = core.cluster().all_stores();
        let regions: HashMap<u64, u64> =
            stores.iter().map(|s| (s.meta.id, s.region_count)).collect();
        let leaders: HashMap<u64, u64> =
            stores.iter().map(|s| (s.meta.id, s.leader_count)).collect();
        let region_mean = (count * 3) as f64 / 5.0;
        let leader_mean = count as f64 / 5.0;
        let balanced = stores.len() == 5
            && regions.values().all(|&n| within(n, region_mean))
            && leaders.values().all(|&n| within(n, leader_mean));
        if balanced {
            eprintln!(
                "balanced after {:?}: regions {regions:?}, leaders {leaders:?}, operators {:?}",
                started.elapsed(),
                core.coordinator().counters()
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not balanced within 120 s: regions {regions:?}, leaders {leaders:?}, sizes {:?}, region sizes {:?}, operators {:?}, in flight {} (seed {})",
            stores.iter().map(|s| (s.meta.id, s.region_size)).collect::<Vec<_>>(),
            core.cluster().scan_regions(b"", b"", 0).iter().map(|r| r.approximate_size).collect::<Vec<_>>(),
            core.coordinator().counters(),
            core.coordinator().operator_count(),
            cluster.seed
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // The stores' own view agrees with the scheduler's: each holds about its share.
    std::thread::sleep(Duration::from_secs(1));
    for s in 1..=5 {
        let held = regions_on(&cluster, s).len() as f64;
        assert!(
            (held - 30.6).abs() <= 30.6 * 0.25,
            "store {s} holds {held} regions on disk"
        );
    }
    // Every write is still there.
    for i in 0..count {
        let key = format!("r{i:03}-0").into_bytes();
        assert_eq!(cluster.must_get(&key), Some(vec![b'x'; 256]));
    }
}

/// Operators an administrator asks for (what `tessera ctl` sends through the HTTP API) are
/// carried out by the region's leader: a split at a chosen key and a leader transfer.
#[test]
fn admin_split_and_leader_transfer_are_carried_out() {
    let _g = scenario_lock();
    let (cluster, core) = cluster_with_core(3, Duration::from_secs(30));
    cluster.run_on_stores(&[1, 2, 3], &[]);
    core.bootstrap(&[1, 2, 3], &cluster.cached_regions());
    for k in [&b"a"[..], b"m", b"z"] {
        cluster.must_put(k, k);
    }
    let wait_for = |what: &str, cond: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !cond() {
            assert!(Instant::now() < deadline, "{what} not done within 30 s");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    // The scheduler learns the region (and its leader) from a heartbeat first.
    wait_for("first heartbeat", &|| {
        core.cluster()
            .get_region_by_id(1)
            .is_some_and(|r| r.leader.is_some())
    });
    core.coordinator()
        .admin(scheduler::AdminRequest::Split {
            region_id: 1,
            keys: vec![b"k".to_vec(), b"p".to_vec()],
        })
        .unwrap();
    wait_for("split", &|| {
        core.cluster().scan_regions(b"", b"", 0).len() == 3
    });
    let regions = core.cluster().scan_regions(b"", b"", 0);
    let bounds: Vec<(Vec<u8>, Vec<u8>)> = regions
        .iter()
        .map(|r| (r.region.start_key.clone(), r.region.end_key.clone()))
        .collect();
    assert_eq!(
        bounds,
        vec![
            (b"".to_vec(), b"k".to_vec()),
            (b"k".to_vec(), b"p".to_vec()),
            (b"p".to_vec(), b"".to_vec())
        ]
    );
    for k in [&b"a"[..], b"m", b"z"] {
        assert_eq!(cluster.must_get(k), Some(k.to_vec()));
    }

    // Move the middle region's leadership to a store that does not lead it.
    let middle = core.cluster().get_region(b"m").unwrap();
    wait_for("middle region's leader", &|| {
        core.cluster()
            .get_region(b"m")
            .is_some_and(|r| r.leader.is_some())
    });
    let leader = core.cluster().get_region(b"m").unwrap().leader.unwrap();
    let target = middle
        .region
        .peers
        .iter()
        .find(|p| p.store_id != leader.store_id)
        .unwrap()
        .store_id;
    core.coordinator()
        .admin(scheduler::AdminRequest::TransferLeader {
            region_id: middle.id(),
            to_store_id: target,
        })
        .unwrap();
    wait_for("leader transfer", &|| {
        core.cluster()
            .get_region(b"m")
            .and_then(|r| r.leader)
            .is_some_and(|l| l.store_id == target)
    });
    cluster.must_put(b"m", b"after transfer");
    assert_eq!(cluster.must_get(b"m"), Some(b"after transfer".to_vec()));
}

/// The new region's first leader campaigns as soon as its store applied the split; votes
/// reaching stores that have not applied it yet are kept and replayed when the split
/// creates the peer there, so the region serves writes well within one election timeout.
#[test]
fn a_split_region_elects_its_leader_without_an_election_timeout() {
    let _g = scenario_lock();
    let mut cfg = raftstore::Config::for_tests();
    // Elections take 2 to 4 s unless a vote arrives.
    cfg.raft_base_tick_interval = Duration::from_millis(50);
    cfg.raft_election_timeout_ticks = 40;
    let core = CoreScheduler::new(Duration::from_secs(30), Duration::from_millis(50), 7);
    let cluster = Arc::new(Cluster::with_scheduler(
        3,
        cfg,
        Arc::new(MockScheduler::default()),
        core.clone(),
    ));
    cluster.run_on_stores(&[1, 2, 3], &[]);
    core.bootstrap(&[1, 2, 3], &cluster.cached_regions());
    cluster.must_put(b"a", b"a");
    let deadline = Instant::now() + Duration::from_secs(30);
    while core
        .cluster()
        .get_region_by_id(1)
        .and_then(|r| r.leader)
        .is_none()
    {
        assert!(Instant::now() < deadline, "no heartbeat from region 1");
        std::thread::sleep(Duration::from_millis(20));
    }
    for round in 0..3 {
        // Appends (and so the commit of the split) reach followers late, votes at once:
        // the new region's first vote arrives before the followers have applied the split,
        // as it often does over a real network.
        cluster.add_filter(SlowAppends(Duration::from_millis(300)));
        let key = format!("m{round}").into_bytes();
        let before = core.cluster().scan_regions(b"", b"", 0).len();
        // The previous round's split operator may still be finishing on this region
        // (it ends with the heartbeat that shows the split): ask again until it is free.
        loop {
            let region = core.cluster().get_region(&key).unwrap();
            match core.coordinator().admin(scheduler::AdminRequest::Split {
                region_id: region.id(),
                keys: vec![key.clone()],
            }) {
                Ok(_) => break,
                Err(scheduler::AdminError::Busy(_)) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => panic!("split of region {} refused: {e:?}", region.id()),
            }
        }
        while core.cluster().scan_regions(b"", b"", 0).len() == before {
            assert!(Instant::now() < deadline, "split not done");
            std::thread::sleep(Duration::from_millis(5));
        }
        let t = Instant::now();
        cluster.must_put(&key, b"first write in the new region");
        let took = t.elapsed();
        assert!(
            took < Duration::from_millis(1500),
            "round {round}: the new region took {took:?} to take a write (seed {})",
            cluster.seed
        );
        cluster.clear_filters();
    }
}

struct SlowAppends(Duration);

impl test_cluster::Filter for SlowAppends {
    fn decide(
        &self,
        _: u64,
        _: u64,
        msg: &raftstore::RaftMessage,
        _: &mut rand::rngs::StdRng,
    ) -> test_cluster::Decision {
        if msg.message.get_msg_type() == raft::eraftpb::MessageType::MsgAppend {
            test_cluster::Decision::Delay(self.0)
        } else {
            test_cluster::Decision::Pass
        }
    }
}
