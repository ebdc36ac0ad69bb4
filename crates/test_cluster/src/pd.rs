//! The real scheduler core, in process: stores talk to `scheduler::SchedulerCluster` and
//! its `Coordinator` through the same [`SchedulerClient`] trait a networked client
//! implements, so the harness can test replica repair and balancing end to end.
//!
//! A background thread ticks the coordinator (runs the checkers and balancers) every
//! `tick` until the adapter is dropped; operators reach leaders in heartbeat answers.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use engine::MemEngine;
use proto::metapb;
use raftstore::scheduler_client::{
    Operator, RegionHeartbeat, SchedulerClient, SplitIds, StoreHeartbeat,
};
use raftstore::{Error, Result};
use scheduler::{
    ClusterConfig, Coordinator, MetaStore, OpStep, RegionInfo, ScheduleConfig, SchedulerCluster,
    StoreConfig, StoreStats, SystemClock,
};

fn to_store_err(e: scheduler::Error) -> Error {
    Error::Other(format!("scheduler: {e}"))
}

/// The scheduler core behind the store-side trait.
pub struct CoreScheduler {
    cluster: Arc<SchedulerCluster>,
    coordinator: Arc<Coordinator>,
    stop: Arc<AtomicBool>,
}

impl CoreScheduler {
    /// A scheduler on an in-memory meta store; a store silent for `down_after` is Down and
    /// its replicas are rebuilt elsewhere.
    pub fn new(down_after: Duration, tick: Duration, seed: u64) -> Arc<CoreScheduler> {
        let meta = MetaStore::new(MemEngine::new());
        let cfg = ClusterConfig {
            store: StoreConfig {
                disconnect_after_ms: (down_after.as_millis() as u64 / 2).max(1),
                down_after_ms: down_after.as_millis() as u64,
            },
            ..ClusterConfig::default()
        };
        let cluster = Arc::new(
            SchedulerCluster::open(meta, Arc::new(SystemClock), cfg).expect("open scheduler"),
        );
        let coordinator = Arc::new(Coordinator::new(
            cluster.clone(),
            ScheduleConfig::default(),
            seed,
        ));
        let stop = Arc::new(AtomicBool::new(false));
        {
            let coordinator = coordinator.clone();
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("test-scheduler-tick".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        coordinator.tick();
                        std::thread::sleep(tick);
                    }
                })
                .expect("spawn scheduler ticker");
        }
        Arc::new(CoreScheduler {
            cluster,
            coordinator,
            stop,
        })
    }

    /// Bootstraps the scheduler with the harness's stores and regions (the harness writes
    /// them to disk itself), keeping later ids above every id they use.
    pub fn bootstrap(&self, stores: &[u64], regions: &[metapb::Region]) {
        let store = |id| metapb::Store {
            id,
            address: format!("store-{id}"),
            ..Default::default()
        };
        let first = regions.first().expect("at least one region").clone();
        self.cluster
            .bootstrap(store(stores[0]), first)
            .expect("bootstrap scheduler");
        for &s in &stores[1..] {
            self.cluster.put_store(store(s)).expect("put store");
        }
        let max = regions
            .iter()
            .flat_map(|r| r.peers.iter().map(|p| p.id).chain([r.id]))
            .max()
            .unwrap_or(0);
        self.cluster.ensure_id_above(max).expect("reserve ids");
        for r in &regions[1..] {
            let _ = self.cluster.region_heartbeat(RegionInfo::new(r.clone()));
        }
    }

    /// Registers a store that joins later.
    pub fn add_store(&self, id: u64) {
        self.cluster
            .put_store(metapb::Store {
                id,
                address: format!("store-{id}"),
                ..Default::default()
            })
            .expect("put store");
    }

    /// The scheduler's cluster state.
    pub fn cluster(&self) -> &Arc<SchedulerCluster> {
        &self.cluster
    }

    /// The coordinator (operators, counters).
    pub fn coordinator(&self) -> &Arc<Coordinator> {
        &self.coordinator
    }
}

impl Drop for CoreScheduler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl SchedulerClient for CoreScheduler {
    fn ask_batch_split(&self, region: &metapb::Region, count: usize) -> Result<Vec<SplitIds>> {
        let ids = self
            .cluster
            .ask_batch_split(region, count)
            .map_err(to_store_err)?;
        Ok(ids
            .into_iter()
            .map(|i| SplitIds {
                new_region_id: i.new_region_id,
                new_peer_ids: i.new_peer_ids,
            })
            .collect())
    }

    fn region_heartbeat(&self, hb: &RegionHeartbeat) -> Result<Option<Operator>> {
        let info = RegionInfo {
            region: hb.region.clone(),
            leader: (hb.leader.id != 0).then_some(hb.leader),
            pending_peers: hb.pending_peers.clone(),
            approximate_size: hb.approximate_size,
            approximate_keys: hb.approximate_keys,
        };
        let step = self
            .coordinator
            .region_heartbeat_with_operator(info)
            .map_err(to_store_err)?;
        Ok(step.map(|s| match s {
            OpStep::AddPeer(p) => Operator::AddPeer(p),
            OpStep::RemovePeer(p) => Operator::RemovePeer(p),
            OpStep::TransferLeader(p) => Operator::TransferLeader(p),
            OpStep::SplitRegion(keys) => Operator::Split(keys),
        }))
    }

    fn store_heartbeat(&self, hb: &StoreHeartbeat) -> Result<()> {
        self.cluster
            .store_heartbeat(&StoreStats {
                store_id: hb.store_id,
                capacity: hb.capacity,
                available: hb.available,
                used_size: hb.used_size,
                region_count: hb.region_count,
            })
            .map_err(to_store_err)
    }

    fn report_batch_split(&self, regions: &[metapb::Region]) -> Result<()> {
        self.cluster
            .report_batch_split(regions)
            .map_err(to_store_err)
    }
}
