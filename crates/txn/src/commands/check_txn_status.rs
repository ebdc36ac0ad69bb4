//! KvCheckTxnStatus (txn.md §3.8): what became of the transaction whose primary lock is
//! `(primary_key, lock_ts)`; rolls it back when its TTL has run out, may push its
//! min_commit_ts past the caller.
//!
//! The reply is one of exactly three shapes, which the official client relies on (any
//! other combination panics it):
//! - rolled back: commit_version 0, lock_ttl 0, no lock_info;
//! - committed: commit_version = the commit ts, lock_ttl 0, no lock_info;
//! - locked: commit_version 0, lock_ttl > 0, lock_info set;
//!
//! and `action` always names what was done. Failures (TxnNotFound, PrimaryMismatch, bad
//! requests) go in `error` with every other field left zero.

use proto::kvrpcpb::{Action, CheckTxnStatusRequest, CheckTxnStatusResponse};

use crate::actions::check_txn_status::{check_txn_status_lock_exists, CheckParams, TxnStatus};
use crate::actions::cleanup::{check_txn_status_missing_lock, MissingLockAction};
use crate::{
    ConcurrencyManager, Error, Key, MvccReader, MvccTxn, Result, Snapshot, TimeStamp, WriteResult,
};

/// The primary key.
pub fn latch_keys(req: &CheckTxnStatusRequest) -> Vec<Key> {
    vec![Key::from_raw(&req.primary_key)]
}

/// Checks (and possibly settles) the transaction `lock_ts` at its primary.
pub fn process<S: Snapshot + ?Sized>(
    snap: &S,
    cm: &ConcurrencyManager,
    req: &CheckTxnStatusRequest,
) -> Result<WriteResult<CheckTxnStatusResponse>> {
    if req.lock_ts == 0 {
        return Ok(error_reply(Error::InvalidRequest(
            "check of lock_ts 0".into(),
        )));
    }
    // Whatever ts the caller will read or commit at must stay above any commit ts an
    // async-commit prewrite computes from now on (u64::MAX means "no ts", ignored).
    let mut new_max_ts = req.lock_ts;
    for ts in [req.current_ts, req.caller_start_ts] {
        if ts != TimeStamp::MAX {
            new_max_ts = new_max_ts.max(ts);
        }
    }
    cm.update_max_ts(new_max_ts);

    let params = CheckParams {
        current_ts: req.current_ts,
        caller_start_ts: req.caller_start_ts,
        force_sync_commit: req.force_sync_commit,
        resolving_pessimistic_lock: req.resolving_pessimistic_lock,
        verify_is_primary: req.verify_is_primary,
        rollback_if_not_exist: req.rollback_if_not_exist,
    };
    let reader = MvccReader::new(snap);
    let mut txn = MvccTxn::new(req.lock_ts);
    let key = Key::from_raw(&req.primary_key);
    let status = match reader.load_lock(&key)? {
        Some(lock) if lock.ts == req.lock_ts => {
            check_txn_status_lock_exists(&mut txn, &reader, key, lock, &params)
        }
        other => check_txn_status_missing_lock(
            &mut txn,
            &reader,
            key,
            other,
            MissingLockAction::rollback(req.rollback_if_not_exist),
            req.resolving_pessimistic_lock,
        ),
    };
    match status {
        Ok(status) => Ok(txn.into_result(reply(status))),
        Err(e @ (Error::Corrupt(_) | Error::Engine(_))) => Err(e),
        Err(e) => Ok(error_reply(e)),
    }
}

fn error_reply(e: Error) -> WriteResult<CheckTxnStatusResponse> {
    WriteResult::read_only(CheckTxnStatusResponse {
        error: Some(e.to_key_error()),
        ..Default::default()
    })
}

/// The reply for `status`, in one of the three shapes of the module doc.
pub fn reply(status: TxnStatus) -> CheckTxnStatusResponse {
    let mut resp = CheckTxnStatusResponse::default();
    let action = match status {
        TxnStatus::RolledBack => Action::NoAction,
        TxnStatus::TtlExpire => Action::TtlExpireRollback,
        TxnStatus::LockNotExist => Action::LockNotExistRollback,
        TxnStatus::PessimisticRollBack => Action::TtlExpirePessimisticRollback,
        TxnStatus::LockNotExistDoNothing => Action::LockNotExistDoNothing,
        TxnStatus::Committed { commit_ts } => {
            resp.commit_version = commit_ts;
            Action::NoAction
        }
        TxnStatus::Uncommitted {
            lock,
            min_commit_ts_pushed,
        } => {
            // A live lock must read as locked: a stored TTL of 0 would make the reply
            // (0, 0, lock_info), which the client cannot interpret.
            resp.lock_ttl = lock.ttl.max(1);
            resp.lock_info = Some(lock.to_lock_info(lock.primary.clone()));
            if min_commit_ts_pushed {
                Action::MinCommitTsPushed
            } else {
                Action::NoAction
            }
        }
    };
    resp.action = action as i32;
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actions::cleanup::test_util::*;
    use crate::testing::MemSnapshot;
    use crate::{Lock, LockType, Write};

    fn req(key: &[u8], lock_ts: u64, current: u64) -> CheckTxnStatusRequest {
        CheckTxnStatusRequest {
            primary_key: key.to_vec(),
            lock_ts,
            current_ts: current,
            verify_is_primary: true,
            ..Default::default()
        }
    }

    fn run(
        snap: &mut MemSnapshot,
        cm: &ConcurrencyManager,
        r: &CheckTxnStatusRequest,
    ) -> CheckTxnStatusResponse {
        let res = process(&*snap, cm, r).unwrap();
        snap.apply(&res.modifies);
        assert_reply_contract(&res.response);
        res.response
    }

    fn action(resp: &CheckTxnStatusResponse) -> Action {
        Action::try_from(resp.action).unwrap()
    }

    #[test]
    fn ttl_expired() {
        let cm = ConcurrencyManager::new(1);
        let mut snap = MemSnapshot::new();
        prewrite_put(&mut snap, &[3], &[42; 300], &[3], ts(100), 8);
        let resp = run(&mut snap, &cm, &req(&[3], ts(100), ts(109)));
        assert_eq!(action(&resp), Action::TtlExpireRollback);
        assert_eq!(
            (resp.commit_version, resp.lock_ttl, resp.lock_info),
            (0, 0, None)
        );
        assert_eq!(lens(&snap), (0, 0, 1));
        assert_eq!(
            raw_write(&snap, &[3], ts(100)).unwrap(),
            Write::new_rollback(ts(100), true).to_bytes()
        );
        assert_eq!(cm.max_ts(), ts(109));
    }

    #[test]
    fn ttl_not_expired() {
        let cm = ConcurrencyManager::new(1);
        let mut snap = MemSnapshot::new();
        prewrite_put(&mut snap, &[3], &[42; 300], &[3], ts(100), 8);
        let before = snap.clone();
        let resp = run(&mut snap, &cm, &req(&[3], ts(100), ts(108)));
        assert_eq!(action(&resp), Action::NoAction);
        assert_eq!(resp.lock_ttl, 8);
        let info = resp.lock_info.unwrap();
        assert_eq!(
            (info.key, info.primary_lock, info.lock_version),
            (vec![3], vec![3], ts(100))
        );
        assert_eq!(snap.dump(engine::CF_LOCK), before.dump(engine::CF_LOCK));
        assert_eq!(lens(&snap), (1, 1, 0));
    }

    #[test]
    fn rolled_back() {
        let cm = ConcurrencyManager::new(1);
        let mut snap = MemSnapshot::new();
        put_write(
            &mut snap,
            &[3],
            ts(100),
            &Write::new_rollback(ts(100), false),
        );
        // Another transaction's lock on the key does not matter.
        prewrite_put(&mut snap, &[3], &[1], &[3], ts(120), 8);
        let resp = run(&mut snap, &cm, &req(&[3], ts(100), ts(500)));
        assert_eq!(action(&resp), Action::NoAction);
        assert_eq!(resp.commit_version, 0);
        assert_eq!(lens(&snap), (0, 1, 1));
    }

    #[test]
    fn committed() {
        let cm = ConcurrencyManager::new(1);
        let mut snap = MemSnapshot::new();
        prewrite_put(&mut snap, &[3], &[42], &[3], ts(100), 8);
        commit(&mut snap, &[3], ts(105));
        let resp = run(&mut snap, &cm, &req(&[3], ts(100), ts(500)));
        assert_eq!(action(&resp), Action::NoAction);
        assert_eq!(resp.commit_version, ts(105));
        assert_eq!(lens(&snap), (0, 0, 1));
    }

    #[test]
    fn no_lock_no_write() {
        let cm = ConcurrencyManager::new(1);
        let mut snap = MemSnapshot::new();
        // TiKV: TxnNotFound unless asked to roll back.
        let resp = run(&mut snap, &cm, &req(&[3], ts(100), ts(500)));
        let nf = resp.error.unwrap().txn_not_found.unwrap();
        assert_eq!((nf.start_ts, nf.primary_key), (ts(100), vec![3]));
        assert_eq!(lens(&snap), (0, 0, 0));
        // rollback_if_not_exist and resolving a pessimistic lock: nothing written, action 5.
        let r = CheckTxnStatusRequest {
            rollback_if_not_exist: true,
            resolving_pessimistic_lock: true,
            ..req(&[3], ts(100), ts(500))
        };
        assert_eq!(
            action(&run(&mut snap, &cm, &r)),
            Action::LockNotExistDoNothing
        );
        assert_eq!(lens(&snap), (0, 0, 0));
        // rollback_if_not_exist: a protected rollback, action 2.
        let r = CheckTxnStatusRequest {
            rollback_if_not_exist: true,
            ..req(&[3], ts(100), ts(500))
        };
        let resp = run(&mut snap, &cm, &r);
        assert_eq!(action(&resp), Action::LockNotExistRollback);
        assert!(get_write(&snap, &[3], ts(100)).unwrap().is_protected());
        // Asked again: already rolled back.
        assert_eq!(action(&run(&mut snap, &cm, &r)), Action::NoAction);
    }

    #[test]
    fn max_ts_raised_ignoring_max() {
        let cm = ConcurrencyManager::new(1);
        let mut snap = MemSnapshot::new();
        prewrite_put(&mut snap, &[3], &[42], &[3], ts(100), 8);
        let r = CheckTxnStatusRequest {
            caller_start_ts: TimeStamp::MAX,
            ..req(&[3], ts(100), ts(50))
        };
        run(&mut snap, &cm, &r);
        assert_eq!(cm.max_ts(), ts(100));
        let r = CheckTxnStatusRequest {
            caller_start_ts: ts(130),
            ..req(&[3], ts(100), TimeStamp::MAX)
        };
        // current_ts MAX expires the lock, and is not taken as max_ts.
        assert_eq!(action(&run(&mut snap, &cm, &r)), Action::TtlExpireRollback);
        assert_eq!(cm.max_ts(), ts(130));
    }

    #[test]
    fn min_commit_ts_pushed_action() {
        let cm = ConcurrencyManager::new(1);
        let mut snap = MemSnapshot::new();
        let mut l = Lock::new(LockType::Put, b"p".to_vec(), ts(100), 1000);
        l.min_commit_ts = ts(100) + 1;
        prewrite(&mut snap, b"p", b"v", l);
        let r = CheckTxnStatusRequest {
            caller_start_ts: ts(150),
            ..req(b"p", ts(100), ts(120))
        };
        let resp = run(&mut snap, &cm, &r);
        assert_eq!(action(&resp), Action::MinCommitTsPushed);
        assert_eq!(resp.lock_info.unwrap().min_commit_ts, ts(150) + 1);
        assert_eq!(get_lock(&snap, b"p").unwrap().min_commit_ts, ts(150) + 1);
    }

    #[test]
    fn async_primary_reported_locked() {
        let cm = ConcurrencyManager::new(1);
        let mut snap = MemSnapshot::new();
        let mut l = Lock::new(LockType::Put, b"p".to_vec(), ts(100), 5);
        l.use_async_commit = true;
        l.min_commit_ts = ts(100) + 1;
        l.secondaries = vec![b"s1".to_vec(), b"s2".to_vec()];
        prewrite(&mut snap, b"p", b"v", l);
        let r = CheckTxnStatusRequest {
            caller_start_ts: ts(900),
            rollback_if_not_exist: true,
            ..req(b"p", ts(100), ts(1000))
        };
        let resp = run(&mut snap, &cm, &r);
        assert_eq!(action(&resp), Action::NoAction);
        let info = resp.lock_info.unwrap();
        assert!(info.use_async_commit);
        assert_eq!(info.secondaries, vec![b"s1".to_vec(), b"s2".to_vec()]);
        assert_eq!(lens(&snap), (0, 1, 0));
        assert_eq!(get_lock(&snap, b"p").unwrap().min_commit_ts, ts(100) + 1);
    }

    #[test]
    fn pessimistic_expiry_actions() {
        let cm = ConcurrencyManager::new(1);
        let mk = || {
            let mut snap = MemSnapshot::new();
            let mut l = Lock::new(LockType::Pessimistic, b"p".to_vec(), ts(100), 20);
            l.for_update_ts = ts(110);
            put_lock(&mut snap, b"p", &l);
            snap
        };
        let mut snap = mk();
        let r = CheckTxnStatusRequest {
            resolving_pessimistic_lock: true,
            ..req(b"p", ts(100), ts(200))
        };
        assert_eq!(
            action(&run(&mut snap, &cm, &r)),
            Action::TtlExpirePessimisticRollback
        );
        assert_eq!(lens(&snap), (0, 0, 0));
        let mut snap = mk();
        assert_eq!(
            action(&run(&mut snap, &cm, &req(b"p", ts(100), ts(200)))),
            Action::TtlExpireRollback
        );
        assert_eq!(lens(&snap), (0, 0, 1));
    }

    #[test]
    fn primary_mismatch_error() {
        let cm = ConcurrencyManager::new(1);
        let mut snap = MemSnapshot::new();
        prewrite_put(&mut snap, b"s", b"v", b"p", ts(100), 8);
        let resp = run(&mut snap, &cm, &req(b"s", ts(100), ts(101)));
        let pm = resp.error.unwrap().primary_mismatch.unwrap();
        assert_eq!(pm.lock_info.unwrap().primary_lock, b"p");
        assert_eq!(lens(&snap), (0, 1, 0));
    }

    #[test]
    fn zero_ttl_lock_still_reads_locked() {
        let cm = ConcurrencyManager::new(1);
        let mut snap = MemSnapshot::new();
        prewrite_put(&mut snap, b"p", b"v", b"p", ts(100), 0);
        // Same millisecond: not expired.
        let resp = run(&mut snap, &cm, &req(b"p", ts(100), ts(100) + 5));
        assert_eq!(resp.lock_ttl, 1);
        assert!(resp.lock_info.is_some());
    }

    #[test]
    fn other_txns_async_lock_gets_rollback_ts() {
        let cm = ConcurrencyManager::new(1);
        let mut snap = MemSnapshot::new();
        let mut l = Lock::new(LockType::Put, b"p".to_vec(), ts(90), 1000);
        l.use_async_commit = true;
        l.min_commit_ts = ts(95);
        prewrite(&mut snap, b"p", b"v", l);
        let r = CheckTxnStatusRequest {
            rollback_if_not_exist: true,
            ..req(b"p", ts(100), ts(101))
        };
        assert_eq!(
            action(&run(&mut snap, &cm, &r)),
            Action::LockNotExistRollback
        );
        assert_eq!(get_lock(&snap, b"p").unwrap().rollback_ts, vec![ts(100)]);
        assert_eq!(get_lock(&snap, b"p").unwrap().ts, ts(90));
        assert!(get_write(&snap, b"p", ts(100)).unwrap().is_protected());
    }

    #[test]
    fn reply_shapes() {
        for st in [
            TxnStatus::RolledBack,
            TxnStatus::TtlExpire,
            TxnStatus::LockNotExist,
            TxnStatus::PessimisticRollBack,
            TxnStatus::LockNotExistDoNothing,
            TxnStatus::Committed { commit_ts: 7 },
            TxnStatus::Uncommitted {
                lock: Lock::new(LockType::Put, b"p".to_vec(), 5, 0),
                min_commit_ts_pushed: true,
            },
        ] {
            assert_reply_contract(&reply(st));
        }
    }

    #[test]
    fn zero_lock_ts_rejected() {
        let cm = ConcurrencyManager::new(1);
        let mut snap = MemSnapshot::new();
        let resp = run(&mut snap, &cm, &req(b"p", 0, ts(1)));
        assert!(!resp.error.unwrap().abort.is_empty());
    }
}
