//! An in-memory [`Snapshot`] for tests: a map per CF that [`Modify`]s are applied to.

use std::collections::BTreeMap;

use engine::CfName;

use crate::{KvIter, Modify, Result, Snapshot};

/// Every CF as an ordered map; cloning takes a point-in-time copy.
#[derive(Clone, Debug, Default)]
pub struct MemSnapshot {
    cfs: BTreeMap<CfName, BTreeMap<Vec<u8>, Vec<u8>>>,
}

impl MemSnapshot {
    /// An empty store.
    pub fn new() -> MemSnapshot {
        MemSnapshot::default()
    }

    /// Applies `modifies` in order.
    pub fn apply(&mut self, modifies: &[Modify]) {
        for m in modifies {
            match m {
                Modify::Put { cf, key, value } => {
                    self.cfs
                        .entry(cf)
                        .or_default()
                        .insert(key.clone(), value.clone());
                }
                Modify::Delete { cf, key } => {
                    if let Some(map) = self.cfs.get_mut(cf) {
                        map.remove(key);
                    }
                }
            }
        }
    }

    /// Every pair of `cf`, in key order.
    pub fn dump(&self, cf: CfName) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.cfs
            .get(cf)
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default()
    }

    /// Number of pairs in `cf`.
    pub fn len(&self, cf: CfName) -> usize {
        self.cfs.get(cf).map_or(0, |m| m.len())
    }
}

impl Snapshot for MemSnapshot {
    fn get_cf(&self, cf: CfName, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.cfs.get(cf).and_then(|m| m.get(key).cloned()))
    }

    fn scan_cf<'a>(&'a self, cf: CfName, start: &[u8], end: &[u8], reverse: bool) -> KvIter<'a> {
        let Some(map) = self.cfs.get(cf) else {
            return Box::new(std::iter::empty());
        };
        let hi = if end.is_empty() {
            std::ops::Bound::Unbounded
        } else {
            std::ops::Bound::Excluded(end.to_vec())
        };
        if !end.is_empty() && start >= end {
            return Box::new(std::iter::empty());
        }
        let range = map.range::<Vec<u8>, _>((std::ops::Bound::Included(start.to_vec()), hi));
        let it = range.map(|(k, v)| Ok((k.clone(), v.clone())));
        if reverse {
            Box::new(it.rev().collect::<Vec<_>>().into_iter())
        } else {
            Box::new(it.collect::<Vec<_>>().into_iter())
        }
    }
}
