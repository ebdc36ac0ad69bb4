//! Stores scheduled over gRPC: an in-process cluster whose stores each talk to a real
//! pd_server through their own `PdClient`, adapted to raftstore by the node's
//! `PdAdapter` as in a store process (AskBatchSplit, ReportBatchSplit, store
//! heartbeats as unary calls; region heartbeats and the operators answering them on the
//! RegionHeartbeat stream). Splits show up in PD, and a store lost for good has its
//! replicas rebuilt elsewhere without losing an acknowledged write.

// The loopback PD server pd_client's own tests use: one copy for both crates.
#[path = "../../pd_client/tests/common/mod.rs"]
mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{block_on, test_config, Pd};
use node::pd_adapter::PdAdapter;
use parking_lot::Mutex;
use pd_client::{PdClient, RegionInfo};
use proto::metapb;
use proto::raft_serverpb::PeerState;
use test_cluster::scenario::scenario_lock;
use test_cluster::scheduler::MockScheduler;
use test_cluster::Cluster;

/// A cluster of `stores` stores, each connecting its own client to `pd` when it starts.
fn grpc_cluster(pd: &Pd, stores: u64, cfg: raftstore::Config) -> Arc<Cluster> {
    let endpoint = pd.endpoint();
    Arc::new(Cluster::with_scheduler_per_store(
        stores,
        cfg,
        Arc::new(MockScheduler::default()),
        Box::new(move |_store| {
            Arc::new(PdAdapter::new(
                PdClient::connect_blocking(std::slice::from_ref(&endpoint), test_config())
                    .expect("store connects to PD"),
            ))
        }),
    ))
}

fn store(id: u64) -> metapb::Store {
    metapb::Store {
        id,
        address: format!("store-{id}"),
        ..Default::default()
    }
}

/// Tells PD about the cluster the harness wrote to disk, over gRPC: bootstrap with the
/// first store and region, then the other stores. The harness chose the ids of its
/// regions and peers itself and PD has no RPC to reserve ids, so the test reserves them
/// on the server's core directly (a real store would have asked PD for them).
fn bootstrap_pd(pd: &Pd, admin: &PdClient, stores: &[u64], regions: &[metapb::Region]) {
    block_on(async {
        admin
            .bootstrap(store(stores[0]), regions[0].clone())
            .await
            .expect("bootstrap");
        for &s in &stores[1..] {
            admin.put_store(store(s)).await.expect("put store");
        }
    });
    let max = regions
        .iter()
        .flat_map(|r| r.peers.iter().map(|p| p.id).chain([r.id]))
        .max()
        .unwrap_or(0);
    pd.cluster.ensure_id_above(max).expect("reserve ids");
}

fn scan(admin: &PdClient) -> Vec<RegionInfo> {
    block_on(admin.scan_regions(b"", b"", 0)).expect("scan regions")
}

/// PD's regions cover the whole key space, in order, without gaps.
fn tiles(regions: &[RegionInfo]) -> bool {
    !regions.is_empty()
        && regions[0].region.start_key.is_empty()
        && regions.last().unwrap().region.end_key.is_empty()
        && regions
            .windows(2)
            .all(|w| w[0].region.end_key == w[1].region.start_key)
}

/// Regions stored on `store` and not tombstoned.
fn regions_on(cluster: &Cluster, store: u64) -> Vec<metapb::Region> {
    cluster
        .stored_regions()
        .into_iter()
        .filter(|(s, st)| *s == store && st.state == PeerState::Normal as i32)
        .filter_map(|(_, st)| st.region)
        .collect()
}

fn wait_for<T>(what: &str, within: Duration, mut f: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + within;
    loop {
        match f() {
            Ok(v) => return v,
            Err(state) if Instant::now() >= deadline => {
                panic!("{what}: not within {within:?}; last seen: {state}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

#[test]
fn splits_go_through_pd_and_heartbeats_keep_its_view_current() {
    let _g = scenario_lock();
    let pd = Pd::start(Duration::from_secs(60));
    let admin = pd.client();
    let mut cfg = raftstore::Config::for_tests();
    cfg.region_max_size = 800;
    cfg.region_split_size = 500;
    let cluster = grpc_cluster(&pd, 3, cfg);
    cluster.run_on_stores(&[1, 2, 3], &[]);
    bootstrap_pd(&pd, &admin, &[1, 2, 3], &cluster.cached_regions());

    let mut written = Vec::new();
    for i in 0..300 {
        let key = format!("k{i:04}").into_bytes();
        let value = format!("value-{i:04}").into_bytes();
        cluster.must_put(&key, &value);
        written.push((key, value));
    }

    // PD learned the splits (ids from AskBatchSplit, regions from ReportBatchSplit and
    // heartbeats) through the stores' clients; the harness's mock saw none of it.
    let regions = wait_for("PD sees the region split", Duration::from_secs(20), || {
        let regions = scan(&admin);
        if regions.len() >= 5 && tiles(&regions) && regions.iter().all(|r| r.leader.is_some()) {
            Ok(regions)
        } else {
            Err(format!("{} regions: {regions:?}", regions.len()))
        }
    });
    assert_eq!(
        cluster
            .scheduler()
            .split_asks
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    assert!(
        regions.iter().filter(|r| r.region.id > 3).count() >= 4,
        "new regions carry ids PD allocated: {regions:?}"
    );

    // Heartbeats keep PD's view current: once writes stop, every region PD knows is what
    // its leader's store has on disk (same range and epoch), and PD knows as many regions
    // as the stores hold.
    wait_for("PD agrees with the stores", Duration::from_secs(10), || {
        let regions = scan(&admin);
        let on_store1 = regions_on(&cluster, 1);
        if regions.len() != on_store1.len() || !tiles(&regions) {
            return Err(format!(
                "PD has {} regions, store 1 has {}",
                regions.len(),
                on_store1.len()
            ));
        }
        for r in &regions {
            let leader = r
                .leader
                .ok_or(format!("region {} has no leader", r.region.id))?;
            let local = cluster
                .region_state(leader.store_id, r.region.id)
                .and_then(|s| s.region)
                .ok_or(format!(
                    "region {} not on store {}",
                    r.region.id, leader.store_id
                ))?;
            if local.region_epoch != r.region.region_epoch || local.end_key != r.region.end_key {
                return Err(format!("PD {:?} vs store {local:?}", r.region));
            }
        }
        Ok(())
    });
    eprintln!("{} regions, PD agrees with the stores", scan(&admin).len());

    for (k, v) in &written {
        assert_eq!(cluster.must_get(k).as_deref(), Some(v.as_slice()));
    }
    let r = block_on(admin.get_region(b"k0150"))
        .unwrap()
        .expect("a region");
    assert!(r.region.start_key.as_slice() <= b"k0150".as_slice());
    assert!(r.region.end_key.is_empty() || r.region.end_key.as_slice() > b"k0150".as_slice());
    drop(cluster);
}

/// A write: key and value.
type KeyValue = (Vec<u8>, Vec<u8>);

/// Regions cut at `n - 1` keys, as the harness bootstraps them.
fn split_keys(n: usize) -> Vec<Vec<u8>> {
    (1..n).map(|i| format!("r{i:03}").into_bytes()).collect()
}

#[test]
fn lost_store_is_repaired_by_operators_sent_over_the_stream() {
    let _g = scenario_lock();
    const REGIONS: usize = 10;
    let pd = Pd::start(Duration::from_secs(3));
    let admin = pd.client();
    let cluster = grpc_cluster(&pd, 4, raftstore::Config::for_tests());
    cluster.run_on_stores(&[1, 2, 3], &split_keys(REGIONS));
    bootstrap_pd(&pd, &admin, &[1, 2, 3, 4], &cluster.cached_regions());
    cluster.start_store(4);
    wait_for(
        "PD knows every region's leader",
        Duration::from_secs(10),
        || {
            let regions = scan(&admin);
            let led = regions.iter().filter(|r| r.leader.is_some()).count();
            (regions.len() == REGIONS && led == REGIONS)
                .then_some(())
                .ok_or(format!("{} regions, {led} with a leader", regions.len()))
        },
    );

    let acked: Arc<Mutex<Vec<KeyValue>>> = Arc::default();
    for i in 0..REGIONS {
        for j in 0..10 {
            let key = format!("r{i:03}-before-{j:02}").into_bytes();
            let value = format!("v{i}-{j}").into_bytes();
            cluster.must_put(&key, &value);
            acked.lock().push((key, value));
        }
    }
    // Writes keep going, round robin over the regions, while the store is lost and the
    // replicas are rebuilt; only acknowledged ones are recorded.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (cluster, acked, stop) = (cluster.clone(), acked.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut n = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let key = format!("r{:03}-during-{n:05}", n % REGIONS).into_bytes();
                let value = format!("d{n}").into_bytes();
                cluster.must_put(&key, &value);
                acked.lock().push((key, value));
                n += 1;
            }
            n
        })
    };

    std::thread::sleep(Duration::from_millis(300));
    cluster.stop_store(3);
    let lost_at = Instant::now();
    wait_for(
        "every region back to 3 replicas off store 3",
        Duration::from_secs(30),
        || {
            let regions = scan(&admin);
            let healed = regions.len() == REGIONS
                && regions.iter().all(|r| {
                    let stores: Vec<u64> = r.region.peers.iter().map(|p| p.store_id).collect();
                    stores.len() == 3 && !stores.contains(&3)
                });
            healed.then_some(()).ok_or(format!(
                "{:?}",
                regions.iter().map(|r| &r.region.peers).collect::<Vec<_>>()
            ))
        },
    );
    let healed_after = lost_at.elapsed();
    // The stores agree: store 4 holds every region now.
    wait_for(
        "store 4 holds every region",
        Duration::from_secs(10),
        || {
            let n = regions_on(&cluster, 4).len();
            (n == REGIONS).then_some(()).ok_or(format!("{n} regions"))
        },
    );
    let counters = pd.coordinator.counters();
    stop.store(true, Ordering::Relaxed);
    let during = writer.join().expect("writer");
    eprintln!(
        "repaired {healed_after:?} after losing store 3; {during} writes during; operators {counters:?}"
    );
    assert!(during > 0, "no write finished while the store was lost");
    // Every region needed at least one operator (a replica moved off store 3), and its
    // steps only reach the stores on the heartbeat stream: the client's
    // `region_heartbeat` never returns one.
    assert!(
        counters.finished >= REGIONS as u64,
        "operators finished: {counters:?}"
    );

    let acked = acked.lock().clone();
    for (k, v) in &acked {
        assert_eq!(
            cluster.must_get(k).as_deref(),
            Some(v.as_slice()),
            "acknowledged write {:?} lost (seed {})",
            String::from_utf8_lossy(k),
            cluster.seed
        );
    }
    // Store 4's copies have the data too (read from its engine, not through a leader).
    for (k, v) in acked.iter().step_by(7) {
        cluster.must_get_equal(4, k, v);
    }
}
