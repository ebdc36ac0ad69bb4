//! TinyKV 2B persistence scenarios: every store is stopped and restarted on its data
//! between iterations; nothing acknowledged may be lost.

use test_cluster::scenario::scenario_lock;
use test_cluster::GenericTest;

#[test]
fn persist_one_client() {
    let _g = scenario_lock();
    GenericTest {
        crash: true,
        ..Default::default()
    }
    .run();
}

#[test]
fn persist_concurrent() {
    let _g = scenario_lock();
    GenericTest {
        clients: 5,
        crash: true,
        ..Default::default()
    }
    .run();
}

#[test]
fn persist_concurrent_unreliable() {
    let _g = scenario_lock();
    GenericTest {
        clients: 5,
        crash: true,
        unreliable: true,
        ..Default::default()
    }
    .run();
}

#[test]
fn persist_partition() {
    let _g = scenario_lock();
    GenericTest {
        clients: 5,
        crash: true,
        partitions: true,
        ..Default::default()
    }
    .run();
}

#[test]
fn persist_partition_unreliable() {
    let _g = scenario_lock();
    GenericTest {
        clients: 5,
        crash: true,
        partitions: true,
        unreliable: true,
        ..Default::default()
    }
    .run();
}
