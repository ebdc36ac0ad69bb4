//! Fuzz: every method the scheduler's gRPC service serves (`pdpb.PD`, including the Tso and
//! RegionHeartbeat streams, and `keyspacepb.Keyspace/LoadKeyspace`) called over loopback
//! with random fields — headers of this or another cluster, stores, regions with random
//! ranges, epochs and peers, split counts, heartbeat statistics, TSO counts, safe points.
//! Any answer (success, header error or gRPC status) is fine; a panic on any thread or a call
//! that never returns is not, and afterwards the server must still answer normal requests.
//!
//! The default run is short (part of the test command); `TESSERA_FUZZ_CASES=N` runs N calls
//! instead.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{TestCaseError, TestRunner};
use proto::keyspacepb::{keyspace_client::KeyspaceClient, LoadKeyspaceRequest};
use proto::metapb;
use proto::pdpb::{self, pd_client::PdClient};
use tonic::transport::Channel;

use common::{error_type, Env};

fn config(default: u32) -> ProptestConfig {
    let cases = std::env::var("TESSERA_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    ProptestConfig {
        cases,
        failure_persistence: None,
        // Each call changes the cluster's state: report the first failure as it is.
        max_shrink_iters: 0,
        ..ProptestConfig::default()
    }
}

const METHODS: u8 = 20;

fn number() -> impl Strategy<Value = u64> {
    prop_oneof![
        4 => 0u64..20,
        1 => Just(u64::MAX),
        1 => any::<u64>(),
    ]
}

fn key() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        6 => prop::collection::vec(any::<u8>(), 0..6),
        1 => Just(Vec::new()),
        1 => (1usize..200 * 1024).prop_map(|n| vec![b'k'; n]),
    ]
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("DEFAULT".to_string()),
        prop::collection::vec(prop::sample::select(b"abc019:.".to_vec()), 0..12)
            .prop_map(|b| String::from_utf8(b).expect("ascii")),
        any::<String>(),
    ]
}

fn peer() -> impl Strategy<Value = metapb::Peer> {
    (number(), number(), -1i32..4).prop_map(|(id, store_id, role)| metapb::Peer {
        id,
        store_id,
        role,
        ..Default::default()
    })
}

fn region() -> impl Strategy<Value = metapb::Region> {
    (
        number(),
        key(),
        key(),
        prop::option::of((number(), number())),
        prop::collection::vec(peer(), 0..5),
    )
        .prop_map(|(id, start_key, end_key, epoch, peers)| metapb::Region {
            id,
            start_key,
            end_key,
            region_epoch: epoch
                .map(|(conf_ver, version)| metapb::RegionEpoch { conf_ver, version }),
            peers,
            ..Default::default()
        })
}

fn store() -> impl Strategy<Value = metapb::Store> {
    (
        number(),
        text(),
        -1i32..4,
        text(),
        any::<i64>(),
        any::<bool>(),
        -1i32..4,
    )
        .prop_map(
            |(id, address, state, version, start_timestamp, physically_destroyed, node_state)| {
                metapb::Store {
                    id,
                    address,
                    state,
                    version,
                    start_timestamp,
                    physically_destroyed,
                    node_state,
                    ..Default::default()
                }
            },
        )
}

/// Everything a request may need; each method takes the fields it has.
#[derive(Debug, Clone)]
struct Fields {
    method: u8,
    /// Our cluster's id (most of the time), or another.
    own_cluster: bool,
    cluster_id: u64,
    sender_id: u64,
    region: metapb::Region,
    regions: Vec<metapb::Region>,
    store: metapb::Store,
    peers: Vec<metapb::Peer>,
    numbers: [u64; 6],
    key: Vec<u8>,
    key2: Vec<u8>,
    flag: bool,
    limit: i32,
    text: String,
}

fn fields() -> impl Strategy<Value = Fields> {
    (
        (0..METHODS, prop::bool::weighted(0.8), number(), number()),
        region(),
        prop::collection::vec(region(), 0..4),
        store(),
        prop::collection::vec(peer(), 0..3),
        [number(), number(), number(), number(), number(), number()],
        (
            key(),
            key(),
            any::<bool>(),
            prop_oneof![-2i32..20, any::<i32>()],
        ),
        text(),
    )
        .prop_map(
            |(
                (method, own_cluster, cluster_id, sender_id),
                region,
                regions,
                store,
                peers,
                numbers,
                (key, key2, flag, limit),
                text,
            )| Fields {
                method,
                own_cluster,
                cluster_id,
                sender_id,
                region,
                regions,
                store,
                peers,
                numbers,
                key,
                key2,
                flag,
                limit,
                text,
            },
        )
}

fn stats(f: &Fields) -> pdpb::StoreStats {
    let [a, b, c, d, e, g] = f.numbers;
    pdpb::StoreStats {
        store_id: if f.flag { f.store.id } else { a },
        capacity: b,
        available: c,
        region_count: d as u32,
        used_size: e,
        bytes_written: g,
        start_time: a as u32,
        is_busy: f.flag,
        damaged_regions_id: vec![a, b],
        interval: Some(pdpb::TimeInterval {
            start_timestamp: c,
            end_timestamp: d,
        }),
        ..Default::default()
    }
}

/// Calls method `f.method`; returns its name. Every answer is acceptable.
async fn call(
    pd: &mut PdClient<Channel>,
    ks: &mut KeyspaceClient<Channel>,
    header: Option<pdpb::RequestHeader>,
    f: &Fields,
) -> &'static str {
    let [n0, n1, n2, n3, ..] = f.numbers;
    match f.method {
        0 => {
            let _ = pd.get_members(pdpb::GetMembersRequest { header }).await;
            "GetMembers"
        }
        1 => {
            // A few requests on one stream; read what comes back.
            let reqs: Vec<pdpb::TsoRequest> = [n0, n1, n2]
                .iter()
                .map(|&n| pdpb::TsoRequest {
                    header,
                    count: n as u32,
                    dc_location: f.text.clone(),
                })
                .collect();
            if let Ok(s) = pd.tso(tokio_stream::iter(reqs)).await {
                let mut inbound = s.into_inner();
                while let Ok(Some(_)) = inbound.message().await {}
            }
            "Tso"
        }
        2 => {
            let _ = pd
                .bootstrap(pdpb::BootstrapRequest {
                    header,
                    store: Some(f.store.clone()),
                    region: Some(f.region.clone()),
                })
                .await;
            "Bootstrap"
        }
        3 => {
            let _ = pd
                .is_bootstrapped(pdpb::IsBootstrappedRequest { header })
                .await;
            "IsBootstrapped"
        }
        4 => {
            let _ = pd.alloc_id(pdpb::AllocIdRequest { header }).await;
            "AllocID"
        }
        5 => {
            let _ = pd
                .get_store(pdpb::GetStoreRequest {
                    header,
                    store_id: n0,
                })
                .await;
            "GetStore"
        }
        6 => {
            let _ = pd
                .put_store(pdpb::PutStoreRequest {
                    header,
                    store: Some(f.store.clone()),
                })
                .await;
            "PutStore"
        }
        7 => {
            let _ = pd
                .get_all_stores(pdpb::GetAllStoresRequest {
                    header,
                    exclude_tombstone_stores: f.flag,
                })
                .await;
            "GetAllStores"
        }
        8 => {
            let _ = pd
                .store_heartbeat(pdpb::StoreHeartbeatRequest {
                    header,
                    stats: Some(stats(f)),
                })
                .await;
            "StoreHeartbeat"
        }
        9 => {
            let reqs: Vec<pdpb::RegionHeartbeatRequest> = std::iter::once(&f.region)
                .chain(&f.regions)
                .map(|r| pdpb::RegionHeartbeatRequest {
                    header,
                    region: Some(r.clone()),
                    leader: f.peers.first().copied().or(r.peers.first().copied()),
                    down_peers: f
                        .peers
                        .iter()
                        .map(|p| pdpb::PeerStats {
                            peer: Some(*p),
                            down_seconds: n1,
                        })
                        .collect(),
                    pending_peers: f.peers.clone(),
                    bytes_written: n0,
                    keys_written: n1,
                    approximate_size: n2,
                    approximate_keys: n3,
                    term: n0,
                    ..Default::default()
                })
                .collect();
            if let Ok(s) = pd.region_heartbeat(tokio_stream::iter(reqs)).await {
                let mut inbound = s.into_inner();
                while let Ok(Some(_)) = inbound.message().await {}
            }
            "RegionHeartbeat"
        }
        10 => {
            let _ = pd
                .get_region(pdpb::GetRegionRequest {
                    header,
                    region_key: f.key.clone(),
                    need_buckets: f.flag,
                })
                .await;
            "GetRegion"
        }
        11 => {
            let _ = pd
                .get_prev_region(pdpb::GetRegionRequest {
                    header,
                    region_key: f.key.clone(),
                    need_buckets: f.flag,
                })
                .await;
            "GetPrevRegion"
        }
        12 => {
            let _ = pd
                .get_region_by_id(pdpb::GetRegionByIdRequest {
                    header,
                    region_id: n0,
                    need_buckets: f.flag,
                })
                .await;
            "GetRegionByID"
        }
        13 => {
            let _ = pd
                .scan_regions(pdpb::ScanRegionsRequest {
                    header,
                    start_key: f.key.clone(),
                    limit: f.limit,
                    end_key: f.key2.clone(),
                })
                .await;
            "ScanRegions"
        }
        14 => {
            let _ = pd
                .ask_batch_split(pdpb::AskBatchSplitRequest {
                    header,
                    region: Some(f.region.clone()),
                    // Large counts allocate ids for each: keep them within what a store asks.
                    split_count: (n0 % 300) as u32,
                })
                .await;
            "AskBatchSplit"
        }
        15 => {
            let _ = pd
                .report_batch_split(pdpb::ReportBatchSplitRequest {
                    header,
                    regions: f.regions.clone(),
                })
                .await;
            "ReportBatchSplit"
        }
        16 => {
            let _ = pd
                .get_cluster_config(pdpb::GetClusterConfigRequest { header })
                .await;
            "GetClusterConfig"
        }
        17 => {
            let _ = pd
                .get_gc_safe_point(pdpb::GetGcSafePointRequest { header })
                .await;
            "GetGCSafePoint"
        }
        18 => {
            let _ = pd
                .update_gc_safe_point(pdpb::UpdateGcSafePointRequest {
                    header,
                    safe_point: n0,
                })
                .await;
            "UpdateGCSafePoint"
        }
        _ => {
            let _ = ks
                .load_keyspace(LoadKeyspaceRequest {
                    header,
                    name: f.text.clone(),
                })
                .await;
            "LoadKeyspace"
        }
    }
}

fn count_panics() -> Arc<AtomicUsize> {
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        c.fetch_add(1, Ordering::SeqCst);
        default(info);
    }));
    count
}

#[test]
fn random_requests_to_the_scheduler() {
    let panics = count_panics();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (env, mut pd, ks) = rt.block_on(async {
        let env = Env::start().await;
        let mut pd = env.client().await;
        env.bootstrap(&mut pd).await;
        let ks = KeyspaceClient::connect(format!("http://{}", env.server.addr()))
            .await
            .expect("connect");
        (env, pd, ks)
    });
    let own = env.header().expect("header");
    let mut runner = TestRunner::new(config(300));
    let result = runner.run(&fields(), |f| {
        let header = Some(pdpb::RequestHeader {
            cluster_id: if f.own_cluster {
                own.cluster_id
            } else {
                f.cluster_id
            },
            sender_id: f.sender_id,
        });
        // Clients are handles on one connection; each call takes its own.
        let (mut pd, mut ks) = (pd.clone(), ks.clone());
        let answered = rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(30), call(&mut pd, &mut ks, header, &f)).await
        });
        let name = answered.map_err(|_| TestCaseError::fail("a call never returned"))?;
        if panics.load(Ordering::SeqCst) > 0 {
            return Err(TestCaseError::fail(format!(
                "a thread panicked during {name}"
            )));
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("fuzzing the scheduler's service: {e}");
    }

    // Still serving: ids, timestamps and the region index answer normally.
    rt.block_on(async {
        let id = pd
            .alloc_id(pdpb::AllocIdRequest {
                header: env.header(),
            })
            .await
            .expect("AllocID answers")
            .into_inner();
        assert_eq!(error_type(&id.header), None);
        assert!(id.id > 0);
        let next = pd
            .alloc_id(pdpb::AllocIdRequest {
                header: env.header(),
            })
            .await
            .expect("AllocID answers")
            .into_inner();
        assert!(next.id > id.id, "ids keep growing");
        let mut tso = pd
            .tso(tokio_stream::iter(vec![pdpb::TsoRequest {
                header: env.header(),
                count: 1,
                dc_location: String::new(),
            }]))
            .await
            .expect("Tso answers")
            .into_inner();
        let ts = tso.message().await.expect("a TSO answer").expect("one");
        assert_eq!(error_type(&ts.header), None);
        assert_eq!(ts.count, 1);
        // The region index may hold anything the fuzz reported; it must still answer.
        pd.get_region(pdpb::GetRegionRequest {
            header: env.header(),
            region_key: b"any key".to_vec(),
            need_buckets: false,
        })
        .await
        .expect("GetRegion answers");
    });
    assert_eq!(panics.load(Ordering::SeqCst), 0, "a thread panicked");
}
