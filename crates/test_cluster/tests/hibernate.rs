//! Hibernating regions (`raftstore::peer::hibernate`): an idle region stops ticking on
//! every store, still serves writes and reads (they wake it), and when its leader's store
//! stops while it sleeps, the followers notice, wake and elect a new leader.

use std::sync::atomic::Ordering;
use std::time::Duration;

use test_cluster::Cluster;

fn hibernating_config() -> raftstore::Config {
    raftstore::Config {
        hibernate_regions: true,
        ..raftstore::Config::for_tests()
    }
}

fn hibernated(cluster: &Cluster, stores: &[u64]) -> u64 {
    stores
        .iter()
        .map(|s| cluster.stats(*s).hibernated_peers.load(Ordering::Relaxed))
        .sum()
}

fn wakeups(cluster: &Cluster, stores: &[u64]) -> u64 {
    stores
        .iter()
        .map(|s| cluster.stats(*s).hibernate_wakeups.load(Ordering::Relaxed))
        .sum()
}

/// Waits (generously: this is no timing test) until `what` holds.
fn wait_until(cluster: &Cluster, what: &str, f: impl FnMut() -> bool) {
    cluster.wait_until(what, Duration::from_secs(30), f)
}

#[test]
fn idle_region_hibernates_and_wakes_for_a_write_and_a_read() {
    let cluster = Cluster::new(3, hibernating_config());
    cluster.run();
    let all = [1, 2, 3];
    cluster.must_put(b"k1", b"v1");
    wait_until(&cluster, "all three peers hibernating", || {
        hibernated(&cluster, &all) == 3
    });

    let before = wakeups(&cluster, &all);
    cluster.must_put(b"k2", b"v2");
    for s in all {
        cluster.must_get_equal(s, b"k2", b"v2");
    }
    assert!(
        wakeups(&cluster, &all) > before,
        "the write woke no peer (seed {})",
        cluster.seed
    );
    // Idle again, it sleeps again.
    wait_until(
        &cluster,
        "the region hibernating again after the write",
        || hibernated(&cluster, &all) == 3,
    );

    // Past any lease the leader held when it fell asleep (leases are shorter than an
    // election timeout, 500 ms here), a read must go through the region and wake it.
    std::thread::sleep(Duration::from_secs(1));
    let before = wakeups(&cluster, &all);
    assert_eq!(cluster.must_get(b"k1"), Some(b"v1".to_vec()));
    assert_eq!(cluster.must_get(b"k2"), Some(b"v2".to_vec()));
    assert!(
        wakeups(&cluster, &all) > before,
        "the read woke no peer (seed {})",
        cluster.seed
    );
    wait_until(
        &cluster,
        "the region hibernating again after the read",
        || hibernated(&cluster, &all) == 3,
    );
    cluster.shutdown();
}

#[test]
fn followers_of_a_hibernating_region_elect_a_new_leader_when_its_store_stops() {
    let cluster = Cluster::new(3, hibernating_config());
    cluster.run();
    cluster.must_put(b"k1", b"v1");
    let old_leader = cluster.leader_of_region(1).expect("region 1 has a leader");
    let all = [1, 2, 3];
    wait_until(&cluster, "all three peers hibernating", || {
        hibernated(&cluster, &all) == 3
    });

    cluster.stop_store(old_leader);
    let survivors: Vec<u64> = all.iter().copied().filter(|s| *s != old_leader).collect();
    // No client traffic: only the store-level check can wake the followers.
    wait_until(
        &cluster,
        "the followers waking after their leader's store stopped",
        || hibernated(&cluster, &survivors) == 0,
    );
    cluster.must_put(b"k2", b"v2");
    let new_leader = cluster.leader_of_region(1).expect("region 1 has a leader");
    assert_ne!(new_leader, old_leader, "seed {}", cluster.seed);
    for s in &survivors {
        cluster.must_get_equal(*s, b"k2", b"v2");
    }
    assert_eq!(cluster.must_get(b"k1"), Some(b"v1".to_vec()));
    cluster.shutdown();
}

#[test]
fn many_idle_regions_all_hibernate_and_each_serves_a_write() {
    let cluster = Cluster::new(3, hibernating_config());
    let keys: Vec<Vec<u8>> = (1..20).map(|i| format!("k{i:02}").into_bytes()).collect();
    cluster.run_with_regions(&keys);
    let all = [1, 2, 3];
    for k in &keys {
        cluster.must_put(k, b"v");
    }
    // 20 regions, three peers each.
    wait_until(&cluster, "all 60 peers hibernating", || {
        hibernated(&cluster, &all) == 60
    });
    for k in &keys {
        cluster.must_put(k, b"w");
        assert_eq!(cluster.must_get(k), Some(b"w".to_vec()));
    }
    wait_until(&cluster, "all 60 peers hibernating again", || {
        hibernated(&cluster, &all) == 60
    });
    cluster.shutdown();
}
