//! Every Raw* RPC of `KvService` against a 3-store in-process cluster, called through the
//! tonic trait methods: point and batch operations, scans in both directions, batch scans,
//! range deletes, compare-and-swap, TTLs, checksums, API V2, limits and region errors.

mod common;

use std::time::Duration;

use common::{crc64_xz, keys_of, kv, range, start, Env, Service};
use proto::kvrpcpb::*;
use proto::tikvpb::tikv_server::Tikv;
use server::{ApiVersion, StorageConfig};
use tonic::Request;

/// A client bound to one store and one region context.
struct At<'a> {
    svc: &'a Service,
    ctx: Context,
}

impl At<'_> {
    fn c(&self) -> Option<Context> {
        Some(self.ctx.clone())
    }

    async fn put(&self, key: &[u8], value: &[u8], ttl: u64) -> RawPutResponse {
        self.svc
            .raw_put(Request::new(RawPutRequest {
                context: self.c(),
                key: key.to_vec(),
                value: value.to_vec(),
                ttl,
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner()
    }

    async fn must_put(&self, key: &[u8], value: &[u8]) {
        let r = self.put(key, value, 0).await;
        assert!(r.region_error.is_none() && r.error.is_empty(), "{r:?}");
    }

    async fn get(&self, key: &[u8]) -> RawGetResponse {
        self.get_cf(key, "").await
    }

    async fn get_cf(&self, key: &[u8], cf: &str) -> RawGetResponse {
        self.svc
            .raw_get(Request::new(RawGetRequest {
                context: self.c(),
                key: key.to_vec(),
                cf: cf.to_string(),
            }))
            .await
            .unwrap()
            .into_inner()
    }

    async fn value(&self, key: &[u8]) -> Option<Vec<u8>> {
        let r = self.get(key).await;
        assert!(r.region_error.is_none() && r.error.is_empty(), "{r:?}");
        (!r.not_found).then_some(r.value)
    }

    async fn scan(
        &self,
        s: &[u8],
        e: &[u8],
        limit: u32,
        key_only: bool,
        reverse: bool,
    ) -> RawScanResponse {
        self.svc
            .raw_scan(Request::new(RawScanRequest {
                context: self.c(),
                start_key: s.to_vec(),
                end_key: e.to_vec(),
                limit,
                key_only,
                reverse,
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner()
    }

    async fn scan_keys(&self, s: &[u8], e: &[u8], limit: u32, reverse: bool) -> Vec<Vec<u8>> {
        let r = self.scan(s, e, limit, false, reverse).await;
        assert!(r.region_error.is_none(), "{r:?}");
        assert!(r.kvs.iter().all(|p| p.error.is_none()), "{r:?}");
        keys_of(&r.kvs)
    }

    async fn cas(&self, key: &[u8], previous: Option<&[u8]>, value: &[u8]) -> RawCasResponse {
        self.svc
            .raw_compare_and_swap(Request::new(RawCasRequest {
                context: self.c(),
                key: key.to_vec(),
                value: value.to_vec(),
                previous_not_exist: previous.is_none(),
                previous_value: previous.unwrap_or_default().to_vec(),
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner()
    }

    async fn ttl(&self, key: &[u8]) -> RawGetKeyTtlResponse {
        self.svc
            .raw_get_key_ttl(Request::new(RawGetKeyTtlRequest {
                context: self.c(),
                key: key.to_vec(),
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner()
    }

    async fn checksum(&self, ranges: Vec<KeyRange>) -> RawChecksumResponse {
        self.svc
            .raw_checksum(Request::new(RawChecksumRequest {
                context: self.c(),
                algorithm: ChecksumAlgorithm::Crc64Xor as i32,
                ranges,
            }))
            .await
            .unwrap()
            .into_inner()
    }
}

async fn at<'a>(env: &'a Env, key: &[u8]) -> At<'a> {
    let (store, ctx) = env.leader(key).await;
    At {
        svc: env.svc(store),
        ctx,
    }
}

fn v1() -> StorageConfig {
    StorageConfig::with_api_version(ApiVersion::V1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn point_and_batch_operations() {
    let env = start(&[], v1(), |_| {});
    let c = at(&env, b"a").await;

    c.must_put(b"k1", b"v1").await;
    assert_eq!(c.value(b"k1").await.as_deref(), Some(&b"v1"[..]));
    let missing = c.get(b"nope").await;
    assert!(missing.not_found && missing.value.is_empty() && missing.error.is_empty());

    // Column families are separate key spaces in V1; an unknown one is refused.
    let r = c.get_cf(b"k1", "write").await;
    assert!(r.not_found, "{r:?}");
    let r = c.get_cf(b"k1", "raft").await;
    assert!(r.error.contains("column family"), "{r:?}");

    let r = c
        .svc
        .raw_batch_put(Request::new(RawBatchPutRequest {
            context: c.c(),
            pairs: vec![kv(b"b1", b"x1"), kv(b"b2", b"x2"), kv(b"b3", b"x3")],
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(r.region_error.is_none() && r.error.is_empty(), "{r:?}");

    // Found keys come back in request order; missing ones are left out.
    let r = c
        .svc
        .raw_batch_get(Request::new(RawBatchGetRequest {
            context: c.c(),
            keys: vec![
                b"b3".to_vec(),
                b"zz".to_vec(),
                b"b1".to_vec(),
                b"k1".to_vec(),
            ],
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(r.region_error.is_none());
    assert_eq!(
        r.pairs,
        vec![kv(b"b3", b"x3"), kv(b"b1", b"x1"), kv(b"k1", b"v1")]
    );

    let r = c
        .svc
        .raw_delete(Request::new(RawDeleteRequest {
            context: c.c(),
            key: b"k1".to_vec(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(r.region_error.is_none() && r.error.is_empty(), "{r:?}");
    assert_eq!(c.value(b"k1").await, None);

    let r = c
        .svc
        .raw_batch_delete(Request::new(RawBatchDeleteRequest {
            context: c.c(),
            keys: vec![b"b1".to_vec(), b"b3".to_vec()],
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(r.region_error.is_none() && r.error.is_empty(), "{r:?}");
    assert_eq!(c.value(b"b1").await, None);
    assert_eq!(c.value(b"b2").await.as_deref(), Some(&b"x2"[..]));
    assert_eq!(c.value(b"b3").await, None);

    // Every replica applied the writes (values are stored in our encoding: flag byte 0).
    env.cluster.must_get_equal(2, b"b2", b"\x00x2");
    env.cluster.must_get_none(3, b"b1");

    // TTL lists must be empty, one for all, or one per pair.
    let r = c
        .svc
        .raw_batch_put(Request::new(RawBatchPutRequest {
            context: c.c(),
            pairs: vec![kv(b"t1", b"1"), kv(b"t2", b"2"), kv(b"t3", b"3")],
            ttls: vec![100, 200],
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(r.error.contains("TTLs"), "{r:?}");
    assert_eq!(c.value(b"t1").await, None, "a refused batch writes nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scans_forward_reverse_batch_and_delete_range() {
    // Two regions: [, "m") and ["m", ).
    let env = start(&[b"m"], v1(), |_| {});
    let left = at(&env, b"a").await;
    let right = at(&env, b"m").await;
    for k in [&b"a"[..], b"b", b"c", b"d", b"e", b"f"] {
        left.must_put(k, &[k, b"-v"].concat()).await;
    }
    for k in [&b"m"[..], b"n", b"o"] {
        right.must_put(k, k).await;
    }

    let all: Vec<Vec<u8>> = [b"a", b"b", b"c", b"d", b"e", b"f"]
        .iter()
        .map(|k| k.to_vec())
        .collect();
    // Forward: [start, end), limit, clamped to the region.
    assert_eq!(left.scan_keys(b"", b"", 100, false).await, all);
    assert_eq!(left.scan_keys(b"b", b"e", 100, false).await, all[1..4]);
    assert_eq!(left.scan_keys(b"b", b"", 2, false).await, all[1..3]);
    assert_eq!(left.scan_keys(b"c", b"z", 100, false).await, all[2..]);
    let r = left.scan(b"b", b"d", 10, false, false).await;
    assert_eq!(r.kvs, vec![kv(b"b", b"b-v"), kv(b"c", b"c-v")]);
    let r = left.scan(b"b", b"d", 10, true, false).await;
    assert_eq!(r.kvs, vec![kv(b"b", b""), kv(b"c", b"")], "key_only");
    assert!(
        left.scan_keys(b"a", b"z", 0, false).await.is_empty(),
        "limit 0"
    );

    // Reverse: from start (exclusive) down to end (inclusive), descending.
    let rev = |v: &[Vec<u8>]| v.iter().rev().cloned().collect::<Vec<_>>();
    assert_eq!(left.scan_keys(b"e", b"b", 100, true).await, rev(&all[1..4]));
    assert_eq!(left.scan_keys(b"m", b"", 2, true).await, rev(&all[4..]));
    assert_eq!(left.scan_keys(b"d", b"", 100, true).await, rev(&all[..3]));
    assert_eq!(
        right.scan_keys(b"", b"n", 100, true).await,
        vec![b"o".to_vec(), b"n".to_vec()]
    );

    // A scan starting outside the region is a KeyNotInRegion region error.
    let r = right.scan(b"a", b"", 10, false, false).await;
    let e = r.region_error.expect("region error");
    assert_eq!(e.key_not_in_region.unwrap().key, b"a");
    let r = left.scan(b"z", b"a", 10, false, true).await;
    assert!(r.region_error.unwrap().key_not_in_region.is_some());

    // Batch scan: each range up to each_limit, concatenated in request order.
    let r = left
        .svc
        .raw_batch_scan(Request::new(RawBatchScanRequest {
            context: left.c(),
            ranges: vec![range(b"a", b"c"), range(b"d", b""), range(b"f", b"g")],
            each_limit: 1,
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(r.region_error.is_none(), "{r:?}");
    assert_eq!(
        keys_of(&r.kvs),
        vec![b"a".to_vec(), b"d".to_vec(), b"f".to_vec()]
    );
    let r = left
        .svc
        .raw_batch_scan(Request::new(RawBatchScanRequest {
            context: left.c(),
            ranges: vec![range(b"f", b"d"), range(b"c", b"")],
            each_limit: 10,
            reverse: true,
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        keys_of(&r.kvs),
        vec![b"e".to_vec(), b"d".to_vec(), b"b".to_vec(), b"a".to_vec()]
    );
    // Ranges that run the wrong way are refused as a key error.
    let r = left
        .svc
        .raw_batch_scan(Request::new(RawBatchScanRequest {
            context: left.c(),
            ranges: vec![range(b"c", b"a")],
            each_limit: 10,
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.kvs.len(), 1);
    assert!(r.kvs[0]
        .error
        .as_ref()
        .unwrap()
        .abort
        .contains("invalid key range"));

    // Delete range within the left region.
    let r = left
        .svc
        .raw_delete_range(Request::new(RawDeleteRangeRequest {
            context: left.c(),
            start_key: b"b".to_vec(),
            end_key: b"e".to_vec(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(r.region_error.is_none() && r.error.is_empty(), "{r:?}");
    assert_eq!(
        left.scan_keys(b"", b"", 100, false).await,
        vec![b"a".to_vec(), b"e".to_vec(), b"f".to_vec()]
    );
    // A range reaching past the region's end is a region error, and deletes nothing.
    let r = left
        .svc
        .raw_delete_range(Request::new(RawDeleteRangeRequest {
            context: left.c(),
            start_key: b"e".to_vec(),
            end_key: b"n".to_vec(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(r.region_error.unwrap().key_not_in_region.is_some());
    assert_eq!(right.scan_keys(b"m", b"", 100, false).await.len(), 3);
    // The last region accepts an unbounded end.
    let r = right
        .svc
        .raw_delete_range(Request::new(RawDeleteRangeRequest {
            context: right.c(),
            start_key: b"n".to_vec(),
            end_key: Vec::new(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(r.region_error.is_none() && r.error.is_empty(), "{r:?}");
    assert_eq!(
        right.scan_keys(b"m", b"", 100, false).await,
        vec![b"m".to_vec()]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compare_and_swap() {
    let env = start(&[], v1(), |_| {});
    let c = at(&env, b"a").await;

    // Absent key: "previous does not exist" succeeds once.
    let r = c.cas(b"cas", None, b"1").await;
    assert!(
        r.succeed && r.previous_not_exist && r.error.is_empty(),
        "{r:?}"
    );
    let r = c.cas(b"cas", None, b"2").await;
    assert!(!r.succeed && !r.previous_not_exist, "{r:?}");
    assert_eq!(r.previous_value, b"1");
    assert_eq!(c.value(b"cas").await.as_deref(), Some(&b"1"[..]));
    // Wrong expected value: fails and reports the current one.
    let r = c.cas(b"cas", Some(b"7"), b"3").await;
    assert!(!r.succeed && r.previous_value == b"1", "{r:?}");
    // Right expected value: swaps.
    let r = c.cas(b"cas", Some(b"1"), b"3").await;
    assert!(r.succeed && r.previous_value == b"1", "{r:?}");
    assert_eq!(c.value(b"cas").await.as_deref(), Some(&b"3"[..]));

    // Concurrent increments through CAS, retried on conflict, never lose an update.
    c.must_put(b"counter", b"0").await;
    let svc = c.svc.clone();
    let ctx = c.ctx.clone();
    let mut tasks = Vec::new();
    for _ in 0..3 {
        let svc = svc.clone();
        let ctx = ctx.clone();
        tasks.push(tokio::spawn(async move {
            let me = At { svc: &svc, ctx };
            let mut done = 0;
            while done < 8 {
                let cur = me.value(b"counter").await.unwrap();
                let n: u64 = String::from_utf8(cur.clone()).unwrap().parse().unwrap();
                let r = me
                    .cas(b"counter", Some(&cur), (n + 1).to_string().as_bytes())
                    .await;
                assert!(r.region_error.is_none() && r.error.is_empty(), "{r:?}");
                if r.succeed {
                    done += 1;
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(c.value(b"counter").await.as_deref(), Some(&b"24"[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttl_expiry_and_checksum() {
    let env = start(&[], v1(), |_| {});
    let c = at(&env, b"a").await;

    c.must_put(b"forever", b"f").await;
    // TTL 2 rather than 1: expiry is counted in whole seconds from the write, so a TTL of
    // 2 keeps the key visible for at least a full second after the put, long enough for
    // the checks below to see it.
    let r = c.put(b"short", b"s", 2).await;
    assert!(r.region_error.is_none() && r.error.is_empty(), "{r:?}");
    let r = c.put(b"long", b"l", 1000).await;
    assert!(r.error.is_empty(), "{r:?}");

    let r = c.ttl(b"forever").await;
    assert!(!r.not_found && r.ttl == 0, "{r:?}");
    let r = c.ttl(b"long").await;
    assert!(!r.not_found && (999..=1000).contains(&r.ttl), "{r:?}");
    let r = c.ttl(b"missing").await;
    assert!(r.not_found, "{r:?}");

    // Checksum over everything, against a CRC computed independently here.
    let expected = |pairs: &[(&[u8], &[u8])]| {
        let mut sum = 0u64;
        let mut bytes = 0u64;
        for (k, v) in pairs {
            sum ^= crc64_xz(&[*k, *v].concat());
            bytes += (k.len() + v.len()) as u64;
        }
        (sum, pairs.len() as u64, bytes)
    };
    let r = c.checksum(vec![range(b"", b"")]).await;
    assert!(r.region_error.is_none() && r.error.is_empty(), "{r:?}");
    let all: [(&[u8], &[u8]); 3] = [(b"forever", b"f"), (b"long", b"l"), (b"short", b"s")];
    assert_eq!((r.checksum, r.total_kvs, r.total_bytes), expected(&all));
    // Two ranges that split the data sum to the same result.
    let r = c.checksum(vec![range(b"", b"m"), range(b"m", b"")]).await;
    assert_eq!((r.checksum, r.total_kvs, r.total_bytes), expected(&all));

    // After the short TTL passes, the key is invisible to every read.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(c.value(b"short").await, None);
    assert!(c.ttl(b"short").await.not_found);
    assert_eq!(
        c.scan_keys(b"", b"", 100, false).await,
        vec![b"forever".to_vec(), b"long".to_vec()]
    );
    let r = c
        .svc
        .raw_batch_get(Request::new(RawBatchGetRequest {
            context: c.c(),
            keys: vec![b"short".to_vec(), b"long".to_vec()],
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(keys_of(&r.pairs), vec![b"long".to_vec()]);
    let r = c.checksum(vec![range(b"", b"")]).await;
    assert_eq!(
        (r.checksum, r.total_kvs, r.total_bytes),
        expected(&all[..2])
    );
    // CAS sees an expired key as absent.
    let r = c.cas(b"short", None, b"again").await;
    assert!(r.succeed && r.previous_not_exist, "{r:?}");

    // Unknown checksum algorithm: an error, not a wrong answer.
    let r = c
        .svc
        .raw_checksum(Request::new(RawChecksumRequest {
            context: c.c(),
            algorithm: 5,
            ranges: vec![range(b"", b"")],
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(r.error.contains("checksum algorithm"), "{r:?}");
}

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
