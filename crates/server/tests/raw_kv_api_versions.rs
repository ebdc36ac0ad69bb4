//! API V1 and V2 through `KvService`: V2 keys must carry a keyspace prefix, are stored
//! memcomparable-encoded and served back plain; V1 keys are stored as they are.

mod common;

use common::at::{at, v1};
use common::{crc64_xz, keys_of, range, start, Env};
use proto::kvrpcpb::*;
use proto::tikvpb::tikv_server::Tikv;
use server::{ApiVersion, StorageConfig};
use tonic::Request;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_v2_keys_and_version_mismatch() {
    let env = start(&[], StorageConfig::with_api_version(ApiVersion::V2), |_| {});
    let c = at(&env, b"r\0\0\0").await;

    c.must_put(b"r\0\0\x01k1", b"v1").await;
    c.must_put(b"r\0\0\x01k2", b"v2").await;
    c.must_put(b"r\0\0\x02k1", b"other keyspace").await;
    assert_eq!(c.value(b"r\0\0\x01k1").await.as_deref(), Some(&b"v1"[..]));
    // Scans are bounded to the keyspace by the client's bounds.
    assert_eq!(
        c.scan_keys(b"r\0\0\x01", b"r\0\0\x02", 10, false).await,
        vec![b"r\0\0\x01k1".to_vec(), b"r\0\0\x01k2".to_vec()]
    );

    // Keys outside the raw key space are refused, with the key mode named.
    for bad in [&b"k1"[..], b"x\0\0\x01k1", b"r\0"] {
        let r = c.put(bad, b"v", 0).await;
        assert!(r.error.contains("InvalidKeyMode"), "{bad:?}: {r:?}");
    }
    let r = c.get(b"t_table").await;
    assert!(r.error.contains("InvalidKeyMode"), "{r:?}");
    // An unbounded range would leave the raw key space.
    let r = c.scan(b"r\0\0\x01", b"", 10, false, false).await;
    assert!(
        r.kvs[0]
            .error
            .as_ref()
            .unwrap()
            .abort
            .contains("InvalidKeyRangeMode"),
        "{r:?}"
    );
    // Column families are not part of API V2.
    let r = c.get_cf(b"r\0\0\x01k1", "default").await;
    assert!(r.error.contains("API V2"), "{r:?}");

    // A V1 request to a V2 store (and vice versa below) is ApiVersionNotMatched.
    let v1_ctx = Context {
        api_version: ApiVersion::V1.to_proto() as i32,
        ..c.ctx.clone()
    };
    let r = c
        .svc
        .raw_get(Request::new(RawGetRequest {
            context: Some(v1_ctx),
            key: b"r\0\0\x01k1".to_vec(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(r.error.contains("ApiVersionNotMatched"), "{r:?}");
    assert!(r.region_error.is_none() && r.value.is_empty());
    drop(env);

    let env = start(&[], v1(), |_| {});
    let c = at(&env, b"a").await;
    let mut ctx = c.ctx.clone();
    ctx.api_version = ApiVersion::V2.to_proto() as i32;
    let r = c
        .svc
        .raw_put(Request::new(RawPutRequest {
            context: Some(ctx),
            key: b"r\0\0\x01k".to_vec(),
            value: b"v".to_vec(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(r.error.contains("ApiVersionNotMatched"), "{r:?}");
    assert_eq!(c.value(b"r\0\0\x01k").await, None);
}

/// The value the engine of `store` holds under the stored key `stored` (our value
/// encoding: a flags byte, then the user value).
fn engine_value(env: &Env, store: u64, stored: &[u8]) -> Option<Vec<u8>> {
    use engine::Engine;
    env.cluster
        .engine(store)
        .get(engine::CF_DEFAULT, &codec::keys::data_key(stored))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_v2_stores_encoded_keys_and_serves_plain_ones() {
    let enc = codec::bytes::encode_bytes;
    let k = |i: u8| [&b"r\0\0\x01k"[..], &[b'0' + i]].concat();
    // The region boundary is a stored key, so an encoded one.
    let env = start(
        &[&enc(&k(3))],
        StorageConfig::with_api_version(ApiVersion::V2),
        |_| {},
    );
    assert_eq!(env.region(&k(3)).start_key, enc(&k(3)));
    assert_eq!(env.region(&k(2)).end_key, enc(&k(3)));
    let left = at(&env, &k(1)).await;
    let right = at(&env, &k(3)).await;
    assert_ne!(left.ctx.region_id, right.ctx.region_id);
    for i in 1..=2 {
        left.must_put(&k(i), &[b'v', i]).await;
    }
    for i in 3..=5 {
        right.must_put(&k(i), &[b'v', i]).await;
    }

    // The engine holds encoded keys only.
    let (store, _) = env.leader(&k(1)).await;
    assert_eq!(
        engine_value(&env, store, &enc(&k(1))),
        Some(vec![0, b'v', 1])
    );
    assert_eq!(engine_value(&env, store, &k(1)), None);
    let (store, _) = env.leader(&k(4)).await;
    assert_eq!(
        engine_value(&env, store, &enc(&k(4))),
        Some(vec![0, b'v', 4])
    );
    assert_eq!(engine_value(&env, store, &k(4)), None);

    // Clients see plain keys, in order, each region clamped at the encoded boundary.
    assert_eq!(left.value(&k(2)).await, Some(vec![b'v', 2]));
    let ks = |r: std::ops::RangeInclusive<u8>| r.map(k).collect::<Vec<_>>();
    let end = b"r\0\0\x02";
    assert_eq!(left.scan_keys(&k(0), end, 10, false).await, ks(1..=2));
    assert_eq!(right.scan_keys(&k(3), end, 10, false).await, ks(3..=5));
    assert_eq!(right.scan_keys(end, &k(0), 10, true).await, {
        let mut v = ks(3..=5);
        v.reverse();
        v
    });
    assert_eq!(left.scan_keys(&k(3), b"r\0\0\x01", 10, true).await, {
        let mut v = ks(1..=2);
        v.reverse();
        v
    });
    let mut all = left.scan_keys(b"r\0\0\x01", b"s", 10, false).await;
    all.extend(right.scan_keys(&k(3), b"s", 10, false).await);
    assert_eq!(all, ks(1..=5));
    // A scan starting in the other region is KeyNotInRegion, judged in encoded space.
    let r = left.scan(&k(3), end, 10, false, false).await;
    let re = r.region_error.expect("key not in region");
    assert_eq!(re.key_not_in_region.unwrap().end_key, enc(&k(3)));
    let r = left.get(&k(4)).await;
    assert!(r.region_error.unwrap().key_not_in_region.is_some());
    // Batch scan and batch get return plain keys too.
    let r = right
        .svc
        .raw_batch_scan(Request::new(RawBatchScanRequest {
            context: right.c(),
            ranges: vec![range(&k(3), &k(4)), range(&k(5), end)],
            each_limit: 10,
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(keys_of(&r.kvs), vec![k(3), k(5)]);
    let r = right
        .svc
        .raw_batch_get(Request::new(RawBatchGetRequest {
            context: right.c(),
            keys: vec![k(5), k(9), k(3)],
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(keys_of(&r.pairs), vec![k(5), k(3)]);

    // The checksum covers plain keys, as TiKV computes it in V2.
    let r = right.checksum(vec![range(&k(3), end)]).await;
    assert!(r.region_error.is_none() && r.error.is_empty(), "{r:?}");
    let mut sum = 0;
    for i in 3..=5 {
        sum ^= crc64_xz(&[k(i), vec![b'v', i]].concat());
    }
    assert_eq!((r.checksum, r.total_kvs, r.total_bytes), (sum, 3, 3 * 8));

    // Writes of every kind address the encoded key.
    let r = right.cas(&k(4), Some(&[b'v', 4][..]), b"new").await;
    assert!(r.succeed, "{r:?}");
    assert_eq!(right.value(&k(4)).await, Some(b"new".to_vec()));
    assert!(right.ttl(&k(4)).await.ttl == 0);
    let r = right
        .svc
        .raw_delete(Request::new(RawDeleteRequest {
            context: right.c(),
            key: k(5),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(r.error.is_empty() && r.region_error.is_none(), "{r:?}");
    assert_eq!(right.value(&k(5)).await, None);
    let r = left
        .svc
        .raw_delete_range(Request::new(RawDeleteRangeRequest {
            context: left.c(),
            start_key: k(1),
            end_key: k(2),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(r.error.is_empty() && r.region_error.is_none(), "{r:?}");
    assert_eq!(left.scan_keys(&k(0), end, 10, false).await, ks(2..=2));
    let (store, _) = env.leader(&k(1)).await;
    assert_eq!(engine_value(&env, store, &enc(&k(1))), None);
    assert_eq!(
        engine_value(&env, store, &enc(&k(2))),
        Some(vec![0, b'v', 2])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_v1_stores_plain_keys() {
    let env = start(&[b"m"], v1(), |_| {});
    let c = at(&env, b"a").await;
    c.must_put(b"a", b"1").await;
    let (store, _) = env.leader(b"a").await;
    assert_eq!(engine_value(&env, store, b"a"), Some(vec![0, b'1']));
    assert_eq!(
        engine_value(&env, store, &codec::bytes::encode_bytes(b"a")),
        None
    );
    assert_eq!(env.region(b"m").start_key, b"m");
}
