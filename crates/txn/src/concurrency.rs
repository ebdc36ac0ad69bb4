//! The concurrency manager: the store's `max_ts` and the in-memory lock table.
//!
//! Async commit and 1PC pick a transaction's commit ts on the store (min_commit_ts =
//! max_ts + 1) instead of asking the timestamp oracle, so every read at ts must leave a
//! trace that such a prewrite sees: a reader raises `max_ts` to its ts *first*, then
//! looks for memory locks on its keys, then reads its snapshot. A prewrite puts its
//! lock in the memory table *before* it reads `max_ts`, and the lock stays there until
//! the prewrite is applied. Whichever comes first, either the prewrite's commit ts is
//! above the reader's ts, or the reader sees the lock (in memory, or in the snapshot it
//! takes after the memory lock is gone).

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::{Key, Lock, Result, TimeStamp};

type Table = Mutex<BTreeMap<Key, Arc<MemoryLock>>>;

/// One key's entry in the memory lock table.
#[derive(Debug)]
pub struct MemoryLock {
    key: Key,
    lock: Mutex<Option<Lock>>,
}

/// Keeps a key in the memory lock table; dropping it removes the entry.
#[derive(Debug)]
pub struct KeyHandleGuard {
    handle: Arc<MemoryLock>,
    table: Arc<Table>,
}

impl KeyHandleGuard {
    /// The key held.
    pub fn key(&self) -> &Key {
        &self.handle.key
    }

    /// Runs `f` on the lock stored for the key (None until set).
    pub fn with_lock<T>(&self, f: impl FnOnce(&mut Option<Lock>) -> T) -> T {
        f(&mut self.handle.lock.lock())
    }
}

impl Drop for KeyHandleGuard {
    fn drop(&mut self) {
        let mut table = self.table.lock();
        // Another guard of the same key may have replaced the entry; remove only ours.
        if let Some(cur) = table.get(&self.handle.key) {
            if Arc::ptr_eq(cur, &self.handle) {
                table.remove(&self.handle.key);
            }
        }
    }
}

/// `max_ts` and the memory lock table of one store.
#[derive(Debug)]
pub struct ConcurrencyManager {
    max_ts: AtomicU64,
    table: Arc<Table>,
}

impl ConcurrencyManager {
    /// A manager whose `max_ts` starts at `latest_ts`.
    pub fn new(latest_ts: TimeStamp) -> ConcurrencyManager {
        ConcurrencyManager {
            max_ts: AtomicU64::new(latest_ts),
            table: Arc::new(Mutex::new(BTreeMap::new())),
        }
    }

    /// The largest timestamp any read or check has announced.
    pub fn max_ts(&self) -> TimeStamp {
        self.max_ts.load(Ordering::SeqCst)
    }

    /// Raises `max_ts` to `ts` (u64::MAX, "read the latest", is ignored).
    pub fn update_max_ts(&self, ts: TimeStamp) {
        if ts != TimeStamp::MAX {
            self.max_ts.fetch_max(ts, Ordering::SeqCst);
        }
    }

    /// Puts `key` in the memory lock table (its lock is set through the guard).
    pub fn lock_key(&self, key: &Key) -> KeyHandleGuard {
        let handle = Arc::new(MemoryLock {
            key: key.clone(),
            lock: Mutex::new(None),
        });
        self.table.lock().insert(key.clone(), handle.clone());
        KeyHandleGuard {
            handle,
            table: self.table.clone(),
        }
    }

    /// Runs `check` on the memory lock of `key`, if one is set.
    pub fn read_key_check(&self, key: &Key, check: impl FnOnce(&Lock) -> Result<()>) -> Result<()> {
        let handle = self.table.lock().get(key).cloned();
        match handle {
            Some(h) => match h.lock.lock().as_ref() {
                Some(lock) => check(lock),
                None => Ok(()),
            },
            None => Ok(()),
        }
    }

    /// Runs `check` on every memory lock with a key in `[start, end)` (None = unbounded),
    /// stopping at the first error.
    pub fn read_range_check(
        &self,
        start: Option<&Key>,
        end: Option<&Key>,
        mut check: impl FnMut(&Key, &Lock) -> Result<()>,
    ) -> Result<()> {
        let lo = start.map_or(Bound::Unbounded, Bound::Included);
        let hi = end.map_or(Bound::Unbounded, Bound::Excluded);
        let handles: Vec<Arc<MemoryLock>> = self
            .table
            .lock()
            .range::<Key, _>((lo, hi))
            .map(|(_, h)| h.clone())
            .collect();
        for h in handles {
            if let Some(lock) = h.lock.lock().as_ref() {
                check(&h.key, lock)?;
            }
        }
        Ok(())
    }

    /// Number of keys in the memory lock table.
    pub fn memory_lock_count(&self) -> usize {
        self.table.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Error, LockType};

    #[test]
    fn max_ts_only_grows_and_ignores_max() {
        let cm = ConcurrencyManager::new(10);
        cm.update_max_ts(5);
        assert_eq!(cm.max_ts(), 10);
        cm.update_max_ts(20);
        cm.update_max_ts(u64::MAX);
        assert_eq!(cm.max_ts(), 20);
    }

    #[test]
    fn memory_locks_are_seen_until_their_guard_drops() {
        let cm = ConcurrencyManager::new(1);
        let k = Key::from_raw(b"k");
        let g = cm.lock_key(&k);
        // Not yet filled in: nothing to see.
        cm.read_key_check(&k, |_| panic!("empty entry checked"))
            .unwrap();
        g.with_lock(|l| *l = Some(Lock::new(LockType::Put, b"k".to_vec(), 5, 100)));
        let blocked = |_: &Lock| Err(Error::InvalidRequest("locked".into()));
        assert!(cm.read_key_check(&k, blocked).is_err());
        assert!(cm
            .read_range_check(Some(&Key::from_raw(b"a")), None, |_, _| Err(
                Error::InvalidRequest("x".into())
            ))
            .is_err());
        cm.read_range_check(Some(&Key::from_raw(b"l")), None, |_, _| {
            panic!("out of range")
        })
        .unwrap();
        drop(g);
        assert_eq!(cm.memory_lock_count(), 0);
        cm.read_key_check(&k, blocked).unwrap();
    }
}
