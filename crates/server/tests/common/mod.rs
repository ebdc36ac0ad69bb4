//! Shared set-up: a 3-store in-process cluster with a `KvService` in front of each store,
//! and helpers that address requests like a client (region, epoch, leader peer).

#![allow(dead_code)]

pub mod at;
pub mod tx;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use engine::FjallSnapshot;
use proto::kvrpcpb::{self, Context};
use proto::metapb;
use proto::tikvpb::tikv_server::Tikv;
use raftstore::Config;
use server::storage::txn::{EngineRangeDestroyer, TsoFuture};
use server::{ApiVersion, KvService, StorageConfig, TsoSource, TxnDeps};
use test_cluster::Cluster;
use tonic::Request;

pub type Service = KvService<FjallSnapshot>;

pub struct Env {
    pub cluster: Cluster,
    pub services: HashMap<u64, Service>,
    pub api: ApiVersion,
    /// The timestamp oracle every store's transactional layer asks.
    pub tso: Arc<TestTso>,
}

/// An in-process timestamp oracle shared by all stores of a test, as the scheduler's is:
/// `physical ms << 18 | logical`, strictly increasing, following the clock. It can be told
/// to fail, like an unreachable scheduler.
#[derive(Default)]
pub struct TestTso {
    last: AtomicU64,
    fail: AtomicBool,
    calls: AtomicU64,
}

impl TestTso {
    /// A fresh timestamp (what a client gets from the scheduler).
    pub fn next(&self) -> u64 {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock after 1970")
            .as_millis() as u64;
        let floor = now << 18;
        let prev = self
            .last
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |last| {
                Some(std::cmp::max(last + 1, floor))
            })
            .expect("always updates");
        std::cmp::max(prev + 1, floor)
    }

    /// Makes the stores' calls fail (`true`) or succeed again.
    pub fn set_failing(&self, fail: bool) {
        self.fail.store(fail, Ordering::SeqCst);
    }

    /// How many timestamps the stores asked for.
    pub fn store_calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }
}

/// What the stores hold: a shared oracle.
struct SharedTso(Arc<TestTso>);

impl TsoSource for SharedTso {
    fn get_ts(&self) -> TsoFuture<'_> {
        Box::pin(async move {
            self.0.calls.fetch_add(1, Ordering::SeqCst);
            if self.0.fail.load(Ordering::SeqCst) {
                return Err("test oracle told to fail".to_string());
            }
            Ok(self.0.next())
        })
    }
}

/// Transactional dependencies over `tso` and an engine.
pub fn txn_deps<E: engine::Engine>(tso: &Arc<TestTso>, engine: E) -> TxnDeps {
    TxnDeps {
        tso: Arc::new(SharedTso(tso.clone())),
        destroyer: Arc::new(EngineRangeDestroyer::new(engine)),
    }
}

/// Starts 3 stores with regions cut at `split_keys`, each behind a service configured
/// with `cfg`; `raft` adjusts the raftstore config.
pub fn start(split_keys: &[&[u8]], cfg: StorageConfig, raft: impl FnOnce(&mut Config)) -> Env {
    let mut rc = Config::for_tests();
    raft(&mut rc);
    let cluster = Cluster::new(3, rc);
    let keys: Vec<Vec<u8>> = split_keys.iter().map(|k| k.to_vec()).collect();
    cluster.run_with_regions(&keys);
    let tso = Arc::new(TestTso::default());
    let services = (1..=3)
        .map(|id| {
            let router = cluster.router(id).expect("store running");
            let deps = txn_deps(&tso, cluster.engine(id));
            (id, KvService::new(id, router, cfg.clone(), deps))
        })
        .collect();
    Env {
        cluster,
        services,
        api: cfg.api_version,
        tso,
    }
}

impl Env {
    /// `key` as the engine stores it: memcomparable-encoded in API V2, as is.
    pub fn stored_key(&self, key: &[u8]) -> Vec<u8> {
        match self.api {
            ApiVersion::V1 => key.to_vec(),
            ApiVersion::V2 => codec::bytes::encode_bytes(key),
        }
    }

    /// The region holding (user) `key`, as the stores know it now.
    pub fn region(&self, key: &[u8]) -> metapb::Region {
        self.cluster.refresh_regions();
        self.cluster
            .region_for_key(&self.stored_key(key))
            .expect("a region covers every key")
    }

    /// A context addressing `region`'s peer on `store`.
    pub fn ctx(&self, region: &metapb::Region, store: u64) -> Context {
        Context {
            region_id: region.id,
            region_epoch: region.region_epoch,
            peer: raftstore::util::find_peer(region, store).copied(),
            api_version: self.api.to_proto() as i32,
            ..Default::default()
        }
    }

    /// The store leading the region of `key` and a context for it, found by probing each
    /// store with a RawGet until one answers without a region error.
    pub async fn leader(&self, key: &[u8]) -> (u64, Context) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let region = self.region(key);
            for store in 1..=3 {
                let ctx = self.ctx(&region, store);
                let resp = self.services[&store]
                    .raw_get(Request::new(kvrpcpb::RawGetRequest {
                        context: Some(ctx.clone()),
                        key: key.to_vec(),
                        ..Default::default()
                    }))
                    .await
                    .expect("raw_get never fails at the gRPC level")
                    .into_inner();
                if resp.region_error.is_none() {
                    return (store, ctx);
                }
            }
            assert!(
                Instant::now() < deadline,
                "no leader for the region of {key:?} (seed {})",
                self.cluster.seed
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn svc(&self, store: u64) -> &Service {
        &self.services[&store]
    }
}

/// CRC-64/XZ computed bit by bit from the catalogue parameters (reflected ECMA-182
/// polynomial, all-ones init and final xor): an implementation independent of the one
/// under test.
pub fn crc64_xz(data: &[u8]) -> u64 {
    const POLY_REFLECTED: u64 = 0xC96C_5795_D787_0F42;
    let mut crc = u64::MAX;
    for &b in data {
        crc ^= b as u64;
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ POLY_REFLECTED
            } else {
                crc >> 1
            };
        }
    }
    crc ^ u64::MAX
}

pub fn kv(key: &[u8], value: &[u8]) -> kvrpcpb::KvPair {
    kvrpcpb::KvPair {
        key: key.to_vec(),
        value: value.to_vec(),
        error: None,
    }
}

pub fn range(start: &[u8], end: &[u8]) -> kvrpcpb::KeyRange {
    kvrpcpb::KeyRange {
        start_key: start.to_vec(),
        end_key: end.to_vec(),
    }
}

pub fn keys_of(pairs: &[kvrpcpb::KvPair]) -> Vec<Vec<u8>> {
    pairs.iter().map(|p| p.key.clone()).collect()
}
