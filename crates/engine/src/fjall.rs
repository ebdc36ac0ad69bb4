//! The on-disk engine on fjall (an LSM-tree), one keyspace per column family.
//!
//! Durability is explicit. fjall writes its journal to the OS on every batch commit (so
//! a process crash loses nothing), but only `persist(SyncAll)` survives a power loss;
//! that happens on `write(.., sync = true)` and [`Engine::sync`].
//!
//! fjall gives every item of one batch the same sequence number, so two operations on the
//! same key inside one batch would not reliably resolve to "the last one wins". Our batch
//! therefore keeps only the last operation per (CF, key) and builds the fjall batch at
//! write time.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;

use fjall::config::CompressionPolicy;
use fjall::{CompressionType, Database, Keyspace, KeyspaceCreateOptions, PersistMode, Readable};

use crate::{
    cf_index, CfName, Engine, Error, KvIter, Result, Snapshot, WriteBatch, ALL_CFS, MAX_KEY_LEN,
};

/// Tunables of the fjall engine. The defaults are for a store under sustained writes on a
/// small machine (docs/performance.md, "Sustained load"); the memtable and compression
/// settings apply to column families created by the open (a store's are created once,
/// when its directory is new), the journal cap to every open.
#[derive(Clone, Debug)]
pub struct FjallConfig {
    /// Block cache size in bytes.
    pub cache_size: u64,
    /// Journal files kept before fjall flushes the column families that still pin the
    /// oldest one (fjall's `max_journaling_size`, at least 64 MiB). A column family with
    /// few writes (`raft`, `lock`, `write` under the raw API) otherwise keeps every
    /// journal alive until fjall's own 512 MiB cap: the journals then hold a second copy
    /// of all recent data.
    pub max_journal_size: u64,
    /// Memtable size of each column family: the unit of a flush, and of the burst of
    /// disk writes and CPU that comes with it.
    pub memtable_size: u64,
    /// Use a memtable between 3/4 of `memtable_size` and all of it, picked at random when
    /// the column families are created (fjall keeps it across restarts; see
    /// [`memtable_size_for`]), so that replicas of the same data on one machine do not
    /// flush and compact at the same moment.
    pub spread_memtable_size: bool,
    /// lz4 for data blocks on every level. fjall's default leaves levels 0 and 1
    /// uncompressed, where a store of a few hundred MB keeps all of its data, and where
    /// flushes and the large L0 -> L1 compactions write it.
    pub compress_all_levels: bool,
}

impl Default for FjallConfig {
    fn default() -> Self {
        FjallConfig {
            cache_size: 64 * 1024 * 1024,
            max_journal_size: 128 * 1024 * 1024,
            memtable_size: 64 * 1024 * 1024,
            spread_memtable_size: true,
            compress_all_levels: true,
        }
    }
}

/// The memtable size an open uses: between 3/4 of `max` and `max`, chosen by `seed`.
///
/// Three replicas of a region receive the same writes, so with equal memtables their
/// stores flush within milliseconds of each other, and reach fjall's L0 compaction
/// trigger together too. On one machine (the playground, tests, a small cluster sharing
/// disks) the three flushes or compactions then compete for the same cores and disk at
/// once, and every write that needs a quorum waits. Different sizes spread them out.
pub fn memtable_size_for(max: u64, seed: u64) -> u64 {
    let quarter = max / 4;
    if quarter == 0 {
        return max;
    }
    max - seed % (quarter + 1)
}

/// A random number from the standard library's per-process hash keys (no extra crate).
fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(std::process::id() as u64);
    h.finish()
}

/// fjall refuses a journal cap under this.
pub const MIN_JOURNAL_SIZE: u64 = 64 * 1024 * 1024;

/// fjall-backed engine; clones share one database.
#[derive(Clone)]
pub struct FjallEngine {
    db: Database,
    cfs: Arc<Vec<Keyspace>>,
}

fn err(e: impl std::fmt::Display) -> Error {
    Error::Engine(e.to_string())
}

impl FjallEngine {
    /// Opens (creating if needed) the engine in `path`.
    pub fn open(path: &Path, cfg: &FjallConfig) -> Result<FjallEngine> {
        Self::open_inner(path, cfg, None)
    }

    /// Like [`FjallEngine::open`], with each column family's memtable flushed at
    /// `max_memtable_size` bytes instead of fjall's 64 MiB (applies to column families
    /// this call creates). For a small metadata store with many small overwrites (the
    /// scheduler), where a full memtable would hold more memory than all live data.
    pub fn open_with_memtable_limit(
        path: &Path,
        cfg: &FjallConfig,
        max_memtable_size: u64,
    ) -> Result<FjallEngine> {
        Self::open_inner(path, cfg, Some(max_memtable_size))
    }

    fn open_inner(path: &Path, cfg: &FjallConfig, memtable: Option<u64>) -> Result<FjallEngine> {
        std::fs::create_dir_all(path)?;
        let db = Database::builder(path)
            .cache_size(cfg.cache_size)
            .max_journaling_size(cfg.max_journal_size.max(MIN_JOURNAL_SIZE))
            .open()
            .map_err(err)?;
        let memtable = match memtable {
            Some(bytes) => bytes,
            None if cfg.spread_memtable_size => memtable_size_for(cfg.memtable_size, random_u64()),
            None => cfg.memtable_size,
        }
        .max(1024 * 1024);
        let mut cfs = Vec::with_capacity(ALL_CFS.len());
        for cf in ALL_CFS {
            let opts = || {
                let o = KeyspaceCreateOptions::default().max_memtable_size(memtable);
                if cfg.compress_all_levels {
                    o.data_block_compression_policy(CompressionPolicy::all(CompressionType::Lz4))
                } else {
                    o
                }
            };
            cfs.push(db.keyspace(cf, opts).map_err(err)?);
        }
        Ok(FjallEngine {
            db,
            cfs: Arc::new(cfs),
        })
    }

    /// Bytes of the journal files (the part of [`Engine::disk_usage`] that holds recent
    /// writes a second time, until their memtables are flushed).
    pub fn journal_disk_space(&self) -> u64 {
        self.db.journal_disk_space().unwrap_or(0)
    }
}

/// Write batch of a [`FjallEngine`]: last operation per key, per CF.
#[derive(Default)]
pub struct FjallWriteBatch {
    ops: Vec<BTreeMap<Vec<u8>, Option<Vec<u8>>>>,
    count: usize,
    size: usize,
}

impl FjallWriteBatch {
    fn cf(&mut self, cf: CfName) -> &mut BTreeMap<Vec<u8>, Option<Vec<u8>>> {
        if self.ops.is_empty() {
            self.ops = vec![BTreeMap::new(); ALL_CFS.len()];
        }
        &mut self.ops[cf_index(cf)]
    }
}

impl WriteBatch for FjallWriteBatch {
    fn put(&mut self, cf: CfName, key: &[u8], value: &[u8]) {
        self.count += 1;
        self.size += key.len() + value.len();
        self.cf(cf).insert(key.to_vec(), Some(value.to_vec()));
    }
    fn delete(&mut self, cf: CfName, key: &[u8]) {
        self.count += 1;
        self.size += key.len();
        self.cf(cf).insert(key.to_vec(), None);
    }
    fn count(&self) -> usize {
        self.count
    }
    fn data_size(&self) -> usize {
        self.size
    }
}

/// A consistent view of every keyspace of a [`FjallEngine`].
#[derive(Clone)]
pub struct FjallSnapshot {
    snap: fjall::Snapshot,
    cfs: Arc<Vec<Keyspace>>,
}

impl Engine for FjallEngine {
    type Snapshot = FjallSnapshot;
    type WriteBatch = FjallWriteBatch;

    fn get(&self, cf: CfName, key: &[u8]) -> Result<Option<Vec<u8>>> {
        // Through a snapshot: a plain keyspace read looks at every sequence number and can
        // see part of a batch that is still being committed, before snapshots see any of
        // it. Our batches carry data together with the apply state, so a get must never
        // run ahead of what a snapshot taken right after it shows.
        self.snapshot().get(cf, key)
    }

    fn snapshot(&self) -> FjallSnapshot {
        FjallSnapshot {
            snap: self.db.snapshot(),
            cfs: self.cfs.clone(),
        }
    }

    fn write_batch(&self) -> FjallWriteBatch {
        FjallWriteBatch::default()
    }

    fn write(&self, batch: FjallWriteBatch, sync: bool) -> Result<()> {
        for ops in &batch.ops {
            for k in ops.keys() {
                crate::check_key(k)?;
            }
        }
        if batch.count > 0 {
            let mut b = self.db.batch();
            for (i, ops) in batch.ops.into_iter().enumerate() {
                let ks = &self.cfs[i];
                for (k, v) in ops {
                    match v {
                        Some(v) => b.insert(ks, k, v),
                        None => b.remove(ks, k),
                    }
                }
            }
            b.commit().map_err(err)?;
        }
        if sync {
            self.sync()?;
        }
        Ok(())
    }

    fn sync(&self) -> Result<()> {
        self.db.persist(PersistMode::SyncAll).map_err(err)
    }

    fn disk_usage(&self) -> u64 {
        self.db.disk_space().unwrap_or(0)
    }
}

impl Snapshot for FjallSnapshot {
    fn get(&self, cf: CfName, key: &[u8]) -> Result<Option<Vec<u8>>> {
        if key.len() > MAX_KEY_LEN {
            // No such key can be stored; fjall asserts on it rather than answering.
            return Ok(None);
        }
        Ok(self
            .snap
            .get(&self.cfs[cf_index(cf)], key)
            .map_err(err)?
            .map(|v| v.to_vec()))
    }

    fn scan<'a>(&'a self, cf: CfName, start: &[u8], end: &[u8], reverse: bool) -> KvIter<'a> {
        if !end.is_empty() && start >= end {
            return Box::new(std::iter::empty());
        }
        // fjall asserts on bounds longer than a key may be. A stored key is at most
        // MAX_KEY_LEN bytes, so for a longer bound `b` with prefix `t` of that length, the
        // only stored key between `t` and `b` is `t` itself: `[b, ..` is `(t, ..` and
        // `.., b)` is `.., t]`.
        let lo: Bound<Vec<u8>> = if start.len() > MAX_KEY_LEN {
            Bound::Excluded(start[..MAX_KEY_LEN].to_vec())
        } else {
            Bound::Included(start.to_vec())
        };
        let hi: Bound<Vec<u8>> = if end.is_empty() {
            Bound::Unbounded
        } else if end.len() > MAX_KEY_LEN {
            Bound::Included(end[..MAX_KEY_LEN].to_vec())
        } else {
            Bound::Excluded(end.to_vec())
        };
        let range = (lo, hi);
        let iter = self.snap.range(&self.cfs[cf_index(cf)], range);
        let map = |g: fjall::Guard| {
            g.into_inner()
                .map(|(k, v)| (k.to_vec(), v.to_vec()))
                .map_err(err)
        };
        if reverse {
            Box::new(iter.rev().map(map))
        } else {
            Box::new(iter.map(map))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memtable_sizes_spread_over_the_top_quarter() {
        let max = 64 << 20;
        let sizes: Vec<u64> = (0..1000u64)
            .map(|i| memtable_size_for(max, i.wrapping_mul(0x9e37_79b9_7f4a_7c15)))
            .collect();
        assert!(sizes.iter().all(|&s| s >= max / 4 * 3 && s <= max));
        let (lo, hi) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
        assert!(hi - lo > max / 8, "{lo}..{hi}: not spread");
        assert_eq!(memtable_size_for(3, 12345), 3);
    }

    fn flush(engine: &FjallEngine) {
        for ks in engine.cfs.iter() {
            ks.rotate_memtable_and_wait().unwrap();
        }
    }

    /// 2 MiB of very compressible values in `default`, flushed to level 0; the bytes its
    /// tables take.
    fn table_bytes(compress: bool) -> u64 {
        let dir = tempfile::tempdir().unwrap();
        let cfg = FjallConfig {
            cache_size: 1 << 20,
            memtable_size: 8 << 20,
            spread_memtable_size: false,
            compress_all_levels: compress,
            ..FjallConfig::default()
        };
        let engine = FjallEngine::open(dir.path(), &cfg).unwrap();
        for chunk in 0..8u32 {
            let mut b = engine.write_batch();
            for i in 0..256u32 {
                let mut v = format!("{chunk}/{i}/").into_bytes();
                v.resize(1024, b'.');
                b.put(
                    crate::CF_DEFAULT,
                    format!("zkey{chunk:02}{i:04}").as_bytes(),
                    &v,
                );
            }
            engine.write(b, false).unwrap();
        }
        flush(&engine);
        let default = &engine.cfs[cf_index(crate::CF_DEFAULT)];
        assert!(default.table_count() > 0);
        let bytes = default.disk_space();
        // Everything is still readable from the tables.
        let snap = engine.snapshot();
        let v = snap.get(crate::CF_DEFAULT, b"zkey070255").unwrap().unwrap();
        assert!(v.starts_with(b"7/255/") && v.len() == 1024);
        bytes
    }

    /// Level 0 is compressed with the default configuration: fjall's own default leaves it
    /// (and level 1) as raw as the values.
    #[test]
    fn level_zero_tables_are_compressed() {
        let raw = table_bytes(false);
        let compressed = table_bytes(true);
        assert!(raw > 2 << 20, "{raw}");
        assert!(
            compressed * 10 < raw,
            "compressed {compressed} of raw {raw}"
        );
        assert!(FjallConfig::default().compress_all_levels);
    }

    /// A column family with almost no writes (`raft`, under the raw API) must not keep
    /// every journal alive: past `max_journal_size` fjall flushes it. Writes 320 MiB, so it
    /// runs only with TESSERA_ENGINE_SPACE_TEST=1.
    #[test]
    fn journals_stay_under_the_cap_while_one_column_family_is_idle() {
        if std::env::var("TESSERA_ENGINE_SPACE_TEST").is_err() {
            eprintln!("skipped: set TESSERA_ENGINE_SPACE_TEST=1 to write 320 MiB");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let cfg = FjallConfig::default();
        let engine = FjallEngine::open(dir.path(), &cfg).unwrap();
        let mut b = engine.write_batch();
        b.put(crate::CF_RAFT, b"\x01\x02state", b"pins the first journal");
        engine.write(b, false).unwrap();
        let value = vec![b'.'; 1024];
        let mut largest = 0;
        for chunk in 0..1280u32 {
            let mut b = engine.write_batch();
            for i in 0..256u32 {
                b.put(
                    crate::CF_DEFAULT,
                    format!("z{chunk:05}{i:04}").as_bytes(),
                    &value,
                );
            }
            engine.write(b, false).unwrap();
            largest = largest.max(engine.journal_disk_space());
        }
        // The cap, the active journal (fjall starts a new one at ~64 MB) and one sealed
        // journal whose flush is under way.
        let bound = cfg.max_journal_size + 2 * (64 << 20);
        assert!(
            largest <= bound,
            "journals reached {largest} bytes for 320 MiB written (bound {bound})"
        );
    }
}
