//! Commands that reach the log but cannot be applied as asked: every replica refuses them
//! the same way, the proposer hears why, the stores keep serving and restart cleanly.
//!
//! The server refuses such requests at its edge already (key and value limits); these
//! commands go straight into a store's router, past those checks, as an older or buggy
//! proposer could put them into the log.

use std::time::Duration;

use proto::raft_cmdpb::{
    AdminCmdType, AdminRequest, BatchSplitRequest, CmdType, PutRequest, RaftCmdRequest, Request,
    SplitRequest,
};
use raftstore::Config;
use test_cluster::scenario::scenario_lock;
use test_cluster::Cluster;

const WAIT: Duration = Duration::from_secs(10);

fn put(key: &[u8], value: &[u8]) -> RaftCmdRequest {
    RaftCmdRequest {
        requests: vec![Request {
            cmd_type: CmdType::Put as i32,
            put: Some(PutRequest {
                cf: String::new(),
                key: key.to_vec(),
                value: value.to_vec(),
            }),
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// Every store has applied the same index of `region_id` and holds `key` = `value`.
fn replicas_agree(c: &Cluster, region_id: u64, key: &[u8], value: &[u8]) {
    for s in 1..=3 {
        c.must_get_equal(s, key, value);
    }
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let applied: Vec<u64> = (1..=3)
            .map(|s| c.apply_state(s, region_id).map_or(0, |a| a.applied_index))
            .collect();
        if applied.iter().all(|a| *a == applied[0]) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "replicas of region {region_id} never agreed on the applied index: {applied:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn oversized_key_in_the_log_is_refused_by_every_replica_and_restart_is_clean() {
    let _g = scenario_lock();
    test_cluster::init_logging();
    let c = Cluster::new(3, Config::default());
    c.run();
    c.must_put(b"before", b"1");

    // 70,000 bytes: the engine takes at most 65,535 per key (with the data prefix).
    let key = vec![b'k'; 70_000];
    let err = c
        .try_request(&key, put(&key, b"v"), WAIT)
        .map(|(resp, _)| resp)
        .expect_err("a key the engine refuses must not be acknowledged");
    assert!(
        err.contains("longer than the storage engine allows"),
        "the proposer hears why: {err}"
    );

    // The refused entry did not take the store's apply down, nor another write of the round.
    c.must_put(b"after", b"2");
    let region_id = c.region_for_key(b"after").expect("region").id;
    replicas_agree(&c, region_id, b"after", b"2");
    for s in 1..=3 {
        assert!(c.engine_get(s, engine::CF_DEFAULT, &key).is_none());
    }

    // A restart may apply the refused entry again from the log (the KV engine's applied
    // index is not synced on every round); it is refused again, without a panic.
    c.stop_all();
    c.start_all();
    c.must_put(b"restarted", b"3");
    assert_eq!(c.must_get(b"before").as_deref(), Some(&b"1"[..]));
    assert_eq!(c.must_get(b"after").as_deref(), Some(&b"2"[..]));
    replicas_agree(&c, region_id, b"restarted", b"3");
    c.shutdown();
}

#[test]
fn split_with_reused_ids_is_refused_and_the_region_stays_whole() {
    let _g = scenario_lock();
    test_cluster::init_logging();
    let c = Cluster::new(3, Config::default());
    c.run();
    c.must_put(b"a", b"1");
    let region = c.region_for_key(b"a").expect("region");
    let existing = region.peers[0].id;
    let cases: Vec<(&str, SplitRequest)> = vec![
        (
            "an existing peer id",
            SplitRequest {
                split_key: b"m".to_vec(),
                new_region_id: 1000,
                new_peer_ids: vec![existing, 1001, 1002],
                ..Default::default()
            },
        ),
        (
            "a repeated peer id",
            SplitRequest {
                split_key: b"m".to_vec(),
                new_region_id: 1000,
                new_peer_ids: vec![1001, 1001, 1002],
                ..Default::default()
            },
        ),
        (
            "the region's own id",
            SplitRequest {
                split_key: b"m".to_vec(),
                new_region_id: region.id,
                new_peer_ids: vec![1001, 1002, 1003],
                ..Default::default()
            },
        ),
    ];
    for (what, split) in cases {
        let cmd = RaftCmdRequest {
            admin_request: Some(AdminRequest {
                cmd_type: AdminCmdType::BatchSplit as i32,
                splits: Some(BatchSplitRequest {
                    requests: vec![split],
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let err = c
            .try_request(b"a", cmd, WAIT)
            .map(|(resp, _)| resp)
            .expect_err("a split with reused ids must be refused");
        assert!(err.contains("reuses"), "{what}: {err}");
    }
    c.must_put(b"z", b"2");
    let after = c.region_by_id(region.id).expect("region still there");
    assert_eq!(after.region_epoch, region.region_epoch, "no split applied");
    replicas_agree(&c, region.id, b"z", b"2");
    c.shutdown();
}
