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

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode, Readable};

use crate::{
    cf_index, CfName, Engine, Error, KvIter, Result, Snapshot, WriteBatch, ALL_CFS, MAX_KEY_LEN,
};

/// Tunables of the fjall engine.
#[derive(Clone, Debug)]
pub struct FjallConfig {
    /// Block cache size in bytes.
    pub cache_size: u64,
}

impl Default for FjallConfig {
    fn default() -> Self {
        FjallConfig {
            cache_size: 64 * 1024 * 1024,
        }
    }
}

/// fjall-backed engine; clones share one database.
#[derive(Clone)]
pub struct FjallEngine {
    db: Database,
    cfs: std::sync::Arc<Vec<Keyspace>>,
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
            .open()
            .map_err(err)?;
        let mut cfs = Vec::with_capacity(ALL_CFS.len());
        for cf in ALL_CFS {
            let opts = || match memtable {
                Some(bytes) => KeyspaceCreateOptions::default().max_memtable_size(bytes),
                None => KeyspaceCreateOptions::default(),
            };
            cfs.push(db.keyspace(cf, opts).map_err(err)?);
        }
        Ok(FjallEngine {
            db,
            cfs: std::sync::Arc::new(cfs),
        })
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
    cfs: std::sync::Arc<Vec<Keyspace>>,
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
