//! The tikv target end to end without a Tessera cluster: `tikv_client::RawClient` (inside the
//! binary) finds the region through our real PD server (`pd_server`, in memory) and sends raw
//! requests to a stand-in store that keeps data in a map. This checks the client wiring,
//! API v2 (DEFAULT keyspace) and the report; it measures nothing about Tessera.

use std::collections::BTreeMap;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use proto::kvrpcpb;
use proto::metapb;
use proto::pdpb::{self, pd_client::PdClient, RequestHeader};
use proto::raft_serverpb;
use proto::tikvpb::tikv_server::{Tikv, TikvServer};
use proto::tikvpb::BatchRaftMessage;
use scheduler::{ClusterConfig, MetaStore, SchedulerCluster, SystemClock};
use tonic::{Request, Response, Status, Streaming};

/// A store that answers the raw KV calls from one map and ignores regions.
#[derive(Clone, Default)]
struct FakeStore {
    data: Arc<Mutex<BTreeMap<Vec<u8>, Vec<u8>>>>,
    requests: Arc<AtomicU64>,
    /// API version seen on the last request's context.
    api_version: Arc<AtomicU64>,
}

impl FakeStore {
    fn saw(&self, ctx: &Option<kvrpcpb::Context>) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if let Some(c) = ctx {
            self.api_version
                .store(c.api_version as u64, Ordering::Relaxed);
        }
    }
}

fn unimplemented<T>() -> Result<Response<T>, Status> {
    Err(Status::unimplemented("not in the fake store"))
}

#[tonic::async_trait]
impl Tikv for FakeStore {
    async fn raw_get(
        &self,
        r: Request<kvrpcpb::RawGetRequest>,
    ) -> Result<Response<kvrpcpb::RawGetResponse>, Status> {
        let r = r.into_inner();
        self.saw(&r.context);
        let v = self.data.lock().unwrap().get(&r.key).cloned();
        Ok(Response::new(kvrpcpb::RawGetResponse {
            not_found: v.is_none(),
            value: v.unwrap_or_default(),
            ..Default::default()
        }))
    }

    async fn raw_put(
        &self,
        r: Request<kvrpcpb::RawPutRequest>,
    ) -> Result<Response<kvrpcpb::RawPutResponse>, Status> {
        let r = r.into_inner();
        self.saw(&r.context);
        self.data.lock().unwrap().insert(r.key, r.value);
        Ok(Response::new(kvrpcpb::RawPutResponse::default()))
    }

    async fn raw_scan(
        &self,
        r: Request<kvrpcpb::RawScanRequest>,
    ) -> Result<Response<kvrpcpb::RawScanResponse>, Status> {
        let r = r.into_inner();
        self.saw(&r.context);
        let data = self.data.lock().unwrap();
        let kvs = data
            .range(r.start_key.clone()..)
            .take_while(|(k, _)| r.end_key.is_empty() || **k < r.end_key)
            .take(r.limit as usize)
            .map(|(k, v)| kvrpcpb::KvPair {
                key: k.clone(),
                value: if r.key_only { Vec::new() } else { v.clone() },
                ..Default::default()
            })
            .collect();
        Ok(Response::new(kvrpcpb::RawScanResponse {
            kvs,
            ..Default::default()
        }))
    }

    async fn raw_batch_get(
        &self,
        _: Request<kvrpcpb::RawBatchGetRequest>,
    ) -> Result<Response<kvrpcpb::RawBatchGetResponse>, Status> {
        unimplemented()
    }
    async fn raw_batch_put(
        &self,
        _: Request<kvrpcpb::RawBatchPutRequest>,
    ) -> Result<Response<kvrpcpb::RawBatchPutResponse>, Status> {
        unimplemented()
    }
    async fn raw_delete(
        &self,
        _: Request<kvrpcpb::RawDeleteRequest>,
    ) -> Result<Response<kvrpcpb::RawDeleteResponse>, Status> {
        unimplemented()
    }
    async fn raw_batch_delete(
        &self,
        _: Request<kvrpcpb::RawBatchDeleteRequest>,
    ) -> Result<Response<kvrpcpb::RawBatchDeleteResponse>, Status> {
        unimplemented()
    }
    async fn raw_delete_range(
        &self,
        _: Request<kvrpcpb::RawDeleteRangeRequest>,
    ) -> Result<Response<kvrpcpb::RawDeleteRangeResponse>, Status> {
        unimplemented()
    }
    async fn raw_batch_scan(
        &self,
        _: Request<kvrpcpb::RawBatchScanRequest>,
    ) -> Result<Response<kvrpcpb::RawBatchScanResponse>, Status> {
        unimplemented()
    }
    async fn raw_get_key_ttl(
        &self,
        _: Request<kvrpcpb::RawGetKeyTtlRequest>,
    ) -> Result<Response<kvrpcpb::RawGetKeyTtlResponse>, Status> {
        unimplemented()
    }
    async fn raw_compare_and_swap(
        &self,
        _: Request<kvrpcpb::RawCasRequest>,
    ) -> Result<Response<kvrpcpb::RawCasResponse>, Status> {
        unimplemented()
    }
    async fn raw_checksum(
        &self,
        _: Request<kvrpcpb::RawChecksumRequest>,
    ) -> Result<Response<kvrpcpb::RawChecksumResponse>, Status> {
        unimplemented()
    }
    async fn raft(
        &self,
        _: Request<Streaming<raft_serverpb::RaftMessage>>,
    ) -> Result<Response<raft_serverpb::Done>, Status> {
        unimplemented()
    }
    async fn batch_raft(
        &self,
        _: Request<Streaming<BatchRaftMessage>>,
    ) -> Result<Response<raft_serverpb::Done>, Status> {
        unimplemented()
    }
    async fn snapshot(
        &self,
        _: Request<Streaming<raft_serverpb::SnapshotChunk>>,
    ) -> Result<Response<raft_serverpb::Done>, Status> {
        unimplemented()
    }

    // The transactional API: not in the fake store.
    async fn kv_get(
        &self,
        _: Request<kvrpcpb::GetRequest>,
    ) -> Result<Response<kvrpcpb::GetResponse>, Status> {
        unimplemented()
    }

    async fn kv_scan(
        &self,
        _: Request<kvrpcpb::ScanRequest>,
    ) -> Result<Response<kvrpcpb::ScanResponse>, Status> {
        unimplemented()
    }

    async fn kv_prewrite(
        &self,
        _: Request<kvrpcpb::PrewriteRequest>,
    ) -> Result<Response<kvrpcpb::PrewriteResponse>, Status> {
        unimplemented()
    }

    async fn kv_pessimistic_lock(
        &self,
        _: Request<kvrpcpb::PessimisticLockRequest>,
    ) -> Result<Response<kvrpcpb::PessimisticLockResponse>, Status> {
        unimplemented()
    }

    async fn kv_pessimistic_rollback(
        &self,
        _: Request<kvrpcpb::PessimisticRollbackRequest>,
    ) -> Result<Response<kvrpcpb::PessimisticRollbackResponse>, Status> {
        unimplemented()
    }

    async fn kv_txn_heart_beat(
        &self,
        _: Request<kvrpcpb::TxnHeartBeatRequest>,
    ) -> Result<Response<kvrpcpb::TxnHeartBeatResponse>, Status> {
        unimplemented()
    }

    async fn kv_check_txn_status(
        &self,
        _: Request<kvrpcpb::CheckTxnStatusRequest>,
    ) -> Result<Response<kvrpcpb::CheckTxnStatusResponse>, Status> {
        unimplemented()
    }

    async fn kv_check_secondary_locks(
        &self,
        _: Request<kvrpcpb::CheckSecondaryLocksRequest>,
    ) -> Result<Response<kvrpcpb::CheckSecondaryLocksResponse>, Status> {
        unimplemented()
    }

    async fn kv_commit(
        &self,
        _: Request<kvrpcpb::CommitRequest>,
    ) -> Result<Response<kvrpcpb::CommitResponse>, Status> {
        unimplemented()
    }

    async fn kv_cleanup(
        &self,
        _: Request<kvrpcpb::CleanupRequest>,
    ) -> Result<Response<kvrpcpb::CleanupResponse>, Status> {
        unimplemented()
    }

    async fn kv_batch_get(
        &self,
        _: Request<kvrpcpb::BatchGetRequest>,
    ) -> Result<Response<kvrpcpb::BatchGetResponse>, Status> {
        unimplemented()
    }

    async fn kv_batch_rollback(
        &self,
        _: Request<kvrpcpb::BatchRollbackRequest>,
    ) -> Result<Response<kvrpcpb::BatchRollbackResponse>, Status> {
        unimplemented()
    }

    async fn kv_scan_lock(
        &self,
        _: Request<kvrpcpb::ScanLockRequest>,
    ) -> Result<Response<kvrpcpb::ScanLockResponse>, Status> {
        unimplemented()
    }

    async fn kv_resolve_lock(
        &self,
        _: Request<kvrpcpb::ResolveLockRequest>,
    ) -> Result<Response<kvrpcpb::ResolveLockResponse>, Status> {
        unimplemented()
    }

    async fn kv_gc(
        &self,
        _: Request<kvrpcpb::GcRequest>,
    ) -> Result<Response<kvrpcpb::GcResponse>, Status> {
        unimplemented()
    }

    async fn kv_delete_range(
        &self,
        _: Request<kvrpcpb::DeleteRangeRequest>,
    ) -> Result<Response<kvrpcpb::DeleteRangeResponse>, Status> {
        unimplemented()
    }

    async fn unsafe_destroy_range(
        &self,
        _: Request<kvrpcpb::UnsafeDestroyRangeRequest>,
    ) -> Result<Response<kvrpcpb::UnsafeDestroyRangeResponse>, Status> {
        unimplemented()
    }
}

/// A PD with one store (the fake) and one region over the whole key space, led by it.
struct Cluster {
    store: FakeStore,
    pd_addr: String,
    _pd: pd_server::RunningServer,
}

async fn start_cluster() -> Cluster {
    let store = FakeStore::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let store_addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TikvServer::new(store.clone()))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );

    let meta = MetaStore::new(engine::MemEngine::new());
    let cluster = Arc::new(
        SchedulerCluster::open(meta, Arc::new(SystemClock), ClusterConfig::default()).unwrap(),
    );
    let pd = pd_server::serve("127.0.0.1:0".parse().unwrap(), cluster.clone())
        .await
        .unwrap();
    let pd_addr = pd.addr().to_string();
    let mut c = PdClient::connect(format!("http://{pd_addr}"))
        .await
        .unwrap();
    let header = Some(RequestHeader {
        cluster_id: cluster.cluster_id(),
        sender_id: 0,
    });
    let peer = metapb::Peer {
        id: 2,
        store_id: 1,
        ..Default::default()
    };
    let region = metapb::Region {
        id: 1,
        region_epoch: Some(metapb::RegionEpoch {
            conf_ver: 1,
            version: 1,
        }),
        peers: vec![peer],
        ..Default::default()
    };
    let resp = c
        .bootstrap(pdpb::BootstrapRequest {
            header,
            store: Some(metapb::Store {
                id: 1,
                address: store_addr,
                ..Default::default()
            }),
            region: Some(region.clone()),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(resp.header.unwrap().error.is_none());
    // A heartbeat tells PD who leads the region; the stream ends after it is processed.
    let hb = pdpb::RegionHeartbeatRequest {
        header,
        leader: Some(peer),
        region: Some(region),
        ..Default::default()
    };
    let mut answers = c
        .region_heartbeat(tokio_stream::iter(vec![hb]))
        .await
        .unwrap()
        .into_inner();
    while answers.message().await.unwrap().is_some() {}
    Cluster {
        store,
        pd_addr,
        _pd: pd,
    }
}

async fn bench(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_tessera-bench"))
            .args(&args)
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

fn json(out: &Output) -> serde_json::Value {
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON line")
}

fn argv(cluster: &Cluster, workload: &str, extra: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = [
        "--target",
        "tikv",
        "--endpoints",
        &cluster.pd_addr,
        "--workload",
        workload,
        "--clients",
        "4",
        "--duration",
        "1",
        "--keys",
        "300",
        "--json",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_v1_workloads_through_pd() {
    let cluster = start_cluster().await;
    for workload in ["read-heavy", "scan"] {
        let v = json(&bench(argv(&cluster, workload, &[])).await);
        assert_eq!(v["target"], "tikv");
        assert_eq!(v["errors"], 0, "{workload}: {v}");
        assert!(v["ops"].as_u64().unwrap() > 0, "{workload}: {v}");
    }
    let data = cluster.store.data.lock().unwrap();
    // API v1: keys arrive exactly as the tool made them.
    assert_eq!(data.len(), 300);
    assert!(data.keys().all(|k| k.starts_with(b"bench/")));
    assert!(data.values().all(|v| v.len() == 256));
    assert_eq!(cluster.store.api_version.load(Ordering::Relaxed), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_v2_uses_the_default_keyspace() {
    let cluster = start_cluster().await;
    let v = json(&bench(argv(&cluster, "write", &["--api-version", "2"])).await);
    assert_eq!(v["errors"], 0, "{v}");
    assert!(v["ops"].as_u64().unwrap() > 0, "{v}");
    // API v2: the client marks requests V2 and prefixes keys with the raw-mode keyspace
    // prefix: 'r' and the 3-byte keyspace id (DEFAULT is 0).
    assert_eq!(
        cluster.store.api_version.load(Ordering::Relaxed),
        kvrpcpb::ApiVersion::V2 as u64
    );
    let data = cluster.store.data.lock().unwrap();
    assert!(!data.is_empty());
    assert!(
        data.keys().all(|k| k.starts_with(b"r\0\0\0bench/")),
        "{:?}",
        data.keys().next()
    );
}
