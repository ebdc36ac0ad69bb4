//! A store spreads its regions over several raft pollers (`store_pool_size`), by a hash of
//! the region id. A split applied on one poller starts the new region's peer on the poller
//! that hosts it; every region serves reads and writes wherever it lives, and a restarted
//! store puts every region back on its poller.

use std::time::Duration;

use raftstore::router::poller_of;
use test_cluster::scenario::scenario_lock;
use test_cluster::Cluster;

const REGIONS: usize = 12;

fn key(i: usize) -> Vec<u8> {
    format!("k{i:02}").into_bytes()
}

/// Waits until each of `stores` reports `regions` peers over its two pollers, none empty.
fn wait_spread(cluster: &Cluster, stores: &[u64], regions: u64) {
    let spread = |g: &[raftstore::stats::PollerGauges]| {
        g.len() == 2
            && g.iter().all(|p| p.peers > 0)
            && g.iter().map(|p| p.peers).sum::<u64>() == regions
    };
    cluster.wait_until(
        "regions spread over both pollers of every store",
        Duration::from_secs(10),
        || {
            stores
                .iter()
                .all(|s| spread(&cluster.stats(*s).poller_gauges()))
        },
    );
}

#[test]
fn split_regions_start_on_their_own_poller_and_all_serve_across_a_restart() {
    let _g = scenario_lock();
    let mut cfg = raftstore::Config::for_tests();
    cfg.store_pool_size = 2;
    let cluster = Cluster::new(3, cfg);
    cluster.run();
    for i in 1..REGIONS {
        let region = cluster
            .region_for_key(&key(i))
            .expect("a region holds every key");
        cluster.must_split(region.id, &key(i));
    }
    cluster.refresh_regions();
    let ids: Vec<u64> = (0..REGIONS)
        .map(|i| cluster.region_for_key(&key(i)).unwrap().id)
        .collect();
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(
        sorted.len(),
        REGIONS,
        "every key in its own region: {ids:?}"
    );
    // Splits alone decide where the new regions go: both pollers host some.
    let on_first = ids.iter().filter(|id| poller_of(**id, 2) == 0).count();
    assert!(on_first > 0 && on_first < REGIONS, "region ids {ids:?}");

    for i in 0..REGIONS {
        cluster.must_put(&key(i), b"before");
    }
    for s in 1..=3 {
        for i in 0..REGIONS {
            cluster.must_get_equal(s, &key(i), b"before");
        }
    }
    wait_spread(&cluster, &[1, 2, 3], REGIONS as u64);

    cluster.stop_store(2);
    for i in 0..REGIONS {
        cluster.must_put(&key(i), b"while 2 was down");
    }
    cluster.start_store(2);
    for i in 0..REGIONS {
        cluster.must_get_equal(2, &key(i), b"while 2 was down");
        cluster.must_put(&key(i), b"after");
    }
    for s in 1..=3 {
        for i in 0..REGIONS {
            cluster.must_get_equal(s, &key(i), b"after");
            assert_eq!(cluster.must_get(&key(i)).as_deref(), Some(&b"after"[..]));
        }
    }
    wait_spread(&cluster, &[1, 2, 3], REGIONS as u64);
    cluster.shutdown();
}
