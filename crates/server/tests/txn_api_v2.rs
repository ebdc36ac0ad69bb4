//! API V2 on the transactional RPCs: transactional keys are `x` + keyspace id + user key,
//! raw keys `r` + ...; each API refuses the other's keys with TiKV's errors, and a
//! request of the wrong API version is refused before anything else.

mod common;

use proto::kvrpcpb::*;
use proto::tikvpb::tikv_server::Tikv;
use server::{ApiVersion, StorageConfig};
use tonic::Request;

use common::at::At;
use common::start;
use common::tx::{enc, engine_count, put, txn_leader, Tx};

const TXN_KEY: &[u8] = b"x\0\0\x01key";
const RAW_KEY: &[u8] = b"r\0\0\x01key";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_txn_and_raw_keys_never_mix() {
    let env = start(
        &[&enc(b"x\0\0\x01")],
        StorageConfig::with_api_version(ApiVersion::V2),
        |_| {},
    );
    let tx = txn_leader(&env, TXN_KEY).await;
    tx.must_put(&[(TXN_KEY, b"v")]).await;
    let now = env.tso.next();
    assert_eq!(tx.must_get(TXN_KEY, now).await.as_deref(), Some(&b"v"[..]));
    // Stored memcomparable-encoded, as TiKV stores them.
    assert_eq!(
        engine_count(&env, tx.store, engine::CF_WRITE, &enc(TXN_KEY), b""),
        1
    );

    let abort = |e: Option<KeyError>| e.map(|e| e.abort).unwrap_or_default();
    // A raw key on transactional RPCs.
    let r = tx.get(RAW_KEY, now).await;
    assert!(r.region_error.is_none());
    assert!(abort(r.error).contains("InvalidKeyMode"));
    let r = tx
        .prewrite(Tx::prewrite_req(
            vec![put(RAW_KEY, b"v")],
            RAW_KEY,
            now,
            3000,
        ))
        .await;
    assert!(abort(r.errors.into_iter().next()).contains("InvalidKeyMode"));
    let r = tx
        .prewrite(Tx::prewrite_req(
            vec![put(TXN_KEY, b"v")],
            RAW_KEY,
            now,
            3000,
        ))
        .await;
    assert!(
        abort(r.errors.into_iter().next()).contains("InvalidKeyMode"),
        "the primary is checked too"
    );
    let r = tx.scan(b"r\0\0\x01", b"s", 10, now, false).await;
    assert!(
        abort(r.error.clone()).contains("InvalidKeyRangeMode"),
        "{r:?}"
    );
    assert!(r.pairs[0].error.is_some(), "the pair carries the error too");
    let r = tx.scan_lock(b"", b"", u64::MAX, 0).await;
    assert!(abort(r.error).contains("InvalidKeyRangeMode"));
    let r = tx.batch_get(&[TXN_KEY, RAW_KEY], now).await;
    assert!(abort(r.error).contains("InvalidKeyMode"));
    // The transactional key space is fine as a range.
    assert_eq!(
        tx.scan_keys(b"x\0\0\x01", b"y", now, false).await,
        vec![TXN_KEY.to_vec()]
    );

    // A transactional key on raw RPCs.
    let raw = At {
        svc: tx.svc(),
        ctx: tx.ctx.clone(),
    };
    let r = raw.get(TXN_KEY).await;
    assert!(r.error.contains("InvalidKeyMode"), "{r:?}");

    // A V1 request to a V2 store.
    let mut v1_ctx = tx.ctx.clone();
    v1_ctx.api_version = proto::kvrpcpb::ApiVersion::V1 as i32;
    let v1 = Tx {
        env: &env,
        store: tx.store,
        ctx: v1_ctx,
    };
    assert!(abort(v1.get(TXN_KEY, now).await.error).contains("ApiVersionNotMatched"));

    // UnsafeDestroyRange: one mode per range.
    let destroy = |start: &[u8], end: &[u8]| UnsafeDestroyRangeRequest {
        context: tx.c(),
        start_key: start.to_vec(),
        end_key: end.to_vec(),
    };
    let r = tx
        .svc()
        .unsafe_destroy_range(Request::new(destroy(b"r\0\0\x01", b"y")))
        .await
        .unwrap()
        .into_inner();
    assert!(r.error.contains("InvalidKeyRangeMode"), "{r:?}");
    for store in 1..=3 {
        let r = env
            .svc(store)
            .unsafe_destroy_range(Request::new(destroy(b"x\0\0\x01", b"x\0\0\x02")))
            .await
            .unwrap()
            .into_inner();
        assert!(r.error.is_empty() && r.region_error.is_none(), "{r:?}");
    }
    assert_eq!(tx.must_get(TXN_KEY, env.tso.next()).await, None);
}
