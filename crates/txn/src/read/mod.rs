//! Snapshot-isolation reads at a timestamp: point gets and scans, and the rule for when a
//! lock blocks a read.
//!
//! A lock blocks a read at `ts` iff it was taken at or below `ts`, is a Put or Delete
//! lock, its min_commit_ts is at or below `ts`, and its transaction is not in the
//! request's `resolved_locks` (transactions the client already knows are committed or
//! rolled back). Everything else is read through: the newest Put or Delete committed at
//! or below `ts` decides the value.
//!
//! One exception, TiKV's: a read at `u64::MAX` ("the latest committed version") of a
//! transaction's primary key ignores that transaction's own lock, unless the transaction
//! uses async commit (whose commit ts may be below any ts the reader could name).

pub mod point;
pub mod scan;

use crate::{Error, Lock, LockType, Result, TimeStamp};

/// `Err(KeyIsLocked)` if `lock`, found on the raw user key `raw_key`, blocks a snapshot
/// read at `ts`; `bypass_locks` are the start timestamps the reader may read through.
pub fn check_lock(
    raw_key: &[u8],
    lock: &Lock,
    ts: TimeStamp,
    bypass_locks: &[TimeStamp],
) -> Result<()> {
    // Lock-only and pessimistic locks never change the value, so they cannot hide one.
    if lock.ts > ts || matches!(lock.lock_type, LockType::Lock | LockType::Pessimistic) {
        return Ok(());
    }
    // The transaction promised to commit above `ts`: whatever it writes is invisible here.
    if lock.min_commit_ts > ts {
        return Ok(());
    }
    if bypass_locks.contains(&lock.ts) {
        return Ok(());
    }
    if ts == TimeStamp::MAX && raw_key == lock.primary.as_slice() && !lock.use_async_commit {
        return Ok(());
    }
    Err(Error::KeyIsLocked(lock.to_lock_info(raw_key.to_vec())))
}

/// State builders for the read tests (and the read commands' tests): committed versions
/// and locks written as prewrite and commit leave them.
#[cfg(test)]
pub(crate) mod test_util {
    use crate::testing::MemSnapshot;
    use crate::{Key, Lock, LockType, MvccTxn, TimeStamp, Write, WriteType, SHORT_VALUE_MAX_LEN};

    /// A committed Put of `value` (long values go to CF default, as prewrite puts them).
    pub fn must_put(
        snap: &mut MemSnapshot,
        key: &[u8],
        value: &[u8],
        start: TimeStamp,
        commit: TimeStamp,
    ) {
        let k = Key::from_raw(key);
        let mut txn = MvccTxn::new(start);
        let short = if value.len() > SHORT_VALUE_MAX_LEN {
            txn.put_value(k.clone(), start, value.to_vec());
            None
        } else {
            Some(value.to_vec())
        };
        txn.put_write(k, commit, &Write::new(WriteType::Put, start, short));
        snap.apply(txn.modifies());
    }

    /// A committed record without a value (Delete, Lock, or a Rollback at `commit == start`).
    pub fn must_write(
        snap: &mut MemSnapshot,
        key: &[u8],
        t: WriteType,
        start: TimeStamp,
        commit: TimeStamp,
    ) {
        let mut txn = MvccTxn::new(start);
        txn.put_write(Key::from_raw(key), commit, &Write::new(t, start, None));
        snap.apply(txn.modifies());
    }

    /// A lock of `t` on `key` by txn `ts` with primary `primary`; a Put lock stages `value`.
    pub fn must_lock(
        snap: &mut MemSnapshot,
        key: &[u8],
        primary: &[u8],
        t: LockType,
        ts: TimeStamp,
        value: &[u8],
    ) -> Lock {
        let mut lock = Lock::new(t, primary.to_vec(), ts, 3000);
        let mut txn = MvccTxn::new(ts);
        if t == LockType::Put {
            if value.len() > SHORT_VALUE_MAX_LEN {
                txn.put_value(Key::from_raw(key), ts, value.to_vec());
            } else {
                lock.short_value = Some(value.to_vec());
            }
        }
        put_lock(snap, key, &lock);
        snap.apply(txn.modifies());
        lock
    }

    /// Stores `lock` as is on `key`.
    pub fn put_lock(snap: &mut MemSnapshot, key: &[u8], lock: &Lock) {
        let mut txn = MvccTxn::new(lock.ts);
        txn.put_lock(Key::from_raw(key), lock);
        snap.apply(txn.modifies());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lock(t: LockType, ts: TimeStamp) -> Lock {
        Lock::new(t, b"p".to_vec(), ts, 100)
    }

    fn blocks(raw: &[u8], l: &Lock, ts: TimeStamp, bypass: &[TimeStamp]) -> bool {
        match check_lock(raw, l, ts, bypass) {
            Ok(()) => false,
            Err(Error::KeyIsLocked(info)) => {
                assert_eq!(info.key, raw);
                assert_eq!(info.lock_version, l.ts);
                assert_eq!(info.primary_lock, l.primary);
                true
            }
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn the_lock_rule() {
        let put = lock(LockType::Put, 10);
        assert!(blocks(b"k", &put, 10, &[]), "lock.ts == ts blocks");
        assert!(blocks(b"k", &put, 11, &[]));
        assert!(!blocks(b"k", &put, 9, &[]), "a newer lock is invisible");
        assert!(blocks(b"k", &lock(LockType::Delete, 10), 20, &[]));
        assert!(!blocks(b"k", &lock(LockType::Lock, 10), 20, &[]));
        assert!(!blocks(b"k", &lock(LockType::Pessimistic, 10), 20, &[]));
        // Bypassed transactions.
        assert!(!blocks(b"k", &put, 20, &[3, 10]));
        assert!(blocks(b"k", &put, 20, &[3, 11]));
        // min_commit_ts above the read ts: the commit will be above it too.
        let mut pushed = put.clone();
        pushed.min_commit_ts = 21;
        assert!(!blocks(b"k", &pushed, 20, &[]));
        assert!(blocks(b"k", &pushed, 21, &[]));
    }

    #[test]
    fn reading_the_latest_ignores_a_primary_lock_unless_async() {
        let mut l = lock(LockType::Put, 10);
        assert!(!blocks(b"p", &l, TimeStamp::MAX, &[]));
        assert!(
            blocks(b"k", &l, TimeStamp::MAX, &[]),
            "secondaries still block"
        );
        assert!(blocks(b"p", &l, TimeStamp::MAX - 1, &[]));
        l.use_async_commit = true;
        assert!(blocks(b"p", &l, TimeStamp::MAX, &[]));
    }
}
