//! Disk space over the real path of a store process: `[raftstore] capacity_mb` and the
//! data directory's filesystem (`statvfs` on the pd worker) → StoreHeartbeat over gRPC →
//! the scheduler's `/pd/api/v1/stores`, and the store's own `/metrics`.

use std::time::{Duration, Instant};

use serde_json::Value;

async fn stores(pd: &str) -> Value {
    pd_server::http_client::request(pd, "GET", "/pd/api/v1/stores", "")
        .await
        .unwrap()
        .1
}

/// The `status` object of the store with gRPC address `addr`, once its heartbeats carry
/// disk space (capacity above 0).
async fn space_of(pd: &str, addr: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = stores(pd).await;
        let found = v["stores"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|s| s["store"]["address"] == addr)
            .map(|s| s["status"].clone());
        if let Some(st) = found.filter(|st| st["capacity"].as_u64().unwrap_or(0) > 0) {
            return st;
        }
        assert!(
            Instant::now() < deadline,
            "no disk space reported for store {addr} within 30 s: {v}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_heartbeats_carry_the_data_directory_s_disk_space() {
    let dir = tempfile::tempdir().unwrap();
    let pd_cfg = pd_server::config::PdConfig {
        addr: "127.0.0.1:0".into(),
        data_dir: dir.path().join("pd"),
        ..Default::default()
    };
    let pd = pd_server::config::start(&pd_cfg).await.unwrap();
    let pd_addr = pd.addr().to_string();
    let start = |name: &str, capacity_mb: u64| {
        let server = node::ServerConfig {
            addr: "127.0.0.1:0".into(),
            status_addr: "127.0.0.1:0".into(),
            pd_endpoints: vec![pd_addr.clone()],
            data_dir: dir.path().join(name),
            ..Default::default()
        };
        let raftstore = node::RaftstoreConfig {
            store_heartbeat_interval_ms: 100,
            capacity_mb,
            ..Default::default()
        };
        async move { node::Node::start(&server, &raftstore).await.unwrap() }
    };
    // One store with the whole disk, one capped at 1 MiB (less than its engines use).
    let whole = start("whole", 0).await;
    let capped = start("capped", 1).await;

    let st = space_of(&pd_addr, &whole.addr().to_string()).await;
    let (capacity, available) = (
        st["capacity"].as_u64().unwrap(),
        st["available"].as_u64().unwrap(),
    );
    assert!(capacity > 1 << 20, "{st}");
    assert!(available <= capacity, "{st}");
    assert!(st["used_size"].as_u64().unwrap() > 0, "{st}");
    assert!(
        st["capacity_human"].as_str().unwrap().ends_with("B"),
        "{st}"
    );

    let st = space_of(&pd_addr, &capped.addr().to_string()).await;
    assert_eq!(st["capacity"].as_u64(), Some(1 << 20), "{st}");
    assert_eq!(st["available"].as_u64(), Some(0), "{st}");
    assert_eq!(st["capacity_human"], "1MiB", "{st}");
    assert_eq!(st["available_human"], "0B", "{st}");

    // The store's status port has them too (both stores share this process's registry,
    // so the gauge holds whichever store reported last; both have a capacity).
    let status = capped.status_addr().unwrap().to_string();
    let (code, text) = pd_server::http_client::request(&status, "GET", "/metrics", "")
        .await
        .unwrap();
    assert_eq!(code, 200);
    let text = text.as_str().unwrap_or_default().to_string();
    let value = |ty: &str| -> f64 {
        let prefix = format!("tikv_store_size_bytes{{type=\"{ty}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("no {prefix} in /metrics"))
            .trim()
            .parse()
            .unwrap()
    };
    assert!(value("capacity") >= (1 << 20) as f64);
    assert!(value("used") > 0.0);
    assert!(value("available") <= value("capacity"));

    capped.shutdown().await;
    whole.shutdown().await;
}
