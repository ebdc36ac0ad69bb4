//! MVCC garbage collection on the in-process 3-store cluster: versions written through
//! the transactional RPCs, a GC round per store at a safe point above most of them, and
//! then, on every replica, the old versions gone (identically), and every read at or
//! above the safe point answering as before.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use engine::{CfName, Engine, Snapshot, CF_DEFAULT, CF_LOCK, CF_WRITE};
use proto::kvrpcpb::{Mutation, Op};
use proto::metapb;
use server::gc_worker::{GcConfig, GcSummary, GcWorker, SafePointSource, SourceFuture};
use server::storage::RaftKv;

use common::at::v1;
use common::tx::{enc, put, txn_leader};
use common::{start, Env};

/// The scheduler as the GC workers see it in these tests: a settable safe point and the
/// regions as the stores know them.
struct TestSource {
    safe_point: AtomicU64,
    regions: Mutex<Vec<metapb::Region>>,
}

impl TestSource {
    fn new(env: &Env) -> Arc<TestSource> {
        env.cluster.refresh_regions();
        let mut regions = env.cluster.cached_regions();
        regions.sort_by(|a, b| a.start_key.cmp(&b.start_key));
        Arc::new(TestSource {
            safe_point: AtomicU64::new(0),
            regions: Mutex::new(regions),
        })
    }
}

impl SafePointSource for TestSource {
    fn get_gc_safe_point(&self) -> SourceFuture<'_, u64> {
        Box::pin(async move { Ok(self.safe_point.load(Ordering::SeqCst)) })
    }

    fn scan_regions(&self, start: Vec<u8>, limit: usize) -> SourceFuture<'_, Vec<metapb::Region>> {
        Box::pin(async move {
            Ok(self
                .regions
                .lock()
                .unwrap()
                .iter()
                .filter(|r| r.end_key.is_empty() || r.end_key > start)
                .take(limit)
                .cloned()
                .collect())
        })
    }
}

fn worker(
    env: &Env,
    store: u64,
    source: &Arc<TestSource>,
    cfg: GcConfig,
) -> GcWorker<engine::FjallSnapshot> {
    let kv = RaftKv::new(env.cluster.router(store).expect("store running"));
    GcWorker::new(store, kv, source.clone(), cfg)
}

/// Every pair of `cf` a store holds (data keys, as on disk).
fn dump(env: &Env, store: u64, cf: CfName) -> Vec<(Vec<u8>, Vec<u8>)> {
    let snap = env.cluster.engine(store).snapshot();
    let lo = codec::keys::data_key(b"");
    let hi = codec::keys::data_end_key(b"");
    snap.scan(cf, &lo, &hi, false)
        .map(|kv| kv.unwrap())
        .collect()
}

/// (entries, bytes of keys and values) of `cf` on `store`.
fn measure(env: &Env, store: u64, cf: CfName) -> (usize, usize) {
    let pairs = dump(env, store, cf);
    (
        pairs.len(),
        pairs.iter().map(|(k, v)| k.len() + v.len()).sum(),
    )
}

/// Waits until every store holds the same pairs in CFs write and default (replicas apply
/// asynchronously), optionally `want` write entries; returns the write and default
/// figures, the same on every store.
async fn replicas_identical(
    env: &Env,
    want_writes: Option<usize>,
) -> ((usize, usize), (usize, usize)) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let same = [CF_WRITE, CF_DEFAULT, CF_LOCK].iter().all(|cf| {
            let first = dump(env, 1, cf);
            (2..=3).all(|s| dump(env, s, cf) == first)
        });
        let w = measure(env, 1, CF_WRITE);
        if same && want_writes.is_none_or(|n| n == w.0) {
            return (w, measure(env, 1, CF_DEFAULT));
        }
        assert!(
            Instant::now() < deadline,
            "replicas differ or hold {w:?} write entries, want {want_writes:?} (seed {})",
            env.cluster.seed
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn long_value(key: &[u8], round: usize) -> Vec<u8> {
    let mut v = format!("{}-{round}-", String::from_utf8_lossy(key)).into_bytes();
    v.resize(300, b'.');
    v
}

/// Commits `rounds` versions of every key, one transaction per key and round; the keys
/// containing `long` get long values (CF default), `del` is deleted in round
/// `delete_round`. Returns the commit timestamps by round.
async fn write_versions(
    env: &Env,
    keys: &[&[u8]],
    rounds: std::ops::Range<usize>,
    delete_round: usize,
) -> Vec<u64> {
    let mut commits = Vec::new();
    for round in rounds {
        for key in keys {
            let tx = txn_leader(env, key).await;
            let start = env.tso.next();
            let m = if *key == b"del" && round == delete_round {
                Mutation {
                    op: Op::Del as i32,
                    key: key.to_vec(),
                    ..Default::default()
                }
            } else if key.windows(4).any(|w| w == b"long") {
                put(key, &long_value(key, round))
            } else {
                put(key, format!("v{round}").as_bytes())
            };
            tx.must_prewrite(vec![m], key, start).await;
            let commit = env.tso.next();
            tx.must_commit(&[key], start, commit).await;
        }
        commits.push(env.tso.next());
    }
    commits
}

/// What every key reads at each of `ts`, through the leaders.
async fn reads(env: &Env, keys: &[&[u8]], ts: &[u64]) -> BTreeMap<(Vec<u8>, u64), Option<Vec<u8>>> {
    let mut out = BTreeMap::new();
    for key in keys {
        let tx = txn_leader(env, key).await;
        for t in ts {
            out.insert((key.to_vec(), *t), tx.must_get(key, *t).await);
        }
    }
    out
}

fn total(sums: &[GcSummary]) -> GcSummary {
    let mut t = GcSummary::default();
    for s in sums {
        t.regions_done += s.regions_done;
        t.regions_not_led += s.regions_not_led;
        t.regions_failed += s.regions_failed;
        t.keys_scanned += s.keys_scanned;
        t.versions_deleted += s.versions_deleted;
        t.writes += s.writes;
    }
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gc_drops_old_versions_on_every_replica_and_keeps_reads_at_the_safe_point() {
    let env = start(&[&enc(b"m")], v1(), |_| {});
    // Two regions: [.., enc("m")) and [enc("m"), ..).
    let keys: &[&[u8]] = &[b"a", b"del", b"long", b"n", b"o-long", b"z"];
    const OLD: usize = 30;
    const NEW: usize = 10;
    let mut marks = write_versions(&env, keys, 0..OLD, OLD - 1).await;
    let safe_point = *marks.last().unwrap();
    marks.extend(write_versions(&env, keys, OLD..OLD + NEW, usize::MAX).await);

    let (writes_before, defaults_before) = replicas_identical(&env, None).await;
    assert_eq!(writes_before.0, keys.len() * (OLD + NEW));
    assert_eq!(defaults_before.0, 2 * (OLD + NEW));
    let mut ts = vec![safe_point, safe_point + 1];
    ts.extend_from_slice(&marks[OLD - 1..]);
    ts.push(env.tso.next());
    let before = reads(&env, keys, &ts).await;
    assert_eq!(
        before[&(b"del".to_vec(), safe_point)],
        None,
        "deleted at the safe point"
    );
    assert_eq!(
        before[&(b"a".to_vec(), safe_point)],
        Some(format!("v{}", OLD - 1).into_bytes())
    );

    let source = TestSource::new(&env);
    let regions = source.regions.lock().unwrap().len();
    assert_eq!(regions, 2);
    let cfg = GcConfig {
        batch_keys: 2,
        ..Default::default()
    };
    let mut sums = Vec::new();
    for store in 1..=3 {
        // Stores 1 and 3 scan inline (`GcConfig::inline`, the simulator's mode): the
        // totals below must not depend on where the batches ran.
        let cfg = GcConfig {
            inline: store != 2,
            ..cfg.clone()
        };
        let w = worker(&env, store, &source, cfg);
        let s = w.run_once(safe_point).await;
        assert!(s.finished && s.regions_failed == 0, "store {store}: {s:?}");
        assert_eq!(
            s.regions_done + s.regions_not_led,
            regions,
            "store {store}: {s:?}"
        );
        assert_eq!(w.finished_safe_point(), safe_point);
        sums.push(s);
    }
    let t = total(&sums);
    assert_eq!(
        t.regions_done, regions,
        "each region collected by its leader only: {sums:?}"
    );
    // Per key: every version at or below the safe point but the newest goes; "del"'s
    // newest there is its Delete, which goes too.
    let deleted = (keys.len() - 1) * (OLD - 1) + OLD;
    assert_eq!(t.versions_deleted, deleted, "{sums:?}");
    assert!(t.writes >= 3, "several batches: {sums:?}");

    let (writes_after, defaults_after) =
        replicas_identical(&env, Some(writes_before.0 - deleted)).await;
    assert_eq!(writes_after.0, (keys.len() - 1) * (NEW + 1) + NEW);
    assert_eq!(
        defaults_after.0,
        2 * (NEW + 1),
        "values of the collected long versions are gone"
    );
    eprintln!(
        "gc at safe point {safe_point}: CF write {} entries / {} bytes -> {} / {}, \
         CF default {} / {} -> {} / {} (every replica)",
        writes_before.0,
        writes_before.1,
        writes_after.0,
        writes_after.1,
        defaults_before.0,
        defaults_before.1,
        defaults_after.0,
        defaults_after.1
    );
    assert_eq!(
        reads(&env, keys, &ts).await,
        before,
        "reads at or above the safe point changed"
    );

    // Nothing left to collect at the same safe point.
    let w = worker(&env, 1, &source, cfg.clone());
    let again = w.run_once(safe_point).await;
    assert_eq!((again.versions_deleted, again.writes), (0, 0), "{again:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn background_workers_follow_the_scheduler_safe_point() {
    let env = start(&[&enc(b"m")], v1(), |_| {});
    let keys: &[&[u8]] = &[b"a", b"n"];
    let marks = write_versions(&env, keys, 0..5, usize::MAX).await;
    let (before, _) = replicas_identical(&env, None).await;
    assert_eq!(before.0, 10);

    let source = TestSource::new(&env);
    let cfg = GcConfig {
        interval: Duration::from_millis(50),
        ..Default::default()
    };
    let workers: Vec<_> = (1..=3)
        .map(|store| {
            let kv = RaftKv::new(env.cluster.router(store).expect("store running"));
            GcWorker::start(store, kv, source.clone(), cfg.clone())
        })
        .collect();
    // No safe point yet: nothing happens.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(workers.iter().all(|w| w.finished_safe_point() == 0));
    assert_eq!(measure(&env, 1, CF_WRITE).0, 10);

    source.safe_point.store(marks[2], Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(20);
    while workers.iter().any(|w| w.finished_safe_point() != marks[2]) {
        assert!(
            Instant::now() < deadline,
            "workers did not finish a round (seed {})",
            env.cluster.seed
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Versions 3 and 4 above it, version 2 at it: 3 per key stay.
    replicas_identical(&env, Some(6)).await;
    let tx = txn_leader(&env, b"a").await;
    assert_eq!(tx.must_get(b"a", marks[2]).await, Some(b"v2".to_vec()));

    // The scheduler's safe point never goes back; a lower answer does not rerun anything.
    source.safe_point.store(marks[1], Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(workers.iter().all(|w| w.finished_safe_point() == marks[2]));

    source.safe_point.store(marks[4], Ordering::SeqCst);
    replicas_identical(&env, Some(2)).await;
    drop(workers);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_round_scans_at_most_max_keys_per_sec() {
    let env = start(&[], v1(), |_| {});
    let keys: Vec<Vec<u8>> = (0..40).map(|i| format!("k{i:02}").into_bytes()).collect();
    let refs: Vec<&[u8]> = keys.iter().map(|k| k.as_slice()).collect();
    let marks = write_versions(&env, &refs, 0..1, usize::MAX).await;
    let source = TestSource::new(&env);
    let cfg = GcConfig {
        max_keys_per_sec: 20,
        batch_keys: 5,
        ..Default::default()
    };
    let began = Instant::now();
    let mut sums = Vec::new();
    for store in 1..=3 {
        sums.push(
            worker(&env, store, &source, cfg.clone())
                .run_once(marks[0])
                .await,
        );
    }
    let elapsed = began.elapsed();
    let t = total(&sums);
    assert_eq!(
        (t.regions_done, t.keys_scanned, t.versions_deleted),
        (1, 40, 0),
        "{sums:?}"
    );
    assert!(
        elapsed >= Duration::from_millis(1900),
        "40 keys at 20 keys/s took {elapsed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_region_split_since_the_listing_is_collected_through_the_epoch_error() {
    let env = start(&[], v1(), |_| {});
    let keys: &[&[u8]] = &[b"a", b"n"];
    let marks = write_versions(&env, keys, 0..4, usize::MAX).await;
    // The scheduler's list still has the one region from before the split.
    let source = TestSource::new(&env);
    let old = source.regions.lock().unwrap()[0].clone();

    for store in 1..=3 {
        let _ = env.cluster.router(store).expect("store running").send(
            old.id,
            raftstore::PeerMsg::AskSplit {
                epoch: old.region_epoch.unwrap_or_default(),
                split_keys: vec![enc(b"m")],
            },
        );
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let regions = loop {
        env.cluster.refresh_regions();
        let regions = env.cluster.cached_regions();
        if regions.len() == 2 {
            break regions;
        }
        assert!(
            Instant::now() < deadline,
            "no split (seed {})",
            env.cluster.seed
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // One store leads both halves (the left one learns of the right one from the error).
    let left = txn_leader(&env, b"a").await.store;
    let right = regions
        .iter()
        .find(|r| r.start_key == enc(b"m"))
        .unwrap()
        .clone();
    let peer = *raftstore::util::find_peer(&right, left).unwrap();
    tokio::task::block_in_place(|| env.cluster.must_transfer_leader(right.id, peer));
    assert_eq!(txn_leader(&env, b"n").await.store, left);

    let mut sums = Vec::new();
    for store in 1..=3 {
        let s = worker(&env, store, &source, GcConfig::default())
            .run_once(marks[2])
            .await;
        assert!(s.finished, "store {store}: {s:?}");
        sums.push(s);
    }
    let t = total(&sums);
    assert_eq!((t.regions_done, t.versions_deleted), (2, 4), "{sums:?}");
    replicas_identical(&env, Some(4)).await;
}
