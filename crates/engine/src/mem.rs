//! An in-memory engine for tests: per-CF ordered maps, copy-on-write snapshots.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

use parking_lot::RwLock;

use crate::{cf_index, CfName, Engine, KvIter, Result, Snapshot, WriteBatch, ALL_CFS};

type Cfs = Vec<BTreeMap<Vec<u8>, Vec<u8>>>;

/// In-memory engine; clones share the same data.
#[derive(Clone)]
pub struct MemEngine {
    data: Arc<RwLock<Arc<Cfs>>>,
}

impl Default for MemEngine {
    fn default() -> Self {
        MemEngine {
            data: Arc::new(RwLock::new(Arc::new(vec![BTreeMap::new(); ALL_CFS.len()]))),
        }
    }
}

impl MemEngine {
    /// An empty engine.
    pub fn new() -> Self {
        Self::default()
    }
}

/// A snapshot of a [`MemEngine`]: a shared, immutable copy of the maps.
#[derive(Clone)]
pub struct MemSnapshot {
    data: Arc<Cfs>,
}

enum Op {
    Put(CfName, Vec<u8>, Vec<u8>),
    Delete(CfName, Vec<u8>),
}

/// Write batch of a [`MemEngine`].
#[derive(Default)]
pub struct MemWriteBatch {
    ops: Vec<Op>,
    size: usize,
}

impl WriteBatch for MemWriteBatch {
    fn put(&mut self, cf: CfName, key: &[u8], value: &[u8]) {
        self.size += key.len() + value.len();
        self.ops.push(Op::Put(cf, key.to_vec(), value.to_vec()));
    }
    fn delete(&mut self, cf: CfName, key: &[u8]) {
        self.size += key.len();
        self.ops.push(Op::Delete(cf, key.to_vec()));
    }
    fn count(&self) -> usize {
        self.ops.len()
    }
    fn data_size(&self) -> usize {
        self.size
    }
}

impl Engine for MemEngine {
    type Snapshot = MemSnapshot;
    type WriteBatch = MemWriteBatch;

    fn get(&self, cf: CfName, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.data.read()[cf_index(cf)].get(key).cloned())
    }

    fn snapshot(&self) -> MemSnapshot {
        MemSnapshot {
            data: self.data.read().clone(),
        }
    }

    fn write_batch(&self) -> MemWriteBatch {
        MemWriteBatch::default()
    }

    fn write(&self, batch: MemWriteBatch, _sync: bool) -> Result<()> {
        if batch.ops.is_empty() {
            return Ok(());
        }
        for op in &batch.ops {
            match op {
                Op::Put(_, k, _) | Op::Delete(_, k) => crate::check_key(k)?,
            }
        }
        let mut guard = self.data.write();
        // Copies the maps only if a snapshot still shares them.
        let cfs = Arc::make_mut(&mut guard);
        for op in batch.ops {
            match op {
                Op::Put(cf, k, v) => {
                    cfs[cf_index(cf)].insert(k, v);
                }
                Op::Delete(cf, k) => {
                    cfs[cf_index(cf)].remove(&k);
                }
            }
        }
        Ok(())
    }

    fn sync(&self) -> Result<()> {
        Ok(())
    }

    fn disk_usage(&self) -> u64 {
        0
    }
}

fn bounds(start: &[u8], end: &[u8]) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
    let hi = if end.is_empty() {
        Bound::Unbounded
    } else {
        Bound::Excluded(end.to_vec())
    };
    (Bound::Included(start.to_vec()), hi)
}

impl Snapshot for MemSnapshot {
    fn get(&self, cf: CfName, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.data[cf_index(cf)].get(key).cloned())
    }

    fn scan<'a>(&'a self, cf: CfName, start: &[u8], end: &[u8], reverse: bool) -> KvIter<'a> {
        if !end.is_empty() && start >= end {
            return Box::new(std::iter::empty());
        }
        let range = self.data[cf_index(cf)].range(bounds(start, end));
        let map = |(k, v): (&Vec<u8>, &Vec<u8>)| Ok((k.clone(), v.clone()));
        if reverse {
            Box::new(range.rev().map(map))
        } else {
            Box::new(range.map(map))
        }
    }
}
