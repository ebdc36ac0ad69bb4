//! The official `tikv-client` crate (crates.io 0.4), unchanged, running transactions
//! against a Tessera cluster (a scheduler and three stores on loopback gRPC, in this
//! process), in API V1 and in API V2.
//!
//! Every transactional feature the client offers is exercised across several regions:
//! reads and writes, scans both ways, insert of an existing key, an optimistic write
//! conflict, pessimistic locks (get_for_update, lock_keys, rollback), heartbeats, async
//! commit, 1PC, a transaction whose keys span a split made while it runs, locks left by a
//! client that died between prewrite and commit (resolved by the next reader), GC through
//! the scheduler's safe point, and UnsafeDestroyRange.

mod common;

use std::time::Duration;

use common::TestCluster;
use proto::kvrpcpb;
use proto::tikvpb::tikv_client::TikvClient;
use tikv_client::{CheckLevel, Config, TimestampExt, TransactionClient, TransactionOptions};

fn key(i: u32) -> Vec<u8> {
    format!("tk{i:05}").into_bytes()
}

fn value(i: u32, round: u32) -> Vec<u8> {
    let mut v = format!("v{i}-{round}-").into_bytes();
    // Every tenth value is longer than 255 bytes, so it lives in CF default.
    v.resize(if i.is_multiple_of(10) { 600 } else { 40 }, b'x');
    v
}

/// Options that make a failed transaction drop quietly (the test checks the errors itself).
fn optimistic() -> TransactionOptions {
    TransactionOptions::new_optimistic().drop_check(CheckLevel::None)
}

fn pessimistic() -> TransactionOptions {
    TransactionOptions::new_pessimistic().drop_check(CheckLevel::None)
}

/// Maps a client key to the key the stores hold (memcomparable; in V2 behind the
/// default keyspace's transactional prefix).
#[derive(Clone, Copy)]
struct Layout {
    v2: bool,
}

impl Layout {
    fn stored(&self, k: &[u8]) -> Vec<u8> {
        codec::bytes::encode_bytes(&self.raw(k))
    }

    /// The key as it travels in requests.
    fn raw(&self, k: &[u8]) -> Vec<u8> {
        if self.v2 {
            let mut p = vec![b'x', 0, 0, 0];
            p.extend_from_slice(k);
            p
        } else {
            k.to_vec()
        }
    }
}

async fn exercise(cluster: &TestCluster, client: &TransactionClient, layout: Layout) {
    // Regions cut before the data arrives, so every multi-key step spans several.
    for i in [100, 200, 300] {
        cluster.split_at(&layout.stored(&key(i))).await;
    }

    // Writes and reads of 400 keys over four regions, in one transaction.
    let mut txn = client.begin_with_options(optimistic()).await.unwrap();
    for i in 0..400 {
        txn.put(key(i), value(i, 0)).await.unwrap();
    }
    txn.commit().await.unwrap();

    let mut snap = client.begin_with_options(optimistic()).await.unwrap();
    assert_eq!(snap.get(key(7)).await.unwrap(), Some(value(7, 0)));
    assert_eq!(snap.get(key(150)).await.unwrap(), Some(value(150, 0)));
    assert_eq!(snap.get(b"missing".to_vec()).await.unwrap(), None);
    let keys: Vec<Vec<u8>> = (0..400).step_by(13).map(key).collect();
    let got: Vec<_> = snap.batch_get(keys.clone()).await.unwrap().collect();
    assert_eq!(got.len(), keys.len());
    for pair in &got {
        let k: Vec<u8> = pair.key().clone().into();
        let i: u32 = std::str::from_utf8(&k[2..]).unwrap().parse().unwrap();
        assert_eq!(pair.value(), &value(i, 0));
    }
    let all: Vec<_> = snap.scan(key(0)..key(400), 1000).await.unwrap().collect();
    assert_eq!(all.len(), 400, "forward scan over four regions");
    for (i, pair) in all.iter().enumerate() {
        assert_eq!(Vec::<u8>::from(pair.key().clone()), key(i as u32));
        assert_eq!(pair.value(), &value(i as u32, 0));
    }
    let limited: Vec<Vec<u8>> = snap
        .scan(key(95)..key(400), 10)
        .await
        .unwrap()
        .map(|p| p.into_key().into())
        .collect();
    assert_eq!(limited, (95..105).map(key).collect::<Vec<_>>());
    let reverse: Vec<Vec<u8>> = snap
        .scan_reverse(key(190)..key(210), 15)
        .await
        .unwrap()
        .map(|p| p.into_key().into())
        .collect();
    assert_eq!(
        reverse,
        (195..210).rev().map(key).collect::<Vec<_>>(),
        "reverse scan across a region boundary"
    );
    snap.rollback().await.unwrap();

    // Deletes.
    let mut txn = client.begin_with_options(optimistic()).await.unwrap();
    txn.delete(key(3)).await.unwrap();
    txn.delete(key(250)).await.unwrap();
    txn.commit().await.unwrap();
    let mut snap = client.begin_with_options(optimistic()).await.unwrap();
    assert_eq!(snap.get(key(3)).await.unwrap(), None);
    assert_eq!(snap.get(key(250)).await.unwrap(), None);
    assert_eq!(snap.get(key(4)).await.unwrap(), Some(value(4, 0)));
    snap.rollback().await.unwrap();

    // Insert of an existing key: AlreadyExist, and nothing of the transaction is written.
    let mut txn = client.begin_with_options(optimistic()).await.unwrap();
    txn.insert(key(5), b"dup".to_vec()).await.unwrap();
    txn.put(key(6), b"collateral".to_vec()).await.unwrap();
    let err = txn.commit().await.expect_err("insert of an existing key");
    assert!(
        format!("{err:?}").contains("AlreadyExist") || format!("{err:?}").contains("already"),
        "{err:?}"
    );
    let _ = txn.rollback().await;
    let mut snap = client.begin_with_options(optimistic()).await.unwrap();
    assert_eq!(snap.get(key(5)).await.unwrap(), Some(value(5, 0)));
    assert_eq!(snap.get(key(6)).await.unwrap(), Some(value(6, 0)));
    snap.rollback().await.unwrap();
    // Insert of a new key works.
    let mut txn = client.begin_with_options(optimistic()).await.unwrap();
    txn.insert(key(3), b"re-inserted".to_vec()).await.unwrap();
    txn.commit().await.unwrap();

    // Optimistic write conflict: the later committer of two overlapping transactions fails.
    let mut a = client.begin_with_options(optimistic()).await.unwrap();
    let mut b = client.begin_with_options(optimistic()).await.unwrap();
    a.put(key(10), b"from a".to_vec()).await.unwrap();
    b.put(key(10), b"from b".to_vec()).await.unwrap();
    a.commit().await.unwrap();
    let err = b.commit().await.expect_err("write conflict");
    assert!(format!("{err:?}").contains("onflict"), "{err:?}");
    let _ = b.rollback().await;
    let mut snap = client.begin_with_options(optimistic()).await.unwrap();
    assert_eq!(snap.get(key(10)).await.unwrap(), Some(b"from a".to_vec()));
    snap.rollback().await.unwrap();

    // Pessimistic: get_for_update returns the value and locks; a writer meeting the lock
    // fails while it is held; rollback releases it; lock_keys; heartbeat.
    let mut p = client.begin_with_options(pessimistic()).await.unwrap();
    assert_eq!(p.get_for_update(key(20)).await.unwrap(), Some(value(20, 0)));
    p.lock_keys(vec![key(120), key(220)]).await.unwrap();
    let ttl = p.send_heart_beat().await.unwrap();
    assert!(ttl > 0, "heartbeat answered ttl {ttl}");
    let mut w = client.begin_with_options(optimistic()).await.unwrap();
    w.put(key(120), b"blocked".to_vec()).await.unwrap();
    let blocked = w.commit().await;
    assert!(blocked.is_err(), "a write under a live pessimistic lock");
    let _ = w.rollback().await;
    p.put(key(20), b"pessimistic".to_vec()).await.unwrap();
    p.rollback().await.unwrap();
    let mut w = client.begin_with_options(optimistic()).await.unwrap();
    w.put(key(120), b"after rollback".to_vec()).await.unwrap();
    w.commit().await.unwrap();
    let mut p = client.begin_with_options(pessimistic()).await.unwrap();
    p.get_for_update(key(21)).await.unwrap();
    p.put(key(21), b"pessimistic".to_vec()).await.unwrap();
    p.put(key(221), b"pessimistic".to_vec()).await.unwrap();
    p.commit().await.unwrap();
    let mut snap = client.begin_with_options(optimistic()).await.unwrap();
    assert_eq!(snap.get(key(20)).await.unwrap(), Some(value(20, 0)));
    assert_eq!(
        snap.get(key(120)).await.unwrap(),
        Some(b"after rollback".to_vec())
    );
    assert_eq!(
        snap.get(key(21)).await.unwrap(),
        Some(b"pessimistic".to_vec())
    );
    assert_eq!(
        snap.get(key(221)).await.unwrap(),
        Some(b"pessimistic".to_vec())
    );
    snap.rollback().await.unwrap();

    // Async commit over several regions, and 1PC within one.
    let mut txn = client
        .begin_with_options(optimistic().use_async_commit())
        .await
        .unwrap();
    for i in [30, 130, 230, 330] {
        txn.put(key(i), b"async".to_vec()).await.unwrap();
    }
    let commit_ts = txn.commit().await.unwrap().expect("a commit ts");
    assert!(commit_ts.version() > txn.start_timestamp().version());
    let mut txn = client
        .begin_with_options(optimistic().try_one_pc())
        .await
        .unwrap();
    txn.put(key(40), b"1pc".to_vec()).await.unwrap();
    txn.put(key(41), b"1pc".to_vec()).await.unwrap();
    txn.commit().await.unwrap();
    let mut snap = client.begin_with_options(optimistic()).await.unwrap();
    for i in [30, 130, 230, 330] {
        assert_eq!(snap.get(key(i)).await.unwrap(), Some(b"async".to_vec()));
    }
    assert_eq!(snap.get(key(41)).await.unwrap(), Some(b"1pc".to_vec()));
    snap.rollback().await.unwrap();

    // A transaction whose keys span a split made while it runs: its pessimistic locks
    // are taken in one region, which splits before the prewrite and commit.
    let mut txn = client.begin_with_options(pessimistic()).await.unwrap();
    txn.lock_keys((300..400).map(key)).await.unwrap();
    cluster.split_at(&layout.stored(&key(350))).await;
    for i in 300..400 {
        txn.put(key(i), value(i, 1)).await.unwrap();
    }
    txn.commit().await.unwrap();
    let mut snap = client.begin_with_options(optimistic()).await.unwrap();
    let got: Vec<_> = snap.scan(key(300)..key(400), 200).await.unwrap().collect();
    assert_eq!(got.len(), 100);
    for (n, pair) in got.iter().enumerate() {
        assert_eq!(pair.value(), &value(300 + n as u32, 1));
    }
    snap.rollback().await.unwrap();

    // A client that dies between prewrite and commit: its lock (short TTL) is resolved by
    // the next reader, which then sees the old value.
    prewrite_and_vanish(cluster, client, layout, &key(50)).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut snap = client.begin_with_options(optimistic()).await.unwrap();
    assert_eq!(snap.get(key(50)).await.unwrap(), Some(value(50, 0)));
    snap.rollback().await.unwrap();

    // GC: the client resolves locks below the safe point and gives it to the scheduler;
    // the stores' GC workers then drop the versions it shadows. Seen from the client: a
    // snapshot older than the newest version below the safe point loses its value.
    let mut first_commit = None;
    for round in 1..=3 {
        let mut txn = client.begin_with_options(optimistic()).await.unwrap();
        txn.put(key(8), value(8, round)).await.unwrap();
        let ts = txn.commit().await.unwrap().expect("commit ts");
        first_commit.get_or_insert(ts);
    }
    let old = first_commit.unwrap();
    let at_old = |c: &TransactionClient| c.snapshot(old.clone(), optimistic());
    assert_eq!(at_old(client).get(key(8)).await.unwrap(), Some(value(8, 1)));
    let safe_point = client.current_timestamp().await.unwrap();
    assert!(
        client.gc(safe_point).await.unwrap(),
        "safe point taken as asked"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while at_old(client).get(key(8)).await.unwrap().is_some() {
        assert!(
            std::time::Instant::now() < deadline,
            "old versions still there 30 s after the safe point moved"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut snap = client.begin_with_options(optimistic()).await.unwrap();
    assert_eq!(snap.get(key(8)).await.unwrap(), Some(value(8, 3)));
    assert_eq!(snap.get(key(7)).await.unwrap(), Some(value(7, 0)));
    snap.rollback().await.unwrap();

    // UnsafeDestroyRange removes everything in the range on every store.
    client.unsafe_destroy_range(key(0)..key(100)).await.unwrap();
    let mut snap = client.begin_with_options(optimistic()).await.unwrap();
    let left: Vec<_> = snap.scan(key(0)..key(100), 1000).await.unwrap().collect();
    assert!(
        left.is_empty(),
        "{} keys left after UnsafeDestroyRange",
        left.len()
    );
    assert_eq!(snap.get(key(100)).await.unwrap(), Some(value(100, 0)));
    snap.rollback().await.unwrap();

    // No transaction left a lock behind.
    let ts = client.current_timestamp().await.unwrap();
    let locks = client
        .scan_locks(&ts, layout_range(layout), 1000)
        .await
        .unwrap();
    assert!(locks.is_empty(), "locks left: {locks:?}");
}

fn layout_range(_layout: Layout) -> std::ops::Range<Vec<u8>> {
    key(0)..key(100_000)
}

/// Prewrites `k` (primary, 100 ms TTL) straight through the gRPC API, as a client that
/// dies right after would leave it.
async fn prewrite_and_vanish(
    cluster: &TestCluster,
    client: &TransactionClient,
    layout: Layout,
    k: &[u8],
) {
    let pd = cluster.node(0).pd();
    let start_ts = client.current_timestamp().await.unwrap().version();
    let raw = layout.raw(k);
    for _ in 0..50 {
        let info = pd
            .get_region(&layout.stored(k))
            .await
            .unwrap()
            .expect("region of the key");
        let Some(leader) = info.leader else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let store = pd.get_store(leader.store_id).await.unwrap();
        let mut kv = TikvClient::connect(format!("http://{}", store.address))
            .await
            .unwrap();
        let ctx = kvrpcpb::Context {
            region_id: info.region.id,
            region_epoch: info.region.region_epoch,
            peer: Some(leader),
            api_version: if layout.v2 { 2 } else { 0 },
            ..Default::default()
        };
        let resp = kv
            .kv_prewrite(kvrpcpb::PrewriteRequest {
                context: Some(ctx),
                mutations: vec![kvrpcpb::Mutation {
                    op: kvrpcpb::Op::Put as i32,
                    key: raw.clone(),
                    value: b"never committed".to_vec(),
                    ..Default::default()
                }],
                primary_lock: raw.clone(),
                start_version: start_ts,
                lock_ttl: 100,
                txn_size: 1,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        if resp.region_error.is_some() {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        assert!(resp.errors.is_empty(), "{:?}", resp.errors);
        return;
    }
    panic!("could not prewrite {k:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tikv_client_transactions_api_v1() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = TestCluster::start(dir.path(), 1).await;
    let client = TransactionClient::new(vec![cluster.pd_addr()])
        .await
        .unwrap();
    exercise(&cluster, &client, Layout { v2: false }).await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tikv_client_transactions_api_v2() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = TestCluster::start(dir.path(), 2).await;
    cluster.wait_for_keyspace_edges(b'x').await;
    let client = TransactionClient::new_with_config(
        vec![cluster.pd_addr()],
        Config::default().with_default_keyspace(),
    )
    .await
    .unwrap();
    exercise(&cluster, &client, Layout { v2: true }).await;
    cluster.stop().await;
}
