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
