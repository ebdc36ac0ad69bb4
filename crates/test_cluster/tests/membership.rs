//! TinyKV 3B membership scenarios: leader transfer, one-at-a-time conf changes, removing the
//! leader, re-adding a peer with the same or a new id, and data cleanup on removal.

use proto::metapb::Peer;
use test_cluster::scenario::scenario_lock;
use test_cluster::Cluster;

fn peer(id: u64, store_id: u64) -> Peer {
    Peer {
        id,
        store_id,
        ..Default::default()
    }
}

#[test]
fn transfer_leader_to_each_peer() {
    let _g = scenario_lock();
    let cluster = Cluster::new(5, raftstore::Config::for_tests());
    cluster.run();
    for i in 1..=5 {
        cluster.must_transfer_leader(1, peer(i, i));
        cluster.must_put(format!("k{i}").as_bytes(), b"v");
    }
    cluster.must_transfer_leader(1, peer(1, 1));
}

#[test]
fn basic_conf_change() {
    let _g = scenario_lock();
    let cluster = Cluster::new(5, raftstore::Config::for_tests());
    cluster.run();
    cluster.must_transfer_leader(1, peer(1, 1));
    for i in 2..=5 {
        cluster.must_remove_peer(1, peer(i, i));
    }
    cluster.must_put(b"k1", b"v1");
    cluster.must_get_none(2, b"k1");

    cluster.must_add_peer(1, peer(2, 2));
    cluster.must_put(b"k2", b"v2");
    assert_eq!(cluster.must_get(b"k2"), Some(b"v2".to_vec()));
    cluster.must_get_equal(2, b"k1", b"v1");
    cluster.must_get_equal(2, b"k2", b"v2");
    let epoch = cluster.region_by_id(1).unwrap().region_epoch.unwrap();
    assert!(
        epoch.conf_ver > 1,
        "conf_ver grows with each change: {epoch:?}"
    );
    cluster.must_get_none(5, b"k1");

    cluster.must_add_peer(1, peer(3, 3));
    cluster.must_remove_peer(1, peer(2, 2));
    cluster.must_put(b"k3", b"v3");
    cluster.must_get_equal(3, b"k1", b"v1");
    cluster.must_get_equal(3, b"k2", b"v2");
    cluster.must_get_equal(3, b"k3", b"v3");
    // A removed peer's data is deleted.
    cluster.must_get_none(2, b"k1");
    cluster.must_get_none(2, b"k2");

    // Re-add with the same peer id onto the store that keeps its tombstone.
    cluster.must_add_peer(1, peer(2, 2));
    cluster.must_get_equal(2, b"k1", b"v1");
    cluster.must_get_equal(2, b"k2", b"v2");
    cluster.must_get_equal(2, b"k3", b"v3");

    // Re-add with a new peer id.
    cluster.must_remove_peer(1, peer(2, 2));
    cluster.must_add_peer(1, peer(4, 2));
    cluster.must_remove_peer(1, peer(3, 3));
    cluster.must_put(b"k4", b"v4");
    cluster.must_get_equal(2, b"k1", b"v1");
    cluster.must_get_equal(2, b"k4", b"v4");
    cluster.must_get_none(3, b"k1");
    cluster.must_get_none(3, b"k4");
}

#[test]
fn conf_change_remove_leader() {
    let _g = scenario_lock();
    let cluster = Cluster::new(5, raftstore::Config::for_tests());
    cluster.run();
    cluster.must_transfer_leader(1, peer(1, 1));
    cluster.must_remove_peer(1, peer(1, 1));
    cluster.must_put(b"k0", b"v0");
    cluster.must_get_none(1, b"k0");

    cluster.must_add_peer(1, peer(1, 1));
    cluster.must_transfer_leader(1, peer(1, 1));
    cluster.must_put(b"k1", b"v1");
    cluster.must_get_equal(1, b"k0", b"v0");
    cluster.must_get_equal(1, b"k1", b"v1");

    cluster.must_remove_peer(1, peer(2, 2));
    cluster.must_remove_peer(1, peer(3, 3));
    cluster.must_remove_peer(1, peer(4, 4));
    // Two voters left: removing the leader must still make progress.
    cluster.must_remove_peer(1, peer(1, 1));
    cluster.must_put(b"k2", b"v2");
    cluster.must_get_none(1, b"k2");

    cluster.must_add_peer(1, peer(1, 1));
    cluster.must_put(b"k3", b"v3");
    cluster.must_get_equal(1, b"k3", b"v3");
    cluster.must_get_none(3, b"k3");
}

/// A learner receives the data but does not count toward the quorum; promoted, it does.
#[test]
fn learner_replicates_and_is_promoted_to_voter() {
    let _g = scenario_lock();
    let cluster = Cluster::new(3, raftstore::Config::for_tests());
    cluster.run();
    cluster.must_transfer_leader(1, peer(1, 1));
    cluster.must_remove_peer(1, peer(3, 3));
    cluster.must_put(b"k1", b"v1");

    let learner = peer(10, 3);
    cluster.must_add_learner(1, learner);
    cluster.must_get_equal(3, b"k1", b"v1");
    let region = cluster.region_by_id(1).unwrap();
    let p = region.peers.iter().find(|p| p.id == 10).unwrap();
    assert_eq!(p.role, proto::metapb::PeerRole::Learner as i32);
    // The learner keeps following new writes.
    cluster.must_put(b"k2", b"v2");
    cluster.must_get_equal(3, b"k2", b"v2");

    // Promoted, it is a voter: with store 2 cut off, stores 1 and 3 still form a quorum.
    cluster.must_add_peer(1, learner);
    cluster.isolate(2);
    cluster.must_put(b"k3", b"v3");
    cluster.must_get_equal(3, b"k3", b"v3");
    cluster.must_get_none(2, b"k3");
    cluster.clear_filters();
    cluster.must_get_equal(2, b"k3", b"v3");
}

/// Destroying a removed peer writes its tombstone first and deletes the region's data
/// afterwards; keys a crash left in between are deleted when the store starts again, and
/// the regions the store still holds keep theirs.
#[test]
fn data_left_by_an_interrupted_destroy_is_deleted_at_restart() {
    use engine::{Engine, WriteBatch, DATA_CFS};
    let _g = scenario_lock();
    let cluster = Cluster::new(3, raftstore::Config::for_tests());
    cluster.run_with_regions(&[b"m".to_vec()]);
    cluster.must_put(b"a1", b"left");
    cluster.must_put(b"n1", b"right");
    cluster.must_get_equal(3, b"a1", b"left");
    cluster.must_get_equal(3, b"n1", b"right");
    // Store 3 leaves region 1 ([, m)) and its data there is deleted.
    cluster.must_remove_peer(1, peer(1003, 3));
    cluster.must_get_none(3, b"a1");
    // As if that deletion had not run before a crash: keys in the removed range, every CF.
    let e = cluster.engine(3);
    let mut wb = e.write_batch();
    for cf in DATA_CFS {
        wb.put(cf, &codec::keys::data_key(b"a2"), b"stale");
    }
    e.write(wb, true).unwrap();
    drop(e);
    cluster.stop_store(3);
    cluster.start_store(3);
    for cf in DATA_CFS {
        assert_eq!(
            cluster.engine_get(3, cf, b"a2"),
            None,
            "{cf}: stale key kept after restart"
        );
    }
    // Region 2 ([m, )) kept its data on store 3 and still replicates there.
    cluster.must_get_equal(3, b"n1", b"right");
    cluster.must_put(b"n2", b"after");
    cluster.must_get_equal(3, b"n2", b"after");
}

/// A peer can become leader with its own removal, proposed by the leader before it,
/// committed but not yet applied: when it applies the removal it must step down. raft-rs
/// leaves such a leader leading without a progress entry of its own, and the next write it
/// persisted panicked its store's poller (seen once in the crash tests, where store 3 was
/// elected while the leader that proposed its removal was down).
#[test]
fn a_leader_that_applies_its_own_removal_steps_down_and_is_destroyed() {
    use proto::eraftpb::ConfChangeType;
    use proto::raft_cmdpb::{
        AdminCmdType, AdminRequest, ChangePeerRequest, CmdType, PutRequest, RaftCmdRequest,
        RaftRequestHeader, Request,
    };
    use proto::raft_serverpb::PeerState;
    use raft::eraftpb::MessageType;
    use std::time::{Duration, Instant};
    use test_cluster::transport::{IsolationFilter, MessageTypeFilter};

    let _g = scenario_lock();
    let cluster = Cluster::new(3, raftstore::Config::for_tests());
    cluster.run();
    cluster.must_transfer_leader(1, peer(1, 1));
    cluster.must_put(b"k0", b"v0");
    for s in 1..=3 {
        cluster.must_get_equal(s, b"k0", b"v0");
    }
    // Store 2 hears nothing, and store 1 never hears that store 3 appended: the removal of
    // peer 3 reaches store 3's log but cannot commit.
    cluster.add_filter(IsolationFilter(2));
    cluster.add_filter(MessageTypeFilter {
        msg_type: MessageType::MsgAppendResponse,
        to_store: Some(1),
    });
    let region = cluster.region_for_key(b"k0").expect("region 1");
    let last_on_3 = cluster.raft_engine(3).last_index(1).unwrap_or(0);
    let header = |store: u64| RaftRequestHeader {
        region_id: 1,
        peer: raftstore::util::find_peer(&region, store).copied(),
        region_epoch: region.region_epoch,
        ..Default::default()
    };
    cluster.router(1).expect("store 1 runs").send_command(
        RaftCmdRequest {
            header: Some(header(1)),
            admin_request: Some(AdminRequest {
                cmd_type: AdminCmdType::ChangePeer as i32,
                change_peer: Some(ChangePeerRequest {
                    change_type: ConfChangeType::RemoveNode as i32,
                    peer: Some(peer(3, 3)),
                }),
                ..Default::default()
            }),
            ..Default::default()
        },
        Box::new(|_| {}),
    );
    cluster.wait_until(
        "the removal appended on store 3",
        Duration::from_secs(5),
        || cluster.raft_engine(3).last_index(1).unwrap_or(0) > last_on_3,
    );
    // The proposer goes down. Store 3 has the longer log, so only it can be elected, and it
    // commits (with store 2) and applies its own removal as leader. Writes keep arriving at
    // store 3 meanwhile, so when it applies the removal it still has writes on their way to
    // its log: a peer still leading takes their persisted notice as its own progress.
    cluster.stop_store(1);
    cluster.clear_filters();
    let done = std::sync::atomic::AtomicBool::new(false);
    let router3 = cluster.router(3).expect("store 3 runs");
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut i = 0u64;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                router3.send_command(
                    RaftCmdRequest {
                        header: Some(header(3)),
                        requests: vec![Request {
                            cmd_type: CmdType::Put as i32,
                            put: Some(PutRequest {
                                cf: "default".into(),
                                key: format!("w{i}").into_bytes(),
                                value: b"v".to_vec(),
                            }),
                            ..Default::default()
                        }],
                        ..Default::default()
                    },
                    Box::new(|_| {}),
                );
                i += 1;
                std::thread::sleep(Duration::from_micros(200));
            }
        });
        let removed = |r: &proto::metapb::Region| !r.peers.iter().any(|p| p.id == 3);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !cluster
            .region_state(3, 1)
            .and_then(|s| s.region)
            .is_some_and(|r| removed(&r))
        {
            assert!(
                Instant::now() < deadline,
                "store 3 never applied its own removal (seed {})",
                cluster.seed
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(300));
        done.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    // Store 3 destroys its peer, and the region goes on with stores 1 and 2.
    cluster.start_store(1);
    cluster.wait_until("store 3's peer destroyed", Duration::from_secs(10), || {
        cluster
            .region_state(3, 1)
            .is_some_and(|s| s.state == PeerState::Tombstone as i32)
    });
    cluster.must_put(b"k2", b"v2");
    cluster.must_get_equal(1, b"k2", b"v2");
    cluster.must_get_equal(2, b"k2", b"v2");
    cluster.must_get_none(3, b"k2");
}
