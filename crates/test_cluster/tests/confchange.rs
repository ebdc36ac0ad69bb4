//! TinyKV 3B conf-change matrix: peers are added and removed at random during the first
//! iteration while clients write, under crashes, message loss, log GC with snapshots,
//! partitions and (last two) splits. Every acknowledged write must survive exactly once and
//! in order; the scenario's history check enforces that after each iteration.

use test_cluster::scenario::scenario_lock;
use test_cluster::GenericTest;

#[test]
fn conf_change_recover() {
    let _g = scenario_lock();
    GenericTest {
        crash: true,
        confchange: true,
        ..Default::default()
    }
    .run();
}

#[test]
fn conf_change_recover_many_clients() {
    let _g = scenario_lock();
    GenericTest {
        clients: 20,
        crash: true,
        confchange: true,
        ..Default::default()
    }
    .run();
}

#[test]
fn conf_change_unreliable() {
    let _g = scenario_lock();
    GenericTest {
        clients: 5,
        unreliable: true,
        confchange: true,
        ..Default::default()
    }
    .run();
}

#[test]
fn conf_change_unreliable_recover() {
    let _g = scenario_lock();
    GenericTest {
        clients: 5,
        unreliable: true,
        crash: true,
        confchange: true,
        ..Default::default()
    }
    .run();
}

#[test]
fn conf_change_snapshot_unreliable_recover() {
    let _g = scenario_lock();
    GenericTest {
        clients: 5,
        unreliable: true,
        crash: true,
        max_raft_log: 100,
        confchange: true,
        ..Default::default()
    }
    .run();
}

#[test]
fn conf_change_snapshot_unreliable_recover_concurrent_partition() {
    let _g = scenario_lock();
    GenericTest {
        clients: 5,
        unreliable: true,
        crash: true,
        partitions: true,
        max_raft_log: 100,
        confchange: true,
        ..Default::default()
    }
    .run();
}

#[test]
fn split_conf_change_snapshot_unreliable_recover() {
    let _g = scenario_lock();
    GenericTest {
        clients: 5,
        unreliable: true,
        crash: true,
        max_raft_log: 100,
        confchange: true,
        split: true,
        ..Default::default()
    }
    .run();
}

/// The hardest: splits, conf changes, snapshots, message loss, restarts and partitions at once.
#[test]
fn split_conf_change_snapshot_unreliable_recover_concurrent_partition() {
    let _g = scenario_lock();
    GenericTest {
        clients: 5,
        unreliable: true,
        crash: true,
        partitions: true,
        max_raft_log: 100,
        confchange: true,
        split: true,
        ..Default::default()
    }
    .run();
}
