//! The heartbeat path with 2,000 regions on 3 stores, as the heartbeat benchmark drives it
//! (`examples/heartbeat_bench.rs`) but small: a scheduling server over fjall, ids from
//! AskBatchSplit, one heartbeat stream per store, a second round that moves leaders and
//! bumps conf versions. Afterwards every region must be found by GetRegion with the
//! reported leader and epoch, the HTTP API must list all of them once in key order (more
//! than one page of its region list), and a restart on the same directory must bring
//! back every region with its last epoch (region metadata is written without an fsync,
//! but through the engine's journal).

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use common::error_type;
use proto::metapb;
use proto::pdpb::{self, pd_client::PdClient, RequestHeader};
use scheduler::{ClusterConfig, Coordinator, MetaStore, SchedulerCluster, SystemClock};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

const REGIONS: usize = 2000;
const STORES: u64 = 3;

fn open(dir: &std::path::Path) -> Arc<SchedulerCluster> {
    let engine = engine::FjallEngine::open(dir, &engine::FjallConfig::default()).unwrap();
    Arc::new(
        SchedulerCluster::open(
            MetaStore::new(engine),
            Arc::new(SystemClock),
            ClusterConfig::default(),
        )
        .unwrap(),
    )
}

fn key(i: usize) -> Vec<u8> {
    format!("r{i:06}").into_bytes()
}

fn peer(id: u64, store_id: u64) -> metapb::Peer {
    metapb::Peer {
        id,
        store_id,
        ..Default::default()
    }
}

/// Sends `reqs` on stream `s`, then a heartbeat for region 0, which the server refuses
/// in order: its error answer means everything before it was handled. Returns the other
/// answers (operators or errors).
async fn send_round(
    tx: &mpsc::Sender<pdpb::RegionHeartbeatRequest>,
    inbound: &mut tonic::Streaming<pdpb::RegionHeartbeatResponse>,
    reqs: Vec<pdpb::RegionHeartbeatRequest>,
    header: Option<RequestHeader>,
    store: u64,
) -> Vec<pdpb::RegionHeartbeatResponse> {
    let sender = {
        let tx = tx.clone();
        tokio::spawn(async move {
            for r in reqs {
                tx.send(r).await.unwrap();
            }
            tx.send(pdpb::RegionHeartbeatRequest {
                header,
                region: Some(metapb::Region {
                    id: 0,
                    region_epoch: Some(metapb::RegionEpoch::default()),
                    peers: vec![peer(1, store)],
                    ..Default::default()
                }),
                leader: Some(peer(1, store)),
                ..Default::default()
            })
            .await
            .unwrap();
        })
    };
    let mut others = Vec::new();
    loop {
        let r = inbound.message().await.unwrap().expect("stream open");
        if r.region_id == 0 && error_type(&r.header).is_some() {
            break;
        }
        others.push(r);
    }
    sender.await.unwrap();
    others
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_regions_through_heartbeats_queries_http_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = open(dir.path());
    let coordinator = Arc::new(Coordinator::new(
        cluster.clone(),
        scheduler::ScheduleConfig::default(),
        7,
    ));
    let server = pd_server::serve_with_scheduling(
        "127.0.0.1:0".parse().unwrap(),
        coordinator,
        Duration::from_millis(50),
    )
    .await
    .unwrap();
    let addr = server.addr();
    let url = format!("http://{addr}");
    let mut c = PdClient::connect(url.clone()).await.unwrap();
    let header = Some(RequestHeader {
        cluster_id: cluster.cluster_id(),
        sender_id: 0,
    });
    let store = |id: u64| metapb::Store {
        id,
        address: format!("127.0.0.1:{}", 20160 + id),
        ..Default::default()
    };
    let boot = metapb::Region {
        id: 10,
        region_epoch: Some(metapb::RegionEpoch {
            conf_ver: 1,
            version: 1,
        }),
        peers: (1..=STORES).map(|s| peer(10 + s, s)).collect(),
        ..Default::default()
    };
    let resp = c
        .bootstrap(pdpb::BootstrapRequest {
            header,
            store: Some(store(1)),
            region: Some(boot.clone()),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(error_type(&resp.header), None);
    for s in 1..=STORES {
        if s > 1 {
            c.put_store(pdpb::PutStoreRequest {
                header,
                store: Some(store(s)),
            })
            .await
            .unwrap();
        }
        c.store_heartbeat(pdpb::StoreHeartbeatRequest {
            header,
            stats: Some(pdpb::StoreStats {
                store_id: s,
                capacity: 1 << 40,
                available: 1 << 39,
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    }
    let mut ids = Vec::new();
    while ids.len() < REGIONS {
        let resp = c
            .ask_batch_split(pdpb::AskBatchSplitRequest {
                header,
                region: Some(boot.clone()),
                split_count: (REGIONS - ids.len()).min(1000) as u32,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(error_type(&resp.header), None);
        ids.extend(resp.ids);
    }
    // Region i covers [key(i), key(i+1)), the first from the start and the last to the
    // end; version 2 replaces the bootstrap region.
    let mut regions: Vec<(metapb::Region, usize)> = ids
        .iter()
        .enumerate()
        .map(|(i, ids)| {
            let region = metapb::Region {
                id: ids.new_region_id,
                start_key: if i == 0 { Vec::new() } else { key(i) },
                end_key: if i + 1 == REGIONS {
                    Vec::new()
                } else {
                    key(i + 1)
                },
                region_epoch: Some(metapb::RegionEpoch {
                    conf_ver: 1,
                    version: 2,
                }),
                peers: ids
                    .new_peer_ids
                    .iter()
                    .zip(1..=STORES)
                    .map(|(&p, s)| peer(p, s))
                    .collect(),
                ..Default::default()
            };
            (region, i % STORES as usize)
        })
        .collect();

    let mut streams = Vec::new();
    for _ in 0..STORES {
        let mut sc: PdClient<Channel> = PdClient::connect(url.clone()).await.unwrap();
        let (tx, rx) = mpsc::channel(256);
        let inbound = sc
            .region_heartbeat(ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        streams.push((tx, inbound));
    }
    for round in 0..2 {
        if round == 1 {
            for (i, (r, leader)) in regions.iter_mut().enumerate() {
                if i % 7 == 0 {
                    *leader = (*leader + 1) % STORES as usize;
                }
                if i % 11 == 0 {
                    r.region_epoch.as_mut().unwrap().conf_ver += 1;
                }
            }
        }
        let mut per_store: Vec<Vec<pdpb::RegionHeartbeatRequest>> =
            (0..STORES).map(|_| Vec::new()).collect();
        for (i, (r, leader)) in regions.iter().enumerate() {
            let l = r.peers[*leader];
            per_store[(l.store_id - 1) as usize].push(pdpb::RegionHeartbeatRequest {
                header,
                region: Some(r.clone()),
                leader: Some(l),
                approximate_size: ((i % 64) as u64 + 1) << 20,
                approximate_keys: 1000 + i as u64,
                ..Default::default()
            });
        }
        for (s, reqs) in per_store.into_iter().enumerate() {
            let (tx, inbound) = &mut streams[s];
            let answers = send_round(tx, inbound, reqs, header, s as u64 + 1).await;
            // Operator steps may come back (the balancers run); no heartbeat is refused.
            for a in &answers {
                assert_eq!(error_type(&a.header), None, "refused: {a:?}");
            }
        }
    }

    // Every region by key, with the leader and epoch of its last heartbeat.
    for (i, (r, leader)) in regions.iter().enumerate() {
        let probe = if i == 0 { b"".to_vec() } else { key(i) };
        let resp = c
            .get_region(pdpb::GetRegionRequest {
                header,
                region_key: probe.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let got = resp
            .region
            .unwrap_or_else(|| panic!("no region at {probe:?}"));
        assert_eq!(got.id, r.id, "region at {probe:?}");
        assert_eq!(got.region_epoch, r.region_epoch, "region {}", r.id);
        assert_eq!(resp.leader, Some(r.peers[*leader]), "region {}", r.id);
    }

    // The HTTP API lists each region once, in key order, with the same leaders.
    let (status, v) =
        pd_server::http_client::request(&addr.to_string(), "GET", "/pd/api/v1/regions", "")
            .await
            .unwrap();
    assert_eq!(status, 200);
    assert_eq!(v["count"], REGIONS);
    let listed = v["regions"].as_array().unwrap();
    assert_eq!(listed.len(), REGIONS);
    for ((r, leader), j) in regions.iter().zip(listed) {
        assert_eq!(j["id"], r.id);
        assert_eq!(j["leader"]["id"], r.peers[*leader].id);
        assert_eq!(j["epoch"]["conf_ver"], r.region_epoch.unwrap().conf_ver);
    }
    let (_, v) = pd_server::http_client::request(&addr.to_string(), "GET", "/pd/api/v1/stores", "")
        .await
        .unwrap();
    let mut leaders: HashMap<u64, u64> = HashMap::new();
    for (r, leader) in &regions {
        *leaders.entry(r.peers[*leader].store_id).or_default() += 1;
    }
    for s in v["stores"].as_array().unwrap() {
        let id = s["store"]["id"].as_u64().unwrap();
        assert_eq!(s["status"]["region_count"], REGIONS, "store {id}");
        assert_eq!(s["status"]["leader_count"], leaders[&id], "store {id}");
    }

    // A restart on the same directory finds every region with its last epoch.
    drop(streams);
    server.shutdown().await.unwrap();
    drop(c);
    // Let the stopped server's tasks drop their handles, so the engine is closed before
    // it is opened again (a pause, not a limit: the test goes on either way).
    for _ in 0..500 {
        if Arc::strong_count(&cluster) == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(cluster);
    let reopened = open(dir.path());
    assert_eq!(reopened.region_count(), REGIONS);
    for (r, _) in &regions {
        let got = reopened.get_region_by_id(r.id).expect("region saved");
        assert_eq!(got.region.region_epoch, r.region_epoch, "region {}", r.id);
        assert_eq!(got.region.start_key, r.start_key, "region {}", r.id);
    }
}
