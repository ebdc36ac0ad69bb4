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

/// Every store loses power at the same instant, five times, while three writers keep
/// putting: each raft log loses what it had not fsynced, half the time with its last write
/// torn. Nothing acknowledged may be lost.
#[test]
fn acknowledged_writes_survive_every_store_losing_power_at_once() {
    let _g = scenario_lock();
    test_cluster::init_logging();
    let c = std::sync::Arc::new(test_cluster::Cluster::new(
        3,
        raftstore::Config::for_tests(),
    ));
    c.run();
    let report = test_cluster::power_loss::power_loss_rounds(&c, 5, 3);
    println!("seed {}: {report:?}", c.seed);
    assert!(report.acknowledged >= 50, "{report:?}");
    if let Err(e) = &report.check {
        panic!("seed {}: {e}", c.seed);
    }
    c.shutdown();
}
