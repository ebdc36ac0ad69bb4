//! The cluster handle: bootstrap, restart recovery, split ids, split reports, stores.

mod common;

use std::collections::HashSet;
use std::sync::Arc;

use common::*;
use engine::{FjallConfig, FjallEngine, MemEngine};
use scheduler::{
    ClusterConfig, Error, HeartbeatOutcome, ManualClock, MetaStore, SchedulerCluster, StoreConfig,
    StoreState, StoreStats,
};

fn open(meta: MetaStore, clock: Arc<ManualClock>) -> SchedulerCluster {
    SchedulerCluster::open(meta, clock, ClusterConfig::default()).unwrap()
}

#[test]
fn everything_waits_for_bootstrap_and_bootstrap_happens_once() {
    let clock = Arc::new(ManualClock::new(T0));
    let cluster = open(MetaStore::new(MemEngine::new()), clock);
    assert!(!cluster.is_bootstrapped());
    assert!(matches!(
        cluster.put_store(store(2)),
        Err(Error::NotBootstrapped)
    ));
    assert!(matches!(
        cluster.region_heartbeat(bootstrap_info()),
        Err(Error::NotBootstrapped)
    ));
    let hb = StoreStats {
        store_id: 1,
        ..Default::default()
    };
    assert!(matches!(
        cluster.store_heartbeat(&hb),
        Err(Error::NotBootstrapped)
    ));
    // Ids and timestamps do not need a bootstrapped cluster (stores allocate their own
    // store id before bootstrapping).
    assert!(cluster.alloc_id().unwrap() > 0);

    // The first region must have a peer on the first store.
    let mut elsewhere = bootstrap_region();
    elsewhere.peers = vec![peer(2, 7)];
    assert!(matches!(
        cluster.bootstrap(store(1), elsewhere),
        Err(Error::InvalidArgument(_))
    ));
    assert!(!cluster.is_bootstrapped());

    cluster.bootstrap(store(1), bootstrap_region()).unwrap();
    assert!(cluster.is_bootstrapped());
    assert!(matches!(
        cluster.bootstrap(store(1), bootstrap_region()),
        Err(Error::AlreadyBootstrapped)
    ));
    assert_eq!(cluster.get_region(b"").unwrap().id(), 1);
    assert_eq!(cluster.get_store(1).unwrap().region_count, 1);
}

#[test]
fn bootstrap_ids_are_never_allocated_again() {
    let cluster = open(
        MetaStore::new(MemEngine::new()),
        Arc::new(ManualClock::new(T0)),
    );
    let mut first = bootstrap_region();
    first.id = 5000;
    first.peers = vec![peer(7000, 1)];
    cluster.bootstrap(store(1), first).unwrap();
    assert!(cluster.alloc_id().unwrap() > 7000);
}

#[test]
fn restart_recovers_cluster_id_ids_tso_gc_safe_point_stores_and_regions() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let regions = test_regions(5);
    let (cluster_id, last_id, last_ts) = {
        let engine = FjallEngine::open(dir.path(), &FjallConfig::default()).unwrap();
        let cluster = open(MetaStore::new(engine), clock.clone());
        cluster.bootstrap(store(1), bootstrap_region()).unwrap();
        for s in &STORES[1..] {
            cluster.put_store(store(*s)).unwrap();
        }
        for r in &regions {
            must_heartbeat(&cluster, r);
        }
        cluster.set_store_offline(3).unwrap();
        assert_eq!(cluster.update_gc_safe_point(400).unwrap(), 400);
        assert_eq!(
            cluster.update_gc_safe_point(300).unwrap(),
            400,
            "never moves back"
        );
        let mut last_id = 0;
        for _ in 0..1500 {
            last_id = cluster.alloc_id().unwrap();
        }
        (cluster.cluster_id(), last_id, cluster.tso(10).unwrap())
    };
    // The clock went back across the restart: timestamps must still grow.
    clock.set(T0 - 60_000);
    let engine = FjallEngine::open(dir.path(), &FjallConfig::default()).unwrap();
    let cluster = open(MetaStore::new(engine), clock);
    assert_eq!(cluster.cluster_id(), cluster_id);
    assert!(cluster.is_bootstrapped());
    assert!(cluster.alloc_id().unwrap() > last_id);
    assert!(cluster.tso(1).unwrap() > last_ts);
    let stores = cluster.all_stores();
    assert_eq!(stores.iter().map(|s| s.meta.id).collect::<Vec<_>>(), STORES);
    assert_eq!(cluster.get_store(3).unwrap().state, StoreState::Offline);
    assert_eq!(cluster.gc_safe_point(), 400);
    // Regions come back with their metadata; leaders and sizes wait for heartbeats.
    assert_eq!(cluster.region_count(), 6);
    for r in &regions {
        let got = cluster.get_region_by_id(r.id()).unwrap();
        assert_eq!(got.region, r.region);
        assert_eq!(got.leader, None);
    }
    // The first heartbeat after restart restores the leader; nothing is stale.
    assert_eq!(
        must_heartbeat(&cluster, &regions[0]),
        HeartbeatOutcome::StatsUpdated
    );
    cluster.regions().verify().unwrap();
}

#[test]
fn a_new_cluster_gets_a_different_id() {
    let a = open(
        MetaStore::new(MemEngine::new()),
        Arc::new(ManualClock::new(T0)),
    );
    let b = open(
        MetaStore::new(MemEngine::new()),
        Arc::new(ManualClock::new(T0)),
    );
    assert_ne!(a.cluster_id(), 0);
    assert_ne!(a.cluster_id(), b.cluster_id());
}

#[test]
fn ask_batch_split_allocates_fresh_ids_and_rejects_stale_epochs() {
    let (cluster, _) = new_cluster();
    let mut r = test_regions(1).remove(0);
    must_heartbeat(&cluster, &r);
    let ids = cluster.ask_batch_split(&r.region, 3).unwrap();
    assert_eq!(ids.len(), 3);
    let mut seen = HashSet::new();
    for split in &ids {
        assert_eq!(split.new_peer_ids.len(), r.region.peers.len());
        assert!(seen.insert(split.new_region_id));
        for p in &split.new_peer_ids {
            assert!(seen.insert(*p), "id {p} handed out twice");
        }
    }
    // Ids never collide with the ones the cluster already uses.
    assert!(!seen.contains(&r.id()) && !seen.contains(&1));

    set_version(&mut r, 5, 2);
    must_heartbeat(&cluster, &r);
    let mut old = r.clone();
    set_version(&mut old, 4, 2);
    assert!(matches!(
        cluster.ask_batch_split(&old.region, 1),
        Err(Error::StaleRegion { .. })
    ));
    assert!(matches!(
        cluster.ask_batch_split(&r.region, 0),
        Err(Error::InvalidArgument(_))
    ));
    // An unknown region is fine unless a newer known region overlaps it.
    let fresh = region(500, b"zz", b"", vec![peer(501, 1)], 5, 1);
    assert!(cluster.ask_batch_split(&fresh, 1).is_ok());
    let outdated = region(500, b"zz", b"", vec![peer(501, 1)], 4, 1);
    assert!(matches!(
        cluster.ask_batch_split(&outdated, 1),
        Err(Error::StaleRegion { .. })
    ));
}

#[test]
fn report_batch_split_covers_the_whole_range_at_once() {
    let (cluster, _) = new_cluster();
    let parent = leader_hb(region(100, b"a", b"", vec![peer(11, 1), peer(12, 2)], 2, 2));
    must_heartbeat(&cluster, &parent);
    let left = region(100, b"a", b"m", parent.region.peers.clone(), 3, 2);
    let right = region(101, b"m", b"", vec![peer(13, 1), peer(14, 2)], 3, 2);
    cluster
        .report_batch_split(&[left.clone(), right.clone()])
        .unwrap();
    let got_left = cluster.get_region(b"b").unwrap();
    assert_eq!(got_left.region, left);
    assert_eq!(
        got_left.leader, parent.leader,
        "the parent's leader is kept"
    );
    assert_eq!(cluster.get_region(b"x").unwrap().region, right);
    assert_eq!(cluster.get_region(b"x").unwrap().leader, None);
    cluster.regions().verify().unwrap();
    // Not adjacent: refused as a whole.
    assert!(matches!(
        cluster.report_batch_split(&[right, left]),
        Err(Error::InvalidArgument(_))
    ));
}

#[test]
fn malformed_heartbeats_are_errors_not_panics() {
    let (cluster, _) = new_cluster();
    let good = test_regions(1).remove(0);
    let mut cases = Vec::new();
    let mut bad = good.clone();
    bad.leader = Some(peer(999, 1));
    cases.push(("leader not a peer", bad));
    let mut bad = good.clone();
    bad.region.end_key = b"0".to_vec();
    cases.push(("end before start", bad));
    let mut bad = good.clone();
    bad.region.region_epoch = None;
    cases.push(("no epoch", bad));
    let mut bad = good.clone();
    bad.region.peers[1].store_id = bad.region.peers[0].store_id;
    cases.push(("two peers on one store", bad));
    let mut bad = good.clone();
    bad.region.id = 0;
    cases.push(("id 0", bad));
    let mut bad = good.clone();
    bad.pending_peers = vec![peer(4242, 2)];
    cases.push(("pending peer not a peer", bad));
    let mut bad = good.clone();
    bad.region.peers.clear();
    bad.leader = None;
    cases.push(("no peers", bad));
    for (what, info) in cases {
        match cluster.region_heartbeat(info) {
            Err(Error::InvalidArgument(_)) => {}
            other => panic!("{what}: {other:?}"),
        }
    }
    check_regions(&cluster, &[bootstrap_info()]);
}

#[test]
fn store_liveness_follows_heartbeats_and_admin_states_persist() {
    let clock = Arc::new(ManualClock::new(T0));
    let meta = MetaStore::new(MemEngine::new());
    let cfg = ClusterConfig {
        store: StoreConfig {
            disconnect_after_ms: 20_000,
            down_after_ms: 60_000,
        },
        ..Default::default()
    };
    let cluster = SchedulerCluster::open(meta.clone(), clock.clone(), cfg.clone()).unwrap();
    cluster.bootstrap(store(1), bootstrap_region()).unwrap();
    cluster.put_store(store(2)).unwrap();
    let hb = |id| StoreStats {
        store_id: id,
        capacity: 1000,
        available: 400,
        used_size: 600,
        region_count: 0,
    };
    cluster.store_heartbeat(&hb(2)).unwrap();
    assert_eq!(cluster.get_store(2).unwrap().stats, hb(2));
    clock.advance(30_000);
    assert_eq!(
        cluster.get_store(2).unwrap().state,
        StoreState::Disconnected
    );
    clock.advance(30_000);
    assert_eq!(cluster.get_store(2).unwrap().state, StoreState::Down);
    cluster.store_heartbeat(&hb(2)).unwrap();
    assert_eq!(cluster.get_store(2).unwrap().state, StoreState::Up);
    assert!(matches!(
        cluster.store_heartbeat(&hb(9)),
        Err(Error::StoreNotFound(9))
    ));

    // Store 1 holds the bootstrap region: it can go offline but not tombstone.
    cluster.set_store_offline(1).unwrap();
    assert!(matches!(
        cluster.set_store_tombstone(1),
        Err(Error::InvalidStoreState { .. })
    ));
    cluster.set_store_offline(2).unwrap();
    cluster.set_store_tombstone(2).unwrap();
    assert_eq!(cluster.get_store(2).unwrap().state, StoreState::Tombstone);
    assert!(matches!(
        cluster.store_heartbeat(&hb(2)),
        Err(Error::StoreTombstone(2))
    ));
    assert!(matches!(
        cluster.put_store(store(2)),
        Err(Error::StoreTombstone(2))
    ));

    drop(cluster);
    let reopened = SchedulerCluster::open(meta, clock, cfg).unwrap();
    assert_eq!(reopened.get_store(1).unwrap().state, StoreState::Offline);
    assert_eq!(reopened.get_store(2).unwrap().state, StoreState::Tombstone);
}

#[test]
fn random_regions_for_schedulers() {
    use rand::{rngs::StdRng, SeedableRng};
    use scheduler::PeerKind;
    let (cluster, _) = new_cluster();
    let mut regions = test_regions(9);
    regions[4].pending_peers = vec![regions[4].region.peers[1]];
    for r in &regions {
        must_heartbeat(&cluster, r);
    }
    let tree = cluster.regions();
    let mut rng = StdRng::seed_from_u64(9);
    for s in STORES {
        for kind in [PeerKind::Leader, PeerKind::Follower] {
            let allowed: HashSet<u64> = tree.store_region_ids(s, kind).into_iter().collect();
            let mut seen = HashSet::new();
            for _ in 0..200 {
                let r = tree.random_region(s, kind, &mut rng).unwrap();
                assert!(allowed.contains(&r.id()), "store {s} {kind:?}: {}", r.id());
                seen.insert(r.id());
            }
            assert_eq!(
                seen, allowed,
                "store {s} {kind:?}: every region gets picked"
            );
        }
    }
    let lagging = regions[4].region.peers[1].store_id;
    assert_eq!(
        tree.random_region(lagging, PeerKind::Pending, &mut rng)
            .map(|r| r.id()),
        Some(104)
    );
    assert!(tree.random_region(99, PeerKind::Leader, &mut rng).is_none());
    assert!(tree
        .random_region(lagging, PeerKind::Learner, &mut rng)
        .is_none());
}

#[test]
fn overlapping_saved_regions_are_reported_as_corrupt() {
    let meta = MetaStore::new(MemEngine::new());
    // Written directly, bypassing the checks a heartbeat goes through.
    meta.save_region(&region(10, b"a", b"m", vec![peer(11, 1)], 1, 1), &[])
        .unwrap();
    meta.save_region(&region(20, b"c", b"", vec![peer(21, 1)], 1, 1), &[])
        .unwrap();
    let opened = SchedulerCluster::open(
        meta,
        Arc::new(ManualClock::new(T0)),
        ClusterConfig::default(),
    );
    assert!(matches!(opened, Err(Error::Corrupt(_))), "{opened:?}");
}
