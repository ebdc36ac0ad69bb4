//! Hand-written scenarios from TinyKV (TestOnePartition2B, TestOneSnapshot2C) and restart
//! checks under concurrent writers.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use engine::CF_LOCK;
use test_cluster::scenario::scenario_lock;
use test_cluster::Cluster;

#[test]
fn one_partition_minority_never_sees_majority_writes() {
    let _g = scenario_lock();
    let cluster = Cluster::new(5, raftstore::Config::for_tests());
    cluster.run();
    cluster.must_put(b"k0", b"v0");
    let leader = cluster.leader_of_region(1).expect("a leader");
    let others: Vec<u64> = (1..=5).filter(|s| *s != leader).collect();
    // Leader plus two in the majority, two in the minority.
    let majority = vec![leader, others[0], others[1]];
    let minority = vec![others[2], others[3]];
    cluster.partition(&majority, &minority);
    cluster.must_put(b"k1", b"v1");
    assert_eq!(cluster.must_get(b"k1"), Some(b"v1".to_vec()));
    for s in &minority {
        cluster.must_get_none(*s, b"k1");
    }
    for s in &majority {
        cluster.must_get_equal(*s, b"k1", b"v1");
    }

    // Now the old leader and one follower are the minority.
    cluster.clear_filters();
    let minority2 = vec![leader, others[0]];
    let majority2 = vec![others[1], others[2], others[3]];
    cluster.partition(&minority2, &majority2);
    cluster.must_put(b"k1", b"changed");
    assert_eq!(cluster.must_get(b"k1"), Some(b"changed".to_vec()));
    thread::sleep(Duration::from_millis(300));
    for s in &minority2 {
        assert_eq!(
            cluster.engine_get(*s, engine::CF_DEFAULT, b"k1"),
            Some(b"v1".to_vec()),
            "store {s} in the minority must not see the new value"
        );
    }

    cluster.clear_filters();
    cluster.must_put(b"k2", b"v2");
    for s in 1..=5 {
        cluster.must_get_equal(s, b"k2", b"v2");
        cluster.must_get_equal(s, b"k1", b"changed");
    }
}

#[test]
fn one_snapshot_catches_up_a_partitioned_store() {
    let _g = scenario_lock();
    let mut cfg = raftstore::Config::for_tests();
    cfg.raft_log_gc_count_limit = 10;
    let cluster = Cluster::new(3, cfg);
    cluster.run();
    cluster.must_put_cf(CF_LOCK, b"k1", b"v1");
    cluster.must_put_cf(CF_LOCK, b"k2", b"v2");
    cluster.must_get_cf_equal(1, CF_LOCK, b"k1", b"v1");
    cluster.must_get_cf_equal(1, CF_LOCK, b"k2", b"v2");
    for s in 1..=3 {
        assert_eq!(
            cluster.truncated_index(s, 1),
            raftstore::util::RAFT_INIT_LOG_INDEX,
            "store {s}: no compaction before the log reaches its limit"
        );
    }

    let snaps_before = cluster.stats(1).snapshots_applied.load(Ordering::Relaxed);
    cluster.partition(&[1], &[2, 3]);
    for i in 100..115 {
        cluster.must_put_cf(
            CF_LOCK,
            format!("k{i}").as_bytes(),
            format!("v{i}").as_bytes(),
        );
    }
    cluster.must_delete_cf(CF_LOCK, b"k2");
    thread::sleep(Duration::from_millis(500));
    assert_eq!(
        cluster.engine_get(1, CF_LOCK, b"k100"),
        None,
        "store 1 is cut off"
    );

    cluster.clear_filters();
    cluster.must_get_cf_equal(1, CF_LOCK, b"k1", b"v1");
    cluster.must_get_cf_equal(1, CF_LOCK, b"k100", b"v100");
    cluster.must_get_cf_equal(1, CF_LOCK, b"k114", b"v114");
    cluster.must_get_cf_none(1, CF_LOCK, b"k2");
    // The region worker writes the snapshot's data before it counts the snapshot as applied,
    // so the data can be visible a moment before the counter moves.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut snaps_after = cluster.stats(1).snapshots_applied.load(Ordering::Relaxed);
    while snaps_after == snaps_before && std::time::Instant::now() < deadline {
        thread::sleep(Duration::from_millis(10));
        snaps_after = cluster.stats(1).snapshots_applied.load(Ordering::Relaxed);
    }
    assert!(
        snaps_after > snaps_before,
        "store 1 must have caught up through a snapshot (applied {snaps_before} -> {snaps_after})"
    );

    cluster.stop_store(1);
    cluster.start_store(1);
    cluster.must_get_cf_equal(1, CF_LOCK, b"k1", b"v1");
    cluster.must_get_cf_equal(1, CF_LOCK, b"k100", b"v100");
    cluster.must_get_cf_none(1, CF_LOCK, b"k2");

    thread::sleep(Duration::from_millis(500));
    for s in 1..=3 {
        let st = cluster.apply_state(s, 1).expect("apply state");
        let truncated = st.truncated_state.map_or(0, |t| t.index);
        assert!(
            st.applied_index - truncated <= 20,
            "store {s}: applied {} truncated {truncated}",
            st.applied_index
        );
    }
}

/// Writers keep going while one store, then every store, restarts; afterwards every
/// acknowledged write is readable through the cluster and on the restarted store.
#[test]
fn restart_keeps_acknowledged_writes() {
    let _g = scenario_lock();
    let cluster = Arc::new(Cluster::new(3, raftstore::Config::for_tests()));
    cluster.run();
    let acked: Arc<Mutex<Vec<engine::KvPair>>> = Arc::default();
    let done = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..3)
        .map(|w| {
            let (cluster, acked, done) = (cluster.clone(), acked.clone(), done.clone());
            thread::spawn(move || {
                let mut i = 0u64;
                while !done.load(Ordering::Relaxed) {
                    let k = format!("w{w}-{i:06}").into_bytes();
                    let v = format!("value {w} {i}").into_bytes();
                    cluster.must_put(&k, &v);
                    acked.lock().unwrap().push((k, v));
                    i += 1;
                }
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(800));
    cluster.stop_store(2);
    thread::sleep(Duration::from_millis(800));
    cluster.start_store(2);
    thread::sleep(Duration::from_millis(800));
    cluster.stop_all();
    thread::sleep(Duration::from_millis(300));
    cluster.start_all();
    thread::sleep(Duration::from_millis(1500));
    done.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().expect("writer");
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > 100,
        "only {} writes acknowledged",
        acked.len()
    );
    let mut all = cluster.scan(b"", b"");
    all.sort();
    let mut expected = acked.clone();
    expected.sort();
    assert_eq!(
        all, expected,
        "the cluster holds exactly the acknowledged writes"
    );
    let (last_k, last_v) = acked.last().unwrap();
    cluster.must_get_equal(2, last_k, last_v);
    for (k, v) in acked.iter().step_by(17) {
        cluster.must_get_equal(2, k, v);
    }
}
