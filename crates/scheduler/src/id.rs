//! Unique ids for stores, regions and peers.
//!
//! Ids are handed out from a window `(next, end]` held in memory. Before the first id of a
//! new window is handed out, the window's `end` is saved (synced) in the [`MetaStore`];
//! after a restart the allocator starts above the saved `end`, so it never reissues an id
//! even if it crashed in the middle of a window. The price is that the unused rest of a
//! window is skipped on restart, which is harmless: ids only need to be unique.

use parking_lot::Mutex;

use crate::meta_store::MetaStore;
use crate::{Error, Result};

/// Default window size: one synced write per this many ids.
pub const DEFAULT_ID_STEP: u64 = 1000;

struct Window {
    /// The last id handed out (or the window's base before the first one).
    last: u64,
    /// The saved high-water mark: ids up to and including it may be handed out.
    end: u64,
}

/// Hands out unique, increasing, non-zero u64 ids.
pub struct IdAllocator {
    meta: MetaStore,
    step: u64,
    window: Mutex<Window>,
}

impl std::fmt::Debug for IdAllocator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let w = self.window.lock();
        f.debug_struct("IdAllocator")
            .field("last", &w.last)
            .field("end", &w.end)
            .field("step", &self.step)
            .finish()
    }
}

impl IdAllocator {
    /// Opens the allocator, starting above whatever a previous run saved. `step` is the
    /// window size (0 is treated as 1).
    pub fn open(meta: MetaStore, step: u64) -> Result<IdAllocator> {
        let saved = meta.load_id_window()?.unwrap_or(0);
        Ok(IdAllocator {
            meta,
            step: step.max(1),
            // An empty window: the first alloc saves a new one.
            window: Mutex::new(Window {
                last: saved,
                end: saved,
            }),
        })
    }

    /// One new id.
    pub fn alloc(&self) -> Result<u64> {
        self.alloc_many(1)
    }

    /// `count` consecutive new ids; returns the first (`count` 0 is treated as 1).
    pub fn alloc_many(&self, count: u64) -> Result<u64> {
        let count = count.max(1);
        let mut w = self.window.lock();
        let last = w.last.checked_add(count).ok_or(Error::IdExhausted)?;
        if last > w.end {
            // Saved before any id of the new window leaves this function. A failed save
            // leaves the window untouched, so nothing unsaved is ever handed out.
            let end = last.checked_add(self.step).ok_or(Error::IdExhausted)?;
            self.meta.save_id_window(end)?;
            w.end = end;
        }
        let first = w.last + 1;
        w.last = last;
        Ok(first)
    }

    /// Makes sure every later id is greater than `id`. Used for ids chosen outside the
    /// allocator (a bootstrap store picking its own ids).
    pub fn ensure_above(&self, id: u64) -> Result<()> {
        let mut w = self.window.lock();
        if w.last >= id {
            return Ok(());
        }
        if id > w.end {
            let end = id.checked_add(self.step).ok_or(Error::IdExhausted)?;
            self.meta.save_id_window(end)?;
            w.end = end;
        }
        w.last = id;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::{FjallConfig, FjallEngine, MemEngine};
    use std::collections::HashSet;
    use std::sync::Arc;

    #[test]
    fn ids_are_unique_under_eight_threads() {
        // A small step makes the threads race over window saves too.
        let ids = Arc::new(IdAllocator::open(MetaStore::new(MemEngine::new()), 7).unwrap());
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let ids = ids.clone();
                std::thread::spawn(move || {
                    let mut got = Vec::new();
                    for i in 0..2000 {
                        if i % 10 == 0 {
                            let first = ids.alloc_many(3).unwrap();
                            got.extend([first, first + 1, first + 2]);
                        } else {
                            got.push(ids.alloc().unwrap());
                        }
                    }
                    got
                })
            })
            .collect();
        let mut all = HashSet::new();
        let mut total = 0;
        for h in handles {
            let got = h.join().unwrap();
            // Each caller sees increasing ids.
            assert!(got.windows(2).all(|w| w[0] < w[1]));
            total += got.len();
            all.extend(got);
        }
        assert_eq!(all.len(), total, "an id was handed out twice");
        assert!(!all.contains(&0), "0 is never a valid id");
    }

    #[test]
    fn restart_never_reissues_an_id() {
        let dir = tempfile::tempdir().unwrap();
        let mut max_seen = 0;
        for round in 0..3 {
            let engine = FjallEngine::open(dir.path(), &FjallConfig::default()).unwrap();
            let ids = IdAllocator::open(MetaStore::new(engine), 100).unwrap();
            // Stop in the middle of a window, as a crash would.
            for _ in 0..(150 + round) {
                let id = ids.alloc().unwrap();
                assert!(id > max_seen, "round {round}: {id} <= {max_seen}");
                max_seen = id;
            }
        }
    }

    #[test]
    fn ensure_above_skips_past_external_ids() {
        let meta = MetaStore::new(MemEngine::new());
        let ids = IdAllocator::open(meta.clone(), 10).unwrap();
        assert_eq!(ids.alloc().unwrap(), 1);
        ids.ensure_above(5000).unwrap();
        assert_eq!(ids.alloc().unwrap(), 5001);
        // Lower marks change nothing.
        ids.ensure_above(3).unwrap();
        assert_eq!(ids.alloc().unwrap(), 5002);
        // And the mark survives a restart.
        let reopened = IdAllocator::open(meta, 10).unwrap();
        assert!(reopened.alloc().unwrap() > 5002);
    }

    #[test]
    fn exhaustion_is_an_error_not_a_wrap() {
        let meta = MetaStore::new(MemEngine::new());
        meta.save_id_window(u64::MAX - 5).unwrap();
        let ids = IdAllocator::open(meta, 1000).unwrap();
        assert!(matches!(ids.alloc(), Err(Error::IdExhausted)));
    }
}
