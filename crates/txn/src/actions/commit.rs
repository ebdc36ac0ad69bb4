//! Commit of one key: the second phase of Percolator, shared by Commit and ResolveLock.

use crate::{
    Error, Key, Lock, LockType, MvccReader, MvccTxn, Result, Snapshot, TimeStamp, Write, WriteType,
};

/// Commits the lock of transaction `txn.start_ts` on `key` at `commit_ts`: the lock
/// becomes a commit record of its type and is removed.
///
/// - A lock whose min_commit_ts is above `commit_ts` is not committed
///   (CommitTsExpired): the client must retry with a newer ts.
/// - A pessimistic lock (never prewritten) is only removed, as TiKV does: it can be
///   left behind by a lost pessimistic rollback, and the transaction did not write the
///   key. So ResolveLock can commit any lock of a committed transaction with this.
/// - Without the lock, an existing commit record of the transaction makes the call a
///   no-op (a retry); a rollback or nothing at all is TxnLockNotFound.
///
/// Returns the lock removed, if any. The caller checks `commit_ts > start_ts`.
pub fn commit<S: Snapshot + ?Sized>(
    txn: &mut MvccTxn,
    reader: &MvccReader<'_, S>,
    key: Key,
    commit_ts: TimeStamp,
) -> Result<Option<Lock>> {
    let start_ts = txn.start_ts;
    let lock = match reader.load_lock(&key)? {
        Some(lock) if lock.ts == start_ts => lock,
        _ => return lock_not_found(reader, key, start_ts, commit_ts),
    };
    if commit_ts < lock.min_commit_ts {
        return Err(Error::CommitTsExpired {
            start_ts,
            commit_ts,
            key: key.to_raw()?,
            min_commit_ts: lock.min_commit_ts,
        });
    }
    if lock.lock_type == LockType::Pessimistic {
        txn.unlock_key(key);
        return Ok(Some(lock));
    }
    let Some(write_type) = WriteType::from_lock_type(lock.lock_type) else {
        // Unreachable: only pessimistic locks have no write type.
        return Err(Error::Corrupt(format!(
            "lock {:?} has no write type",
            lock.lock_type
        )));
    };
    let mut write = Write::new(write_type, start_ts, lock.short_value.clone());
    // Another transaction rolled back at exactly our commit ts while we held the lock;
    // its rollback lives on as a flag of our record, which takes that slot.
    if lock.rollback_ts.contains(&commit_ts) {
        write.has_overlapped_rollback = true;
    }
    txn.put_write(key.clone(), commit_ts, &write);
    txn.unlock_key(key);
    Ok(Some(lock))
}

fn lock_not_found<S: Snapshot + ?Sized>(
    reader: &MvccReader<'_, S>,
    key: Key,
    start_ts: TimeStamp,
    commit_ts: TimeStamp,
) -> Result<Option<Lock>> {
    if reader
        .get_txn_commit_record(&key, start_ts)?
        .committed_ts()
        .is_some()
    {
        return Ok(None);
    }
    Err(Error::TxnLockNotFound {
        start_ts,
        commit_ts,
        key: key.to_raw()?,
    })
}
