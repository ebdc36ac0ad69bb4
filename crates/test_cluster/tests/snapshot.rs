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

/// Damages the first snapshots sent to one store: a flipped byte, then a cut-off tail.
struct CorruptSnapshots {
    to: u64,
    damaged: std::sync::atomic::AtomicUsize,
}

impl test_cluster::Filter for CorruptSnapshots {
    fn decide(
        &self,
        _from: u64,
        _to: u64,
        _msg: &raftstore::RaftMessage,
        _rng: &mut rand::rngs::StdRng,
    ) -> test_cluster::Decision {
        test_cluster::Decision::Pass
    }

    fn rewrite(&self, _from: u64, to: u64, msg: &mut raftstore::RaftMessage) {
        use std::sync::atomic::Ordering;
        if to != self.to || msg.message.get_msg_type() != raft::eraftpb::MessageType::MsgSnapshot {
            return;
        }
        let n = self.damaged.load(Ordering::SeqCst);
        if n >= 2 {
            return;
        }
        let mut data = msg.message.get_snapshot().get_data().to_vec();
        if n == 0 {
            let mid = data.len() / 2;
            data[mid] ^= 0x40;
        } else {
            data.truncate(data.len() - 3);
        }
        msg.message.mut_snapshot().set_data(data.into());
        msg.snapshot = None;
        self.damaged.store(n + 1, Ordering::SeqCst);
    }
}

#[test]
fn corrupt_or_truncated_snapshots_are_refused_and_sent_again() {
    let _g = scenario_lock();
    test_cluster::init_logging();
    let mut cfg = raftstore::Config::for_tests();
    cfg.raft_log_gc_count_limit = 10;
    cfg.raft_log_gc_threshold = 5;
    let c = test_cluster::Cluster::new(3, cfg);
    c.run();
    c.must_put(b"k000", b"v");
    c.must_get_equal(3, b"k000", b"v");
    c.isolate(3);
    for i in 1..100u32 {
        c.must_put(format!("k{i:03}").as_bytes(), b"v");
    }
    let region_id = c.region_for_key(b"k000").unwrap().id;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while (1..=2).any(|s| c.truncated_index(s, region_id) < 20) {
        assert!(
            std::time::Instant::now() < deadline,
            "the log was never compacted"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let applied_before = c
        .stats(3)
        .snapshots_applied
        .load(std::sync::atomic::Ordering::SeqCst);
    let corrupt = std::sync::Arc::new(CorruptSnapshots {
        to: 3,
        damaged: Default::default(),
    });
    c.clear_filters();
    c.net().add_filter(corrupt.clone());
    // Store 3 can only catch up through a snapshot; the first two it gets are damaged.
    for i in 0..100u32 {
        c.must_get_equal(3, format!("k{i:03}").as_bytes(), b"v");
    }
    assert_eq!(
        corrupt.damaged.load(std::sync::atomic::Ordering::SeqCst),
        2,
        "both damaged snapshots were sent (and refused)"
    );
    // The region worker counts a snapshot once its KV batch is written, so the
    // keys can be readable a moment before the count moves.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while c
        .stats(3)
        .snapshots_applied
        .load(std::sync::atomic::Ordering::SeqCst)
        <= applied_before
    {
        assert!(
            std::time::Instant::now() < deadline,
            "store 3 caught up through a later, intact snapshot"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    c.shutdown();
}

/// A region that went quiet with its entries in the raft log's oldest file would keep every
/// later file on disk. Once the log passes its purge threshold, raft-engine names such a
/// region and its leader compacts at once; the log then shrinks back to the threshold (plus the rewrite queue's one file).
#[test]
fn a_quiet_region_does_not_keep_the_raft_log_from_shrinking() {
    let _g = scenario_lock();
    test_cluster::init_logging();
    let mut cfg = raftstore::Config::for_tests();
    cfg.raft_log_purge_threshold = raftstore::storage::log_engine::MIN_PURGE_THRESHOLD;
    // Region "a" stays under this, so only the log engine's request compacts it.
    cfg.raft_log_gc_threshold = 100;
    // raft-engine purges its main queue once it is over the threshold; its rewrite queue
    // (stragglers of quiet regions copied forward) keeps one more file: what the log holds
    // at rest is at most this (see `log_engine::file_size`).
    let bound = cfg.raft_log_purge_threshold
        + raftstore::storage::log_engine::file_size(cfg.raft_log_purge_threshold);
    let c = test_cluster::Cluster::new(3, cfg);
    c.run_with_regions(&[b"m".to_vec()]);
    for i in 0..60u32 {
        c.must_put(format!("a{i:03}").as_bytes(), b"v");
    }
    let quiet = c.region_for_key(b"a000").unwrap().id;
    let truncated_before: Vec<u64> = (1..=3).map(|s| c.truncated_index(s, quiet)).collect();
    // Twice the threshold of incompressible values into the other region.
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    for i in 0..1024u32 {
        let value: Vec<u8> = (0..8192)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        c.must_put(format!("z{i:05}").as_bytes(), &value);
    }
    let used = |s: u64| c.raft_engine(s).used_size();
    // Region "a" holds about 65 entries, under its compaction threshold of 100: its log can
    // only have been compacted on the log engine's request.
    c.wait_until(
        "the quiet region's log compacted on every store",
        std::time::Duration::from_secs(60),
        || (1..=3).all(|s| c.truncated_index(s, quiet) > truncated_before[s as usize - 1] + 50),
    );
    c.wait_until(
        "every store's raft log back under its purge threshold (and the rewrite queue's file)",
        std::time::Duration::from_secs(60),
        || (1..=3).all(|s| used(s) <= bound),
    );
    // Nothing was lost on the way.
    for i in 0..60u32 {
        c.must_get_equal(1, format!("a{i:03}").as_bytes(), b"v");
    }
    c.shutdown();
}
