//! End-to-end tests of the unary RPCs and the HTTP API.

mod common;

use std::collections::HashSet;

use common::*;
use proto::keyspacepb::{self, keyspace_client::KeyspaceClient};
use proto::pdpb::{self, ErrorType, RequestHeader};

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
