//! Region errors (unknown region, stale epoch, not leader, key not in region, no context)
//! and limits (key, value, empty key, scan limit, raft entry size) come back as errors,
//! never as panics.

mod common;

use common::at::{at, v1};
use common::{kv, start};
use proto::kvrpcpb::*;
use proto::tikvpb::tikv_server::Tikv;
use server::StorageConfig;
use tonic::Request;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn region_errors() {
    let env = start(&[b"m"], v1(), |_| {});
    let (leader, ctx) = env.leader(b"a").await;
    let svc = env.svc(leader);
    let get = |ctx: Context, key: &[u8]| {
        svc.raw_get(Request::new(RawGetRequest {
            context: Some(ctx),
            key: key.to_vec(),
            ..Default::default()
        }))
    };

    // Unknown region.
    let mut unknown = ctx.clone();
    unknown.region_id = 999;
    let r = get(unknown, b"a").await.unwrap().into_inner();
    assert_eq!(
        r.region_error.unwrap().region_not_found.unwrap().region_id,
        999
    );

    // Stale epoch (the region's version is 1 at bootstrap; 0 is older).
    let mut stale = ctx.clone();
    stale.region_epoch.as_mut().unwrap().version = 0;
    let r = get(stale.clone(), b"a").await.unwrap().into_inner();
    let e = r.region_error.unwrap().epoch_not_match.unwrap();
    assert_eq!(e.current_regions[0].id, ctx.region_id);
    let r = svc
        .raw_put(Request::new(RawPutRequest {
            context: Some(stale),
            key: b"a".to_vec(),
            value: b"v".to_vec(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(r.region_error.unwrap().epoch_not_match.is_some());

    // A follower answers NotLeader, with the leader as hint when it knows one.
    let region = env.region(b"a");
    let follower = (1..=3).find(|s| *s != leader).unwrap();
    let r = env
        .svc(follower)
        .raw_get(Request::new(RawGetRequest {
            context: Some(env.ctx(&region, follower)),
            key: b"a".to_vec(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    let nl = r
        .region_error
        .expect("follower refuses")
        .not_leader
        .expect("NotLeader");
    assert_eq!(nl.region_id, region.id);
    if let Some(hint) = nl.leader {
        assert_eq!(hint.store_id, leader);
    }

    // Keys of another region: reads and writes get KeyNotInRegion.
    let r = get(ctx.clone(), b"z").await.unwrap().into_inner();
    assert_eq!(r.region_error.unwrap().key_not_in_region.unwrap().key, b"z");
    let r = svc
        .raw_batch_put(Request::new(RawBatchPutRequest {
            context: Some(ctx.clone()),
            pairs: vec![kv(b"b", b"1"), kv(b"y", b"2")],
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(r.region_error.unwrap().key_not_in_region.is_some());
    let r = svc
        .raw_compare_and_swap(Request::new(RawCasRequest {
            context: Some(ctx.clone()),
            key: b"y".to_vec(),
            value: b"v".to_vec(),
            previous_not_exist: true,
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(r.region_error.unwrap().key_not_in_region.is_some());

    // A request without any context is addressed to region 0, which does not exist.
    let r = svc
        .raw_get(Request::new(RawGetRequest {
            key: b"a".to_vec(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(r.region_error.unwrap().region_not_found.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_are_errors_not_panics() {
    let cfg = StorageConfig {
        max_value_size: 1024,
        max_scan_limit: 100,
        ..v1()
    };
    let env = start(&[], cfg, |rc| rc.raft_entry_max_size = 32 * 1024);
    let c = at(&env, b"a").await;

    let r = c.put(&vec![b'k'; 8 * 1024 + 1], b"v", 0).await;
    assert!(r.error.contains("key too large"), "{r:?}");
    let r = c.get(&vec![b'k'; 8 * 1024 + 1]).await;
    assert!(r.error.contains("key too large"), "{r:?}");
    let r = c.put(b"k", &[0u8; 1025], 0).await;
    assert!(r.error.contains("value too large"), "{r:?}");
    c.must_put(b"k", &[7u8; 1024]).await;
    let r = c.put(b"", b"v", 0).await;
    assert!(r.error.contains("empty key"), "{r:?}");
    let r = c.scan(b"", b"", 101, false, false).await;
    assert!(
        r.kvs[0]
            .error
            .as_ref()
            .unwrap()
            .abort
            .contains("scan limit"),
        "{r:?}"
    );

    // Within the per-value limit but over the raft entry limit as a batch.
    let pairs: Vec<KvPair> = (0..40u32)
        .map(|i| kv(format!("big{i:02}").as_bytes(), &[1u8; 1000]))
        .collect();
    let r = c
        .svc
        .raw_batch_put(Request::new(RawBatchPutRequest {
            context: c.c(),
            pairs,
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(
        r.region_error
            .as_ref()
            .and_then(|e| e.raft_entry_too_large.as_ref())
            .is_some(),
        "{r:?}"
    );
    assert_eq!(c.value(b"big00").await, None);
    // The store still serves requests.
    assert_eq!(c.value(b"k").await.map(|v| v.len()), Some(1024));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn longest_keys_fit_and_large_answers_are_refused() {
    use server::storage::config::MAX_KEY_SIZE_LIMIT;
    let cfg = StorageConfig {
        max_key_size: MAX_KEY_SIZE_LIMIT,
        max_response_bytes: 4096,
        ..v1()
    };
    let env = start(&[], cfg, |_| {});
    let c = at(&env, b"a").await;

    // The longest configurable key is stored in raw form…
    let longest = vec![b'k'; MAX_KEY_SIZE_LIMIT];
    c.must_put(&longest, b"raw").await;
    assert_eq!(c.value(&longest).await.as_deref(), Some(&b"raw"[..]));
    // …and in transactional form (memcomparable, timestamp and data prefix).
    let tx = common::tx::txn_leader(&env, &longest).await;
    tx.must_put(&[(&longest, b"txn")]).await;
    assert_eq!(
        tx.must_get(&longest, u64::MAX - 1).await.as_deref(),
        Some(&b"txn"[..])
    );
    // One byte more is refused at the edge, before it reaches Raft.
    let r = c.put(&vec![b'k'; MAX_KEY_SIZE_LIMIT + 1], b"v", 0).await;
    assert!(r.error.contains("key too large"), "{r:?}");
    let r = c.put(&vec![b'k'; 70_000], b"v", 0).await;
    assert!(r.error.contains("key too large"), "{r:?}");

    // Answers are bounded in bytes, not only in count.
    for i in 0..5u8 {
        c.must_put(&[b'v', i], &[i; 1000]).await;
    }
    let r = c.scan(b"v", b"w", 10, false, false).await;
    assert!(
        r.kvs
            .first()
            .and_then(|p| p.error.as_ref())
            .is_some_and(|e| e.abort.contains("response too large")),
        "{r:?}"
    );
    // Key-only scans of the same range fit.
    let r = c.scan(b"v", b"w", 10, true, false).await;
    assert_eq!(r.kvs.len(), 5, "{r:?}");
    let r = c
        .svc
        .raw_batch_get(Request::new(RawBatchGetRequest {
            context: c.c(),
            keys: (0..5u8).map(|i| vec![b'v', i]).collect(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(
        r.pairs
            .first()
            .and_then(|p| p.error.as_ref())
            .is_some_and(|e| e.abort.contains("response too large")),
        "{r:?}"
    );
    // Transactional reads are bounded the same way.
    let big: Vec<u8> = vec![7; 3000];
    let tx = common::tx::txn_leader(&env, b"t1").await;
    tx.must_put(&[(b"t1", &big), (b"t2", &big)]).await;
    let r = tx.batch_get(&[b"t1", b"t2"], u64::MAX - 1).await;
    assert!(
        r.error
            .as_ref()
            .is_some_and(|e| e.abort.contains("response too large")),
        "{r:?}"
    );
    assert_eq!(tx.must_get(b"t1", u64::MAX - 1).await, Some(big));
    // The store still serves.
    assert_eq!(c.value(&[b'v', 4]).await.map(|v| v.len()), Some(1000));
}
