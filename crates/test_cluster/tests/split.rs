//! TinyKV 3B split scenarios: a region that grows past its max size splits; the parts tile
//! the original range; requests to the wrong region get KeyNotInRegion; a store cut off
//! during the split catches up; the matrix of splits under faults, restarts, log GC and
//! conf changes keeps every acknowledged write exactly once, in order.

use std::time::Duration;

use proto::raft_cmdpb::{CmdType, GetRequest, Request};
use test_cluster::scenario::scenario_lock;
use test_cluster::{Cluster, GenericTest};

fn get(key: &[u8]) -> Request {
    Request {
        cmd_type: CmdType::Get as i32,
        get: Some(GetRequest {
            cf: "default".into(),
            key: key.to_vec(),
        }),
        ..Default::default()
    }
}

#[test]
fn one_split() {
    let _g = scenario_lock();
    let mut cfg = raftstore::Config::for_tests();
    cfg.region_max_size = 800;
    cfg.region_split_size = 500;
    let cluster = Cluster::new(5, cfg);
    cluster.run();
    cluster.must_put(b"k1", b"v1");
    cluster.must_put(b"k2", b"v2");
    let original = cluster.region_for_key(b"k1").unwrap();
    assert_eq!(original.id, cluster.region_for_key(b"k2").unwrap().id);

    cluster.isolate(5);
    for i in 100..200 {
        cluster.must_put(format!("k{i}").as_bytes(), format!("v{i}").as_bytes());
    }
    std::thread::sleep(Duration::from_millis(200));
    cluster.clear_filters();

    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let (left, right) = loop {
        cluster.refresh_regions();
        let l = cluster.region_for_key(b"k1").unwrap();
        let r = cluster.region_for_key(b"k2").unwrap();
        if l.id != r.id {
            break (l, r);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "region never split (seed {})",
            cluster.seed
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    // The parts tile the original range exactly.
    assert_eq!(left.start_key, original.start_key);
    assert_eq!(right.end_key, original.end_key);
    let mut regions = cluster.cached_regions();
    regions.sort_by(|a, b| a.start_key.cmp(&b.start_key));
    assert_eq!(regions.first().unwrap().start_key, b"".to_vec());
    assert_eq!(regions.last().unwrap().end_key, b"".to_vec());
    for w in regions.windows(2) {
        assert_eq!(
            w[0].end_key, w[1].start_key,
            "regions must tile: {regions:?}"
        );
    }
    assert!(left.region_epoch.unwrap().version > original.region_epoch.unwrap().version);
    // The original region keeps the left part.
    assert_eq!(left.id, original.id);

    // A key sent to the wrong region is refused with KeyNotInRegion.
    let resp = cluster.send_to_region(&left, vec![get(b"k2")]);
    let err = resp.header.and_then(|h| h.error).expect("an error");
    assert!(err.key_not_in_region.is_some(), "got {err:?}");

    // A request carrying the pre-split epoch gets EpochNotMatch with the current region and
    // its new right sibling, so a client can re-route without another lookup.
    let resp = cluster.send_to_region(&original, vec![get(b"k1")]);
    let err = resp.header.and_then(|h| h.error).expect("an error");
    let current = err.epoch_not_match.expect("EpochNotMatch").current_regions;
    assert!(
        current
            .iter()
            .any(|r| r.id == left.id && r.end_key == left.end_key),
        "{current:?}"
    );
    assert!(
        current.iter().any(|r| r.start_key == left.end_key),
        "{current:?}"
    );

    // The isolated store catches up, including the data of the new region.
    cluster.must_get_equal(5, b"k100", b"v100");
    cluster.must_get_equal(5, b"k2", b"v2");
    // Both regions reported themselves to the scheduler.
    let known = cluster.scheduler().regions();
    assert!(known
        .iter()
        .any(|r| r.id == left.id && r.end_key == left.end_key));
    assert!(known.iter().any(|r| r.id == right.id));
}

#[test]
fn split_recover() {
    let _g = scenario_lock();
    GenericTest {
        crash: true,
        split: true,
        ..Default::default()
    }
    .run();
}

#[test]
fn split_recover_many_clients() {
    let _g = scenario_lock();
    GenericTest {
        clients: 20,
        crash: true,
        split: true,
        ..Default::default()
    }
    .run();
}

#[test]
fn split_unreliable() {
    let _g = scenario_lock();
    GenericTest {
        clients: 5,
        unreliable: true,
        split: true,
        ..Default::default()
    }
    .run();
}

#[test]
fn split_unreliable_recover() {
    let _g = scenario_lock();
    GenericTest {
        clients: 5,
        unreliable: true,
        crash: true,
        split: true,
        ..Default::default()
    }
    .run();
}

fn split_checks(cluster: &Cluster, stores: u64) -> u64 {
    (1..=stores)
        .map(|s| {
            cluster
                .stats(s)
                .split_checks
                .load(std::sync::atomic::Ordering::Relaxed)
        })
        .sum()
}

/// The split-check tick scans a region only once an eighth of the split size was written
/// since the last scan; an idle or slowly written region is not scanned again and again.
#[test]
fn split_check_waits_for_an_eighth_of_the_split_size() {
    let _g = scenario_lock();
    let mut cfg = raftstore::Config::for_tests();
    cfg.region_split_size = 80_000;
    cfg.region_max_size = 120_000;
    let cluster = Cluster::new(3, cfg);
    cluster.run();
    cluster.must_put(b"a", b"1");
    // The first tick of a leader scans (nothing is known yet about the region's size).
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while split_checks(&cluster, 3) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no split check ever ran"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(500));
    let idle = split_checks(&cluster, 3);
    // 10 ticks with nothing written: no scan.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        split_checks(&cluster, 3),
        idle,
        "an idle region was scanned again"
    );
    // 5,000 bytes < 80,000 / 8: still no scan.
    for i in 0..5 {
        cluster.must_put(format!("b{i}").as_bytes(), &[b'v'; 998]);
    }
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        split_checks(&cluster, 3),
        idle,
        "scanned after less than 1/8 of the split size"
    );
    // Another 6,000 bytes crosses 10,000: the next tick scans.
    for i in 0..6 {
        cluster.must_put(format!("c{i}").as_bytes(), &[b'v'; 998]);
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    while split_checks(&cluster, 3) == idle {
        assert!(
            std::time::Instant::now() < deadline,
            "no scan after 1/8 of the split size"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Still far below the max size: no split.
    cluster.refresh_regions();
    assert_eq!(cluster.cached_regions().len(), 1);
}

/// After a split the leader reports both regions to the scheduler right away, not at its
/// next heartbeat tick (set here to an hour), and the ids came from AskBatchSplit.
#[test]
fn split_reports_both_regions_to_the_scheduler_at_once() {
    let _g = scenario_lock();
    let mut cfg = raftstore::Config::for_tests();
    cfg.region_max_size = 800;
    cfg.region_split_size = 500;
    cfg.region_heartbeat_tick_interval = Duration::from_secs(3600);
    let cluster = Cluster::new(3, cfg);
    cluster.run();
    cluster.must_put(b"k1", b"v1");
    let original = cluster.region_for_key(b"k1").unwrap();
    let before = cluster.scheduler().heartbeats_of(original.id);
    // 60 keys of ~25 bytes: about 1,500 bytes, past the 800-byte max size.
    for i in 100..160 {
        cluster.must_put(
            format!("k{i}").as_bytes(),
            format!("value-{i:014}").as_bytes(),
        );
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let right = loop {
        cluster.refresh_regions();
        let r = cluster.region_for_key(b"k159").unwrap();
        if r.id != original.id {
            break r;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "region never split (seed {})",
            cluster.seed
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        cluster
            .scheduler()
            .split_asks
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(1);
    loop {
        let left_now = cluster.scheduler().heartbeats_of(original.id);
        let right_now = cluster.scheduler().heartbeats_of(right.id);
        if left_now > before && right_now > 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "split not reported at once: left {before}->{left_now}, right {right_now}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let known = cluster.scheduler().regions();
    let left = known
        .iter()
        .find(|r| r.id == original.id)
        .expect("left known");
    assert!(left.region_epoch.unwrap().version > original.region_epoch.unwrap().version);
    assert!(!left.end_key.is_empty());
    // Those heartbeats carry each region's share of the parent's measured size (over the
    // 800-byte max, split in at most a few parts), not an empty region.
    let parts = known.len() as u64;
    for id in [original.id, right.id] {
        let size = cluster.scheduler().reported_size(id).unwrap();
        assert!(
            size >= 800 / parts,
            "region {id} reported {size} bytes right after the split ({parts} regions)"
        );
    }
}
