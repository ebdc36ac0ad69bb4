//! A Tessera cluster inside the test process for the official client's tests: a scheduler
//! and three stores on loopback ports, each with its own engines on disk, talking over
//! real gRPC; plus the scheduler's HTTP API for region layout and admin splits.

#![allow(dead_code)]

use std::path::Path;
use std::time::{Duration, Instant};

pub struct TestCluster {
    pub pd: pd_server::RunningServer,
    /// The running stores; `None` while stopped.
    pub nodes: Vec<Option<node::Node>>,
    /// How each store was started (its bound address filled in), to restart it on the
    /// same port and data.
    configs: Vec<node::ServerConfig>,
    raftstore: node::RaftstoreConfig,
    /// With TLS: how the test reaches the scheduler's HTTP API (the servers' certificate).
    http_tls: Option<security::Tls>,
}

impl TestCluster {
    pub async fn start(dir: &Path, api_version: u8) -> TestCluster {
        Self::start_with_security(dir, api_version, security::SecurityConfig::default()).await
    }

    /// [`TestCluster::start`] with every process's `[security]` table set to `security`.
    pub async fn start_with_security(
        dir: &Path,
        api_version: u8,
        security: security::SecurityConfig,
    ) -> TestCluster {
        let http_tls = security.load().unwrap();
        let pd_cfg = pd_server::config::PdConfig {
            addr: "127.0.0.1:0".into(),
            data_dir: dir.join("pd"),
            schedule_interval_ms: 100,
            security: security.clone(),
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
            raft_heartbeat_ticks: 2,
            raft_election_timeout_ticks: 10,
            ..Default::default()
        };
        let mut nodes = Vec::new();
        let mut configs = Vec::new();
        for i in 1..=3 {
            let mut server = node::ServerConfig {
                addr: "127.0.0.1:0".into(),
                // A free port each: three stores share this process.
                status_addr: "127.0.0.1:0".into(),
                pd_endpoints: vec![pd_addr.clone()],
                data_dir: dir.join(format!("store{i}")),
                api_version,
                // The GC worker follows the safe point quickly, so tests see its effect.
                gc_interval_ms: 300,
                // Every request of 1 ms or more takes the slow-request path (counted in
                // `tessera_slow_requests_total`; its lines print only where a test
                // installs a log subscriber).
                slow_request_ms: 1,
                security: security.clone(),
                ..Default::default()
            };
            let n = node::Node::start(&server, &raftstore).await.unwrap();
            server.addr = n.addr().to_string();
            configs.push(server);
            nodes.push(Some(n));
        }
        let c = TestCluster {
            pd,
            nodes,
            configs,
            raftstore,
            http_tls,
        };
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

    pub fn pd_addr(&self) -> String {
        self.pd.addr().to_string()
    }

    pub async fn regions(&self) -> serde_json::Value {
        self.http("GET", "/pd/api/v1/regions", "").await.1
    }

    /// One request to the scheduler's HTTP API (over TLS in a TLS cluster).
    pub async fn http(&self, method: &str, path: &str, body: &str) -> (u16, serde_json::Value) {
        pd_server::http_client::request_tls(
            &self.pd_addr(),
            self.http_tls.as_ref(),
            method,
            path,
            body,
        )
        .await
        .unwrap()
    }

    pub async fn wait_for(&self, what: &str, cond: impl Fn(&serde_json::Value) -> bool) {
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

    /// Splits the region holding `region_key` (a key as the stores hold it) there, through
    /// the scheduler's admin API, until a region starts at it (a size-based split may
    /// change the region first; the operator is then cancelled and asked for again).
    pub async fn split_at(&self, region_key: &[u8]) {
        let hex: String = region_key.iter().map(|b| format!("{b:02X}")).collect();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let regions = self.regions().await;
            let region = regions["regions"]
                .as_array()
                .unwrap()
                .iter()
                .find(|r| {
                    let start = r["start_key"].as_str().unwrap();
                    let end = r["end_key"].as_str().unwrap();
                    start <= hex.as_str() && (end.is_empty() || hex.as_str() < end)
                })
                .cloned()
                .unwrap();
            if region["start_key"] == hex.as_str() {
                return;
            }
            assert!(Instant::now() < deadline, "no split at {hex}: {regions}");
            let id = region["id"].as_u64().unwrap();
            let body = format!(r#"{{"name":"split-region","region_id":{id},"keys":["{hex}"]}}"#);
            let (status, answer) = self.http("POST", "/pd/api/v1/operators", &body).await;
            // 409: an operator is already running on the region; try again later.
            assert!(status == 200 || status == 409, "{status} {answer}");
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    /// Waits until regions start at both edges of the default keyspace for key mode
    /// `mode` (`b'r'` raw, `b'x'` transactional), which the store that bootstraps an API
    /// V2 cluster cuts; returns the edges as the region list shows them (upper-case hex of
    /// the memcomparable-encoded keys).
    pub async fn wait_for_keyspace_edges(&self, mode: u8) -> (String, String) {
        let hex = |k: &[u8]| -> String {
            codec::bytes::encode_bytes(k)
                .iter()
                .map(|b| format!("{b:02X}"))
                .collect()
        };
        let (start, end) = (hex(&[mode, 0, 0, 0]), hex(&[mode, 0, 0, 1]));
        self.wait_for("keyspace edges", |v| {
            v["regions"].as_array().is_some_and(|rs| {
                rs.iter().any(|r| r["start_key"] == start.as_str())
                    && rs.iter().any(|r| r["start_key"] == end.as_str())
            })
        })
        .await;
        (start, end)
    }

    /// A running store (index 0..3).
    pub fn node(&self, i: usize) -> &node::Node {
        self.nodes[i].as_ref().expect("store running")
    }

    /// Stops store `i` (its data stays on disk).
    pub async fn stop_store(&mut self, i: usize) {
        if let Some(n) = self.nodes[i].take() {
            n.shutdown().await;
        }
    }

    /// Starts store `i` again on its port and data directory.
    pub async fn restart_store(&mut self, i: usize) {
        assert!(self.nodes[i].is_none(), "store {i} is running");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match node::Node::start(&self.configs[i], &self.raftstore).await {
                Ok(n) => {
                    self.nodes[i] = Some(n);
                    return;
                }
                // The port may linger for a moment after the stop.
                Err(e) if Instant::now() < deadline => {
                    eprintln!("restarting store {i}: {e}; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("restarting store {i}: {e}"),
            }
        }
    }

    /// Asks the scheduler to move the leadership of `region_id` to `store_id` (best
    /// effort: the answer is not awaited).
    pub async fn transfer_leader(&self, region_id: u64, store_id: u64) {
        let body = format!(
            r#"{{"name":"transfer-leader","region_id":{region_id},"to_store_id":{store_id}}}"#
        );
        let _ = self.http("POST", "/pd/api/v1/operators", &body).await;
    }

    /// Asks the scheduler to move `region_id`'s leadership to `store_id` until the
    /// scheduler reports that store leading it.
    pub async fn wait_for_leader(&self, region_id: u64, store_id: u64) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let v = self.regions().await;
            let led = v["regions"].as_array().is_some_and(|rs| {
                rs.iter().any(|r| {
                    r["id"].as_u64() == Some(region_id)
                        && r["leader"]["store_id"].as_u64() == Some(store_id)
                })
            });
            if led {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "store {store_id} does not lead region {region_id} after 60 s: {v}"
            );
            self.transfer_leader(region_id, store_id).await;
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    pub async fn stop(self) {
        for n in self.nodes.into_iter().flatten() {
            n.shutdown().await;
        }
        self.pd.shutdown().await.unwrap();
    }
}

/// One request to the scheduler's HTTP API; (status, JSON body).
pub async fn http(addr: &str, method: &str, path: &str, body: &str) -> (u16, serde_json::Value) {
    pd_server::http_client::request(addr, method, path, body)
        .await
        .unwrap()
}
