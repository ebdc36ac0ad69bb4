//! TinyKV 2B scenarios without crashes: one raft group on 5 stores under concurrent
//! clients, message loss and partitions. Every acknowledged write must be present exactly
//! once and in order.

use test_cluster::scenario::scenario_lock;
use test_cluster::GenericTest;

#[test]
fn basic_one_client() {
    let _g = scenario_lock();
    GenericTest::default().run();
}

#[test]
fn concurrent_clients() {
    let _g = scenario_lock();
    GenericTest {
        clients: 5,
        ..Default::default()
    }
    .run();
}

#[test]
fn unreliable_network() {
    let _g = scenario_lock();
    GenericTest {
        clients: 5,
        unreliable: true,
        ..Default::default()
    }
    .run();
}

#[test]
fn many_partitions_one_client() {
    let _g = scenario_lock();
    GenericTest {
        clients: 1,
        partitions: true,
        ..Default::default()
    }
    .run();
}

#[test]
fn many_partitions_many_clients() {
    let _g = scenario_lock();
    GenericTest {
        clients: 5,
        partitions: true,
        ..Default::default()
    }
    .run();
}
