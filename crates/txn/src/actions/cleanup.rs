//! Rolling a transaction back on one key: the shared machinery of BatchRollback,
//! Cleanup, CheckTxnStatus, CheckSecondaryLocks and ResolveLock.
//!
//! A rollback leaves a Rollback record at `(key, start_ts)` so that a prewrite arriving
//! late (a retried or delayed request) meets it and fails instead of resurrecting the
//! transaction. Two refinements keep the write CF small without weakening that:
//! - *protected* rollbacks (on a primary key, or whenever the transaction's status must
//!   never flip) carry the short value `p` and are never removed;
//! - writing a rollback *collapses* the key's next older rollback when it is unprotected,
//!   so a key rolled back by many transactions keeps only the newest unprotected one.
//!
//! If `(key, start_ts)` already holds another transaction's commit record (its commit_ts
//! equals our start_ts), a separate record cannot be written there: a protected rollback
//! marks that record `has_overlapped_rollback` (with a `gc_fence`), an unprotected one
//! writes nothing.

use crate::actions::check_txn_status::TxnStatus;
use crate::reader::TxnCommitRecord;
use crate::timestamp::physical;
use crate::WriteType;
use crate::{Error, Key, Lock, LockType, MvccReader, MvccTxn, Result, Snapshot, TimeStamp, Write};

/// Whether `lock`'s TTL has run out by `current_ts` (`phys(ts) + ttl < phys(current_ts)`).
/// Saturating, so a huge TTL from a request means "never" rather than a panic.
pub fn lock_expired(lock: &Lock, current_ts: TimeStamp) -> bool {
    physical(lock.ts).saturating_add(lock.ttl) < physical(current_ts)
}

/// Whether `key` (encoded) is the primary key named by `lock` (raw).
pub fn is_primary(key: &Key, lock: &Lock) -> bool {
    Key::from_raw(&lock.primary) == *key
}

/// What to do when the transaction's lock is not on the key and no commit or rollback
/// record says what became of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MissingLockAction {
    /// Leave an unprotected rollback (collapsing the previous one).
    Rollback,
    /// Leave a protected rollback (nothing collapsed: the caller needs the status fixed).
    ProtectedRollback,
    /// Fail with TxnNotFound.
    ReturnError,
}

impl MissingLockAction {
    /// Cleanup's choice: a rollback, protected when asked.
    pub fn rollback_protect(protect: bool) -> MissingLockAction {
        if protect {
            MissingLockAction::ProtectedRollback
        } else {
            MissingLockAction::Rollback
        }
    }

    /// CheckTxnStatus' choice: a protected rollback if the caller asked for one.
    pub fn rollback(rollback_if_not_exist: bool) -> MissingLockAction {
        if rollback_if_not_exist {
            MissingLockAction::ProtectedRollback
        } else {
            MissingLockAction::ReturnError
        }
    }
}

/// Rolls back `txn`'s own `lock` on `key`: drops its long value, leaves a rollback record
/// (protected iff `key` is the lock's primary), optionally collapses the previous
/// unprotected rollback, and removes the lock. No TTL check: the caller decided.
pub fn rollback_lock<S: Snapshot + ?Sized>(
    txn: &mut MvccTxn,
    reader: &MvccReader<S>,
    key: Key,
    lock: &Lock,
    collapse: bool,
) -> Result<()> {
    let overlapped = match reader.get_txn_commit_record(&key, txn.start_ts)? {
        TxnCommitRecord::None { overlapped_write } => overlapped_write,
        TxnCommitRecord::SingleRecord { write, commit_ts }
            if write.write_type != WriteType::Rollback =>
        {
            // A lock and a commit record of the same transaction on one key: the data is
            // inconsistent, and rolling back would lose a committed write.
            return Err(Error::corrupt(
                key.as_encoded(),
                format!(
                    "txn {} holds a lock but committed at {commit_ts}",
                    txn.start_ts
                ),
            ));
        }
        // Already rolled back (a stale lock left behind): only the lock goes.
        _ => {
            txn.unlock_key(key);
            return Ok(());
        }
    };
    if lock.lock_type == LockType::Put && lock.short_value.is_none() {
        txn.delete_value(key.clone(), lock.ts);
    }
    let protected = is_primary(&key, lock);
    put_rollback(txn, reader, &key, protected, overlapped)?;
    if collapse {
        collapse_prev_rollback(txn, reader, &key)?;
    }
    txn.unlock_key(key);
    Ok(())
}

/// Writes the rollback record of `txn` on `key`, or folds it into `overlapped` (another
/// transaction's record at `(key, start_ts)`). Returns whether anything was written.
pub fn put_rollback<S: Snapshot + ?Sized>(
    txn: &mut MvccTxn,
    reader: &MvccReader<S>,
    key: &Key,
    protected: bool,
    overlapped: Option<(TimeStamp, Write)>,
) -> Result<bool> {
    let start_ts = txn.start_ts;
    let write = match overlapped {
        None => Write::new_rollback(start_ts, protected),
        // An unprotected rollback may be lost; the record there stays as it is.
        Some(_) if !protected => return Ok(false),
        Some((_, mut write)) => {
            write.has_overlapped_rollback = true;
            write.gc_fence = Some(overlapped_gc_fence(reader, key, start_ts)?);
            write
        }
    };
    txn.put_write(key.clone(), start_ts, &write);
    Ok(true)
}

/// The gc_fence of a record at `(key, start_ts)` that gets the overlapped-rollback flag:
/// the commit ts of the oldest Put or Delete committed above it, or 0 if there is none
/// (TiKV's definition; it lets GC tell whether the record is still the latest version).
fn overlapped_gc_fence<S: Snapshot + ?Sized>(
    reader: &MvccReader<S>,
    key: &Key,
    start_ts: TimeStamp,
) -> Result<TimeStamp> {
    let mut fence = 0;
    let mut seek = TimeStamp::MAX;
    while let Some((commit_ts, write)) = reader.seek_write(key, seek)? {
        if commit_ts <= start_ts {
            break;
        }
        if matches!(write.write_type, WriteType::Put | WriteType::Delete) {
            fence = commit_ts;
        }
        seek = commit_ts - 1;
    }
    Ok(fence)
}

/// Deletes the newest record of `key` at or below `txn.start_ts` if it is an
/// unprotected rollback (it says nothing a newer rollback does not).
pub fn collapse_prev_rollback<S: Snapshot + ?Sized>(
    txn: &mut MvccTxn,
    reader: &MvccReader<S>,
    key: &Key,
) -> Result<()> {
    if let Some((commit_ts, write)) = reader.seek_write(key, txn.start_ts)? {
        if write.write_type == WriteType::Rollback && !write.is_protected() {
            txn.delete_write(key.clone(), commit_ts);
        }
    }
    Ok(())
}

/// Decides `txn`'s status on `key` when its lock is not there. Committed or rolled back
/// records answer directly; with no record, `action` either fails (TxnNotFound) or leaves
/// a rollback so that a late prewrite cannot succeed. `mismatch_lock` is another
/// transaction's lock found on the key: an async-commit lock whose commit could land
/// exactly on our protected rollback records our start ts in its `rollback_ts`.
pub fn check_txn_status_missing_lock<S: Snapshot + ?Sized>(
    txn: &mut MvccTxn,
    reader: &MvccReader<S>,
    key: Key,
    mismatch_lock: Option<Lock>,
    action: MissingLockAction,
    resolving_pessimistic_lock: bool,
) -> Result<TxnStatus> {
    match reader.get_txn_commit_record(&key, txn.start_ts)? {
        TxnCommitRecord::SingleRecord { commit_ts, write } => {
            Ok(if write.write_type == WriteType::Rollback {
                TxnStatus::RolledBack
            } else {
                TxnStatus::Committed { commit_ts }
            })
        }
        TxnCommitRecord::OverlappedRollback { .. } => Ok(TxnStatus::RolledBack),
        TxnCommitRecord::None { overlapped_write } => {
            if action == MissingLockAction::ReturnError {
                return Err(Error::TxnNotFound {
                    start_ts: txn.start_ts,
                    key: key.to_raw()?,
                });
            }
            if resolving_pessimistic_lock {
                // The transaction may still be acquiring pessimistic locks (its primary
                // can change): a rollback record here could wrongly doom it.
                return Ok(TxnStatus::LockNotExistDoNothing);
            }
            let protected = action == MissingLockAction::ProtectedRollback;
            if !protected {
                collapse_prev_rollback(txn, reader, &key)?;
            }
            if let (Some(lock), None) = (mismatch_lock, &overlapped_write) {
                mark_rollback_on_mismatching_lock(txn, &key, lock, protected);
            }
            put_rollback(txn, reader, &key, protected, overlapped_write)?;
            Ok(TxnStatus::LockNotExist)
        }
    }
}

/// An async-commit lock of another transaction may commit at a ts computed on the store,
/// possibly our start ts, which would overwrite our protected rollback at
/// `(key, start_ts)`. Recording our start ts in its `rollback_ts` makes that commit carry
/// the overlapped-rollback flag instead.
pub fn mark_rollback_on_mismatching_lock(
    txn: &mut MvccTxn,
    key: &Key,
    mut lock: Lock,
    protected: bool,
) {
    if !protected || lock.ts == txn.start_ts || !lock.use_async_commit {
        return;
    }
    // Below min_commit_ts the lock can never commit at our start ts.
    if txn.start_ts < lock.min_commit_ts || lock.rollback_ts.contains(&txn.start_ts) {
        return;
    }
    lock.rollback_ts.push(txn.start_ts);
    txn.put_lock(key.clone(), &lock);
}

/// TiKV's `cleanup`: rolls back `txn`'s lock on `key`. With `current_ts` ≠ 0 a lock whose
/// TTL has not run out is left alone (KeyIsLocked). With the lock the rollback is
/// protected iff `key` is the primary, and `protect_rollback` only stops the collapse.
/// Without the lock: committed ⇒ Committed error, rolled back ⇒ nothing, no record ⇒ a
/// rollback record, protected (and nothing collapsed) iff `protect_rollback`.
pub fn cleanup<S: Snapshot + ?Sized>(
    txn: &mut MvccTxn,
    reader: &MvccReader<S>,
    key: Key,
    current_ts: TimeStamp,
    protect_rollback: bool,
) -> Result<()> {
    match reader.load_lock(&key)? {
        Some(lock) if lock.ts == txn.start_ts => {
            if current_ts != 0 && !lock_expired(&lock, current_ts) {
                let raw = key.to_raw()?;
                return Err(Error::KeyIsLocked(lock.to_lock_info(raw)));
            }
            rollback_lock(txn, reader, key, &lock, !protect_rollback)
        }
        other => {
            let action = MissingLockAction::rollback_protect(protect_rollback);
            match check_txn_status_missing_lock(txn, reader, key.clone(), other, action, false)? {
                TxnStatus::Committed { commit_ts } => Err(Error::Committed {
                    start_ts: txn.start_ts,
                    commit_ts,
                    key: key.to_raw()?,
                }),
                _ => Ok(()),
            }
        }
    }
}

/// Helpers for the tests of this crate's rollback-related files: build MVCC state
/// directly, read it back decoded.
#[cfg(test)]
pub(crate) mod test_util {
    use engine::{CF_DEFAULT, CF_LOCK, CF_WRITE};
    use proto::kvrpcpb::CheckTxnStatusResponse;

    use crate::testing::MemSnapshot;
    use crate::timestamp::compose;
    use crate::{
        Key, Lock, LockType, MvccTxn, Snapshot, TimeStamp, Write, WriteType, SHORT_VALUE_MAX_LEN,
    };

    /// A timestamp at `ms` milliseconds.
    pub fn ts(ms: u64) -> TimeStamp {
        compose(ms, 0)
    }

    pub fn apply(snap: &mut MemSnapshot, txn: MvccTxn) {
        snap.apply(txn.modifies());
    }

    pub fn put_lock(snap: &mut MemSnapshot, key: &[u8], lock: &Lock) {
        let mut txn = MvccTxn::new(lock.ts);
        txn.put_lock(Key::from_raw(key), lock);
        apply(snap, txn);
    }

    pub fn put_write(snap: &mut MemSnapshot, key: &[u8], commit_ts: TimeStamp, write: &Write) {
        let mut txn = MvccTxn::new(write.start_ts);
        txn.put_write(Key::from_raw(key), commit_ts, write);
        apply(snap, txn);
    }

    /// A prewritten Put (long values go to CF default) with the given lock shape.
    pub fn prewrite(snap: &mut MemSnapshot, key: &[u8], value: &[u8], mut lock: Lock) {
        lock.lock_type = LockType::Put;
        let mut txn = MvccTxn::new(lock.ts);
        if value.len() > SHORT_VALUE_MAX_LEN {
            txn.put_value(Key::from_raw(key), lock.ts, value.to_vec());
            lock.short_value = None;
        } else {
            lock.short_value = Some(value.to_vec());
        }
        txn.put_lock(Key::from_raw(key), &lock);
        apply(snap, txn);
    }

    /// A plain Put lock of txn `start` with primary `primary`.
    pub fn prewrite_put(
        snap: &mut MemSnapshot,
        key: &[u8],
        value: &[u8],
        primary: &[u8],
        start: TimeStamp,
        ttl: u64,
    ) {
        prewrite(
            snap,
            key,
            value,
            Lock::new(LockType::Put, primary.to_vec(), start, ttl),
        );
    }

    /// Commits the lock on `key` at `commit_ts` the way a commit does (no checks).
    pub fn commit(snap: &mut MemSnapshot, key: &[u8], commit_ts: TimeStamp) {
        let lock = get_lock(snap, key).expect("a lock to commit");
        let mut txn = MvccTxn::new(lock.ts);
        let ty = WriteType::from_lock_type(lock.lock_type).expect("a prewrite lock");
        let write = Write::new(ty, lock.ts, lock.short_value.clone());
        txn.put_write(Key::from_raw(key), commit_ts, &write);
        txn.unlock_key(Key::from_raw(key));
        apply(snap, txn);
    }

    pub fn get_lock(snap: &MemSnapshot, key: &[u8]) -> Option<Lock> {
        let bytes = snap
            .get_cf(CF_LOCK, Key::from_raw(key).as_encoded())
            .unwrap()?;
        Some(Lock::parse(&bytes).unwrap())
    }

    pub fn raw_write(snap: &MemSnapshot, key: &[u8], commit_ts: TimeStamp) -> Option<Vec<u8>> {
        snap.get_cf(
            CF_WRITE,
            Key::from_raw(key).append_ts(commit_ts).as_encoded(),
        )
        .unwrap()
    }

    pub fn get_write(snap: &MemSnapshot, key: &[u8], commit_ts: TimeStamp) -> Option<Write> {
        raw_write(snap, key, commit_ts).map(|b| Write::parse(&b).unwrap())
    }

    pub fn has_value(snap: &MemSnapshot, key: &[u8], start_ts: TimeStamp) -> bool {
        let k = Key::from_raw(key).append_ts(start_ts);
        snap.get_cf(CF_DEFAULT, k.as_encoded()).unwrap().is_some()
    }

    /// Every commit record of `key`, newest first.
    pub fn writes(snap: &MemSnapshot, key: &[u8]) -> Vec<(TimeStamp, Write)> {
        let enc = Key::from_raw(key);
        snap.dump(CF_WRITE)
            .into_iter()
            .filter_map(|(k, v)| {
                let (user, ts) = Key::split_on_ts(&k).ok()?;
                (user == enc).then(|| (ts, Write::parse(&v).unwrap()))
            })
            .collect()
    }

    /// Number of pairs in CFs (default, lock, write).
    pub fn lens(snap: &MemSnapshot) -> (usize, usize, usize) {
        (snap.len(CF_DEFAULT), snap.len(CF_LOCK), snap.len(CF_WRITE))
    }

    /// The three replies the official client accepts from CheckTxnStatus (anything else
    /// panics it): rolled back (0, 0, none), committed (ts, 0, none), locked (0, ttl > 0,
    /// lock info); always with a valid action. Errors carry a non-empty KeyError.
    pub fn assert_reply_contract(resp: &CheckTxnStatusResponse) {
        assert!(
            proto::kvrpcpb::Action::try_from(resp.action).is_ok(),
            "invalid action {}",
            resp.action
        );
        if let Some(e) = &resp.error {
            assert_ne!(*e, Default::default(), "empty KeyError");
            return;
        }
        match (resp.commit_version, resp.lock_ttl, &resp.lock_info) {
            (0, 0, None) => {}
            (c, 0, None) if c > 0 => {}
            (0, ttl, Some(_)) if ttl > 0 => {}
            other => panic!("reply the client cannot read: {other:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_util::*;
    use super::*;
    use crate::testing::MemSnapshot;

    fn run_cleanup(
        snap: &mut MemSnapshot,
        key: &[u8],
        start: TimeStamp,
        current: TimeStamp,
        protect: bool,
    ) -> Result<()> {
        let reader = MvccReader::new(&*snap);
        let mut txn = MvccTxn::new(start);
        cleanup(&mut txn, &reader, Key::from_raw(key), current, protect)?;
        let modifies = txn.modifies().to_vec();
        snap.apply(&modifies);
        Ok(())
    }

    #[test]
    fn protected_rollback_bytes() {
        // On the primary the rollback is protected: TiKV's `52 <varint start> 76 01 70`.
        let mut snap = MemSnapshot::new();
        prewrite_put(&mut snap, b"k1", b"v", b"k1", 400_000, 3000);
        run_cleanup(&mut snap, b"k1", 400_000, 0, false).unwrap();
        assert_eq!(
            raw_write(&snap, b"k1", 400_000).unwrap(),
            vec![0x52, 0x80, 0xb5, 0x18, 0x76, 0x01, 0x70]
        );
        assert!(get_lock(&snap, b"k1").is_none());
        // On a secondary it is not: just the type and start ts.
        prewrite_put(&mut snap, b"k2", b"v", b"k1", 400_000, 3000);
        run_cleanup(&mut snap, b"k2", 400_000, 0, false).unwrap();
        assert_eq!(
            raw_write(&snap, b"k2", 400_000).unwrap(),
            vec![0x52, 0x80, 0xb5, 0x18]
        );
    }

    #[test]
    fn long_value_dropped_with_the_lock() {
        let mut snap = MemSnapshot::new();
        let long = vec![7u8; 300];
        prewrite_put(&mut snap, b"k", &long, b"p", 10, 3000);
        assert!(has_value(&snap, b"k", 10));
        run_cleanup(&mut snap, b"k", 10, 0, false).unwrap();
        assert!(!has_value(&snap, b"k", 10));
        assert_eq!(lens(&snap), (0, 0, 1));
    }

    #[test]
    fn unexpired_lock_is_kept_when_current_ts_given() {
        let mut snap = MemSnapshot::new();
        prewrite_put(&mut snap, b"k", b"v", b"k", ts(100), 50);
        let err = run_cleanup(&mut snap, b"k", ts(100), ts(150), true).unwrap_err();
        match err {
            Error::KeyIsLocked(info) => {
                assert_eq!((info.key, info.lock_version), (b"k".to_vec(), ts(100)))
            }
            e => panic!("{e:?}"),
        }
        assert!(get_lock(&snap, b"k").is_some());
        // Expired one ms later.
        run_cleanup(&mut snap, b"k", ts(100), ts(151), true).unwrap();
        assert!(get_lock(&snap, b"k").is_none());
        assert!(get_write(&snap, b"k", ts(100)).unwrap().is_protected());
    }

    #[test]
    fn huge_ttl_does_not_overflow() {
        let lock = Lock::new(LockType::Put, b"k".to_vec(), TimeStamp::MAX, u64::MAX);
        assert!(!lock_expired(&lock, TimeStamp::MAX));
    }

    #[test]
    fn collapses_older_unprotected_rollback_only() {
        let mut snap = MemSnapshot::new();
        // Secondary key rolled back by txn 10 (unprotected), then txn 20 rolls back too.
        run_cleanup(&mut snap, b"k", 10, 0, false).unwrap();
        assert!(!get_write(&snap, b"k", 10).unwrap().is_protected());
        run_cleanup(&mut snap, b"k", 20, 0, false).unwrap();
        let w = writes(&snap, b"k");
        assert_eq!(
            w.iter().map(|(t, _)| *t).collect::<Vec<_>>(),
            vec![20],
            "rollback at 10 collapsed"
        );
        // A protected rollback (txn 30) never collapses, nor is it collapsed by txn 40.
        run_cleanup(&mut snap, b"k", 30, 0, true).unwrap();
        assert_eq!(
            writes(&snap, b"k").len(),
            2,
            "protected rollback does not collapse"
        );
        run_cleanup(&mut snap, b"k", 40, 0, false).unwrap();
        let ts: Vec<_> = writes(&snap, b"k").iter().map(|(t, _)| *t).collect();
        assert_eq!(ts, vec![40, 30, 20]);
    }

    #[test]
    fn collapse_keeps_commit_records() {
        let mut snap = MemSnapshot::new();
        prewrite_put(&mut snap, b"k", b"v", b"k", 5, 10);
        commit(&mut snap, b"k", 8);
        run_cleanup(&mut snap, b"k", 10, 0, false).unwrap();
        assert_eq!(writes(&snap, b"k").len(), 2);
    }

    #[test]
    fn overlapped_rollback() {
        // Txn 5 committed k at 10 (its record sits at (k, 10)); txn 10 is rolled back on k.
        let mut snap = MemSnapshot::new();
        prewrite_put(&mut snap, b"k", b"v", b"k", 5, 10);
        commit(&mut snap, b"k", 10);
        // Unprotected: nothing written.
        let before = raw_write(&snap, b"k", 10).unwrap();
        run_cleanup(&mut snap, b"k", 10, 0, false).unwrap();
        assert_eq!(raw_write(&snap, b"k", 10).unwrap(), before);
        assert_eq!(writes(&snap, b"k").len(), 1);
        // A newer Put (txn 12 at 15) and Lock record (at 20) above it, then a protected
        // rollback: the flag and the gc_fence (the oldest newer Put/Delete) go on the record.
        prewrite_put(&mut snap, b"k", b"w", b"k", 12, 10);
        commit(&mut snap, b"k", 15);
        put_write(&mut snap, b"k", 20, &Write::new(WriteType::Lock, 18, None));
        run_cleanup(&mut snap, b"k", 10, 0, true).unwrap();
        let w = get_write(&snap, b"k", 10).unwrap();
        assert_eq!(
            (w.write_type, w.start_ts, w.short_value.as_deref()),
            (WriteType::Put, 5, Some(&b"v"[..]))
        );
        assert!(w.has_overlapped_rollback);
        assert_eq!(w.gc_fence, Some(15));
        // Now txn 10 reads as rolled back.
        let reader = MvccReader::new(&snap);
        assert!(reader
            .get_txn_commit_record(&Key::from_raw(b"k"), 10)
            .unwrap()
            .is_rolled_back());
    }

    #[test]
    fn overlapped_rollback_without_newer_version_has_zero_fence() {
        let mut snap = MemSnapshot::new();
        prewrite_put(&mut snap, b"k", b"v", b"k", 5, 10);
        commit(&mut snap, b"k", 10);
        run_cleanup(&mut snap, b"k", 10, 0, true).unwrap();
        let w = get_write(&snap, b"k", 10).unwrap();
        assert!(w.has_overlapped_rollback);
        assert_eq!(w.gc_fence, Some(0));
    }

    #[test]
    fn committed_and_rolled_back_without_lock() {
        let mut snap = MemSnapshot::new();
        prewrite_put(&mut snap, b"k", b"v", b"k", 5, 10);
        commit(&mut snap, b"k", 8);
        match run_cleanup(&mut snap, b"k", 5, 0, false) {
            Err(Error::Committed {
                start_ts: 5,
                commit_ts: 8,
                key,
            }) => assert_eq!(key, b"k"),
            r => panic!("{r:?}"),
        }
        run_cleanup(&mut snap, b"k", 9, 0, false).unwrap();
        let n = lens(&snap);
        run_cleanup(&mut snap, b"k", 9, 0, false).unwrap();
        assert_eq!(lens(&snap), n, "second rollback is a no-op");
    }

    #[test]
    fn stale_lock_with_rollback_record_is_just_removed() {
        let mut snap = MemSnapshot::new();
        put_write(&mut snap, b"k", 5, &Write::new_rollback(5, true));
        prewrite_put(&mut snap, b"k", b"v", b"k", 5, 10);
        run_cleanup(&mut snap, b"k", 5, 0, false).unwrap();
        assert_eq!(lens(&snap), (0, 0, 1));
        assert!(get_write(&snap, b"k", 5).unwrap().is_protected());
    }

    #[test]
    fn missing_lock_marks_async_commit_lock_of_other_txn() {
        let snap = {
            let mut s = MemSnapshot::new();
            let mut l = Lock::new(LockType::Put, b"k".to_vec(), 5, 100);
            l.use_async_commit = true;
            l.min_commit_ts = 8;
            put_lock(&mut s, b"k", &l);
            s
        };
        let run = |start: TimeStamp, action: MissingLockAction| {
            let mut s = snap.clone();
            let reader = MvccReader::new(&s);
            let mut txn = MvccTxn::new(start);
            let other = reader.load_lock(&Key::from_raw(b"k")).unwrap();
            let st = check_txn_status_missing_lock(
                &mut txn,
                &reader,
                Key::from_raw(b"k"),
                other,
                action,
                false,
            )
            .unwrap();
            assert_eq!(st, TxnStatus::LockNotExist);
            let m = txn.modifies().to_vec();
            s.apply(&m);
            s
        };
        // Protected rollback at 10 ≥ min_commit_ts 8: recorded on the lock.
        let s = run(10, MissingLockAction::ProtectedRollback);
        assert_eq!(get_lock(&s, b"k").unwrap().rollback_ts, vec![10]);
        assert!(get_write(&s, b"k", 10).unwrap().is_protected());
        // Below min_commit_ts, or unprotected: the lock is untouched.
        assert!(
            get_lock(&run(7, MissingLockAction::ProtectedRollback), b"k")
                .unwrap()
                .rollback_ts
                .is_empty()
        );
        let s = run(10, MissingLockAction::Rollback);
        assert!(get_lock(&s, b"k").unwrap().rollback_ts.is_empty());
        assert!(!get_write(&s, b"k", 10).unwrap().is_protected());
    }

    #[test]
    fn missing_lock_error_and_pessimistic_do_nothing() {
        let snap = MemSnapshot::new();
        let reader = MvccReader::new(&snap);
        let mut txn = MvccTxn::new(5);
        let err = check_txn_status_missing_lock(
            &mut txn,
            &reader,
            Key::from_raw(b"p"),
            None,
            MissingLockAction::ReturnError,
            false,
        )
        .unwrap_err();
        assert_eq!(
            err,
            Error::TxnNotFound {
                start_ts: 5,
                key: b"p".to_vec()
            }
        );
        let st = check_txn_status_missing_lock(
            &mut txn,
            &reader,
            Key::from_raw(b"p"),
            None,
            MissingLockAction::ProtectedRollback,
            true,
        )
        .unwrap();
        assert_eq!(st, TxnStatus::LockNotExistDoNothing);
        assert!(txn.is_empty());
    }
}
