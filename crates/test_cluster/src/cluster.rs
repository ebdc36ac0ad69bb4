//! An in-process cluster of N stores on real on-disk engines.
//!
//! Each store has its own directory (`kv/` for fjall, `raft/` for raft-engine). Stopping a
//! store joins all its threads and closes both engines; starting it again reopens them from
//! disk, so a restart exercises the same recovery path as a process restart (what is not
//! exercised: losing writes that were in the OS page cache but not fsynced).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use engine::{Engine, FjallConfig, FjallEngine};
use parking_lot::Mutex;
use proto::metapb;
use proto::raft_serverpb::{RaftApplyState, RegionLocalState};
use raftstore::storage::bootstrap::{bootstrap_store, load_region_states, write_initial_region};
use raftstore::storage::log_fs::{DiskFaults, LogFileSystem};
use raftstore::storage::peer_storage::{load_apply_state, load_region_state};
use raftstore::{Config, RaftLogEngine, Store};
use rand::SeedableRng;

use crate::scheduler::MockScheduler;
use crate::transport::{
    Filter, IsolationFilter, PartitionFilter, SimNet, SimTransport, StoreRouter,
};
use raftstore::scheduler_client::SchedulerClient;

/// Cluster id written into every store.
pub const CLUSTER_ID: u64 = 1;

struct RunningStore {
    store: Store<FjallEngine>,
    engine: FjallEngine,
    raft_engine: RaftLogEngine,
    /// The raft log's disk, through which [`Cluster::crash_store`] loses what was not
    /// fsynced.
    disk: DiskFaults,
}

/// N in-process stores connected by a [`SimNet`].
pub struct Cluster {
    /// Store configuration (used at every start).
    pub cfg: Config,
    /// Number of stores; ids are 1..=count.
    pub count: u64,
    /// The seed of the harness RNG.
    pub seed: u64,
    dir: tempfile::TempDir,
    net: Arc<SimNet>,
    stores: Mutex<HashMap<u64, RunningStore>>,
    pub(crate) leader_hints: Mutex<HashMap<u64, u64>>,
    pub(crate) region_cache: Mutex<Vec<metapb::Region>>,
    scheduler: Arc<MockScheduler>,
    /// What each store talks to, by store id: the mock by default, a real scheduler core,
    /// or one networked client per store.
    clients: ClientFactory,
}

/// Gives the scheduler client of a store each time it starts.
pub type ClientFactory = Box<dyn Fn(u64) -> Arc<dyn SchedulerClient> + Send + Sync>;

/// The seed a cluster uses: `TESSERA_TEST_SEED` if set, else a random one.
pub fn pick_seed() -> u64 {
    std::env::var("TESSERA_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random)
}

impl Cluster {
    /// A cluster of `count` stores (not started) talking to the in-process mock scheduler.
    pub fn new(count: u64, cfg: Config) -> Cluster {
        let mock = Arc::new(MockScheduler::default());
        Self::with_scheduler(count, cfg, mock.clone(), mock)
    }

    /// A cluster whose stores talk to `client`; `mock` still serves the harness's own id
    /// needs and lookups.
    pub fn with_scheduler(
        count: u64,
        cfg: Config,
        mock: Arc<MockScheduler>,
        client: Arc<dyn SchedulerClient>,
    ) -> Cluster {
        Self::with_scheduler_per_store(count, cfg, mock, Box::new(move |_| client.clone()))
    }

    /// A cluster whose store `id` talks to `clients(id)`, asked at every start of the store
    /// (a client that pushes operators needs one per store: each store installs its own
    /// operator sink). `mock` still serves the harness's own id needs and lookups.
    pub fn with_scheduler_per_store(
        count: u64,
        cfg: Config,
        mock: Arc<MockScheduler>,
        clients: ClientFactory,
    ) -> Cluster {
        crate::init_logging();
        let seed = pick_seed();
        eprintln!("test cluster seed: {seed} (replay the harness's choices with TESSERA_TEST_SEED={seed})");
        Cluster {
            cfg,
            count,
            seed,
            dir: tempfile::Builder::new()
                .prefix("tessera-cluster")
                .tempdir()
                .expect("temp dir"),
            net: SimNet::new(rand::rngs::StdRng::seed_from_u64(seed)),
            stores: Mutex::new(HashMap::new()),
            leader_hints: Mutex::new(HashMap::new()),
            region_cache: Mutex::new(Vec::new()),
            scheduler: mock,
            clients,
        }
    }

    /// The in-process scheduler every store talks to.
    pub fn scheduler(&self) -> &Arc<MockScheduler> {
        &self.scheduler
    }

    /// The shared network.
    pub fn net(&self) -> &Arc<SimNet> {
        &self.net
    }

    fn store_dir(&self, id: u64) -> PathBuf {
        self.dir.path().join(format!("store{id}"))
    }

    /// Opens a store's engines; its raft log goes through a disk that can crash.
    fn open_engines(&self, id: u64) -> (FjallEngine, RaftLogEngine, DiskFaults) {
        let dir = self.store_dir(id);
        let kv = FjallEngine::open(
            &dir.join("kv"),
            &FjallConfig {
                cache_size: 8 << 20,
                ..Default::default()
            },
        )
        .expect("open kv engine");
        let disk = DiskFaults::new();
        let raft = RaftLogEngine::open_on(
            &dir.join("raft"),
            self.cfg.raft_log_purge_threshold,
            LogFileSystem::Faulty(disk.clone()),
        )
        .expect("open raft engine");
        (kv, raft, disk)
    }

    /// Bootstraps every store with one region `["", "")` replicated on all of them, then
    /// starts them.
    pub fn run(&self) {
        self.run_with_regions(&[]);
    }

    /// Bootstraps regions cut at `split_keys` (sorted), each replicated on every store, then
    /// starts all stores. Region `i` (from 1) has peer id `i * 1000 + store` on each store.
    pub fn run_with_regions(&self, split_keys: &[Vec<u8>]) {
        let all: Vec<u64> = (1..=self.count).collect();
        self.run_on_stores(&all, split_keys);
    }

    /// Like [`Cluster::run_with_regions`], but the regions are replicated on `stores` only
    /// and only those are started; the other stores are bootstrapped empty, ready for
    /// [`Cluster::start_store`].
    pub fn run_on_stores(&self, stores: &[u64], split_keys: &[Vec<u8>]) {
        let mut bounds = vec![Vec::new()];
        bounds.extend(split_keys.iter().cloned());
        bounds.push(Vec::new());
        let regions: Vec<metapb::Region> = bounds
            .windows(2)
            .enumerate()
            .map(|(i, w)| {
                let id = i as u64 + 1;
                metapb::Region {
                    id,
                    start_key: w[0].clone(),
                    end_key: w[1].clone(),
                    region_epoch: Some(metapb::RegionEpoch {
                        conf_ver: raftstore::util::INIT_EPOCH_CONF_VER,
                        version: raftstore::util::INIT_EPOCH_VER,
                    }),
                    peers: stores
                        .iter()
                        .map(|&s| metapb::Peer {
                            id: if split_keys.is_empty() {
                                s
                            } else {
                                id * 1000 + s
                            },
                            store_id: s,
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                }
            })
            .collect();
        for id in 1..=self.count {
            let (kv, raft, _) = self.open_engines(id);
            bootstrap_store(&kv, CLUSTER_ID, id).expect("bootstrap store");
            if stores.contains(&id) {
                for r in &regions {
                    write_initial_region(&kv, &raft, r).expect("write initial region");
                }
            }
        }
        *self.region_cache.lock() = regions;
        for &id in stores {
            self.start_store(id);
        }
    }

    /// Starts store `id` on its existing data.
    pub fn start_store(&self, id: u64) {
        let mut stores = self.stores.lock();
        assert!(!stores.contains_key(&id), "store {id} is already running");
        let (kv, raft, disk) = self.open_engines(id);
        self.net.reconnect(id);
        let transport = SimTransport::new(id, self.net.clone());
        let store = Store::start(
            self.cfg.clone(),
            kv.clone(),
            raft.clone(),
            transport,
            (self.clients)(id),
        )
        .expect("start store");
        self.net.register(id, store.router());
        stores.insert(
            id,
            RunningStore {
                store,
                engine: kv,
                raft_engine: raft,
                disk,
            },
        );
    }

    /// Stops store `id`, closing its engines; its data stays on disk.
    pub fn stop_store(&self, id: u64) {
        let running = self.stores.lock().remove(&id);
        if let Some(r) = running {
            self.net.unregister(id);
            r.store.stop();
            drop(r.engine);
        }
        self.leader_hints.lock().retain(|_, s| *s != id);
    }

    /// Store `id` loses power: it is cut off from the network, it stops, and its raft log
    /// then loses everything it had not fsynced (with `torn`, half of the last unsynced
    /// write stays). Returns the bytes lost. Restart it with [`Cluster::start_store`].
    ///
    /// The store stops before its disk forgets, so nothing acts on the lost writes: a
    /// store applies only entries its log reported durable, and none of what it does
    /// after the cut reaches anyone. What is modelled is the loss of the OS's unsynced
    /// data, which is what an fsync guards against. The KV engine keeps its writes (fjall
    /// cannot be rolled back), which leaves nothing out: the KV engine is never synced
    /// before the log, and its data never runs ahead of the synced log.
    pub fn crash_store(&self, id: u64, torn: bool) -> u64 {
        let running = self.stores.lock().remove(&id);
        let mut lost = 0;
        if let Some(r) = running {
            self.net.unregister(id);
            r.store.stop();
            // Before the engines close: raft-engine syncs its active file when it closes,
            // which a power loss does not wait for.
            lost = r.disk.crash(torn);
            drop(r.engine);
            drop(r.raft_engine);
        }
        self.leader_hints.lock().retain(|_, s| *s != id);
        lost
    }

    /// Stops every store.
    pub fn stop_all(&self) {
        for id in 1..=self.count {
            self.stop_store(id);
        }
    }

    /// Starts every stopped store.
    pub fn start_all(&self) {
        for id in 1..=self.count {
            if !self.is_running(id) {
                self.start_store(id);
            }
        }
    }

    /// True if store `id` is running.
    pub fn is_running(&self, id: u64) -> bool {
        self.stores.lock().contains_key(&id)
    }

    /// The router of a running store.
    pub fn router(&self, id: u64) -> Option<StoreRouter> {
        self.stores.lock().get(&id).map(|r| r.store.router())
    }

    /// The KV engine of a running store.
    pub fn engine(&self, id: u64) -> FjallEngine {
        self.stores
            .lock()
            .get(&id)
            .map(|r| r.engine.clone())
            .unwrap_or_else(|| panic!("store {id} is not running (seed {})", self.seed))
    }

    /// The raft log engine of a running store.
    pub fn raft_engine(&self, id: u64) -> RaftLogEngine {
        self.stores
            .lock()
            .get(&id)
            .map(|r| r.raft_engine.clone())
            .unwrap_or_else(|| panic!("store {id} is not running (seed {})", self.seed))
    }

    /// Waits until `f` holds, polling every 20 ms; fails the test, naming `what` and the
    /// seed, after `timeout` (generous: scenario tests assert behaviour, not timing).
    pub fn wait_until(&self, what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
        let deadline = std::time::Instant::now() + timeout;
        while !f() {
            assert!(
                std::time::Instant::now() < deadline,
                "{what} never happened (seed {})",
                self.seed
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Writer counters of a running store.
    pub fn stats(&self, id: u64) -> Arc<raftstore::StoreStats> {
        self.stores
            .lock()
            .get(&id)
            .expect("running store")
            .store
            .stats()
    }

    /// Adds a network filter.
    pub fn add_filter(&self, f: impl Filter + 'static) {
        self.net.add_filter(Arc::new(f));
    }

    /// Removes every network filter.
    pub fn clear_filters(&self) {
        self.net.clear_filters();
    }

    /// Cuts `s1` off from `s2`.
    pub fn partition(&self, s1: &[u64], s2: &[u64]) {
        self.add_filter(PartitionFilter {
            s1: s1.to_vec(),
            s2: s2.to_vec(),
        });
    }

    /// Cuts store `id` off from every other store.
    pub fn isolate(&self, id: u64) {
        self.add_filter(IsolationFilter(id));
    }

    /// Region states stored on running stores (for lookups and checks).
    pub fn stored_regions(&self) -> Vec<(u64, RegionLocalState)> {
        let engines: Vec<(u64, FjallEngine)> = self
            .stores
            .lock()
            .iter()
            .map(|(id, r)| (*id, r.engine.clone()))
            .collect();
        let mut out = Vec::new();
        for (id, e) in engines {
            for st in load_region_states(&e).expect("load region states") {
                out.push((id, st));
            }
        }
        out
    }

    /// A region's apply state on a running store.
    pub fn apply_state(&self, store: u64, region_id: u64) -> Option<RaftApplyState> {
        load_apply_state(&self.engine(store), region_id).expect("read apply state")
    }

    /// A region's truncated index on a running store.
    pub fn truncated_index(&self, store: u64, region_id: u64) -> u64 {
        self.apply_state(store, region_id)
            .and_then(|s| s.truncated_state)
            .map_or(0, |t| t.index)
    }

    /// A region's local state on a running store.
    pub fn region_state(&self, store: u64, region_id: u64) -> Option<RegionLocalState> {
        load_region_state(&self.engine(store), region_id).expect("read region state")
    }

    /// Reads a user key straight from a store's KV engine.
    pub fn engine_get(&self, store: u64, cf: engine::CfName, key: &[u8]) -> Option<Vec<u8>> {
        self.engine(store)
            .get(cf, &codec::keys::data_key(key))
            .expect("engine read")
    }

    /// Waits until store `store` holds `value` at `key` in `cf`.
    pub fn must_get_cf_equal(&self, store: u64, cf: engine::CfName, key: &[u8], value: &[u8]) {
        for _ in 0..300 {
            if self.engine_get(store, cf, key).as_deref() == Some(value) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "store {store}: {key:?} in {cf} is {:?}, expected {value:?} (seed {})",
            self.engine_get(store, cf, key),
            self.seed
        );
    }

    /// Waits until store `store` has no `key` in `cf`.
    pub fn must_get_cf_none(&self, store: u64, cf: engine::CfName, key: &[u8]) {
        for _ in 0..300 {
            if self.engine_get(store, cf, key).is_none() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "store {store}: {key:?} in {cf} still present (seed {})",
            self.seed
        );
    }

    /// [`Self::must_get_cf_equal`] on CF default.
    pub fn must_get_equal(&self, store: u64, key: &[u8], value: &[u8]) {
        self.must_get_cf_equal(store, engine::CF_DEFAULT, key, value)
    }

    /// [`Self::must_get_cf_none`] on CF default.
    pub fn must_get_none(&self, store: u64, key: &[u8]) {
        self.must_get_cf_none(store, engine::CF_DEFAULT, key)
    }

    /// Stops every store and removes the data.
    pub fn shutdown(&self) {
        self.clear_filters();
        self.stop_all();
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.shutdown();
    }
}
