//! The Raw* RPCs of `KvService` against a 3-store in-process cluster, called through the
//! tonic trait methods: point and batch operations, scans in both directions, batch scans,
//! range deletes, compare-and-swap, TTLs and checksums. API versions are in
//! `raw_kv_api_versions.rs`, errors and limits in `raw_kv_errors.rs`.

mod common;

use std::time::Duration;

use common::at::{at, v1, At};
use common::{crc64_xz, keys_of, kv, range, start};
use proto::kvrpcpb::*;
use proto::tikvpb::tikv_server::Tikv;
use tonic::Request;

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
