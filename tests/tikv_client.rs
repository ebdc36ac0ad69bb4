//! The official `tikv-client` crate (crates.io 0.4), unchanged, against a Tessera cluster:
//! a scheduler and three stores on loopback ports (in this process, each with its own
//! engines on disk, talking over real gRPC), in API V1 and in API V2.
//!
//! Every raw operation the client offers is exercised, across regions that split while the
//! test runs (a 1 MiB split size and an explicit split through the scheduler's HTTP API).

mod common;

use std::time::Duration;

use common::TestCluster;
use tikv_client::{BoundRange, Config, RawClient};

fn key(i: u32) -> Vec<u8> {
    format!("key{i:05}").into_bytes()
}

fn value(i: u32) -> Vec<u8> {
    let mut v = format!("value{i}-").into_bytes();
    v.resize(700, b'v');
    v
}

/// Every raw operation through tikv-client. `region_key` maps a client key to the key the
/// stores (and so region boundaries) hold: the same key in API V1; in API V2 the keyspace
/// prefix is added and the result memcomparable-encoded.
///
/// Two quirks of tikv-client 0.4 shape the layout (see /work/shared/reference,
/// tikv-pd-clients.md, "Raw-scan client quirks"): a forward scan whose range reaches the
/// cluster's last region wraps around to the start of the key space, and a reverse scan
/// across regions comes back in region order. So the test first cuts regions where it
/// needs them: after every key it scans (V1; V2 has the keyspace edge), and around the
/// small range it scans in reverse, before the bulk load makes size-based splits elsewhere.
async fn exercise(cluster: &TestCluster, client: RawClient, region_key: fn(&[u8]) -> Vec<u8>) {
    cluster.split_at(&region_key(b"key99999")).await;
    cluster.split_at(&region_key(&key(1000))).await;
    cluster.split_at(&region_key(&key(1010))).await;

    // Single-key operations.
    client.put(b"alpha".to_vec(), b"1".to_vec()).await.unwrap();
    assert_eq!(
        client.get(b"alpha".to_vec()).await.unwrap(),
        Some(b"1".to_vec())
    );
    assert_eq!(client.get(b"missing".to_vec()).await.unwrap(), None);
    client.delete(b"alpha".to_vec()).await.unwrap();
    assert_eq!(client.get(b"alpha".to_vec()).await.unwrap(), None);

    // Enough data (3,000 × 700 B) for several 1 MiB regions, written in batches while
    // regions split under the client.
    for chunk in (0..3000u32).collect::<Vec<_>>().chunks(200) {
        let pairs: Vec<(Vec<u8>, Vec<u8>)> = chunk.iter().map(|&i| (key(i), value(i))).collect();
        client.batch_put(pairs).await.unwrap();
    }
    cluster
        .wait_for("size-based splits", |v| {
            v["count"].as_u64().unwrap_or(0) >= 5
        })
        .await;

    // Reads across all those regions.
    let keys: Vec<Vec<u8>> = (0..3000u32).step_by(7).map(key).collect();
    let got = client.batch_get(keys.clone()).await.unwrap();
    assert_eq!(got.len(), keys.len());
    for pair in &got {
        let k: Vec<u8> = pair.key().clone().into();
        let i: u32 = std::str::from_utf8(&k[3..]).unwrap().parse().unwrap();
        assert_eq!(pair.value(), &value(i));
    }
    let all = client.scan(key(0)..key(3000), 10240).await.unwrap();
    assert_eq!(all.len(), 3000);
    for (i, pair) in all.iter().enumerate() {
        assert_eq!(
            Vec::<u8>::from(pair.key().clone()),
            key(i as u32),
            "scan order"
        );
    }
    let limited = client.scan(key(990)..key(1010), 5).await.unwrap();
    let limited: Vec<Vec<u8>> = limited.into_iter().map(|p| p.into_key().into()).collect();
    assert_eq!(limited, (990..995).map(key).collect::<Vec<_>>());
    // [key01000, key01010) is one region of its own (cut before the bulk load).
    let reverse = client.scan_reverse(key(1000)..key(1010), 5).await.unwrap();
    let reverse: Vec<Vec<u8>> = reverse.into_iter().map(|p| p.into_key().into()).collect();
    assert_eq!(reverse, (1005..1010).rev().map(key).collect::<Vec<_>>());
    let ranges: Vec<BoundRange> = vec![(key(10)..key(13)).into(), (key(1500)..key(1502)).into()];
    let batch = client.batch_scan(ranges, 10).await.unwrap();
    let batch: Vec<Vec<u8>> = batch.into_iter().map(|p| p.into_key().into()).collect();
    assert_eq!(batch, vec![key(10), key(11), key(12), key(1500), key(1501)]);

    // Deletes: a batch, then a range that spans the chosen split.
    client
        .batch_delete(vec![key(0), key(1), key(2)])
        .await
        .unwrap();
    assert_eq!(client.get(key(1)).await.unwrap(), None);
    client.delete_range(key(900)..key(1100)).await.unwrap();
    let left = client.scan(key(0)..key(3000), 10240).await.unwrap();
    assert_eq!(left.len(), 3000 - 3 - 200);
    assert_eq!(client.get(key(1000)).await.unwrap(), None);
    assert_eq!(client.get(key(1100)).await.unwrap(), Some(value(1100)));

    // TTL: visible with its remaining time, then gone.
    client
        .put_with_ttl(b"ttl".to_vec(), b"short-lived".to_vec(), 2)
        .await
        .unwrap();
    let ttl = client.get_key_ttl_secs(b"ttl".to_vec()).await.unwrap();
    assert!(matches!(ttl, Some(1..=2)), "{ttl:?}");
    assert_eq!(client.get_key_ttl_secs(key(1100)).await.unwrap(), Some(0));
    tokio::time::sleep(Duration::from_millis(3100)).await;
    assert_eq!(client.get(b"ttl".to_vec()).await.unwrap(), None);

    // Compare-and-swap (the client requires its atomic mode for it).
    let atomic = client.with_atomic_for_cas();
    let (prev, ok) = atomic
        .compare_and_swap(b"cas".to_vec(), None::<Vec<u8>>, b"first".to_vec())
        .await
        .unwrap();
    assert!(ok && prev.is_none());
    let (prev, ok) = atomic
        .compare_and_swap(b"cas".to_vec(), Some(b"wrong".to_vec()), b"second".to_vec())
        .await
        .unwrap();
    assert!(!ok);
    assert_eq!(prev, Some(b"first".to_vec()));
    let (_, ok) = atomic
        .compare_and_swap(b"cas".to_vec(), Some(b"first".to_vec()), b"second".to_vec())
        .await
        .unwrap();
    assert!(ok);
    assert_eq!(
        atomic.get(b"cas".to_vec()).await.unwrap(),
        Some(b"second".to_vec())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tikv_client_raw_api_v1() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = TestCluster::start(dir.path(), 1).await;
    let client = RawClient::new(vec![cluster.pd_addr()]).await.unwrap();
    exercise(&cluster, client, |k| k.to_vec()).await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tikv_client_raw_api_v2() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = TestCluster::start(dir.path(), 2).await;
    // The store that bootstrapped a V2 cluster cuts the first region at the default
    // keyspace's edges (region keys are memcomparable-encoded in V2).
    let (ks_start, ks_end) = cluster.wait_for_keyspace_edges(b'r').await;
    let client = RawClient::new_with_config(
        vec![cluster.pd_addr()],
        Config::default().with_default_keyspace(),
    )
    .await
    .unwrap();
    exercise(&cluster, client, |k| {
        let mut prefixed = vec![b'r', 0, 0, 0];
        prefixed.extend_from_slice(k);
        codec::bytes::encode_bytes(&prefixed)
    })
    .await;
    // Data stays inside the keyspace's regions: nothing outside it.
    let regions = cluster.regions().await;
    for r in regions["regions"].as_array().unwrap() {
        let start = r["start_key"].as_str().unwrap();
        if start < ks_start.as_str() || start >= ks_end.as_str() {
            assert!(
                r["approximate_keys"].as_u64().unwrap_or(0) < 5,
                "region outside the keyspace holds data: {r}"
            );
        }
    }
    cluster.stop().await;
}
