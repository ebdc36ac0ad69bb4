//! Deciding a transaction's fate from its primary lock (CheckTxnStatus, txn.md §3.8).
//!
//! A client blocked by a lock asks the lock's primary what became of its transaction. The
//! answer is final once the primary is committed or rolled back; while the primary lock
//! lives the store may roll it back (TTL run out) or push its min_commit_ts past the
//! caller's start ts, so the caller can read around the lock without waiting.

use crate::actions::cleanup::{
    check_txn_status_missing_lock, is_primary, lock_expired, rollback_lock, MissingLockAction,
};
use crate::{Error, Key, Lock, MvccReader, MvccTxn, Result, Snapshot, TimeStamp};

/// What a status check found or did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxnStatus {
    /// Already rolled back before this check.
    RolledBack,
    /// The lock's TTL had run out: rolled back now.
    TtlExpire,
    /// No lock and no record: a rollback record was written now.
    LockNotExist,
    /// Committed at `commit_ts`.
    Committed { commit_ts: TimeStamp },
    /// An expired pessimistic primary lock was removed, without a rollback record.
    PessimisticRollBack,
    /// No lock and no record, and the caller asked not to write anything.
    LockNotExistDoNothing,
    /// Still locked; `min_commit_ts_pushed` tells the caller it may read around the lock.
    Uncommitted {
        lock: Lock,
        min_commit_ts_pushed: bool,
    },
}

/// The caller's side of a status check.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CheckParams {
    /// The caller's clock for the TTL check (u64::MAX: anything with a finite TTL expired).
    pub current_ts: TimeStamp,
    /// The start ts of the reader or writer that met the lock (0: none; MAX: a point get).
    pub caller_start_ts: TimeStamp,
    /// Treat an async-commit lock like any other.
    pub force_sync_commit: bool,
    /// The caller met a pessimistic lock: the transaction may still be running.
    pub resolving_pessimistic_lock: bool,
    /// Fail with PrimaryMismatch if the lock names another primary.
    pub verify_is_primary: bool,
    /// With no lock and no record, write a rollback instead of failing with TxnNotFound.
    pub rollback_if_not_exist: bool,
}

/// The status of `txn` (start ts `txn.start_ts`) given its `lock` on `primary_key`.
pub fn check_txn_status_lock_exists<S: Snapshot + ?Sized>(
    txn: &mut MvccTxn,
    reader: &MvccReader<S>,
    primary_key: Key,
    mut lock: Lock,
    p: &CheckParams,
) -> Result<TxnStatus> {
    if p.verify_is_primary && !is_primary(&primary_key, &lock) {
        if lock.lock_type == crate::LockType::Pessimistic && !p.resolving_pessimistic_lock {
            // The caller met a prewrite lock naming this key as the primary, so the
            // transaction is past acquiring locks and this pessimistic lock (naming another
            // primary) is a stale leftover: drop it and decide as if it were not there.
            let status = check_txn_status_missing_lock(
                txn,
                reader,
                primary_key.clone(),
                None,
                MissingLockAction::rollback(p.rollback_if_not_exist),
                p.resolving_pessimistic_lock,
            )?;
            txn.unlock_key(primary_key);
            return Ok(status);
        }
        let raw = primary_key.to_raw()?;
        return Err(Error::PrimaryMismatch(lock.to_lock_info(raw)));
    }

    // An async-commit transaction may already be committed through its secondaries;
    // only ResolveLock (after CheckSecondaryLocks) may settle it.
    if lock.use_async_commit && !p.force_sync_commit {
        return Ok(TxnStatus::Uncommitted {
            lock,
            min_commit_ts_pushed: false,
        });
    }

    let expired = lock_expired(&lock, p.current_ts);
    if lock.lock_type == crate::LockType::Pessimistic {
        if expired {
            if p.resolving_pessimistic_lock {
                // The primary may still move to another key: no rollback record.
                txn.unlock_key(primary_key);
                return Ok(TxnStatus::PessimisticRollBack);
            }
            rollback_lock(txn, reader, primary_key, &lock, true)?;
            return Ok(TxnStatus::TtlExpire);
        }
    } else if expired {
        rollback_lock(txn, reader, primary_key, &lock, true)?;
        return Ok(TxnStatus::TtlExpire);
    }

    // Push min_commit_ts above the caller so the caller can read around every lock of
    // this transaction. Only locks that already have one (large or async transactions)
    // are pushed: a lock without it may belong to a client that commits at any ts.
    let caller = p.caller_start_ts;
    if lock.min_commit_ts != 0 && caller != TimeStamp::MAX && caller >= lock.min_commit_ts {
        lock.min_commit_ts = (caller + 1).max(p.current_ts);
        txn.put_lock(primary_key, &lock);
    }
    // A point get (caller MAX) may skip the lock as long as it is not committed.
    let min_commit_ts_pushed =
        (caller != 0 && lock.min_commit_ts > caller) || caller == TimeStamp::MAX;
    Ok(TxnStatus::Uncommitted {
        lock,
        min_commit_ts_pushed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actions::cleanup::test_util::*;
    use crate::testing::MemSnapshot;
    use crate::{LockType, Write, WriteType};

    fn check(
        snap: &mut MemSnapshot,
        key: &[u8],
        lock_ts: TimeStamp,
        p: CheckParams,
    ) -> Result<TxnStatus> {
        let reader = MvccReader::new(&*snap);
        let mut txn = MvccTxn::new(lock_ts);
        let k = Key::from_raw(key);
        let lock = reader.load_lock(&k)?.expect("a lock");
        let st = check_txn_status_lock_exists(&mut txn, &reader, k, lock, &p)?;
        let m = txn.modifies().to_vec();
        snap.apply(&m);
        Ok(st)
    }

    fn params(current: TimeStamp, caller: TimeStamp) -> CheckParams {
        CheckParams {
            current_ts: current,
            caller_start_ts: caller,
            verify_is_primary: true,
            ..Default::default()
        }
    }

    #[test]
    fn expired_prewrite_lock_rolled_back_protected() {
        let mut snap = MemSnapshot::new();
        prewrite_put(&mut snap, b"p", &[1; 300], b"p", ts(100), 10);
        put_write(&mut snap, b"p", ts(50), &Write::new_rollback(ts(50), false));
        let st = check(&mut snap, b"p", ts(100), params(ts(111), 0)).unwrap();
        assert_eq!(st, TxnStatus::TtlExpire);
        assert!(get_write(&snap, b"p", ts(100)).unwrap().is_protected());
        assert!(
            get_write(&snap, b"p", ts(50)).is_none(),
            "older rollback collapsed"
        );
        assert_eq!(lens(&snap), (0, 0, 1));
    }

    #[test]
    fn async_commit_primary_never_rolled_back_or_pushed() {
        let mut snap = MemSnapshot::new();
        let mut l = Lock::new(LockType::Put, b"p".to_vec(), ts(100), 10);
        l.use_async_commit = true;
        l.min_commit_ts = ts(100) + 1;
        l.secondaries = vec![b"s".to_vec()];
        prewrite(&mut snap, b"p", b"v", l.clone());
        let before = snap.dump(engine::CF_LOCK);
        let st = check(&mut snap, b"p", ts(100), params(ts(1000), ts(500))).unwrap();
        match st {
            TxnStatus::Uncommitted {
                lock,
                min_commit_ts_pushed,
            } => {
                assert!(!min_commit_ts_pushed);
                assert_eq!(lock.min_commit_ts, ts(100) + 1);
            }
            s => panic!("{s:?}"),
        }
        assert_eq!(snap.dump(engine::CF_LOCK), before);
        assert_eq!(lens(&snap).2, 0);
        // force_sync_commit: treated as an ordinary (expired) lock.
        let p = CheckParams {
            force_sync_commit: true,
            ..params(ts(1000), 0)
        };
        assert_eq!(
            check(&mut snap, b"p", ts(100), p).unwrap(),
            TxnStatus::TtlExpire
        );
    }

    #[test]
    fn expired_pessimistic_primary() {
        let mk = || {
            let mut snap = MemSnapshot::new();
            let mut l = Lock::new(LockType::Pessimistic, b"p".to_vec(), ts(100), 10);
            l.for_update_ts = ts(100);
            put_lock(&mut snap, b"p", &l);
            snap
        };
        // Resolving a pessimistic lock: only the lock goes (action 4).
        let mut snap = mk();
        let p = CheckParams {
            resolving_pessimistic_lock: true,
            ..params(ts(200), 0)
        };
        assert_eq!(
            check(&mut snap, b"p", ts(100), p).unwrap(),
            TxnStatus::PessimisticRollBack
        );
        assert_eq!(lens(&snap), (0, 0, 0));
        // Otherwise a full, protected rollback (action 1).
        let mut snap = mk();
        assert_eq!(
            check(&mut snap, b"p", ts(100), params(ts(200), 0)).unwrap(),
            TxnStatus::TtlExpire
        );
        assert_eq!(lens(&snap), (0, 0, 1));
        assert!(get_write(&snap, b"p", ts(100)).unwrap().is_protected());
        // Not expired: left alone.
        let mut snap = mk();
        let st = check(&mut snap, b"p", ts(100), params(ts(105), 0)).unwrap();
        assert!(matches!(
            st,
            TxnStatus::Uncommitted {
                min_commit_ts_pushed: false,
                ..
            }
        ));
        assert_eq!(lens(&snap), (0, 1, 0));
    }

    #[test]
    fn min_commit_ts_push() {
        let mut snap = MemSnapshot::new();
        let mut l = Lock::new(LockType::Put, b"p".to_vec(), ts(100), 1000);
        l.min_commit_ts = ts(100) + 1;
        prewrite(&mut snap, b"p", b"v", l);
        // Caller at ts(150) ≥ min_commit_ts: pushed to max(caller + 1, current).
        let st = check(&mut snap, b"p", ts(100), params(ts(120), ts(150))).unwrap();
        assert!(matches!(
            st,
            TxnStatus::Uncommitted {
                min_commit_ts_pushed: true,
                ..
            }
        ));
        assert_eq!(get_lock(&snap, b"p").unwrap().min_commit_ts, ts(150) + 1);
        let st = check(&mut snap, b"p", ts(100), params(ts(400), ts(300))).unwrap();
        assert!(matches!(
            st,
            TxnStatus::Uncommitted {
                min_commit_ts_pushed: true,
                ..
            }
        ));
        assert_eq!(get_lock(&snap, b"p").unwrap().min_commit_ts, ts(400));
        // An older caller is already below it: reported pushed, nothing written.
        let before = snap.dump(engine::CF_LOCK);
        let st = check(&mut snap, b"p", ts(100), params(ts(120), ts(110))).unwrap();
        assert!(matches!(
            st,
            TxnStatus::Uncommitted {
                min_commit_ts_pushed: true,
                ..
            }
        ));
        assert_eq!(snap.dump(engine::CF_LOCK), before);
        // Caller 0: never "pushed"; caller MAX: always, without a write.
        let st = check(&mut snap, b"p", ts(100), params(ts(120), 0)).unwrap();
        assert!(matches!(
            st,
            TxnStatus::Uncommitted {
                min_commit_ts_pushed: false,
                ..
            }
        ));
        let st = check(&mut snap, b"p", ts(100), params(ts(120), TimeStamp::MAX)).unwrap();
        assert!(matches!(
            st,
            TxnStatus::Uncommitted {
                min_commit_ts_pushed: true,
                ..
            }
        ));
        assert_eq!(snap.dump(engine::CF_LOCK), before);
    }

    #[test]
    fn lock_without_min_commit_ts_is_not_pushed() {
        let mut snap = MemSnapshot::new();
        prewrite_put(&mut snap, b"p", b"v", b"p", ts(100), 1000);
        let st = check(&mut snap, b"p", ts(100), params(ts(120), ts(150))).unwrap();
        assert!(matches!(
            st,
            TxnStatus::Uncommitted {
                min_commit_ts_pushed: false,
                ..
            }
        ));
        assert_eq!(get_lock(&snap, b"p").unwrap().min_commit_ts, 0);
    }

    #[test]
    fn primary_mismatch() {
        // A prewrite lock naming another primary: PrimaryMismatch with its info.
        let mut snap = MemSnapshot::new();
        prewrite_put(&mut snap, b"k", b"v", b"other", ts(100), 10);
        match check(&mut snap, b"k", ts(100), params(ts(200), 0)) {
            Err(Error::PrimaryMismatch(info)) => assert_eq!(info.primary_lock, b"other"),
            r => panic!("{r:?}"),
        }
        // Without verification the lock is treated as the primary's (expired: rolled back,
        // unprotected since the key is not the lock's primary).
        let p = CheckParams {
            verify_is_primary: false,
            ..params(ts(200), 0)
        };
        assert_eq!(
            check(&mut snap, b"k", ts(100), p).unwrap(),
            TxnStatus::TtlExpire
        );
        assert!(!get_write(&snap, b"k", ts(100)).unwrap().is_protected());
    }

    #[test]
    fn stale_pessimistic_lock_with_other_primary() {
        let mk = || {
            let mut snap = MemSnapshot::new();
            let mut l = Lock::new(LockType::Pessimistic, b"other".to_vec(), ts(100), 10_000);
            l.for_update_ts = ts(100);
            put_lock(&mut snap, b"k", &l);
            snap
        };
        // Not resolving a pessimistic lock: dropped, then the no-lock path.
        let mut snap = mk();
        let p = CheckParams {
            rollback_if_not_exist: true,
            ..params(ts(101), 0)
        };
        assert_eq!(
            check(&mut snap, b"k", ts(100), p).unwrap(),
            TxnStatus::LockNotExist
        );
        assert!(get_lock(&snap, b"k").is_none());
        assert!(get_write(&snap, b"k", ts(100)).unwrap().is_protected());
        // Same without rollback_if_not_exist: TxnNotFound (and nothing is applied).
        let mut snap = mk();
        let err = check(&mut snap, b"k", ts(100), params(ts(101), 0)).unwrap_err();
        assert!(matches!(err, Error::TxnNotFound { .. }));
        // Resolving a pessimistic lock: PrimaryMismatch.
        let mut snap = mk();
        let p = CheckParams {
            resolving_pessimistic_lock: true,
            ..params(ts(101), 0)
        };
        assert!(matches!(
            check(&mut snap, b"k", ts(100), p),
            Err(Error::PrimaryMismatch(_))
        ));
        // Committed meanwhile: the stale lock goes and the commit is reported.
        let mut snap = mk();
        put_write(
            &mut snap,
            b"k",
            ts(120),
            &Write::new(WriteType::Put, ts(100), Some(b"v".to_vec())),
        );
        assert_eq!(
            check(&mut snap, b"k", ts(100), params(ts(101), 0)).unwrap(),
            TxnStatus::Committed { commit_ts: ts(120) }
        );
        assert!(get_lock(&snap, b"k").is_none());
    }
}
