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
