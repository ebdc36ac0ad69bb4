//! KvPessimisticRollback: release pessimistic locks a statement took (after it failed
//! on another key, or in another region).

use proto::kvrpcpb::{PessimisticRollbackRequest, PessimisticRollbackResponse};

use crate::{
    ConcurrencyManager, Key, LockType, MvccReader, MvccTxn, Result, Snapshot, WriteResult,
};

/// Every key named.
pub fn latch_keys(req: &PessimisticRollbackRequest) -> Vec<Key> {
    req.keys.iter().map(|k| Key::from_raw(k)).collect()
}

/// Removes, of the keys named, the pessimistic locks of transaction `start_version`
/// taken at or below `for_update_ts`. A lock taken by a later statement (larger
/// for_update_ts) stays, and so does a prewrite lock; nothing here is an error.
///
/// TiKV also accepts an empty key list (it then scans the region for the transaction's
/// locks in a separate, latched step); here an empty list removes nothing, since
/// without latches on the keys found a concurrent prewrite could be undone.
pub fn process<S: Snapshot + ?Sized>(
    snap: &S,
    _cm: &ConcurrencyManager,
    req: &PessimisticRollbackRequest,
) -> Result<WriteResult<PessimisticRollbackResponse>> {
    let reader = MvccReader::new(snap);
    let mut txn = MvccTxn::new(req.start_version);
    for raw in &req.keys {
        let key = Key::from_raw(raw);
        if let Some(lock) = reader.load_lock(&key)? {
            if lock.lock_type == LockType::Pessimistic
                && lock.ts == req.start_version
                && lock.for_update_ts <= req.for_update_ts
            {
                txn.unlock_key(key);
            }
        }
    }
    Ok(txn.into_result(PessimisticRollbackResponse::default()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::prewrite::test_util::*;

    fn rollback(s: &mut Store, keys: &[&[u8]], start: u64, for_update: u64) {
        let req = PessimisticRollbackRequest {
            keys: keys.iter().map(|k| k.to_vec()).collect(),
            start_version: start,
            for_update_ts: for_update,
            ..Default::default()
        };
        let r = process(&s.snap, &s.cm, &req).unwrap();
        assert!(r.response.errors.is_empty());
        s.apply(r);
    }

    #[test]
    fn only_locks_taken_at_or_below_for_update_ts_go() {
        let mut s = Store::new();
        must_pessimistic_lock(&mut s, b"a", b"a", 100, 110);
        must_pessimistic_lock(&mut s, b"b", b"a", 100, 120);
        rollback(&mut s, &[b"a", b"b"], 100, 115);
        assert!(s.lock(b"a").is_none());
        assert_eq!(s.lock(b"b").unwrap().for_update_ts, 120);
        rollback(&mut s, &[b"b"], 100, 120);
        assert!(s.lock(b"b").is_none());
    }

    #[test]
    fn other_locks_stay_and_missing_ones_are_fine() {
        let mut s = Store::new();
        must_pessimistic_lock(&mut s, b"o", b"o", 90, 95);
        must_prewrite_put(&mut s, b"p", b"v", b"p", 100);
        rollback(&mut s, &[b"o", b"p", b"missing"], 100, 200);
        assert_eq!(s.lock(b"o").unwrap().ts, 90);
        assert_eq!(s.lock(b"p").unwrap().ts, 100);
        // An empty key list removes nothing.
        rollback(&mut s, &[], 90, 200);
        assert!(s.lock(b"o").is_some());
    }
}
