//! The transactional RPCs through the gRPC service trait, on the in-process 3-store
//! cluster (API V1): two-phase commit, reads blocked by locks and their resolution,
//! pessimistic locks, ScanLock and scans bounded by the region, range deletion through
//! Raft and outside it.

mod common;

use engine::{CF_DEFAULT, CF_LOCK, CF_WRITE, DATA_CFS};
use proto::kvrpcpb::prewrite_request::PessimisticAction;
use proto::kvrpcpb::*;
use proto::tikvpb::tikv_server::Tikv;
use tonic::Request;

use common::at::v1;
use common::start;
use common::tx::{enc, engine_count, lock_mutation, put, txn_leader, wait_engine_count, Tx};

fn check_status(primary: &[u8], lock_ts: u64, now: u64) -> CheckTxnStatusRequest {
    CheckTxnStatusRequest {
        primary_key: primary.to_vec(),
        lock_ts,
        caller_start_ts: now,
        current_ts: now,
        verify_is_primary: true,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn optimistic_prewrite_commit_then_reads() {
    let env = start(&[&enc(b"m")], v1(), |_| {});
    let tx = txn_leader(&env, b"a").await;
    let long = vec![b'v'; 1000];
    let start_ts = env.tso.next();
    tx.must_prewrite(vec![put(b"a", b"1"), put(b"b", &long)], b"a", start_ts)
        .await;

    // A read above the transaction's start meets its lock.
    let r = tx.get(b"b", env.tso.next()).await;
    let lock = r
        .error
        .and_then(|e| e.locked)
        .expect("read blocked by the lock");
    assert_eq!(
        (
            lock.lock_version,
            lock.primary_lock.as_slice(),
            lock.key.as_slice()
        ),
        (start_ts, &b"a"[..], &b"b"[..])
    );

    let commit_ts = env.tso.next();
    tx.must_commit(&[b"a", b"b"], start_ts, commit_ts).await;
    // Committing again is harmless.
    tx.must_commit(&[b"a", b"b"], start_ts, commit_ts).await;

    let now = env.tso.next();
    assert_eq!(tx.must_get(b"a", now).await.as_deref(), Some(&b"1"[..]));
    assert_eq!(tx.must_get(b"b", now).await, Some(long.clone()));
    assert_eq!(
        tx.must_get(b"a", start_ts).await,
        None,
        "not visible before its commit"
    );

    let bg = tx.batch_get(&[b"a", b"b", b"c"], now).await;
    assert!(bg.region_error.is_none() && bg.error.is_none(), "{bg:?}");
    let got: Vec<_> = bg
        .pairs
        .iter()
        .map(|p| (p.key.clone(), p.value.clone()))
        .collect();
    assert_eq!(
        got,
        vec![
            (b"a".to_vec(), b"1".to_vec()),
            (b"b".to_vec(), long.clone())
        ]
    );
    assert_eq!(
        tx.scan_keys(b"", b"", now, false).await,
        vec![b"a".to_vec(), b"b".to_vec()]
    );

    // TiKV's layout on every replica: commit records in CF write, the long value in CF
    // default at the start ts, no lock left.
    let write_key = txn::Key::from_raw(b"a").append_ts(commit_ts).into_encoded();
    let value_key = txn::Key::from_raw(b"b").append_ts(start_ts).into_encoded();
    for store in 1..=3 {
        let cluster = &env.cluster;
        tokio::task::block_in_place(|| {
            cluster.must_get_cf_equal(store, CF_DEFAULT, &value_key, &long);
            cluster.must_get_cf_none(store, CF_LOCK, &enc(b"a"));
        });
        assert!(cluster.engine_get(store, CF_WRITE, &write_key).is_some());
    }

    // A follower refuses transactional writes and reads with a region error.
    let follower = tx.on(tx.store % 3 + 1);
    let r = follower
        .prewrite(Tx::prewrite_req(
            vec![put(b"c", b"3")],
            b"c",
            env.tso.next(),
            3000,
        ))
        .await;
    assert!(r.region_error.is_some(), "{r:?}");
    assert!(follower
        .get(b"a", env.tso.next())
        .await
        .region_error
        .is_some());
    // A key of the other region: KeyNotInRegion.
    let r = tx.get(b"x", env.tso.next()).await;
    assert!(
        r.region_error
            .as_ref()
            .and_then(|e| e.key_not_in_region.as_ref())
            .is_some(),
        "{r:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locks_block_reads_until_check_txn_status_and_region_wide_resolve() {
    let env = start(&[&enc(b"m")], v1(), |_| {});
    let tx = txn_leader(&env, b"a").await;

    // A committed transaction whose secondaries are still locked (clients commit them in
    // the background); more than one resolve batch of them.
    let s1 = env.tso.next();
    let keys: Vec<Vec<u8>> = (0..300).map(|i| format!("k{i:03}").into_bytes()).collect();
    let mut muts = vec![put(b"a", b"primary")];
    muts.extend(keys.iter().map(|k| put(k, k)));
    tx.must_prewrite(muts, b"a", s1).await;
    let c1 = env.tso.next();
    tx.must_commit(&[b"a"], s1, c1).await;

    let now = env.tso.next();
    let r = tx.get(b"k007", now).await;
    assert_eq!(
        r.error.and_then(|e| e.locked).map(|l| l.lock_version),
        Some(s1)
    );
    let st = tx.check_txn_status(check_status(b"a", s1, now)).await;
    assert!(st.region_error.is_none() && st.error.is_none(), "{st:?}");
    assert_eq!((st.commit_version, st.lock_ttl), (c1, 0));
    assert!(st.lock_info.is_none());

    // ResolveLock without keys: the whole region, in batches.
    let rr = tx
        .resolve_lock(ResolveLockRequest {
            start_version: s1,
            commit_version: c1,
            ..Default::default()
        })
        .await;
    assert!(rr.region_error.is_none() && rr.error.is_none(), "{rr:?}");
    assert!(tx.lock_keys(b"", b"").await.is_empty());
    let now = env.tso.next();
    assert_eq!(tx.must_get(b"k007", now).await, Some(b"k007".to_vec()));
    assert_eq!(tx.must_get(b"k299", now).await, Some(b"k299".to_vec()));

    // An abandoned transaction: once its TTL runs out CheckTxnStatus rolls the primary
    // back, and ResolveLock rolls back the rest.
    let s2 = env.tso.next();
    let r = tx
        .prewrite(Tx::prewrite_req(
            vec![put(b"d", b"4"), put(b"e", b"5")],
            b"d",
            s2,
            1,
        ))
        .await;
    assert!(r.errors.is_empty() && r.region_error.is_none(), "{r:?}");
    tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    let now = env.tso.next();
    assert!(tx.get(b"e", now).await.error.is_some());
    let st = tx.check_txn_status(check_status(b"d", s2, now)).await;
    assert!(st.error.is_none(), "{st:?}");
    assert_eq!(st.action, Action::TtlExpireRollback as i32);
    assert_eq!((st.commit_version, st.lock_ttl), (0, 0));
    let rr = tx
        .resolve_lock(ResolveLockRequest {
            start_version: s2,
            ..Default::default()
        })
        .await;
    assert!(rr.region_error.is_none() && rr.error.is_none(), "{rr:?}");
    let now = env.tso.next();
    assert_eq!(tx.must_get(b"e", now).await, None);
    assert_eq!(tx.must_get(b"d", now).await, None);
    assert!(tx.lock_keys(b"", b"").await.is_empty());

    // ResolveLockLite: only the keys named.
    let s3 = env.tso.next();
    tx.must_prewrite(vec![put(b"f", b"6"), put(b"g", b"7")], b"f", s3)
        .await;
    let c3 = env.tso.next();
    let rr = tx
        .resolve_lock(ResolveLockRequest {
            start_version: s3,
            commit_version: c3,
            keys: vec![b"g".to_vec()],
            ..Default::default()
        })
        .await;
    assert!(rr.error.is_none(), "{rr:?}");
    assert_eq!(tx.lock_keys(b"", b"").await, vec![b"f".to_vec()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_lock_and_scans_stay_in_their_region() {
    let env = start(&[&enc(b"m")], v1(), |_| {});
    let left = txn_leader(&env, b"a").await;
    let right = txn_leader(&env, b"n").await;
    assert_ne!(left.ctx.region_id, right.ctx.region_id);

    // Committed keys on both sides, then locks on both sides.
    left.must_put(&[(b"a", b"1"), (b"c", b"3")]).await;
    right.must_put(&[(b"n", b"14"), (b"p", b"16")]).await;
    let s = env.tso.next();
    left.must_prewrite(vec![put(b"b", b"2"), put(b"d", b"4")], b"b", s)
        .await;
    right
        .must_prewrite(vec![put(b"o", b"15"), put(b"q", b"17")], b"b", s)
        .await;

    // ScanLock with the global end answers for its region only.
    assert_eq!(
        left.lock_keys(b"", b"").await,
        vec![b"b".to_vec(), b"d".to_vec()]
    );
    assert_eq!(
        right.lock_keys(b"m", b"").await,
        vec![b"o".to_vec(), b"q".to_vec()]
    );
    let r = left.scan_lock(b"c", b"", u64::MAX, 1).await;
    assert_eq!(
        r.locks.iter().map(|l| l.key.clone()).collect::<Vec<_>>(),
        vec![b"d".to_vec()]
    );
    assert!(left.scan_lock(b"", b"", s - 1, 0).await.locks.is_empty());
    let r = right.scan_lock(b"a", b"", u64::MAX, 0).await;
    assert!(
        r.region_error
            .as_ref()
            .and_then(|e| e.key_not_in_region.as_ref())
            .is_some(),
        "{r:?}"
    );

    // Resolve the locks, then scan (a read at a ts between them would meet the locks).
    let c = env.tso.next();
    for tx in [&left, &right] {
        let rr = tx
            .resolve_lock(ResolveLockRequest {
                start_version: s,
                commit_version: c,
                ..Default::default()
            })
            .await;
        assert!(rr.error.is_none() && rr.region_error.is_none(), "{rr:?}");
    }
    let now = env.tso.next();
    let ks = |v: &[&[u8]]| v.iter().map(|k| k.to_vec()).collect::<Vec<_>>();
    // Reverse: start is the exclusive upper bound, end the inclusive lower bound; the
    // lower bound below the region's start is clamped to it.
    assert_eq!(
        right.scan_keys(b"z", b"a", now, true).await,
        ks(&[b"q", b"p", b"o", b"n"])
    );
    assert_eq!(
        right.scan_keys(b"p", b"", now, true).await,
        ks(&[b"o", b"n"])
    );
    assert_eq!(right.scan_keys(b"", b"", now, true).await.len(), 4);
    assert_eq!(
        left.scan_keys(b"m", b"", now, true).await,
        ks(&[b"d", b"c", b"b", b"a"])
    );
    // Forward: the end beyond the region is clamped.
    assert_eq!(
        left.scan_keys(b"b", b"z", now, false).await,
        ks(&[b"b", b"c", b"d"])
    );
    let r = left.scan(b"a", b"", 2, now, false).await;
    assert_eq!(r.pairs.len(), 2);
    // A scan whose anchor lies outside the region.
    let r = left.scan(b"z", b"a", 10, now, true).await;
    assert!(r.region_error.is_some(), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pessimistic_lock_returns_values_then_prewrites_and_commits() {
    let env = start(&[], v1(), |_| {});
    let tx = txn_leader(&env, b"k1").await;
    tx.must_put(&[(b"k1", b"v1")]).await;

    let s = env.tso.next();
    let for_update = env.tso.next();
    let lock_req = |keys: &[&[u8]], start: u64, fu: u64| PessimisticLockRequest {
        mutations: keys.iter().map(|k| lock_mutation(k)).collect(),
        primary_lock: keys[0].to_vec(),
        start_version: start,
        lock_ttl: 20000,
        for_update_ts: fu,
        return_values: true,
        ..Default::default()
    };
    let r = tx
        .pessimistic_lock(lock_req(&[b"k1", b"k2"], s, for_update))
        .await;
    assert!(r.region_error.is_none() && r.errors.is_empty(), "{r:?}");
    assert_eq!(r.values, vec![b"v1".to_vec(), Vec::new()]);
    assert_eq!(r.not_founds, vec![false, true]);

    // Another pessimistic transaction meets the lock at once.
    let s2 = env.tso.next();
    let r = tx.pessimistic_lock(lock_req(&[b"k2"], s2, s2)).await;
    let locked = r.errors.first().and_then(|e| e.locked.clone());
    assert_eq!(locked.map(|l| l.lock_version), Some(s), "{r:?}");
    // Pessimistic locks do not block readers.
    assert_eq!(
        tx.must_get(b"k1", env.tso.next()).await.as_deref(),
        Some(&b"v1"[..])
    );

    let r = tx
        .prewrite(PrewriteRequest {
            pessimistic_actions: vec![PessimisticAction::DoPessimisticCheck as i32; 2],
            for_update_ts: for_update,
            ..Tx::prewrite_req(vec![put(b"k1", b"v1b"), put(b"k2", b"v2")], b"k1", s, 20000)
        })
        .await;
    assert!(r.region_error.is_none() && r.errors.is_empty(), "{r:?}");
    let c = env.tso.next();
    tx.must_commit(&[b"k1", b"k2"], s, c).await;
    let now = env.tso.next();
    assert_eq!(tx.must_get(b"k1", now).await.as_deref(), Some(&b"v1b"[..]));
    assert_eq!(tx.must_get(b"k2", now).await.as_deref(), Some(&b"v2"[..]));

    // Locks given back with PessimisticRollback.
    let s3 = env.tso.next();
    let fu3 = env.tso.next();
    let r = tx.pessimistic_lock(lock_req(&[b"k3"], s3, fu3)).await;
    assert!(r.errors.is_empty(), "{r:?}");
    assert_eq!(tx.lock_keys(b"", b"").await, vec![b"k3".to_vec()]);
    let r = tx.pessimistic_rollback(&[b"k3"], s3, fu3).await;
    assert!(r.region_error.is_none() && r.errors.is_empty(), "{r:?}");
    assert!(tx.lock_keys(b"", b"").await.is_empty());

    // A heartbeat keeps a primary alive.
    let s4 = env.tso.next();
    let r = tx.pessimistic_lock(lock_req(&[b"k4"], s4, s4)).await;
    assert!(r.errors.is_empty(), "{r:?}");
    let hb = tx
        .svc()
        .kv_txn_heart_beat(Request::new(TxnHeartBeatRequest {
            context: tx.c(),
            primary_lock: b"k4".to_vec(),
            start_version: s4,
            advise_lock_ttl: 60000,
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(hb.region_error.is_none() && hb.error.is_none(), "{hb:?}");
    assert_eq!(hb.lock_ttl, 60000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_delete_range_deletes_every_cf_through_raft() {
    let env = start(&[&enc(b"m")], v1(), |_| {});
    let left = txn_leader(&env, b"a").await;
    left.must_put(&[(b"a", &[b'x'; 600]), (b"c", b"3")]).await;
    left.must_prewrite(vec![put(b"e", &[b'y'; 600])], b"e", env.tso.next())
        .await;
    left.must_put(&[(b"0", b"kept")]).await;
    let right = txn_leader(&env, b"n").await;
    right.must_put(&[(b"n", b"14")]).await;

    let (lo, hi) = (enc(b"a"), enc(b"m"));
    for store in 1..=3 {
        wait_engine_count(&env, store, CF_LOCK, &lo, &hi, 1).await;
        wait_engine_count(&env, store, CF_DEFAULT, &lo, &hi, 2).await;
    }
    let r = left.delete_range(b"a", b"m").await;
    assert!(r.region_error.is_none() && r.error.is_empty(), "{r:?}");
    for store in 1..=3 {
        for &cf in DATA_CFS {
            wait_engine_count(&env, store, cf, &lo, &hi, 0).await;
        }
    }
    let now = env.tso.next();
    assert_eq!(left.must_get(b"a", now).await, None);
    assert_eq!(
        left.must_get(b"0", now).await.as_deref(),
        Some(&b"kept"[..])
    );
    assert_eq!(right.must_get(b"n", now).await.as_deref(), Some(&b"14"[..]));

    // Bounds in the wrong order.
    let r = left.delete_range(b"c", b"b").await;
    assert!(!r.error.is_empty(), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsafe_destroy_range_clears_every_cf_on_every_store() {
    let env = start(&[&enc(b"m")], v1(), |_| {});
    let left = txn_leader(&env, b"a").await;
    let right = txn_leader(&env, b"n").await;
    left.must_put(&[(b"0", b"kept")]).await;
    left.must_put(&[(b"a", &[b'x'; 600]), (b"c", b"3")]).await;
    right.must_put(&[(b"n", &[b'z'; 600])]).await;
    right
        .must_prewrite(vec![put(b"p", b"16")], b"p", env.tso.next())
        .await;
    let lo = enc(b"a");
    for store in 1..=3 {
        wait_engine_count(&env, store, CF_WRITE, &lo, b"", 3).await;
        wait_engine_count(&env, store, CF_LOCK, &lo, b"", 1).await;
        wait_engine_count(&env, store, CF_DEFAULT, &lo, b"", 2).await;
    }

    // Sent to every store, with no region (as the client does).
    for store in 1..=3 {
        let r = env
            .svc(store)
            .unsafe_destroy_range(Request::new(UnsafeDestroyRangeRequest {
                context: Some(Context::default()),
                start_key: b"a".to_vec(),
                end_key: Vec::new(),
            }))
            .await
            .unwrap()
            .into_inner();
        assert!(r.region_error.is_none() && r.error.is_empty(), "{r:?}");
        for &cf in DATA_CFS {
            assert_eq!(
                engine_count(&env, store, cf, &lo, b""),
                0,
                "store {store} {cf}"
            );
        }
        assert_eq!(
            engine_count(&env, store, CF_WRITE, &enc(b"0"), &lo),
            1,
            "keys below the range stay"
        );
    }
    let now = env.tso.next();
    assert_eq!(left.must_get(b"a", now).await, None);
    assert_eq!(right.must_get(b"n", now).await, None);
    assert!(right.lock_keys(b"m", b"").await.is_empty());
    assert_eq!(
        left.must_get(b"0", now).await.as_deref(),
        Some(&b"kept"[..])
    );
    // The cluster still serves the range.
    right.must_put(&[(b"n", b"again")]).await;
    assert_eq!(
        right.must_get(b"n", env.tso.next()).await.as_deref(),
        Some(&b"again"[..])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_gc_is_refused_with_an_explanation() {
    let env = start(&[], v1(), |_| {});
    let tx = txn_leader(&env, b"a").await;
    let r = tx
        .svc()
        .kv_gc(Request::new(GcRequest {
            context: tx.c(),
            safe_point: env.tso.next(),
        }))
        .await
        .unwrap()
        .into_inner();
    let abort = r.error.map(|e| e.abort).unwrap_or_default();
    assert!(abort.contains("safe point"), "{abort}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_cleanup_and_secondary_checks() {
    let env = start(&[], v1(), |_| {});
    let tx = txn_leader(&env, b"k1").await;
    let s = env.tso.next();
    let r = tx
        .prewrite(PrewriteRequest {
            use_async_commit: true,
            secondaries: vec![b"k2".to_vec()],
            ..Tx::prewrite_req(vec![put(b"k1", b"1"), put(b"k2", b"2")], b"k1", s, 3000)
        })
        .await;
    assert!(r.errors.is_empty() && r.region_error.is_none(), "{r:?}");

    let check = |keys: &[&[u8]], start: u64| CheckSecondaryLocksRequest {
        context: tx.c(),
        keys: keys.iter().map(|k| k.to_vec()).collect(),
        start_version: start,
    };
    let c = tx
        .svc()
        .kv_check_secondary_locks(Request::new(check(&[b"k2"], s)))
        .await
        .unwrap()
        .into_inner();
    assert!(c.error.is_none() && c.region_error.is_none(), "{c:?}");
    assert_eq!((c.locks.len(), c.commit_ts), (1, 0));

    let rb = tx
        .svc()
        .kv_batch_rollback(Request::new(BatchRollbackRequest {
            context: tx.c(),
            start_version: s,
            keys: vec![b"k1".to_vec(), b"k2".to_vec()],
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(rb.error.is_none() && rb.region_error.is_none(), "{rb:?}");
    assert!(tx.lock_keys(b"", b"").await.is_empty());
    let c = tx
        .svc()
        .kv_check_secondary_locks(Request::new(check(&[b"k2"], s)))
        .await
        .unwrap()
        .into_inner();
    assert!(c.error.is_none(), "{c:?}");
    assert_eq!((c.locks.len(), c.commit_ts), (0, 0), "rolled back");
    // A commit after the rollback fails with a key error, never an empty one.
    let r = tx.commit(&[b"k1"], s, env.tso.next()).await;
    assert!(r.error.is_some_and(|e| e != KeyError::default()));

    // KvCleanup rolls back an expired lock.
    let s2 = env.tso.next();
    let r = tx
        .prewrite(Tx::prewrite_req(vec![put(b"k3", b"3")], b"k3", s2, 1))
        .await;
    assert!(r.errors.is_empty(), "{r:?}");
    tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    let cl = tx
        .svc()
        .kv_cleanup(Request::new(CleanupRequest {
            context: tx.c(),
            key: b"k3".to_vec(),
            start_version: s2,
            current_ts: env.tso.next(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(cl.error.is_none() && cl.region_error.is_none(), "{cl:?}");
    assert!(tx.lock_keys(b"", b"").await.is_empty());
    assert_eq!(tx.must_get(b"k3", env.tso.next()).await, None);
}
