//! KvBatchRollback (txn.md §3.5): the client gave up on its transaction and rolls back the
//! keys it prewrote (or may have prewritten) in this region.
//!
//! Per key: our lock ⇒ rolled back without a TTL check; no lock ⇒ a rollback record all
//! the same (a prewrite still in flight must fail when it lands); committed ⇒ the
//! request fails with Committed (abort) and nothing is written. Another transaction's
//! lock on a key is left alone. The rollbacks are unprotected except on the primary (a
//! client that rolls back knows its transaction failed).

use proto::kvrpcpb::{BatchRollbackRequest, BatchRollbackResponse};

use crate::actions::cleanup::cleanup;
use crate::{ConcurrencyManager, Error, Key, MvccReader, MvccTxn, Result, Snapshot, WriteResult};

/// Every key of the request.
pub fn latch_keys(req: &BatchRollbackRequest) -> Vec<Key> {
    req.keys.iter().map(|k| Key::from_raw(k)).collect()
}

/// Rolls back transaction `start_version` on the request's keys.
pub fn process<S: Snapshot + ?Sized>(
    snap: &S,
    _cm: &ConcurrencyManager,
    req: &BatchRollbackRequest,
) -> Result<WriteResult<BatchRollbackResponse>> {
    let fail = |e: Error| {
        Ok(WriteResult::read_only(BatchRollbackResponse {
            error: Some(e.to_key_error()),
            ..Default::default()
        }))
    };
    if req.start_version == 0 {
        return fail(Error::InvalidRequest("rollback of start_version 0".into()));
    }
    let reader = MvccReader::new(snap);
    let mut txn = MvccTxn::new(req.start_version);
    // A key named twice is rolled back once (the snapshot would show its lock twice).
    for key in dedup_keys(&req.keys) {
        match cleanup(&mut txn, &reader, key, 0, false) {
            Ok(()) => {}
            Err(e @ (Error::Corrupt(_) | Error::Engine(_))) => return Err(e),
            Err(e) => return fail(e),
        }
    }
    Ok(txn.into_result(BatchRollbackResponse::default()))
}

/// The distinct keys of `raw`, encoded, in first-seen order.
fn dedup_keys(raw: &[Vec<u8>]) -> Vec<Key> {
    let mut seen = std::collections::HashSet::new();
    raw.iter()
        .filter(|k| seen.insert(k.as_slice()))
        .map(|k| Key::from_raw(k))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actions::cleanup::test_util::*;
    use crate::testing::MemSnapshot;
    use crate::{Lock, LockType, Write, WriteType};

    fn rollback(snap: &mut MemSnapshot, start: u64, keys: &[&[u8]]) -> BatchRollbackResponse {
        let req = BatchRollbackRequest {
            start_version: start,
            keys: keys.iter().map(|k| k.to_vec()).collect(),
            ..Default::default()
        };
        let res = process(&*snap, &ConcurrencyManager::new(1), &req).unwrap();
        snap.apply(&res.modifies);
        res.response
    }

    #[test]
    fn empty() {
        let mut snap = MemSnapshot::new();
        let resp = rollback(&mut snap, 100, &[]);
        assert_eq!(resp, BatchRollbackResponse::default());
        assert_eq!(lens(&snap), (0, 0, 0));
    }

    #[test]
    fn basic() {
        let mut snap = MemSnapshot::new();
        prewrite_put(&mut snap, &[3], &[42; 300], &[3], 100, 10);
        assert_eq!(lens(&snap), (1, 1, 0));
        let resp = rollback(&mut snap, 100, &[&[3]]);
        assert!(resp.error.is_none());
        assert_eq!(lens(&snap), (0, 0, 1));
        // [3] is the primary: a protected rollback.
        let w = get_write(&snap, &[3], 100).unwrap();
        assert_eq!((w.write_type, w.start_ts), (WriteType::Rollback, 100));
        assert!(w.is_protected());
    }

    #[test]
    fn duplicate_keys() {
        let mut snap = MemSnapshot::new();
        prewrite_put(&mut snap, &[3], &[42], &[3], 100, 10);
        prewrite_put(&mut snap, &[15], &[0], &[3], 100, 10);
        let req = BatchRollbackRequest {
            start_version: 100,
            keys: vec![vec![3], vec![15], vec![3]],
            ..Default::default()
        };
        let res = process(&snap, &ConcurrencyManager::new(1), &req).unwrap();
        assert_eq!(
            res.modifies.len(),
            4,
            "one write and one unlock per distinct key"
        );
        snap.apply(&res.modifies);
        assert!(res.response.error.is_none());
        assert_eq!(lens(&snap), (0, 0, 2));
        assert!(get_write(&snap, &[3], 100).unwrap().is_protected());
        assert_eq!(
            get_write(&snap, &[15], 100).unwrap(),
            Write::new_rollback(100, false)
        );
    }

    #[test]
    fn missing_prewrite_writes_rollback() {
        let mut snap = MemSnapshot::new();
        let resp = rollback(&mut snap, 100, &[&[3]]);
        assert!(resp.error.is_none());
        assert_eq!(lens(&snap), (0, 0, 1));
        assert_eq!(
            get_write(&snap, &[3], 100).unwrap(),
            Write::new_rollback(100, false)
        );
    }

    #[test]
    fn committed_aborts_and_writes_nothing() {
        let mut snap = MemSnapshot::new();
        // [1] has our lock, [3] is already committed: nothing at all is written.
        prewrite_put(&mut snap, &[1], &[1], &[3], 100, 10);
        prewrite_put(&mut snap, &[3], &[42; 300], &[3], 100, 10);
        commit(&mut snap, &[3], 110);
        let before = snap.clone();
        let req = BatchRollbackRequest {
            start_version: 100,
            keys: vec![vec![1], vec![3]],
            ..Default::default()
        };
        let res = process(&snap, &ConcurrencyManager::new(1), &req).unwrap();
        assert!(res.modifies.is_empty());
        let err = res.response.error.unwrap();
        assert!(!err.abort.is_empty(), "{err:?}");
        assert_eq!(lens(&snap), lens(&before));
    }

    #[test]
    fn duplicate_rollback_is_noop() {
        let mut snap = MemSnapshot::new();
        put_write(&mut snap, &[3], 100, &Write::new_rollback(100, false));
        let req = BatchRollbackRequest {
            start_version: 100,
            keys: vec![vec![3]],
            ..Default::default()
        };
        let res = process(&snap, &ConcurrencyManager::new(1), &req).unwrap();
        assert!(res.response.error.is_none());
        assert!(res.modifies.is_empty());
    }

    #[test]
    fn other_txn_lock_kept() {
        let mut snap = MemSnapshot::new();
        prewrite_put(&mut snap, &[3], &[42; 300], &[3], 80, 10);
        let resp = rollback(&mut snap, 100, &[&[3]]);
        assert!(resp.error.is_none());
        assert_eq!(lens(&snap), (1, 1, 1));
        assert_eq!(get_lock(&snap, &[3]).unwrap().ts, 80);
        assert!(has_value(&snap, &[3], 80));
        assert_eq!(
            get_write(&snap, &[3], 100).unwrap(),
            Write::new_rollback(100, false)
        );
    }

    #[test]
    fn pessimistic_lock_rolled_back() {
        let mut snap = MemSnapshot::new();
        let mut l = Lock::new(LockType::Pessimistic, b"p".to_vec(), 100, 10);
        l.for_update_ts = 105;
        put_lock(&mut snap, b"k", &l);
        let resp = rollback(&mut snap, 100, &[b"k"]);
        assert!(resp.error.is_none());
        assert_eq!(lens(&snap), (0, 0, 1));
    }

    #[test]
    fn collapses_previous_rollback() {
        let mut snap = MemSnapshot::new();
        rollback(&mut snap, 90, &[b"k"]);
        rollback(&mut snap, 100, &[b"k"]);
        assert_eq!(
            writes(&snap, b"k")
                .iter()
                .map(|(t, _)| *t)
                .collect::<Vec<_>>(),
            vec![100]
        );
    }

    #[test]
    fn zero_start_version_rejected() {
        let mut snap = MemSnapshot::new();
        let resp = rollback(&mut snap, 0, &[b"k"]);
        assert!(!resp.error.unwrap().abort.is_empty());
        assert_eq!(lens(&snap), (0, 0, 0));
    }
}
