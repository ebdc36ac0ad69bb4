//! The official `tikv-client` crate (crates.io 0.4), unchanged, against a Tessera cluster:
//! a scheduler and three stores on loopback ports (in this process, each with its own
//! engines on disk, talking over real gRPC), in API V1 and in API V2.
//!
//! Every raw operation the client offers is exercised, across regions that split while the
//! test runs (a 1 MiB split size and an explicit split through the scheduler's HTTP API).

use std::path::Path;
use std::time::{Duration, Instant};

use codec::bytes::encode_bytes;
use tikv_client::{BoundRange, Config, RawClient};

struct TestCluster {
    pd: pd_server::RunningServer,
    nodes: Vec<node::Node>,
}

impl TestCluster {
    async fn start(dir: &Path, api_version: u8) -> TestCluster {
        let pd_cfg = pd_server::config::PdConfig {
            addr: "127.0.0.1:0".into(),
            data_dir: dir.join("pd"),
            schedule_interval_ms: 100,
            ..Default::default()
        };
        let pd = pd_server::config::start(&pd_cfg).await.unwrap();
        let pd_addr = pd.addr().to_string();
        let raftstore = node::RaftstoreConfig {
            region_split_size_mb: 1,
            region_max_size_mb: 1,
            split_check_interval_ms: 200,
            region_heartbeat_interval_ms: 200,
            store_heartbeat_interval_ms: 200,
            raft_base_tick_ms: 50,
            ..Default::default()
        };
        let mut nodes = Vec::new();
        for i in 1..=3 {
            let server = node::ServerConfig {
                addr: "127.0.0.1:0".into(),
                pd_endpoints: vec![pd_addr.clone()],
                data_dir: dir.join(format!("store{i}")),
                api_version,
                ..Default::default()
            };
            nodes.push(node::Node::start(&server, &raftstore).await.unwrap());
        }
        let c = TestCluster { pd, nodes };
        // The scheduler gives the first region its other two replicas.
        c.wait_for("3 replicas", |v| {
            v["regions"].as_array().is_some_and(|rs| {
                rs.iter()
                    .all(|r| r["peers"].as_array().map(Vec::len) == Some(3))
            })
        })
        .await;
        c
    }

    fn pd_addr(&self) -> String {
        self.pd.addr().to_string()
    }

    async fn regions(&self) -> serde_json::Value {
        http(&self.pd_addr(), "GET", "/pd/api/v1/regions", "")
            .await
            .1
    }

    async fn wait_for(&self, what: &str, cond: impl Fn(&serde_json::Value) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let v = self.regions().await;
            if cond(&v) {
                return;
            }
            assert!(Instant::now() < deadline, "{what}: not within 60 s: {v}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn stop(self) {
        for n in self.nodes {
            n.shutdown().await;
        }
        self.pd.shutdown().await.unwrap();
    }
}

/// One HTTP/1.1 request to the scheduler; (status, JSON body).
async fn http(addr: &str, method: &str, path: &str, body: &str) -> (u16, serde_json::Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let status = out[9..12].parse().unwrap();
    let body = &out[out.find("\r\n\r\n").unwrap() + 4..];
    (status, serde_json::from_str(body).unwrap_or_default())
}

fn key(i: u32) -> Vec<u8> {
    format!("key{i:05}").into_bytes()
}

fn value(i: u32) -> Vec<u8> {
    let mut v = format!("value{i}-").into_bytes();
    v.resize(700, b'v');
    v
}

fn hex(key: &[u8]) -> String {
    key.iter().map(|b| format!("{b:02X}")).collect()
}

/// Every raw operation through tikv-client; `region_key` maps a client's key to the key
/// the server stores it under, which region boundaries are cut on (in API V2: the
/// keyspace prefix, then memcomparable encoding).
async fn exercise(cluster: &TestCluster, client: RawClient, region_key: fn(&[u8]) -> Vec<u8>) {
    // Single-key operations.
    client.put(b"alpha".to_vec(), b"1".to_vec()).await.unwrap();
    assert_eq!(
        client.get(b"alpha".to_vec()).await.unwrap(),
        Some(b"1".to_vec())
    );
    assert_eq!(client.get(b"missing".to_vec()).await.unwrap(), None);
    client.delete(b"alpha".to_vec()).await.unwrap();
    assert_eq!(client.get(b"alpha".to_vec()).await.unwrap(), None);

    // Enough data (2,000 × 700 B) for several 1 MiB regions, written in batches while
    // regions split under the client.
    for chunk in (0..2000u32).collect::<Vec<_>>().chunks(200) {
        let pairs: Vec<(Vec<u8>, Vec<u8>)> = chunk.iter().map(|&i| (key(i), value(i))).collect();
        client.batch_put(pairs).await.unwrap();
    }
    // And one split where we choose: the scheduler sends it to the leader.
    let hex = hex(&region_key(&key(1000)));
    let region = cluster.regions().await["regions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| {
            let start = r["start_key"].as_str().unwrap();
            let end = r["end_key"].as_str().unwrap();
            start <= hex.as_str() && (end.is_empty() || hex.as_str() < end)
        })
        .unwrap()["id"]
        .as_u64()
        .unwrap();
    let body = format!(r#"{{"name":"split-region","region_id":{region},"keys":["{hex}"]}}"#);
    let (status, answer) = http(&cluster.pd_addr(), "POST", "/pd/api/v1/operators", &body).await;
    // 400 if a size-based split already cut exactly there; anything else is a failure.
    assert!(status == 200 || status == 400, "{status} {answer}");
    cluster
        .wait_for("regions split", |v| v["count"].as_u64().unwrap_or(0) >= 3)
        .await;

    // Reads across all those regions.
    let keys: Vec<Vec<u8>> = (0..2000u32).step_by(7).map(key).collect();
    let got = client.batch_get(keys.clone()).await.unwrap();
    assert_eq!(got.len(), keys.len());
    for pair in &got {
        let k: Vec<u8> = pair.key().clone().into();
        let i: u32 = std::str::from_utf8(&k[3..]).unwrap().parse().unwrap();
        assert_eq!(pair.value(), &value(i));
    }
    let all = client.scan(key(0)..key(2000), 10240).await.unwrap();
    assert_eq!(all.len(), 2000);
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
    let reverse = client.scan_reverse(key(990)..key(1010), 5).await.unwrap();
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
    let left = client.scan(key(0)..key(2000), 10240).await.unwrap();
    assert_eq!(left.len(), 2000 - 3 - 200);
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
    // keyspace's edges, encoded like every stored key.
    let ks_start = hex(&encode_bytes(&[b'r', 0, 0, 0]));
    let ks_end = hex(&encode_bytes(&[b'r', 0, 0, 1]));
    assert_eq!(ks_start, "720000000000000000FB");
    cluster
        .wait_for("keyspace edges", |v| {
            v["regions"].as_array().is_some_and(|rs| {
                rs.iter().any(|r| r["start_key"] == ks_start.as_str())
                    && rs.iter().any(|r| r["start_key"] == ks_end.as_str())
            })
        })
        .await;
    let client = RawClient::new_with_config(
        vec![cluster.pd_addr()],
        Config::default().with_default_keyspace(),
    )
    .await
    .unwrap();
    exercise(&cluster, client, |k| {
        encode_bytes(&[&[b'r', 0, 0, 0][..], k].concat())
    })
    .await;
    // Data stays inside the keyspace's regions: nothing outside `r\0\0\0..r\0\0\1`.
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
