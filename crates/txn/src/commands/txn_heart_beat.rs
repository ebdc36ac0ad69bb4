//! KvTxnHeartBeat: a long transaction keeps its primary lock alive by raising its TTL.

use proto::kvrpcpb::{TxnHeartBeatRequest, TxnHeartBeatResponse};

use crate::{ConcurrencyManager, Error, Key, MvccReader, MvccTxn, Result, Snapshot, WriteResult};

/// The primary key.
pub fn latch_keys(req: &TxnHeartBeatRequest) -> Vec<Key> {
    vec![Key::from_raw(&req.primary_lock)]
}

/// Raises the TTL of the transaction's lock on the primary (of any type) to
/// `advise_lock_ttl`, never lowering it, and replies with the TTL it now has. Without
/// the lock the transaction is over (or never started): TxnNotFound.
pub fn process<S: Snapshot + ?Sized>(
    snap: &S,
    _cm: &ConcurrencyManager,
    req: &TxnHeartBeatRequest,
) -> Result<WriteResult<TxnHeartBeatResponse>> {
    let reader = MvccReader::new(snap);
    let key = Key::from_raw(&req.primary_lock);
    let mut lock = match reader.load_lock(&key)? {
        Some(lock) if lock.ts == req.start_version => lock,
        _ => {
            let e = Error::TxnNotFound {
                start_ts: req.start_version,
                key: req.primary_lock.clone(),
            };
            return Ok(WriteResult::read_only(TxnHeartBeatResponse {
                error: Some(e.to_key_error()),
                ..Default::default()
            }));
        }
    };
    let mut txn = MvccTxn::new(req.start_version);
    if lock.ttl < req.advise_lock_ttl {
        lock.ttl = req.advise_lock_ttl;
        txn.put_lock(key, &lock);
    }
    Ok(txn.into_result(TxnHeartBeatResponse {
        lock_ttl: lock.ttl,
        ..Default::default()
    }))
}
