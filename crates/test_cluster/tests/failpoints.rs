//! Crash tests: a store dies at each crash window of raftstore (a fail point, compiled in
//! through raftstore's `failpoints` feature) and restarts on what it left on disk.
//!
//! A window is a place where a crash leaves the disk half-way through an operation: a
//! tombstone written but the region's data not yet deleted, a snapshot's data written but
//! the raft log not reset, a split's region states written but its peers not started, a
//! log truncation durable but the entries still in the log, a membership change applied
//! but not written. The crash is a panic of the thread that reaches the fail point (the
//! poller, or the worker doing the operation); the test then stops the store, which joins
//! what is left of its threads and closes its engines, and starts it again on the same
//! directories. After the restart: every acknowledged write reads back with its last value,
//! no two regions overlap, and no store holds data outside the regions it hosts
//! ([`test_cluster::check`]).
//!
//! What an in-process crash does not reproduce: losing writes that were in the OS page
//! cache but not fsynced (the engines stay the same files, read back by the same kernel).
//!
//! The fail point registry is global to the process, so the tests run one at a time
//! (`fail::FailScenario` holds a process-wide lock and clears every fail point at the end).
//! Each takes a few seconds. Long variant: `TESSERA_CRASH_ROUNDS=N` repeats every test N
//! times, each on a new cluster.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use engine::Snapshot as _;
use proto::metapb::Peer;
use proto::raft_serverpb::PeerState;
use test_cluster::check::{check_all, Acknowledged};
use test_cluster::Cluster;

/// How long a test waits for the operation it started to reach the fail point.
const HIT_TIMEOUT: Duration = Duration::from_secs(30);

fn peer(id: u64, store_id: u64) -> Peer {
    Peer {
        id,
        store_id,
        ..Default::default()
    }
}

/// Whether thread `t` is one of store `store`'s pollers (`raft-poller-<store>-<index>`).
fn is_poller_of(t: &str, store: u64) -> bool {
    poller_store(t) == Some(store)
}

/// The store whose poller thread `t` is.
fn poller_store(t: &str) -> Option<u64> {
    t.strip_prefix("raft-poller-")?
        .split('-')
        .next()?
        .parse()
        .ok()
}

/// A crash armed at one fail point: the first `count` threads that reach it and whose name
/// `which` accepts panic there (the thread dies as in a crash; the rest of the store goes
/// on until the test stops it). Disarmed when dropped.
struct Crash {
    name: &'static str,
    hits: Arc<Mutex<Vec<String>>>,
}

impl Crash {
    fn arm(
        name: &'static str,
        count: usize,
        which: impl Fn(&str) -> bool + Send + Sync + 'static,
    ) -> Crash {
        let hits = Arc::new(Mutex::new(Vec::new()));
        let recorded = hits.clone();
        fail::cfg_callback(name, move || {
            let thread = std::thread::current().name().unwrap_or("").to_string();
            if !which(&thread) {
                return;
            }
            {
                let mut h = recorded.lock().unwrap();
                if h.len() >= count {
                    return;
                }
                h.push(thread.clone());
            }
            panic!("simulated crash of {thread} at fail point {name}");
        })
        .expect("configure fail point");
        Crash { name, hits }
    }

    /// Waits until `n` threads crashed here; returns their names.
    fn wait(&self, n: usize) -> Vec<String> {
        let deadline = Instant::now() + HIT_TIMEOUT;
        loop {
            let hits = self.hits.lock().unwrap().clone();
            if hits.len() >= n {
                return hits;
            }
            assert!(
                Instant::now() < deadline,
                "fail point {} reached by {} threads, expected {n}",
                self.name,
                hits.len()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Crash {
    fn drop(&mut self) {
        fail::remove(self.name);
    }
}

/// Runs a test's body once, or `TESSERA_CRASH_ROUNDS` times (the long variant: each round
/// builds a new cluster, so repeating explores other interleavings of the same crash).
fn rounds(body: impl Fn()) {
    let n: usize = std::env::var("TESSERA_CRASH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    for round in 0..n {
        if n > 1 {
            eprintln!("crash round {round} of {n}");
        }
        body();
    }
}

/// Stops `stores` (what is left of them after the crash) and starts them on their data.
fn restart(cluster: &Cluster, stores: &[u64]) {
    for s in stores {
        cluster.stop_store(*s);
    }
    for s in stores {
        cluster.start_store(*s);
    }
}

/// A three-store cluster with region 1 over the whole key space, led by store 1, holding
/// `n` acknowledged keys `k000`.. (some overwritten, one deleted).
fn cluster_with_data(cfg: raftstore::Config, n: usize) -> (Cluster, Acknowledged) {
    let cluster = Cluster::new(3, cfg);
    cluster.run();
    cluster.must_transfer_leader(1, peer(1, 1));
    let mut acked = Acknowledged::new();
    for i in 0..n {
        acked.put(&cluster, format!("k{i:03}").as_bytes(), b"first");
    }
    acked.put(&cluster, b"k001", b"second");
    acked.delete(&cluster, b"k002");
    (cluster, acked)
}

/// Data keys of store `store` in CF default.
fn data_keys(cluster: &Cluster, store: u64) -> usize {
    let snap = engine::Engine::snapshot(&cluster.engine(store));
    snap.scan(
        engine::CF_DEFAULT,
        codec::keys::DATA_MIN_KEY,
        codec::keys::DATA_MAX_KEY,
        false,
    )
    .count()
}

fn region_state(cluster: &Cluster, store: u64, region: u64) -> PeerState {
    let st = cluster
        .region_state(store, region)
        .expect("region state on disk");
    PeerState::try_from(st.state).expect("known peer state")
}

/// True if store `store`'s raft engine holds nothing of region `region` (no state, no entry).
fn no_raft_log(cluster: &Cluster, store: u64, region: u64) -> bool {
    let raft = cluster.raft_engine(store);
    raft.raft_state(region).expect("read raft state").is_none()
        && raft.first_index(region).is_none()
}

/// Adds a new peer of region 1 on store 3 and checks it receives every acknowledged write.
fn readd_store_3(cluster: &Cluster, acked: &Acknowledged, new_peer_id: u64) {
    cluster.must_add_peer(1, peer(new_peer_id, 3));
    for (k, v) in acked.iter() {
        match v {
            Some(v) => cluster.must_get_equal(3, k, v),
            None => cluster.must_get_none(3, k),
        }
    }
}

#[test]
fn crash_after_tombstone_before_data_deleted_restarts_clean() {
    let _s = fail::FailScenario::setup();
    rounds(|| {
        let (cluster, mut acked) = cluster_with_data(raftstore::Config::for_tests(), 20);
        cluster.must_get_equal(3, b"k019", b"first");
        let crash = Crash::arm("peer_destroy_after_tombstone", 1, |t| is_poller_of(t, 3));
        cluster.must_remove_peer(1, peer(3, 3));
        crash.wait(1);
        // The window is real: the tombstone is on disk and the data is still there.
        assert_eq!(region_state(&cluster, 3, 1), PeerState::Tombstone);
        assert!(
            data_keys(&cluster, 3) > 0,
            "the range was deleted before the crash"
        );
        drop(crash);

        restart(&cluster, &[3]);
        // The restart deleted what no region holds, before any peer ran, and the log the
        // crash left behind.
        assert_eq!(
            data_keys(&cluster, 3),
            0,
            "removed region's data left after restart"
        );
        assert!(
            no_raft_log(&cluster, 3, 1),
            "removed region's raft log left"
        );
        acked.put(&cluster, b"k100", b"after");
        check_all(&cluster, &acked);
        readd_store_3(&cluster, &acked, 4);
        check_all(&cluster, &acked);
    });
}

#[test]
fn crash_after_own_removal_before_tombstone_restarts_clean() {
    let _s = fail::FailScenario::setup();
    rounds(|| {
        let (cluster, mut acked) = cluster_with_data(raftstore::Config::for_tests(), 20);
        cluster.must_get_equal(3, b"k019", b"first");
        let crash = Crash::arm("peer_destroy_before_tombstone", 1, |t| is_poller_of(t, 3));
        cluster.must_remove_peer(1, peer(3, 3));
        crash.wait(1);
        let on_disk = cluster.region_state(3, 1).expect("region state");
        assert_eq!(
            on_disk.state,
            PeerState::Normal as i32,
            "no tombstone yet in this window"
        );
        // Usually the store applied its own removal (and wrote it) before destroying the
        // peer; it may also have been told by a tombstone message before applying it.
        let removal_written = raftstore::util::find_peer(&on_disk.region.unwrap(), 3).is_none();
        drop(crash);

        restart(&cluster, &[3]);
        if removal_written {
            // The restart finishes the destroy: tombstone, no log, no data.
            assert_eq!(region_state(&cluster, 3, 1), PeerState::Tombstone);
            assert!(
                no_raft_log(&cluster, 3, 1),
                "removed region's raft log left"
            );
            assert_eq!(data_keys(&cluster, 3), 0, "removed region's data left");
        }
        acked.put(&cluster, b"k100", b"after");
        check_all(&cluster, &acked);
        // Either way the store ends with a tombstone and no copy of the data.
        cluster.must_get_none(3, b"k000");
        let deadline = Instant::now() + HIT_TIMEOUT;
        while region_state(&cluster, 3, 1) != PeerState::Tombstone {
            assert!(
                Instant::now() < deadline,
                "store 3 never tombstoned region 1"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        readd_store_3(&cluster, &acked, 4);
        check_all(&cluster, &acked);
    });
}

#[test]
fn leader_crash_while_applying_conf_change_restarts_clean() {
    let _s = fail::FailScenario::setup();
    rounds(|| {
        let (cluster, mut acked) = cluster_with_data(raftstore::Config::for_tests(), 20);
        let crash = Crash::arm("conf_change_applied", 1, |t| is_poller_of(t, 1));
        std::thread::scope(|s| {
            // The leader dies applying the removal; the others finish it.
            let op = s.spawn(|| cluster.must_remove_peer(1, peer(3, 3)));
            crash.wait(1);
            restart(&cluster, &[1]);
            op.join().expect("the removal completes after the crash");
        });
        drop(crash);
        acked.put(&cluster, b"k100", b"after");
        check_all(&cluster, &acked);
        cluster.must_get_none(3, b"k000");
        readd_store_3(&cluster, &acked, 4);
        check_all(&cluster, &acked);
    });
}

fn split_crash(crashed: u64) {
    let (cluster, mut acked) = cluster_with_data(raftstore::Config::for_tests(), 20);
    cluster.must_get_equal(crashed, b"k019", b"first");
    let crash = Crash::arm("split_before_new_peers", 1, move |t| {
        is_poller_of(t, crashed)
    });
    cluster.must_split(1, b"k010");
    crash.wait(1);
    drop(crash);
    restart(&cluster, &[crashed]);

    // Both halves take writes, and the crashed store's new peer replicates them.
    acked.put(&cluster, b"k005", b"after");
    acked.put(&cluster, b"k015", b"after");
    cluster.must_get_equal(crashed, b"k005", b"after");
    cluster.must_get_equal(crashed, b"k015", b"after");
    check_all(&cluster, &acked);
    cluster.refresh_regions();
    let regions = cluster.cached_regions();
    assert_eq!(regions.len(), 2, "one split, two regions: {regions:?}");
}

#[test]
fn every_replica_crashes_after_split_applied_and_restarts_clean() {
    let _s = fail::FailScenario::setup();
    rounds(|| {
        let (cluster, mut acked) = cluster_with_data(raftstore::Config::for_tests(), 20);
        cluster.must_get_equal(2, b"k019", b"first");
        cluster.must_get_equal(3, b"k019", b"first");
        // Each store dies as it applies the split; restarted at once, it comes back with
        // the split from disk and the others go on to apply it (and die) in turn.
        let crash = Crash::arm("split_before_new_peers", 3, |t| {
            t.starts_with("raft-poller-")
        });
        std::thread::scope(|s| {
            let op = s.spawn(|| cluster.must_split(1, b"k010"));
            for k in 1..=3 {
                let hits = crash.wait(k);
                let store = poller_store(&hits[k - 1]).expect("store id in the poller's name");
                restart(&cluster, &[store]);
            }
            op.join().expect("the split is seen");
        });
        drop(crash);
        acked.put(&cluster, b"k005", b"after");
        acked.put(&cluster, b"k015", b"after");
        for s in 1..=3 {
            cluster.must_get_equal(s, b"k005", b"after");
            cluster.must_get_equal(s, b"k015", b"after");
        }
        check_all(&cluster, &acked);
        cluster.refresh_regions();
        assert_eq!(cluster.cached_regions().len(), 2);
    });
}

#[test]
fn follower_crash_after_split_applied_restarts_clean() {
    let _s = fail::FailScenario::setup();
    rounds(|| {
        split_crash(2);
    });
}

#[test]
fn leader_crash_after_split_applied_restarts_clean() {
    let _s = fail::FailScenario::setup();
    rounds(|| {
        split_crash(1);
    });
}

#[test]
fn whole_cluster_crash_after_log_truncation_before_gc_restarts_clean() {
    let _s = fail::FailScenario::setup();
    rounds(|| {
        let mut cfg = raftstore::Config::for_tests();
        cfg.raft_log_gc_count_limit = 10;
        let cluster = Cluster::new(3, cfg);
        cluster.run();
        // Every store's gc worker dies after syncing the KV engine and before compacting.
        let crash = Crash::arm("raft_log_gc_before_compact", 3, |t| t == "raft-gc-worker");
        let mut acked = Acknowledged::new();
        let mut i = 0;
        while crash.hits.lock().unwrap().len() < 3 {
            acked.put(&cluster, format!("k{i:03}").as_bytes(), b"v");
            i += 1;
            assert!(i < 500, "log never truncated on every store");
        }
        crash.wait(3);
        drop(crash);
        for s in 1..=3 {
            assert!(
                cluster.truncated_index(s, 1) > raftstore::util::RAFT_INIT_LOG_INDEX,
                "store {s}: the truncation is on disk"
            );
        }
        restart(&cluster, &[1, 2, 3]);
        check_all(&cluster, &acked);
        // The log keeps being truncated and compacted after the restart.
        let truncated = cluster.truncated_index(1, 1);
        for j in 0..30 {
            acked.put(&cluster, format!("later{j:03}").as_bytes(), b"v");
        }
        check_all(&cluster, &acked);
        let deadline = Instant::now() + HIT_TIMEOUT;
        while cluster.truncated_index(1, 1) <= truncated {
            assert!(Instant::now() < deadline, "no truncation after the restart");
            std::thread::sleep(Duration::from_millis(20));
        }
    });
}

#[test]
fn leader_crash_while_applying_log_truncation_restarts_clean() {
    let _s = fail::FailScenario::setup();
    rounds(|| {
        let mut cfg = raftstore::Config::for_tests();
        cfg.raft_log_gc_count_limit = 10;
        let (cluster, mut acked) = cluster_with_data(cfg, 0);
        let crash = Crash::arm("compact_log_applied", 1, |t| is_poller_of(t, 1));
        let mut i = 0;
        while crash.hits.lock().unwrap().is_empty() {
            // Writes go on while store 1 dies: the client retries on the new leader.
            acked.put(&cluster, format!("k{i:03}").as_bytes(), b"v");
            i += 1;
            assert!(i < 500, "log never truncated on store 1");
        }
        drop(crash);
        restart(&cluster, &[1]);
        acked.put(&cluster, b"after", b"v");
        cluster.must_get_equal(1, b"after", b"v");
        check_all(&cluster, &acked);
    });
}

/// Store 3 misses enough of the log that it needs a snapshot; returns the cluster with
/// store 3 still cut off and the leader's log truncated past store 3's.
fn lagging_store_3() -> (Cluster, Acknowledged) {
    let mut cfg = raftstore::Config::for_tests();
    cfg.raft_log_gc_count_limit = 10;
    let (cluster, mut acked) = cluster_with_data(cfg, 10);
    cluster.must_get_equal(3, b"k009", b"first");
    let behind = cluster
        .apply_state(3, 1)
        .expect("apply state")
        .applied_index;
    cluster.isolate(3);
    let mut i = 0;
    while cluster.truncated_index(1, 1) <= behind + 20 {
        acked.put(&cluster, format!("lag{i:03}").as_bytes(), b"v");
        i += 1;
        assert!(i < 500, "leader's log never truncated past store 3");
    }
    (cluster, acked)
}

fn snapshot_crash(point: &'static str, thread: impl Fn(&str) -> bool + Send + Sync + 'static) {
    let (cluster, mut acked) = lagging_store_3();
    let crash = Crash::arm(point, 1, thread);
    cluster.clear_filters();
    crash.wait(1);
    drop(crash);
    restart(&cluster, &[3]);
    acked.put(&cluster, b"after", b"v");
    for (k, v) in acked.iter() {
        match v {
            Some(v) => cluster.must_get_equal(3, k, v),
            None => cluster.must_get_none(3, k),
        }
    }
    check_all(&cluster, &acked);
}

#[test]
fn crash_after_snapshot_data_written_before_log_reset_restarts_clean() {
    let _s = fail::FailScenario::setup();
    rounds(|| {
        // Only store 3 applies a snapshot here, so the region worker that reaches it is its own.
        snapshot_crash("region_snapshot_after_kv_write", |t| t == "region-worker");
    });
}

#[test]
fn crash_after_snapshot_applied_before_peer_update_restarts_clean() {
    let _s = fail::FailScenario::setup();
    rounds(|| {
        snapshot_crash("snapshot_applied_before_peer_update", |t| {
            is_poller_of(t, 3)
        });
    });
}

#[test]
fn crash_while_a_new_peer_applies_its_first_snapshot_restarts_clean() {
    let _s = fail::FailScenario::setup();
    rounds(|| {
        // A peer created from a message (no range, no log yet) gets its data only through
        // a snapshot; the store dies between the snapshot's data and its log.
        let (cluster, mut acked) = cluster_with_data(raftstore::Config::for_tests(), 20);
        cluster.must_remove_peer(1, peer(3, 3));
        cluster.must_get_none(3, b"k000");
        let crash = Crash::arm("region_snapshot_after_kv_write", 1, |t| {
            t == "region-worker"
        });
        cluster.must_add_peer(1, peer(4, 3));
        crash.wait(1);
        drop(crash);
        restart(&cluster, &[3]);
        acked.put(&cluster, b"after", b"v");
        for (k, v) in acked.iter() {
            match v {
                Some(v) => cluster.must_get_equal(3, k, v),
                None => cluster.must_get_none(3, k),
            }
        }
        check_all(&cluster, &acked);
    });
}
