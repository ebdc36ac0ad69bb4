//! End-to-end tests: a real server on 127.0.0.1:0 over a MemEngine-backed cluster, driven
//! by the generated tonic clients.

use std::collections::HashSet;
use std::sync::Arc;

use proto::keyspacepb::{self, keyspace_client::KeyspaceClient};
use proto::metapb;
use proto::pdpb::{self, pd_client::PdClient, ErrorType, RequestHeader};
use scheduler::{ClusterConfig, MetaStore, SchedulerCluster, SystemClock};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

struct Env {
    server: pd_server::RunningServer,
    cluster: Arc<SchedulerCluster>,
}

impl Env {
    async fn start() -> Env {
        let meta = MetaStore::new(engine::MemEngine::new());
        let cluster = Arc::new(
            SchedulerCluster::open(meta, Arc::new(SystemClock), ClusterConfig::default()).unwrap(),
        );
        let server = pd_server::serve("127.0.0.1:0".parse().unwrap(), cluster.clone())
            .await
            .unwrap();
        Env { server, cluster }
    }

    async fn client(&self) -> PdClient<Channel> {
        PdClient::connect(format!("http://{}", self.server.addr()))
            .await
            .unwrap()
    }

    fn header(&self) -> Option<RequestHeader> {
        Some(RequestHeader {
            cluster_id: self.cluster.cluster_id(),
            sender_id: 0,
        })
    }

    /// Bootstraps with store 1 and region 1 covering the whole key space.
    async fn bootstrap(&self, c: &mut PdClient<Channel>) {
        let resp = c
            .bootstrap(pdpb::BootstrapRequest {
                header: self.header(),
                store: Some(store(1)),
                region: Some(region(1, b"", b"", 1, &[(1, 1)])),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(error_type(&resp.header), None);
    }
}

fn store(id: u64) -> metapb::Store {
    metapb::Store {
        id,
        address: format!("127.0.0.1:{}", 20160 + id),
        ..Default::default()
    }
}

fn region(id: u64, start: &[u8], end: &[u8], version: u64, peers: &[(u64, u64)]) -> metapb::Region {
    metapb::Region {
        id,
        start_key: start.to_vec(),
        end_key: end.to_vec(),
        region_epoch: Some(metapb::RegionEpoch {
            conf_ver: 1,
            version,
        }),
        peers: peers
            .iter()
            .map(|&(id, store_id)| metapb::Peer {
                id,
                store_id,
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

fn error_type(h: &Option<pdpb::ResponseHeader>) -> Option<ErrorType> {
    let h = h.as_ref().expect("every response has a header");
    h.error
        .as_ref()
        .map(|e| ErrorType::try_from(e.r#type).unwrap())
}

fn heartbeat(env: &Env, r: metapb::Region) -> pdpb::RegionHeartbeatRequest {
    pdpb::RegionHeartbeatRequest {
        header: env.header(),
        leader: Some(r.peers[0]),
        region: Some(r),
        approximate_size: 1 << 20,
        ..Default::default()
    }
}

/// Sends `reqs` on one heartbeat stream, closes it and returns every answer (the stream
/// ends only after the server has processed all of them).
async fn heartbeat_all(
    c: &mut PdClient<Channel>,
    reqs: Vec<pdpb::RegionHeartbeatRequest>,
) -> Vec<pdpb::RegionHeartbeatResponse> {
    let out = tokio_stream::iter(reqs);
    let mut inbound = c.region_heartbeat(out).await.unwrap().into_inner();
    let mut answers = Vec::new();
    while let Some(r) = inbound.message().await.unwrap() {
        answers.push(r);
    }
    answers
}

#[tokio::test]
async fn bootstrap_and_is_bootstrapped() {
    let env = Env::start().await;
    let mut c = env.client().await;
    let h = env.header();
    let resp = c
        .is_bootstrapped(pdpb::IsBootstrappedRequest { header: h })
        .await
        .unwrap()
        .into_inner();
    assert!(!resp.bootstrapped);
    assert_eq!(resp.header.unwrap().cluster_id, env.cluster.cluster_id());

    let resp = c
        .put_store(pdpb::PutStoreRequest {
            header: h,
            store: Some(store(2)),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(error_type(&resp.header), Some(ErrorType::NotBootstrapped));

    // A bootstrap without its region is a bad request, not a crash.
    let resp = c
        .bootstrap(pdpb::BootstrapRequest {
            header: h,
            store: Some(store(1)),
            region: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(error_type(&resp.header), Some(ErrorType::InvalidValue));

    env.bootstrap(&mut c).await;
    let resp = c
        .is_bootstrapped(pdpb::IsBootstrappedRequest { header: h })
        .await
        .unwrap()
        .into_inner();
    assert!(resp.bootstrapped);
    let resp = c
        .bootstrap(pdpb::BootstrapRequest {
            header: h,
            store: Some(store(1)),
            region: Some(region(1, b"", b"", 1, &[(1, 1)])),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        error_type(&resp.header),
        Some(ErrorType::AlreadyBootstrapped)
    );

    let resp = c
        .get_cluster_config(pdpb::GetClusterConfigRequest { header: h })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.cluster.unwrap().id, env.cluster.cluster_id());
    env.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn alloc_id_is_unique_across_concurrent_callers() {
    let env = Env::start().await;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let mut c = env.client().await;
        let h = env.header();
        tasks.spawn(async move {
            let mut ids = Vec::new();
            for _ in 0..50 {
                let resp = c
                    .alloc_id(pdpb::AllocIdRequest { header: h })
                    .await
                    .unwrap()
                    .into_inner();
                assert_eq!(error_type(&resp.header), None);
                ids.push(resp.id);
            }
            ids
        });
    }
    let mut all = HashSet::new();
    while let Some(ids) = tasks.join_next().await {
        for id in ids.unwrap() {
            assert!(id > 0);
            assert!(all.insert(id), "id {id} handed out twice");
        }
    }
    assert_eq!(all.len(), 400);
}

#[tokio::test]
async fn put_get_store_and_store_heartbeat() {
    let env = Env::start().await;
    let mut c = env.client().await;
    let h = env.header();
    env.bootstrap(&mut c).await;
    let resp = c
        .put_store(pdpb::PutStoreRequest {
            header: h,
            store: Some(store(2)),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(error_type(&resp.header), None);
    let resp = c
        .store_heartbeat(pdpb::StoreHeartbeatRequest {
            header: h,
            stats: Some(pdpb::StoreStats {
                store_id: 2,
                capacity: 1000,
                available: 600,
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(error_type(&resp.header), None);
    let resp = c
        .get_store(pdpb::GetStoreRequest {
            header: h,
            store_id: 2,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(error_type(&resp.header), None);
    assert_eq!(resp.store.as_ref().unwrap().address, store(2).address);
    assert!(resp.store.unwrap().last_heartbeat > 0);
    assert_eq!(resp.stats.as_ref().unwrap().capacity, 1000);
    assert_eq!(resp.stats.unwrap().available, 600);

    let resp = c
        .get_all_stores(pdpb::GetAllStoresRequest {
            header: h,
            exclude_tombstone_stores: true,
        })
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<u64> = resp.stores.iter().map(|s| s.id).collect();
    assert_eq!(ids, vec![1, 2]);

    let resp = c
        .get_store(pdpb::GetStoreRequest {
            header: h,
            store_id: 99,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(error_type(&resp.header).is_some());
    assert!(resp.store.is_none());
    let resp = c
        .store_heartbeat(pdpb::StoreHeartbeatRequest {
            header: h,
            stats: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(error_type(&resp.header), Some(ErrorType::InvalidValue));
}

#[tokio::test]
async fn region_heartbeats_feed_region_queries() {
    let env = Env::start().await;
    let mut c = env.client().await;
    let h = env.header();
    env.bootstrap(&mut c).await;
    // Region 1 split at "m" into 1 [.., m) and 2 [m, ..), both at version 2.
    let answers = heartbeat_all(
        &mut c,
        vec![
            heartbeat(&env, region(2, b"m", b"", 2, &[(3, 1)])),
            heartbeat(&env, region(1, b"", b"m", 2, &[(1, 1)])),
        ],
    )
    .await;
    assert!(answers.is_empty(), "no operators yet: {answers:?}");

    let get = |key: &[u8]| pdpb::GetRegionRequest {
        header: h,
        region_key: key.to_vec(),
        need_buckets: false,
    };
    let resp = c.get_region(get(b"a")).await.unwrap().into_inner();
    assert_eq!(resp.region.unwrap().id, 1);
    assert_eq!(resp.leader.unwrap().id, 1);
    let resp = c.get_region(get(b"z")).await.unwrap().into_inner();
    assert_eq!(resp.region.unwrap().id, 2);
    let resp = c.get_prev_region(get(b"z")).await.unwrap().into_inner();
    assert_eq!(resp.region.unwrap().id, 1);
    let resp = c
        .get_region_by_id(pdpb::GetRegionByIdRequest {
            header: h,
            region_id: 2,
            need_buckets: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.region.unwrap().start_key, b"m".to_vec());
    let resp = c
        .get_region_by_id(pdpb::GetRegionByIdRequest {
            header: h,
            region_id: 77,
            need_buckets: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(error_type(&resp.header), None);
    assert!(resp.region.is_none());

    let scan = |limit: i32| pdpb::ScanRegionsRequest {
        header: h,
        start_key: Vec::new(),
        limit,
        end_key: Vec::new(),
    };
    let resp = c.scan_regions(scan(0)).await.unwrap().into_inner();
    let ids: Vec<u64> = resp
        .regions
        .iter()
        .map(|r| r.region.as_ref().unwrap().id)
        .collect();
    assert_eq!(ids, vec![1, 2]);
    assert_eq!(resp.region_metas.len(), 2);
    assert_eq!(resp.leaders.len(), 2);
    let resp = c.scan_regions(scan(1)).await.unwrap().into_inner();
    assert_eq!(resp.regions.len(), 1);

    // A stale heartbeat (older version) and one without a leader are answered with errors.
    let mut no_leader = heartbeat(&env, region(2, b"m", b"", 2, &[(3, 1)]));
    no_leader.leader = None;
    let answers = heartbeat_all(
        &mut c,
        vec![
            heartbeat(&env, region(2, b"m", b"", 1, &[(3, 1)])),
            no_leader,
        ],
    )
    .await;
    assert_eq!(answers.len(), 2);
    assert!(answers
        .iter()
        .all(|a| a.region_id == 2 && error_type(&a.header).is_some()));
}

#[tokio::test]
async fn ask_and_report_batch_split() {
    let env = Env::start().await;
    let mut c = env.client().await;
    let h = env.header();
    env.bootstrap(&mut c).await;
    let resp = c
        .ask_batch_split(pdpb::AskBatchSplitRequest {
            header: h,
            region: Some(region(1, b"", b"", 1, &[(1, 1)])),
            split_count: 2,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(error_type(&resp.header), None);
    assert_eq!(resp.ids.len(), 2);
    assert!(resp.ids.iter().all(|s| s.new_peer_ids.len() == 1));
    let (a, b) = (&resp.ids[0], &resp.ids[1]);
    let resp = c
        .report_batch_split(pdpb::ReportBatchSplitRequest {
            header: h,
            regions: vec![
                region(a.new_region_id, b"", b"g", 3, &[(a.new_peer_ids[0], 1)]),
                region(b.new_region_id, b"g", b"p", 3, &[(b.new_peer_ids[0], 1)]),
                region(1, b"p", b"", 3, &[(1, 1)]),
            ],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(error_type(&resp.header), None);
    assert_eq!(env.cluster.region_count(), 3);

    let resp = c
        .ask_batch_split(pdpb::AskBatchSplitRequest {
            header: h,
            region: None,
            split_count: 2,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(error_type(&resp.header), Some(ErrorType::InvalidValue));
    let resp = c
        .ask_batch_split(pdpb::AskBatchSplitRequest {
            header: h,
            region: Some(region(1, b"p", b"", 3, &[(1, 1)])),
            split_count: u32::MAX,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(error_type(&resp.header), Some(ErrorType::InvalidValue));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tso_concurrent_streams_are_unique_and_increasing() {
    let env = Env::start().await;
    let mut tasks = tokio::task::JoinSet::new();
    for s in 0..16u32 {
        let mut c = env.client().await;
        let h = env.header();
        tasks.spawn(async move {
            let (tx, rx) = mpsc::channel(1);
            let mut inbound = c.tso(ReceiverStream::new(rx)).await.unwrap().into_inner();
            let mut last = 0u64;
            let mut got = Vec::new();
            for i in 0..50u32 {
                let count = 1 + (s + i) % 3;
                tx.send(pdpb::TsoRequest {
                    header: h,
                    count,
                    dc_location: String::new(),
                })
                .await
                .unwrap();
                let resp = inbound.message().await.unwrap().unwrap();
                assert_eq!(error_type(&resp.header), None);
                assert_eq!(resp.count, count);
                let ts = resp.timestamp.unwrap();
                let last_ts = ((ts.physical as u64) << 18) | ts.logical as u64;
                let first_ts = last_ts - u64::from(count) + 1;
                assert!(first_ts > last, "timestamps go back on one stream");
                last = last_ts;
                got.extend(first_ts..=last_ts);
            }
            got
        });
    }
    let mut all = HashSet::new();
    let mut total = 0;
    while let Some(got) = tasks.join_next().await {
        for ts in got.unwrap() {
            total += 1;
            assert!(all.insert(ts), "timestamp {ts} handed out twice");
        }
    }
    assert_eq!(all.len(), total);
}

#[tokio::test]
async fn other_cluster_ids_get_error_headers() {
    let env = Env::start().await;
    let mut c = env.client().await;
    let cid = env.cluster.cluster_id();
    let wrong = Some(RequestHeader {
        cluster_id: cid + 1,
        sender_id: 0,
    });
    let resp = c
        .alloc_id(pdpb::AllocIdRequest { header: wrong })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.header.as_ref().unwrap().cluster_id, cid);
    assert!(error_type(&resp.header).is_some());
    assert_eq!(resp.id, 0);
    let resp = c
        .alloc_id(pdpb::AllocIdRequest { header: None })
        .await
        .unwrap()
        .into_inner();
    assert!(error_type(&resp.header).is_some());

    let mut inbound = c
        .tso(tokio_stream::iter(vec![pdpb::TsoRequest {
            header: wrong,
            count: 1,
            dc_location: String::new(),
        }]))
        .await
        .unwrap()
        .into_inner();
    let resp = inbound.message().await.unwrap().unwrap();
    assert!(error_type(&resp.header).is_some());
    assert!(resp.timestamp.is_none());

    // GetMembers answers whatever the id: it is how clients learn it.
    let resp = c
        .get_members(pdpb::GetMembersRequest { header: wrong })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(error_type(&resp.header), None);
    assert_eq!(resp.header.unwrap().cluster_id, cid);
    assert_eq!(resp.members.len(), 1);
    assert_eq!(
        resp.leader.unwrap().client_urls,
        vec![format!("http://{}", env.server.addr())]
    );
}

#[tokio::test]
async fn gc_safe_point_only_moves_forward() {
    let env = Env::start().await;
    let mut c = env.client().await;
    let h = env.header();
    let resp = c
        .get_gc_safe_point(pdpb::GetGcSafePointRequest { header: h })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(error_type(&resp.header), Some(ErrorType::NotBootstrapped));
    env.bootstrap(&mut c).await;
    for (ask, want) in [(100, 100), (50, 100), (150, 150)] {
        let resp = c
            .update_gc_safe_point(pdpb::UpdateGcSafePointRequest {
                header: h,
                safe_point: ask,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(resp.new_safe_point, want);
    }
    let resp = c
        .get_gc_safe_point(pdpb::GetGcSafePointRequest { header: h })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.safe_point, 150);
}

#[tokio::test]
async fn load_default_keyspace() {
    let env = Env::start().await;
    let mut c = KeyspaceClient::connect(format!("http://{}", env.server.addr()))
        .await
        .unwrap();
    let resp = c
        .load_keyspace(keyspacepb::LoadKeyspaceRequest {
            header: env.header(),
            name: "DEFAULT".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(error_type(&resp.header), None);
    let ks = resp.keyspace.unwrap();
    assert_eq!((ks.id, ks.name.as_str()), (0, "DEFAULT"));
    assert_eq!(ks.state, keyspacepb::KeyspaceState::Enabled as i32);
    let resp = c
        .load_keyspace(keyspacepb::LoadKeyspaceRequest {
            header: env.header(),
            name: "nope".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(error_type(&resp.header), Some(ErrorType::EntryNotFound));
}

fn key(i: u32) -> Vec<u8> {
    format!("k{i:06}").into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_concurrent_region_heartbeats() {
    const STREAMS: u32 = 20;
    const PER_STREAM: u32 = 100;
    const N: u32 = STREAMS * PER_STREAM;
    let env = Arc::new(Env::start().await);
    let mut c = env.client().await;
    env.bootstrap(&mut c).await;
    // Region i covers [key(i), key(i+1)), the first from the start, the last to the end;
    // version 2 replaces the bootstrap region 1 wherever they overlap.
    let mut tasks = tokio::task::JoinSet::new();
    for s in 0..STREAMS {
        let env = env.clone();
        let mut c = env.client().await;
        tasks.spawn(async move {
            let reqs = (s * PER_STREAM..(s + 1) * PER_STREAM)
                .map(|i| {
                    let start = if i == 0 { Vec::new() } else { key(i) };
                    let end = if i == N - 1 { Vec::new() } else { key(i + 1) };
                    let id = 1000 + u64::from(i);
                    heartbeat(&env, region(id, &start, &end, 2, &[(id + 100_000, 1)]))
                })
                .collect();
            heartbeat_all(&mut c, reqs).await
        });
    }
    while let Some(answers) = tasks.join_next().await {
        let answers = answers.unwrap();
        assert!(answers.is_empty(), "rejected heartbeats: {answers:?}");
    }
    let resp = c
        .scan_regions(pdpb::ScanRegionsRequest {
            header: env.header(),
            start_key: Vec::new(),
            limit: 0,
            end_key: Vec::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.regions.len(), N as usize);
    let ids: Vec<u64> = resp
        .regions
        .iter()
        .map(|r| r.region.as_ref().unwrap().id)
        .collect();
    assert_eq!(ids, (1000..1000 + u64::from(N)).collect::<Vec<_>>());
    assert_eq!(env.cluster.region_count(), N as usize);
}

/// One HTTP/1.1 GET over a plain socket (no HTTP client dependency needed).
async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test]
async fn http_api_lists_regions_and_stores() {
    let env = Env::start().await;
    let mut c = env.client().await;
    env.bootstrap(&mut c).await;
    let resp = http_get(env.server.addr(), "/pd/api/v1/regions").await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let body = &resp[resp.find("\r\n\r\n").unwrap() + 4..];
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(v["count"], 1);
    assert_eq!(v["regions"][0]["id"], 1);
    let resp = http_get(env.server.addr(), "/pd/api/v1/stores").await;
    let body = &resp[resp.find("\r\n\r\n").unwrap() + 4..];
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(v["count"], 1);
    assert_eq!(v["stores"][0]["store"]["id"], 1);
}
