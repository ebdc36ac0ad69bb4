//! TinyKV's `GenericTest`: concurrent clients under faults, with a history check.
//!
//! Each client `c` owns the keys `"c <j:08>"`. It alternates at random between putting the
//! next key (value `"x c j y"`) and scanning its own range; a scan must return exactly the
//! acknowledged puts, in order, each once. Meanwhile a chaos thread drops messages and/or
//! repartitions the stores, and between iterations the whole cluster may be restarted.
//! After each iteration every client's range is checked again, then deleted.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use rand::Rng;

use crate::cluster::Cluster;
use crate::transport::{DropFilter, PartitionFilter};

/// Parameters of one scenario.
#[derive(Clone, Debug)]
pub struct GenericTest {
    /// Concurrent clients.
    pub clients: usize,
    /// Drop a growing fraction of messages.
    pub unreliable: bool,
    /// Stop and restart every store between iterations.
    pub crash: bool,
    /// Repartition the stores at random every ~0.5–0.7 s.
    pub partitions: bool,
    /// Raft log GC count limit (0 = default); also checked as a bound on log length.
    pub max_raft_log: u64,
    /// Number of iterations.
    pub iterations: usize,
    /// How long clients run in each iteration.
    pub run_for: Duration,
    /// Stores in the cluster.
    pub stores: u64,
    /// Tiny split thresholds (300 B max, 200 B split) so regions split constantly.
    pub split: bool,
    /// Add and remove random peers during the first iteration.
    pub confchange: bool,
    /// Apply threads per store (`None`: the test configuration's, see
    /// `raftstore::Config::for_tests`).
    pub apply_pool_size: Option<usize>,
}

impl Default for GenericTest {
    fn default() -> Self {
        let secs = std::env::var("TESSERA_SCENARIO_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            // TinyKV runs 5 s; 4 keeps the whole suite inside its time budget on a 2-core
            // machine (33 scenarios x 3 iterations). Soak runs set more.
            .unwrap_or(4);
        GenericTest {
            clients: 1,
            unreliable: false,
            crash: false,
            partitions: false,
            max_raft_log: 0,
            iterations: 3,
            run_for: Duration::from_secs(secs),
            stores: 5,
            split: false,
            confchange: false,
            apply_pool_size: None,
        }
    }
}

/// Serializes scenario tests: they are timing-sensitive and this machine has two cores.
pub fn scenario_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn client_key(client: usize, j: usize) -> Vec<u8> {
    format!("{client} {j:08}").into_bytes()
}

fn client_value(client: usize, j: usize) -> Vec<u8> {
    format!("x {client} {j} y").into_bytes()
}

/// Checks that the client's range holds exactly puts `0..n`, in order.
pub fn check_client_range(cluster: &Cluster, client: usize, n: usize) {
    let got = cluster.scan(&client_key(client, 0), &client_key(client, n));
    let expected: Vec<(Vec<u8>, Vec<u8>)> = (0..n)
        .map(|j| (client_key(client, j), client_value(client, j)))
        .collect();
    if got != expected {
        let show = |v: &[(Vec<u8>, Vec<u8>)]| {
            v.iter()
                .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
                .collect::<Vec<_>>()
                .join(",")
        };
        panic!(
            "client {client}: expected {n} acknowledged puts in order, got {} [{}] vs [{}] (seed {})",
            got.len(),
            show(&got),
            show(&expected),
            cluster.seed
        );
    }
}

/// TinyKV's conf changer: pick a random region and store; remove the store's peer if it has
/// one and the region keeps at least one other, otherwise add a new peer there.
fn random_conf_change(cluster: &Cluster, stores: u64) {
    cluster.refresh_regions();
    let regions = cluster.cached_regions();
    if regions.is_empty() {
        return;
    }
    let (ri, store) = cluster
        .net()
        .with_rng(|r| (r.gen_range(0..regions.len()), r.gen_range(1..=stores)));
    let region = &regions[ri];
    match region.peers.iter().find(|p| p.store_id == store) {
        Some(p) if region.peers.len() > 1 => cluster.must_remove_peer(region.id, *p),
        Some(_) => {}
        None => {
            let peer = proto::metapb::Peer {
                id: cluster.scheduler().alloc_id(),
                store_id: store,
                ..Default::default()
            };
            cluster.must_add_peer(region.id, peer);
        }
    }
}

impl GenericTest {
    /// Runs the scenario; panics (with the seed) on any violation.
    pub fn run(&self) {
        let mut cfg = raftstore::Config::for_tests();
        if self.max_raft_log > 0 {
            cfg.raft_log_gc_count_limit = self.max_raft_log;
        }
        if self.apply_pool_size.is_some() {
            cfg.apply_pool_size = self.apply_pool_size;
        }
        if self.split {
            cfg.region_max_size = 300;
            cfg.region_split_size = 200;
        }
        let election = cfg.raft_base_tick_interval * cfg.raft_election_timeout_ticks as u32;
        let cluster = Arc::new(Cluster::new(self.stores, cfg));
        cluster.run();
        thread::sleep(election * 2);

        for iteration in 0..self.iterations {
            let started = Instant::now();
            let done = Arc::new(AtomicBool::new(false));
            let mut clients = Vec::new();
            for c in 0..self.clients {
                let cluster = cluster.clone();
                let done = done.clone();
                let seed = cluster.net().with_rng(|r| r.gen::<u64>());
                clients.push(thread::spawn(move || {
                    use rand::SeedableRng;
                    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
                    let mut j = 0usize;
                    while !done.load(Ordering::Relaxed) {
                        if rng.gen_bool(0.5) {
                            cluster.must_put(&client_key(c, j), &client_value(c, j));
                            j += 1;
                        } else {
                            check_client_range(&cluster, c, j);
                        }
                    }
                    j
                }));
            }
            let chaos = if self.unreliable || self.partitions {
                let cluster = cluster.clone();
                let done = done.clone();
                let (unreliable, partitions, stores) =
                    (self.unreliable, self.partitions, self.stores);
                Some(thread::spawn(move || {
                    thread::sleep(Duration::from_millis(300));
                    while !done.load(Ordering::Relaxed) {
                        if partitions {
                            cluster.clear_filters();
                            let (s1, s2) = cluster.net().with_rng(|r| {
                                let mut s1 = Vec::new();
                                let mut s2 = Vec::new();
                                for s in 1..=stores {
                                    if r.gen_bool(0.5) {
                                        s1.push(s)
                                    } else {
                                        s2.push(s)
                                    }
                                }
                                (s1, s2)
                            });
                            cluster.add_filter(PartitionFilter { s1, s2 });
                        }
                        if unreliable {
                            cluster.add_filter(DropFilter { rate: 0.1 });
                        }
                        let pause = cluster.net().with_rng(|r| r.gen_range(0..200));
                        thread::sleep(election + Duration::from_millis(pause));
                    }
                }))
            } else {
                None
            };
            // As in TinyKV, membership changes run during the first iteration only.
            let changer = (self.confchange && iteration == 0).then(|| {
                let cluster = cluster.clone();
                let done = done.clone();
                let stores = self.stores;
                thread::spawn(move || {
                    thread::sleep(Duration::from_millis(100));
                    while !done.load(Ordering::Relaxed) {
                        random_conf_change(&cluster, stores);
                        let pause = cluster.net().with_rng(|r| r.gen_range(0..200));
                        thread::sleep(Duration::from_millis(pause));
                    }
                })
            });
            thread::sleep(self.run_for);
            done.store(true, Ordering::Relaxed);
            // Heal the network first (as TinyKV does): a conf change or request stuck
            // behind the faults can only finish once messages flow again.
            if let Some(h) = chaos {
                h.join().expect("chaos thread");
                cluster.clear_filters();
                thread::sleep(election);
            }
            if let Some(h) = changer {
                if let Err(e) = h.join() {
                    std::panic::resume_unwind(e);
                }
            }
            let mut counts = Vec::new();
            for h in clients {
                match h.join() {
                    Ok(n) => counts.push(n),
                    Err(e) => std::panic::resume_unwind(e),
                }
            }
            if self.crash {
                cluster.stop_all();
                thread::sleep(Duration::from_millis(500));
                cluster.start_all();
            }
            // Whatever faults and restarts did: no overlapping regions, no stray data.
            crate::check::must_settle(&cluster);
            for (c, n) in counts.iter().enumerate() {
                check_client_range(&cluster, c, *n);
                let keys: Vec<_> = (0..*n).map(|j| client_key(c, j)).collect();
                cluster.must_delete_keys(&keys);
            }
            if self.max_raft_log > 0 {
                thread::sleep(Duration::from_secs(1));
                self.check_log_bound(&cluster);
            }
            if self.split {
                let first = cluster
                    .region_for_key(b"")
                    .expect("a region holds the empty key");
                assert!(
                    !first.end_key.is_empty(),
                    "no split happened: region {} still covers everything (seed {})",
                    first.id,
                    cluster.seed
                );
            }
            eprintln!(
                "iteration {iteration}: {} acknowledged puts by {} clients in {:?}",
                counts.iter().sum::<usize>(),
                self.clients,
                started.elapsed()
            );
        }
    }

    fn check_log_bound(&self, cluster: &Cluster) {
        for (store, state) in cluster.stored_regions() {
            let Some(region) = state.region else { continue };
            let st = cluster.apply_state(store, region.id).unwrap_or_default();
            let truncated = st.truncated_state.map_or(0, |t| t.index);
            let len = st.applied_index.saturating_sub(truncated);
            assert!(
                len <= 2 * self.max_raft_log,
                "store {store} region {}: applied {} - truncated {truncated} = {len} > 2 x {} (seed {})",
                region.id,
                st.applied_index,
                self.max_raft_log,
                cluster.seed
            );
        }
    }
}
