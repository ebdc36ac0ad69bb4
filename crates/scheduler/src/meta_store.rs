//! Persistence of the cluster metadata in an [`Engine`].
//!
//! Everything lives in CF `default` under the prefix `sched/`, so the scheduler can share an
//! engine with other users without clashing:
//!
//! | key                              | value                                  |
//! |----------------------------------|----------------------------------------|
//! | `sched/cluster_id`               | u64, big endian                        |
//! | `sched/bootstrapped`             | `[1]` once bootstrap has been written  |
//! | `sched/id_window`                | u64: no id above it has been handed out |
//! | `sched/tso_window`               | u64: no timestamp's physical ms above it |
//! | `sched/store/` + id (8 bytes BE) | `metapb::Store`, prost-encoded         |
//! | `sched/region/` + id (8 bytes BE)| `metapb::Region`, prost-encoded        |
//!
//! Ids are big endian so that a prefix scan returns stores and regions in id order.
//! Every write but a region's is synced: the id and TSO windows are promises about what
//! was handed out, and a promise that a crash can forget is worthless. Regions are written
//! to the engine's journal (a crash of the process loses none) without waiting for the
//! disk: region metadata is a copy of what the stores hold, which their leaders report
//! again at every heartbeat, so a power loss that forgets the last ones costs one
//! heartbeat interval of stale routing, not correctness (an older saved region is
//! replaced by the newer ones' heartbeats under the usual staleness rules). PD saves its
//! regions lazily for the same reason. An fsync per changed region capped the first
//! heartbeat round of 100,000 regions at about 6,000 heartbeats a second.

use std::sync::Arc;

use engine::{Engine, KvPair, Snapshot, WriteBatch, CF_DEFAULT};
use prost::Message;
use proto::metapb;

use crate::{Error, Result};

const CLUSTER_ID_KEY: &[u8] = b"sched/cluster_id";
const BOOTSTRAPPED_KEY: &[u8] = b"sched/bootstrapped";
const ID_WINDOW_KEY: &[u8] = b"sched/id_window";
const TSO_WINDOW_KEY: &[u8] = b"sched/tso_window";
const GC_SAFE_POINT_KEY: &[u8] = b"sched/gc_safe_point";
const STORE_PREFIX: &[u8] = b"sched/store/";
const REGION_PREFIX: &[u8] = b"sched/region/";

/// One write of a batch.
enum Op {
    Put(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
}

/// The part of [`Engine`] the meta store needs, in a form that can be boxed: `Engine` has
/// associated types, so it cannot be a trait object, and making every scheduler type
/// generic over the engine would leak into all their signatures for no benefit.
trait MetaKv: Send + Sync + 'static {
    fn get(&self, key: &[u8]) -> engine::Result<Option<Vec<u8>>>;
    fn write_ops(&self, ops: Vec<Op>, sync: bool) -> engine::Result<()>;
    fn scan(&self, start: &[u8], end: &[u8]) -> engine::Result<Vec<KvPair>>;
}

impl<E: Engine> MetaKv for E {
    fn get(&self, key: &[u8]) -> engine::Result<Option<Vec<u8>>> {
        Engine::get(self, CF_DEFAULT, key)
    }

    fn write_ops(&self, ops: Vec<Op>, sync: bool) -> engine::Result<()> {
        let mut batch = self.write_batch();
        for op in ops {
            match op {
                Op::Put(k, v) => batch.put(CF_DEFAULT, &k, &v),
                Op::Delete(k) => batch.delete(CF_DEFAULT, &k),
            }
        }
        Engine::write(self, batch, sync)
    }

    fn scan(&self, start: &[u8], end: &[u8]) -> engine::Result<Vec<KvPair>> {
        self.snapshot()
            .scan(CF_DEFAULT, start, end, false)
            .collect()
    }
}

/// Durable home of the cluster metadata. Cheap to clone; clones share the engine.
#[derive(Clone)]
pub struct MetaStore {
    kv: Arc<dyn MetaKv>,
}

impl std::fmt::Debug for MetaStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetaStore").finish_non_exhaustive()
    }
}

fn id_key(prefix: &[u8], id: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + 8);
    k.extend_from_slice(prefix);
    k.extend_from_slice(&id.to_be_bytes());
    k
}

/// The smallest key greater than every key starting with `prefix` (prefixes here end
/// with `/`, so bumping the last byte cannot overflow).
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    if let Some(last) = end.last_mut() {
        *last += 1;
    }
    end
}

fn decode_u64(key: &[u8], value: &[u8]) -> Result<u64> {
    let bytes: [u8; 8] = value.try_into().map_err(|_| {
        Error::Corrupt(format!(
            "{} holds {} bytes, want 8",
            String::from_utf8_lossy(key),
            value.len()
        ))
    })?;
    Ok(u64::from_be_bytes(bytes))
}

impl MetaStore {
    /// A meta store over `engine` (an engine of its own in production, or shared: the keys
    /// carry a prefix).
    pub fn new<E: Engine>(engine: E) -> MetaStore {
        MetaStore {
            kv: Arc::new(engine),
        }
    }

    fn load_u64(&self, key: &[u8]) -> Result<Option<u64>> {
        match self.kv.get(key)? {
            Some(v) => Ok(Some(decode_u64(key, &v)?)),
            None => Ok(None),
        }
    }

    fn save_u64(&self, key: &[u8], value: u64) -> Result<()> {
        self.kv.write_ops(
            vec![Op::Put(key.to_vec(), value.to_be_bytes().to_vec())],
            true,
        )?;
        Ok(())
    }

    /// The cluster id, if one was ever saved.
    pub fn load_cluster_id(&self) -> Result<Option<u64>> {
        self.load_u64(CLUSTER_ID_KEY)
    }

    /// Saves the cluster id.
    pub fn save_cluster_id(&self, id: u64) -> Result<()> {
        self.save_u64(CLUSTER_ID_KEY, id)
    }

    /// The id allocator's high-water mark.
    pub fn load_id_window(&self) -> Result<Option<u64>> {
        self.load_u64(ID_WINDOW_KEY)
    }

    /// Saves the id allocator's high-water mark.
    pub fn save_id_window(&self, end: u64) -> Result<()> {
        self.save_u64(ID_WINDOW_KEY, end)
    }

    /// The largest physical time (ms) the timestamp oracle may use before saving again.
    pub fn load_tso_window(&self) -> Result<Option<u64>> {
        self.load_u64(TSO_WINDOW_KEY)
    }

    /// Saves the timestamp oracle's window.
    pub fn save_tso_window(&self, max_physical_ms: u64) -> Result<()> {
        self.save_u64(TSO_WINDOW_KEY, max_physical_ms)
    }

    /// The GC safe point, if one was ever saved.
    pub fn load_gc_safe_point(&self) -> Result<Option<u64>> {
        self.load_u64(GC_SAFE_POINT_KEY)
    }

    /// Saves the GC safe point (synced: once acknowledged, collectors may act on it).
    pub fn save_gc_safe_point(&self, safe_point: u64) -> Result<()> {
        self.save_u64(GC_SAFE_POINT_KEY, safe_point)
    }

    /// True once [`MetaStore::save_bootstrap`] has completed.
    pub fn is_bootstrapped(&self) -> Result<bool> {
        Ok(self.kv.get(BOOTSTRAPPED_KEY)?.is_some())
    }

    /// Writes the first store, the first region and the bootstrapped flag in one batch, so
    /// a crash leaves either a bootstrapped cluster with both or nothing at all.
    pub fn save_bootstrap(&self, store: &metapb::Store, region: &metapb::Region) -> Result<()> {
        self.kv.write_ops(
            vec![
                Op::Put(id_key(STORE_PREFIX, store.id), store.encode_to_vec()),
                Op::Put(id_key(REGION_PREFIX, region.id), region.encode_to_vec()),
                Op::Put(BOOTSTRAPPED_KEY.to_vec(), vec![1]),
            ],
            true,
        )?;
        Ok(())
    }

    /// Saves (or replaces) a store.
    pub fn save_store(&self, store: &metapb::Store) -> Result<()> {
        self.kv.write_ops(
            vec![Op::Put(
                id_key(STORE_PREFIX, store.id),
                store.encode_to_vec(),
            )],
            true,
        )?;
        Ok(())
    }

    /// Every saved store, in id order.
    pub fn load_stores(&self) -> Result<Vec<metapb::Store>> {
        self.load_all(STORE_PREFIX, |v| metapb::Store::decode(v))
    }

    /// Saves `region` and deletes the regions it replaced, atomically: the saved regions
    /// never overlap, so a restart rebuilds the same index. Not synced (see the module
    /// docs): the engine keeps writes in order, so a power loss forgets only the newest.
    pub fn save_region(&self, region: &metapb::Region, replaced: &[u64]) -> Result<()> {
        let mut ops = Vec::with_capacity(replaced.len() + 1);
        for id in replaced {
            ops.push(Op::Delete(id_key(REGION_PREFIX, *id)));
        }
        ops.push(Op::Put(
            id_key(REGION_PREFIX, region.id),
            region.encode_to_vec(),
        ));
        self.kv.write_ops(ops, false)?;
        Ok(())
    }

    /// Every saved region, in id order.
    pub fn load_regions(&self) -> Result<Vec<metapb::Region>> {
        self.load_all(REGION_PREFIX, |v| metapb::Region::decode(v))
    }

    fn load_all<T>(
        &self,
        prefix: &[u8],
        decode: impl Fn(&[u8]) -> std::result::Result<T, prost::DecodeError>,
    ) -> Result<Vec<T>> {
        let pairs = self.kv.scan(prefix, &prefix_end(prefix))?;
        pairs
            .iter()
            .map(|(k, v)| {
                decode(v)
                    .map_err(|e| Error::Corrupt(format!("{}: {e}", String::from_utf8_lossy(k))))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::MemEngine;

    fn region(id: u64, start: &[u8], end: &[u8]) -> metapb::Region {
        metapb::Region {
            id,
            start_key: start.to_vec(),
            end_key: end.to_vec(),
            region_epoch: Some(metapb::RegionEpoch {
                conf_ver: 1,
                version: 1,
            }),
            peers: vec![metapb::Peer {
                id: id + 100,
                store_id: 1,
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn values_round_trip_and_start_empty() {
        let engine = MemEngine::new();
        let meta = MetaStore::new(engine.clone());
        assert_eq!(meta.load_cluster_id().unwrap(), None);
        assert_eq!(meta.load_id_window().unwrap(), None);
        assert_eq!(meta.load_tso_window().unwrap(), None);
        assert!(!meta.is_bootstrapped().unwrap());
        assert!(meta.load_stores().unwrap().is_empty());

        meta.save_cluster_id(42).unwrap();
        meta.save_id_window(1000).unwrap();
        meta.save_tso_window(u64::MAX - 1).unwrap();
        // A second handle over the same engine sees the same data.
        let again = MetaStore::new(engine);
        assert_eq!(again.load_cluster_id().unwrap(), Some(42));
        assert_eq!(again.load_id_window().unwrap(), Some(1000));
        assert_eq!(again.load_tso_window().unwrap(), Some(u64::MAX - 1));
    }

    #[test]
    fn bootstrap_writes_store_region_and_flag() {
        let meta = MetaStore::new(MemEngine::new());
        let store = metapb::Store {
            id: 1,
            address: "s1".into(),
            ..Default::default()
        };
        meta.save_bootstrap(&store, &region(2, b"", b"")).unwrap();
        assert!(meta.is_bootstrapped().unwrap());
        assert_eq!(meta.load_stores().unwrap(), vec![store]);
        assert_eq!(meta.load_regions().unwrap(), vec![region(2, b"", b"")]);
    }

    #[test]
    fn regions_in_id_order_and_replaced_ones_deleted() {
        let meta = MetaStore::new(MemEngine::new());
        // 256 sorts after 3 only with a big-endian encoding.
        meta.save_region(&region(256, b"m", b""), &[]).unwrap();
        meta.save_region(&region(3, b"", b"m"), &[]).unwrap();
        let ids: Vec<u64> = meta.load_regions().unwrap().iter().map(|r| r.id).collect();
        assert_eq!(ids, vec![3, 256]);

        meta.save_region(&region(7, b"", b""), &[3, 256]).unwrap();
        let ids: Vec<u64> = meta.load_regions().unwrap().iter().map(|r| r.id).collect();
        assert_eq!(ids, vec![7]);
    }

    #[test]
    fn garbage_is_reported_as_corrupt() {
        let engine = MemEngine::new();
        let mut batch = engine.write_batch();
        batch.put(CF_DEFAULT, ID_WINDOW_KEY, b"short");
        batch.put(CF_DEFAULT, &id_key(STORE_PREFIX, 1), &[0xff, 0xff, 0xff]);
        engine.write(batch, true).unwrap();
        let meta = MetaStore::new(engine);
        assert!(matches!(meta.load_id_window(), Err(Error::Corrupt(_))));
        assert!(matches!(meta.load_stores(), Err(Error::Corrupt(_))));
    }
}
