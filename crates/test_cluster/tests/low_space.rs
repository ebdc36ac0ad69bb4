//! Issue 12's acceptance: a store whose reported free space is low gets no new replicas;
//! they go to a store with room, and once the low store has room again it gets its share.
//!
//! The whole path is real except the network: each store's pd worker reads the disk space
//! of its data directory (`statvfs`), capped by `raftstore::Config::capacity`, and sends it
//! in its store heartbeats to the scheduler core (`SchedulerCluster` and its `Coordinator`
//! in process), whose replica checker and balance-region place the replicas. Store 4 is
//! configured with a capacity smaller than what its engines already use, so it reports no
//! free space at all; store 5 has the whole disk.

use std::sync::Arc;
use std::time::{Duration, Instant};

use proto::raft_serverpb::PeerState;
use scheduler::{ScheduleConfig, SchedulerLimits};
use test_cluster::pd::CoreScheduler;
use test_cluster::scenario::scenario_lock;
use test_cluster::scheduler::MockScheduler;
use test_cluster::Cluster;

/// Store 4's capacity: less than any bootstrapped store's engines take, so its free space
/// is 0 and it is low on space by any ratio.
const TINY: u64 = 1024;

fn wait_for(what: &str, timeout: Duration, cond: &mut dyn FnMut() -> Result<(), String>) {
    let deadline = Instant::now() + timeout;
    loop {
        match cond() {
            Ok(()) => return,
            Err(state) => assert!(
                Instant::now() < deadline,
                "{what} not reached within {timeout:?}: {state}"
            ),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Regions with a peer on `store`, as the scheduler knows them.
fn scheduler_regions_on(core: &CoreScheduler, store: u64) -> Vec<u64> {
    core.cluster()
        .scan_regions(b"", b"", 0)
        .iter()
        .filter(|r| r.peer_on_store(store).is_some())
        .map(|r| r.id())
        .collect()
}

/// Regions with a live peer on `store`, as the store's own engine has them.
fn stored_regions_on(cluster: &Cluster, store: u64) -> Vec<u64> {
    cluster
        .stored_regions()
        .into_iter()
        .filter(|(s, st)| *s == store && st.state == PeerState::Normal as i32)
        .filter_map(|(_, st)| st.region.map(|r| r.id))
        .collect()
}

#[test]
fn replicas_avoid_a_store_low_on_space_and_reach_one_with_room() {
    let _g = scenario_lock();
    let mut cfg = raftstore::Config::for_tests();
    // The cluster's store directories are under the system's temporary directory, so
    // its filesystem is theirs.
    cfg.data_dir = Some(std::env::temp_dir());
    let core = CoreScheduler::new(Duration::from_secs(3), Duration::from_millis(100), 7);
    let mut cluster =
        Cluster::with_scheduler(5, cfg, Arc::new(MockScheduler::default()), core.clone());
    let regions = 6;
    let keys: Vec<Vec<u8>> = (1..regions)
        .map(|i| format!("r{i:03}").into_bytes())
        .collect();
    // Six empty regions on stores 1-3. Empty regions have size 0, so balance-region has
    // nothing to gain from moving them until the stores below have reported their space.
    cluster.run_on_stores(&[1, 2, 3], &keys);
    core.bootstrap(&[1, 2, 3], &cluster.cached_regions());
    // Balance-region waits until stores 4 and 5 have reported their disks: a store the
    // scheduler has registered but not heard from has capacity 0 ("unknown", which
    // counts as room), and as the emptiest store store 4 would be its natural target.
    let balance_region = |max_per_tick| {
        let limits = SchedulerLimits {
            min_interval_ms: 0,
            max_per_tick,
        };
        assert!(core
            .coordinator()
            .set_limits(scheduler::schedulers::balance_region::NAME, limits));
    };
    balance_region(0);
    core.add_store(4);
    core.add_store(5);
    cluster.cfg.capacity = TINY;
    cluster.start_store(4);
    cluster.cfg.capacity = 0;
    cluster.start_store(5);

    let low = ScheduleConfig::default().low_space_ratio;
    wait_for(
        "store heartbeats with disk space",
        Duration::from_secs(20),
        &mut || {
            let s4 = core.cluster().get_store(4).unwrap();
            let s5 = core.cluster().get_store(5).unwrap();
            let seen = s4.stats.capacity == TINY
                && s4.stats.available == 0
                && s4.is_low_space(low)
                && s5.stats.capacity > TINY
                && !s5.is_low_space(low);
            if seen {
                Ok(())
            } else {
                Err(format!("store 4 {:?}, store 5 {:?}", s4.stats, s5.stats))
            }
        },
    );
    eprintln!(
        "store 4 reports {:?}, store 5 {:?}",
        core.cluster().get_store(4).unwrap().stats,
        core.cluster().get_store(5).unwrap().stats
    );
    // Its default limit: one move per round.
    balance_region(1);

    // Data in every region, so each has a size for balance-region to weigh.
    for i in 0..regions {
        for j in 0..20 {
            let key = format!("r{i:03}-{j:02}").into_bytes();
            cluster.must_put(&key, &[b'v'; 1024]);
        }
    }

    // Store 1 is lost for good: every region needs a new replica. Store 4 holds none, so
    // by region count it is the natural target; it is full, so store 5 gets them all
    // (and balance-region, which would also pick the emptiest store, must skip it).
    cluster.stop_store(1);
    let seed = cluster.seed;
    wait_for(
        "replicas rebuilt off store 1",
        Duration::from_secs(60),
        &mut || {
            let on_4 = scheduler_regions_on(&core, 4);
            assert!(
                on_4.is_empty(),
                "the scheduler placed regions {on_4:?} on store 4, which is low on space \
                 (seed {seed})"
            );
            let on_5 = scheduler_regions_on(&core, 5);
            let on_1 = scheduler_regions_on(&core, 1);
            let all = core.cluster().scan_regions(b"", b"", 0);
            let three = all.len() == regions && all.iter().all(|r| r.region.peers.len() == 3);
            // Stores 2, 3 and 5 are the only live ones with room: each region ends up on
            // exactly those (balance-region may move some to store 5 before store 1 is
            // declared down; the replica checker then re-adds on 2 or 3).
            if three && on_5.len() == regions && on_1.is_empty() {
                Ok(())
            } else {
                Err(format!("store 5 has {on_5:?}, store 1 still {on_1:?}"))
            }
        },
    );
    assert!(
        stored_regions_on(&cluster, 4).is_empty(),
        "store 4 received a replica while low on space"
    );
    // Balance-region had its chance too: store 4 is the emptiest and it is left alone.
    // (Operators run in heartbeat answers every 100 ms; a few rounds more.)
    std::thread::sleep(Duration::from_secs(1));
    assert!(scheduler_regions_on(&core, 4).is_empty());
    assert!(stored_regions_on(&cluster, 4).is_empty());

    // Store 4 restarts with the whole disk: no longer low, it gets its share.
    cluster.stop_store(4);
    cluster.start_store(4);
    wait_for(
        "store 4 receiving regions once it has room",
        Duration::from_secs(60),
        &mut || {
            let on_4 = stored_regions_on(&cluster, 4);
            if on_4.len() >= 2 {
                Ok(())
            } else {
                let s4 = core.cluster().get_store(4).unwrap();
                Err(format!("store 4 holds {on_4:?}, reports {:?}", s4.stats))
            }
        },
    );
    // Every write is still there.
    for i in 0..regions {
        let key = format!("r{i:03}-00").into_bytes();
        assert_eq!(cluster.must_get(&key), Some(vec![b'v'; 1024]));
    }
}
