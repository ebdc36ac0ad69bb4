//! KvScanLock (txn.md §3.10): the locks of every type with ts ≤ `max_version` in
//! `[start_key, end_key)` (empty end = unbounded), in key order, at most `limit`
//! (0 = no limit, as TiKV). Used to find locks to resolve, e.g. before GC.

use proto::kvrpcpb::{ScanLockRequest, ScanLockResponse};

use crate::{ConcurrencyManager, Error, Key, MvccReader, Result, Snapshot};

fn bounds(req: &ScanLockRequest) -> (Option<Key>, Option<Key>) {
    let enc = |raw: &Vec<u8>| (!raw.is_empty()).then(|| Key::from_raw(raw));
    (enc(&req.start_key), enc(&req.end_key))
}

/// Raises max_ts to `max_version`, then fails at the first memory lock in the range at or
/// below it (as TiKV: such a lock is about to be written, and the scan would miss it).
/// Unlike a read, lock-only and pessimistic locks count here.
pub fn check_memory_locks(cm: &ConcurrencyManager, req: &ScanLockRequest) -> Result<()> {
    cm.update_max_ts(req.max_version);
    let (lower, upper) = bounds(req);
    cm.read_range_check(lower.as_ref(), upper.as_ref(), |key, lock| {
        if lock.ts <= req.max_version {
            Err(Error::KeyIsLocked(lock.to_lock_info(key.to_raw()?)))
        } else {
            Ok(())
        }
    })
}

/// Lists the locks.
pub fn process<S: Snapshot + ?Sized>(snap: &S, req: &ScanLockRequest) -> Result<ScanLockResponse> {
    let (lower, upper) = bounds(req);
    let lower = lower.map_or_else(Vec::new, Key::into_encoded);
    let upper = upper.map_or_else(Vec::new, Key::into_encoded);
    let found = MvccReader::new(snap).scan_locks(
        &lower,
        &upper,
        |lock| lock.ts <= req.max_version,
        req.limit as usize,
    )?;
    let locks = found
        .into_iter()
        .map(|(key, lock)| Ok(lock.to_lock_info(key.to_raw()?)))
        .collect::<Result<_>>()?;
    Ok(ScanLockResponse {
        locks,
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::read::test_util::*;
    use crate::testing::MemSnapshot;
    use crate::{Lock, LockType};
    use proto::kvrpcpb::Op;

    fn req(start: &[u8], end: &[u8], max_version: u64, limit: u32) -> ScanLockRequest {
        ScanLockRequest {
            start_key: start.to_vec(),
            end_key: end.to_vec(),
            max_version,
            limit,
            ..Default::default()
        }
    }

    fn keys(snap: &MemSnapshot, r: &ScanLockRequest) -> Vec<Vec<u8>> {
        process(snap, r)
            .unwrap()
            .locks
            .into_iter()
            .map(|l| l.key)
            .collect()
    }

    fn fixture() -> MemSnapshot {
        let mut snap = MemSnapshot::new();
        must_lock(&mut snap, b"a", b"a", LockType::Put, 10, b"v");
        must_lock(&mut snap, b"b", b"a", LockType::Delete, 10, b"");
        must_lock(&mut snap, b"c", b"c", LockType::Lock, 20, b"");
        must_lock(&mut snap, b"d", b"d", LockType::Pessimistic, 30, b"");
        must_lock(&mut snap, b"e", b"e", LockType::Put, 40, &[1; 300]);
        must_put(&mut snap, b"bb", b"x", 1, 2);
        snap
    }

    #[test]
    fn filters_by_max_version_and_range() {
        let snap = fixture();
        assert_eq!(
            keys(&snap, &req(b"", b"", u64::MAX, 0)),
            [b"a", b"b", b"c", b"d", b"e"]
        );
        assert_eq!(keys(&snap, &req(b"", b"", 20, 0)), [b"a", b"b", b"c"]);
        assert_eq!(keys(&snap, &req(b"", b"", 9, 0)), Vec::<Vec<u8>>::new());
        assert_eq!(keys(&snap, &req(b"b", b"d", 100, 0)), [b"b", b"c"]);
        assert_eq!(keys(&snap, &req(b"bb", b"", 30, 0)), [b"c", b"d"]);
        assert!(keys(&MemSnapshot::new(), &req(b"", b"", 100, 0)).is_empty());
    }

    #[test]
    fn limit_counts_matching_locks_only() {
        let snap = fixture();
        assert_eq!(keys(&snap, &req(b"", b"", 100, 2)), [b"a", b"b"]);
        assert_eq!(keys(&snap, &req(b"c", b"", 100, 1)), [b"c"]);
        // The lock at 20 is skipped, not counted.
        let mut s = MemSnapshot::new();
        must_lock(&mut s, b"a", b"a", LockType::Put, 50, b"");
        must_lock(&mut s, b"b", b"b", LockType::Put, 5, b"");
        must_lock(&mut s, b"c", b"c", LockType::Put, 6, b"");
        assert_eq!(keys(&s, &req(b"", b"", 10, 1)), [b"b"]);
    }

    #[test]
    fn lock_info_is_complete() {
        let snap = fixture();
        let locks = process(&snap, &req(b"d", b"", 100, 0)).unwrap().locks;
        assert_eq!(locks.len(), 2);
        assert_eq!(locks[0].lock_type, Op::PessimisticLock as i32);
        assert_eq!((locks[0].lock_version, locks[0].lock_ttl), (30, 3000));
        assert_eq!(locks[1].primary_lock, b"e");
        assert_eq!(locks[1].lock_type, Op::Put as i32);
    }

    #[test]
    fn raises_max_ts_and_sees_memory_locks() {
        let cm = ConcurrencyManager::new(1);
        check_memory_locks(&cm, &req(b"", b"", 100, 0)).unwrap();
        assert_eq!(cm.max_ts(), 100);
        check_memory_locks(&cm, &req(b"", b"", u64::MAX, 0)).unwrap();
        assert_eq!(cm.max_ts(), 100, "MAX is not a timestamp");
        let guard = cm.lock_key(&Key::from_raw(b"k"));
        guard.with_lock(|l| *l = Some(Lock::new(LockType::Lock, b"k".to_vec(), 150, 10)));
        // Even a lock-only memory lock counts, when at or below max_version and in range.
        assert!(matches!(
            check_memory_locks(&cm, &req(b"", b"", 150, 0)),
            Err(Error::KeyIsLocked(_))
        ));
        assert_eq!(cm.max_ts(), 150);
        check_memory_locks(&cm, &req(b"", b"", 149, 0)).unwrap();
        check_memory_locks(&cm, &req(b"l", b"", 200, 0)).unwrap();
        check_memory_locks(&cm, &req(b"a", b"k", 200, 0)).unwrap();
    }
}
