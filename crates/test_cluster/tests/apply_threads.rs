//! Apply threads (`[raftstore] apply_pool_size`): the pollers hand each round's KV batch to
//! an apply thread and go on while it is written. What must still hold: every acknowledged
//! write survives faults, restarts, splits and conf changes (the TinyKV scenario with all
//! of them at once); a DeleteRange removes writes still on their way to the engine when it
//! applies; a leader's reads never run ahead of what the engine holds.
//!
//! The rest of the suite runs with the pollers writing their own batches (the default on
//! small machines); `TESSERA_TEST_APPLY_POOL=1 cargo test -p test_cluster` runs all of it
//! with apply threads.

use std::sync::mpsc;
use std::time::Duration;

use engine::CF_DEFAULT;
use proto::raft_cmdpb::{
    CmdType, DeleteRangeRequest, PutRequest, RaftCmdRequest, RaftRequestHeader, Request,
};
use test_cluster::scenario::{scenario_lock, GenericTest};
use test_cluster::Cluster;

fn apply_threads(n: usize) -> raftstore::Config {
    let mut cfg = raftstore::Config::for_tests();
    cfg.apply_pool_size = Some(n);
    cfg
}

#[test]
fn two_pollers_sharing_one_apply_thread_keep_every_write_through_splits_conf_changes_and_crashes() {
    let _g = scenario_lock();
    GenericTest {
        clients: 5,
        unreliable: true,
        crash: true,
        partitions: true,
        max_raft_log: 100,
        split: true,
        confchange: true,
        apply_pool_size: Some(1),
        ..Default::default()
    }
    .run();
}

#[test]
fn one_apply_thread_per_poller_keeps_every_write_through_partitions_and_crashes() {
    let _g = scenario_lock();
    GenericTest {
        clients: 5,
        crash: true,
        partitions: true,
        max_raft_log: 100,
        apply_pool_size: Some(2),
        ..Default::default()
    }
    .run();
}

fn key(i: usize) -> Vec<u8> {
    format!("dr-{i:05}").into_bytes()
}

/// Puts sent back to back without waiting, then a DeleteRange over all of them: when the
/// DeleteRange applies, earlier puts may still be in a batch the apply thread has not
/// written, and the range it deletes is found by scanning the engine. It must wait for
/// those batches, or some keys would survive on some stores.
#[test]
fn delete_range_removes_writes_the_apply_thread_has_not_written_yet() {
    let _g = scenario_lock();
    let cluster = Cluster::new(3, apply_threads(1));
    cluster.run();
    cluster.must_put(b"dr-", b"warm-up");
    const N: usize = 2000;
    for round in 0..5 {
        let region = cluster.region_for_key(&key(0)).expect("a region");
        let leader = cluster
            .leader_of_region(region.id)
            .expect("a leader of the region");
        let router = cluster.router(leader).expect("the leader runs");
        let header = RaftRequestHeader {
            region_id: region.id,
            peer: raftstore::util::find_peer(&region, leader).copied(),
            region_epoch: region.region_epoch,
            ..Default::default()
        };
        let (tx, rx) = mpsc::channel();
        let send = |req: Request| {
            let tx = tx.clone();
            router.send_command(
                RaftCmdRequest {
                    header: Some(header.clone()),
                    requests: vec![req],
                    ..Default::default()
                },
                Box::new(move |resp| {
                    let _ = tx.send(resp.response.header.and_then(|h| h.error));
                }),
            );
        };
        for i in 0..N {
            send(Request {
                cmd_type: CmdType::Put as i32,
                put: Some(PutRequest {
                    cf: CF_DEFAULT.into(),
                    key: key(i),
                    value: format!("v{round}-{i}").into_bytes(),
                }),
                ..Default::default()
            });
        }
        send(Request {
            cmd_type: CmdType::DeleteRange as i32,
            delete_range: Some(DeleteRangeRequest {
                cf: CF_DEFAULT.into(),
                start_key: key(0),
                end_key: key(N),
                ..Default::default()
            }),
            ..Default::default()
        });
        let mut errors = Vec::new();
        for _ in 0..=N {
            match rx.recv_timeout(Duration::from_secs(30)) {
                Ok(None) => {}
                Ok(Some(e)) => errors.push(e.message),
                Err(_) => panic!("round {round}: a command was never answered"),
            }
        }
        // In the same term with no faults, every command is applied in the order sent.
        assert!(
            errors.is_empty(),
            "round {round}: {} commands failed, first: {:?} (seed {})",
            errors.len(),
            errors.first(),
            cluster.seed
        );
        cluster.must_put(b"dr-", format!("after-{round}").as_bytes());
        for store in 1..=3 {
            cluster.must_get_equal(store, b"dr-", format!("after-{round}").as_bytes());
            let left: Vec<usize> = (0..N)
                .filter(|i| cluster.engine_get(store, CF_DEFAULT, &key(*i)).is_some())
                .collect();
            assert!(
                left.is_empty(),
                "round {round}: store {store} kept {} keys the DeleteRange covered, first {:?} \
                 (seed {})",
                left.len(),
                left.first()
                    .map(|i| String::from_utf8_lossy(&key(*i)).into_owned()),
                cluster.seed
            );
        }
    }
}
