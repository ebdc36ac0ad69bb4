//! KvCheckSecondaryLocks (txn.md §3.9): recovery of an async-commit transaction. Its
//! primary cannot tell whether it committed: it did iff every secondary was prewritten.
//!
//! Keys are checked in order until one decides: all our prewrite locks present ⇒ they
//! are returned (`locks`); a committed key ⇒ `commit_ts`; a key rolled back, without a
//! record, or holding only our pessimistic lock ⇒ rolled back (both fields empty). The
//! last two leave a protected rollback, so a late prewrite cannot make the transaction
//! committable after it was declared rolled back; max_ts is raised to the start ts for
//! the same reason.

use proto::kvrpcpb::{CheckSecondaryLocksRequest, CheckSecondaryLocksResponse, LockInfo};

use crate::actions::cleanup::{
    collapse_prev_rollback, mark_rollback_on_mismatching_lock, put_rollback,
};
use crate::reader::TxnCommitRecord;
use crate::{
    ConcurrencyManager, Error, Key, LockType, MvccReader, MvccTxn, Result, Snapshot, TimeStamp,
    WriteResult, WriteType,
};

/// Every key of the request.
pub fn latch_keys(req: &CheckSecondaryLocksRequest) -> Vec<Key> {
    req.keys.iter().map(|k| Key::from_raw(k)).collect()
}

/// What one key says about the transaction.
enum KeyStatus {
    Locked(LockInfo),
    Committed(TimeStamp),
    RolledBack,
}

/// Checks the secondaries of transaction `start_version`.
pub fn process<S: Snapshot + ?Sized>(
    snap: &S,
    cm: &ConcurrencyManager,
    req: &CheckSecondaryLocksRequest,
) -> Result<WriteResult<CheckSecondaryLocksResponse>> {
    if req.start_version == 0 {
        return Ok(WriteResult::read_only(CheckSecondaryLocksResponse {
            error: Some(Error::InvalidRequest("check of start_version 0".into()).to_key_error()),
            ..Default::default()
        }));
    }
    cm.update_max_ts(req.start_version);
    let reader = MvccReader::new(snap);
    let mut txn = MvccTxn::new(req.start_version);
    let mut resp = CheckSecondaryLocksResponse::default();
    for raw in &req.keys {
        match check_key(&mut txn, &reader, Key::from_raw(raw), raw)? {
            KeyStatus::Locked(info) => resp.locks.push(info),
            KeyStatus::Committed(commit_ts) => {
                resp.locks.clear();
                resp.commit_ts = commit_ts;
                break;
            }
            KeyStatus::RolledBack => {
                resp.locks.clear();
                break;
            }
        }
    }
    Ok(txn.into_result(resp))
}

fn check_key<S: Snapshot + ?Sized>(
    txn: &mut MvccTxn,
    reader: &MvccReader<S>,
    key: Key,
    raw: &[u8],
) -> Result<KeyStatus> {
    let lock = reader.load_lock(&key)?;
    let mut mismatch_lock = None;
    match lock {
        Some(lock) if lock.ts == txn.start_ts => {
            if lock.lock_type != LockType::Pessimistic {
                return Ok(KeyStatus::Locked(lock.to_lock_info(raw.to_vec())));
            }
            // Only pessimistically locked: the transaction never prewrote this key, so
            // it cannot have committed. Drop the lock and fix the status.
            txn.unlock_key(key.clone());
        }
        other => mismatch_lock = other,
    }
    let overlapped = match reader.get_txn_commit_record(&key, txn.start_ts)? {
        TxnCommitRecord::SingleRecord { commit_ts, write } => {
            // A record needs no new rollback: a commit cannot change, and a rollback
            // record is already there.
            return Ok(if write.write_type == WriteType::Rollback {
                KeyStatus::RolledBack
            } else {
                KeyStatus::Committed(commit_ts)
            });
        }
        TxnCommitRecord::OverlappedRollback { .. } => return Ok(KeyStatus::RolledBack),
        TxnCommitRecord::None { overlapped_write } => overlapped_write,
    };
    if let (Some(other), None) = (mismatch_lock, &overlapped) {
        mark_rollback_on_mismatching_lock(txn, &key, other, true);
    }
    if put_rollback(txn, reader, &key, true, overlapped)? {
        collapse_prev_rollback(txn, reader, &key)?;
    }
    Ok(KeyStatus::RolledBack)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actions::cleanup::test_util::*;
    use crate::testing::MemSnapshot;
    use crate::{Lock, Write};

    fn run(
        snap: &mut MemSnapshot,
        cm: &ConcurrencyManager,
        start: u64,
        keys: &[&[u8]],
    ) -> CheckSecondaryLocksResponse {
        let req = CheckSecondaryLocksRequest {
            start_version: start,
            keys: keys.iter().map(|k| k.to_vec()).collect(),
            ..Default::default()
        };
        let res = process(&*snap, cm, &req).unwrap();
        snap.apply(&res.modifies);
        res.response
    }

    fn async_lock(start: u64) -> Lock {
        let mut l = Lock::new(LockType::Put, b"p".to_vec(), start, 100);
        l.use_async_commit = true;
        l.min_commit_ts = start + 1;
        l
    }

    #[test]
    fn all_locked() {
        let cm = ConcurrencyManager::new(1);
        let mut snap = MemSnapshot::new();
        prewrite(&mut snap, b"s1", b"1", async_lock(100));
        prewrite(&mut snap, b"s2", b"2", async_lock(100));
        let before = lens(&snap);
        let resp = run(&mut snap, &cm, 100, &[b"s1", b"s2"]);
        assert_eq!((resp.error.clone(), resp.commit_ts), (None, 0));
        let keys: Vec<_> = resp.locks.iter().map(|l| l.key.clone()).collect();
        assert_eq!(keys, vec![b"s1".to_vec(), b"s2".to_vec()]);
        assert!(resp
            .locks
            .iter()
            .all(|l| l.use_async_commit && l.lock_version == 100 && l.min_commit_ts == 101));
        assert_eq!(lens(&snap), before);
        assert_eq!(cm.max_ts(), 100);
    }

    #[test]
    fn committed_key_decides() {
        let cm = ConcurrencyManager::new(1);
        let mut snap = MemSnapshot::new();
        prewrite(&mut snap, b"s1", b"1", async_lock(100));
        prewrite(&mut snap, b"s2", b"2", async_lock(100));
        commit(&mut snap, b"s2", 105);
        let resp = run(&mut snap, &cm, 100, &[b"s1", b"s2"]);
        assert_eq!((resp.locks.len(), resp.commit_ts), (0, 105));
        assert!(get_lock(&snap, b"s1").is_some(), "nothing rolled back");
    }

    #[test]
    fn missing_lock_rolls_back_protected() {
        let cm = ConcurrencyManager::new(1);
        let mut snap = MemSnapshot::new();
        prewrite(&mut snap, b"s1", b"1", async_lock(100));
        // An old unprotected rollback of another txn below: collapsed.
        put_write(&mut snap, b"s2", 90, &Write::new_rollback(90, false));
        let resp = run(&mut snap, &cm, 100, &[b"s1", b"s2"]);
        assert_eq!((resp.locks.len(), resp.commit_ts, resp.error), (0, 0, None));
        assert!(get_write(&snap, b"s2", 100).unwrap().is_protected());
        assert!(get_write(&snap, b"s2", 90).is_none());
        assert!(
            get_lock(&snap, b"s1").is_some(),
            "ResolveLock removes the other locks"
        );
        // Asked again: rolled back, nothing new written.
        let n = lens(&snap);
        let resp = run(&mut snap, &cm, 100, &[b"s2", b"s1"]);
        assert_eq!((resp.locks.len(), resp.commit_ts), (0, 0));
        assert_eq!(lens(&snap), n);
    }

    #[test]
    fn pessimistic_lock_rolled_back() {
        let cm = ConcurrencyManager::new(1);
        let mut snap = MemSnapshot::new();
        let mut l = Lock::new(LockType::Pessimistic, b"p".to_vec(), 100, 100);
        l.for_update_ts = 100;
        put_lock(&mut snap, b"s1", &l);
        let resp = run(&mut snap, &cm, 100, &[b"s1"]);
        assert_eq!((resp.locks.len(), resp.commit_ts), (0, 0));
        assert!(get_lock(&snap, b"s1").is_none());
        assert!(get_write(&snap, b"s1", 100).unwrap().is_protected());
    }

    #[test]
    fn rolled_back_key() {
        let cm = ConcurrencyManager::new(1);
        let mut snap = MemSnapshot::new();
        put_write(&mut snap, b"s1", 100, &Write::new_rollback(100, false));
        let resp = run(&mut snap, &cm, 100, &[b"s1"]);
        assert_eq!((resp.locks.len(), resp.commit_ts), (0, 0));
        assert_eq!(lens(&snap), (0, 0, 1));
        assert!(
            !get_write(&snap, b"s1", 100).unwrap().is_protected(),
            "left as it was"
        );
    }

    #[test]
    fn other_txn_lock_and_overlap() {
        let cm = ConcurrencyManager::new(1);
        let mut snap = MemSnapshot::new();
        // Another async txn (start 90, min_commit_ts 95) locks s1: our rollback at 100 is
        // recorded in its rollback_ts.
        let mut other = async_lock(90);
        other.min_commit_ts = 95;
        prewrite(&mut snap, b"s1", b"x", other);
        run(&mut snap, &cm, 100, &[b"s1"]);
        assert_eq!(get_lock(&snap, b"s1").unwrap().rollback_ts, vec![100]);
        assert!(get_write(&snap, b"s1", 100).unwrap().is_protected());
        // A commit of another txn exactly at our start ts: flagged, not overwritten.
        prewrite_put(&mut snap, b"s2", b"y", b"s2", 80, 10);
        commit(&mut snap, b"s2", 100);
        run(&mut snap, &cm, 100, &[b"s2"]);
        let w = get_write(&snap, b"s2", 100).unwrap();
        assert_eq!(
            (w.write_type, w.start_ts, w.has_overlapped_rollback),
            (WriteType::Put, 80, true)
        );
    }

    #[test]
    fn empty_and_zero() {
        let cm = ConcurrencyManager::new(1);
        let mut snap = MemSnapshot::new();
        assert_eq!(
            run(&mut snap, &cm, 100, &[]),
            CheckSecondaryLocksResponse::default()
        );
        assert!(run(&mut snap, &cm, 0, &[b"k"]).error.is_some());
        assert_eq!(lens(&snap), (0, 0, 0));
    }
}
