//! Async commit and 1PC through the service: the commit ts a store picks lies above every
//! read served before, on this leader (the concurrency manager's max_ts) and on earlier
//! leaders (max_ts synced with the timestamp oracle once per leader term).

mod common;

use proto::kvrpcpb::*;

use common::at::v1;
use common::start;
use common::tx::{put, txn_leader, txn_region, Tx};

fn async_prewrite(keys: &[&[u8]], start_ts: u64) -> PrewriteRequest {
    PrewriteRequest {
        use_async_commit: true,
        secondaries: keys[1..].iter().map(|k| k.to_vec()).collect(),
        ..Tx::prewrite_req(
            keys.iter().map(|k| put(k, b"async")).collect(),
            keys[0],
            start_ts,
            3000,
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_commit_picks_a_commit_ts_above_earlier_reads() {
    let env = start(&[], v1(), |_| {});
    let tx = txn_leader(&env, b"k1").await;
    let start_ts = env.tso.next();
    let read_ts = env.tso.next();
    assert_eq!(tx.must_get(b"k2", read_ts).await, None);

    let r = tx.prewrite(async_prewrite(&[b"k1", b"k2"], start_ts)).await;
    assert!(r.region_error.is_none() && r.errors.is_empty(), "{r:?}");
    assert!(
        r.min_commit_ts > read_ts,
        "min_commit_ts {} is not above the read at {read_ts}",
        r.min_commit_ts
    );
    // The locks are async-commit locks; the primary lists the secondaries.
    let locks = tx.scan_lock(b"", b"", u64::MAX, 0).await.locks;
    assert_eq!(locks.len(), 2);
    assert!(locks.iter().all(|l| l.use_async_commit));
    assert_eq!(locks[0].secondaries, vec![b"k2".to_vec()]);

    tx.must_commit(&[b"k1", b"k2"], start_ts, r.min_commit_ts)
        .await;
    let now = env.tso.next();
    assert_eq!(
        tx.must_get(b"k2", now).await.as_deref(),
        Some(&b"async"[..])
    );
    assert_eq!(tx.must_get(b"k2", read_ts).await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_pc_commits_in_the_prewrite() {
    let env = start(&[], v1(), |_| {});
    let tx = txn_leader(&env, b"k1").await;
    let start_ts = env.tso.next();
    let read_ts = env.tso.next();
    assert_eq!(tx.must_get(b"k1", read_ts).await, None);
    let r = tx
        .prewrite(PrewriteRequest {
            try_one_pc: true,
            ..async_prewrite(&[b"k1", b"k2"], start_ts)
        })
        .await;
    assert!(r.region_error.is_none() && r.errors.is_empty(), "{r:?}");
    assert!(r.one_pc_commit_ts > read_ts, "{r:?}");
    assert!(
        tx.lock_keys(b"", b"").await.is_empty(),
        "1PC leaves no lock"
    );
    let now = env.tso.next();
    assert_eq!(
        tx.must_get(b"k1", now).await.as_deref(),
        Some(&b"async"[..])
    );
    assert_eq!(tx.must_get(b"k2", read_ts).await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_leader_syncs_max_ts_before_its_first_async_prewrite() {
    let env = start(&[], v1(), |_| {});
    let old = txn_leader(&env, b"k").await;
    let start_ts = env.tso.next();
    // A read served by the old leader: only its store's max_ts knows of it.
    let read_ts = env.tso.next();
    assert_eq!(old.must_get(b"k", read_ts).await, None);
    let before = env.tso.next();

    let target = old.store % 3 + 1;
    let region = txn_region(&env, b"k");
    let peer = *raftstore::util::find_peer(&region, target).expect("a peer on every store");
    tokio::task::block_in_place(|| env.cluster.must_transfer_leader(region.id, peer));
    let new = txn_leader(&env, b"k").await;
    assert_eq!(new.store, target);

    let calls = env.tso.store_calls();
    let r = new.prewrite(async_prewrite(&[b"k"], start_ts)).await;
    assert!(r.region_error.is_none() && r.errors.is_empty(), "{r:?}");
    assert!(
        r.min_commit_ts > before,
        "min_commit_ts {} is not above the oracle's {before} taken before the transfer",
        r.min_commit_ts
    );
    assert_eq!(
        env.tso.store_calls(),
        calls + 1,
        "one sync for the new term"
    );
    // Later async prewrites of the same leader need no other sync.
    let r = new.prewrite(async_prewrite(&[b"k9"], env.tso.next())).await;
    assert!(r.errors.is_empty(), "{r:?}");
    assert_eq!(env.tso.store_calls(), calls + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_oracle_makes_async_prewrites_retry() {
    let env = start(&[], v1(), |_| {});
    let tx = txn_leader(&env, b"k").await;
    env.tso.set_failing(true);

    // The first async prewrite of this leader cannot sync max_ts: a region error the
    // client retries (stale_command), nothing written.
    let start_ts = env.tso.next();
    let r = tx.prewrite(async_prewrite(&[b"k"], start_ts)).await;
    let re = r.region_error.expect("a region error");
    assert!(re.stale_command.is_some(), "{re:?}");
    assert!(re.server_is_busy.is_none() && re.max_timestamp_not_synced.is_none());
    assert!(tx.lock_keys(b"", b"").await.is_empty());
    // Ordinary prewrites do not need the oracle.
    tx.must_prewrite(vec![put(b"o", b"1")], b"o", env.tso.next())
        .await;

    env.tso.set_failing(false);
    let r = tx.prewrite(async_prewrite(&[b"k"], start_ts)).await;
    assert!(r.region_error.is_none() && r.errors.is_empty(), "{r:?}");
    assert!(r.min_commit_ts > start_ts);
}
