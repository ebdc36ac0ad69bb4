//! TinyKV 2C scenarios: a small log-GC limit forces compaction, so lagging or restarted
//! stores must catch up through snapshots; the log stays bounded.

use test_cluster::scenario::scenario_lock;
use test_cluster::GenericTest;

#[test]
fn snapshot_recover() {
    let _g = scenario_lock();
    GenericTest {
        crash: true,
        max_raft_log: 100,
        ..Default::default()
    }
    .run();
}

#[test]
fn snapshot_recover_many_clients() {
    let _g = scenario_lock();
    GenericTest {
        clients: 20,
        crash: true,
        max_raft_log: 100,
        ..Default::default()
    }
    .run();
}

#[test]
fn snapshot_unreliable() {
    let _g = scenario_lock();
    GenericTest {
        clients: 5,
        unreliable: true,
        max_raft_log: 100,
        ..Default::default()
    }
    .run();
}

#[test]
fn snapshot_unreliable_recover() {
    let _g = scenario_lock();
    GenericTest {
        clients: 5,
        unreliable: true,
        crash: true,
        max_raft_log: 100,
        ..Default::default()
    }
    .run();
}

#[test]
fn snapshot_unreliable_recover_concurrent_partition() {
    let _g = scenario_lock();
    GenericTest {
        clients: 5,
        unreliable: true,
        crash: true,
        partitions: true,
        max_raft_log: 100,
        ..Default::default()
    }
    .run();
}
