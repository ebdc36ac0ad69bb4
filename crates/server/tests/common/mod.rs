//! Shared set-up: a 3-store in-process cluster with a `KvService` in front of each store,
//! and helpers that address requests like a client (region, epoch, leader peer).

#![allow(dead_code)]

pub mod at;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use engine::FjallSnapshot;
use proto::kvrpcpb::{self, Context};
use proto::metapb;
use proto::tikvpb::tikv_server::Tikv;
use raftstore::Config;
use server::{ApiVersion, KvService, StorageConfig};
use test_cluster::Cluster;
use tonic::Request;

pub type Service = KvService<FjallSnapshot>;

pub struct Env {
    pub cluster: Cluster,
    pub services: HashMap<u64, Service>,
    pub api: ApiVersion,
}

/// Starts 3 stores with regions cut at `split_keys`, each behind a service configured
/// with `cfg`; `raft` adjusts the raftstore config.
pub fn start(split_keys: &[&[u8]], cfg: StorageConfig, raft: impl FnOnce(&mut Config)) -> Env {
    let mut rc = Config::for_tests();
    raft(&mut rc);
    let cluster = Cluster::new(3, rc);
    let keys: Vec<Vec<u8>> = split_keys.iter().map(|k| k.to_vec()).collect();
    cluster.run_with_regions(&keys);
    let services = (1..=3)
        .map(|id| {
            let router = cluster.router(id).expect("store running");
            (id, KvService::new(id, router, cfg.clone()))
        })
        .collect();
    Env {
        cluster,
        services,
        api: cfg.api_version,
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
