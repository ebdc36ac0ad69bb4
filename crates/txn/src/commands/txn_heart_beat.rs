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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::prewrite::test_util::*;

    fn heart_beat(
        s: &mut Store,
        primary: &[u8],
        start: u64,
        ttl: u64,
    ) -> (TxnHeartBeatResponse, usize) {
        let req = TxnHeartBeatRequest {
            primary_lock: primary.to_vec(),
            start_version: start,
            advise_lock_ttl: ttl,
            ..Default::default()
        };
        let r = process(&s.snap, &s.cm, &req).unwrap();
        let n = r.modifies.len();
        (s.apply(r), n)
    }

    #[test]
    fn extends_and_never_shortens() {
        let mut s = Store::new();
        must_prewrite_put(&mut s, b"k", b"v", b"k", 100);
        let (resp, writes) = heart_beat(&mut s, b"k", 100, 5000);
        assert_eq!((resp.error, resp.lock_ttl, writes), (None, 5000, 1));
        let l = s.lock(b"k").unwrap();
        assert_eq!((l.ttl, l.short_value), (5000, Some(b"v".to_vec())));
        let (resp, writes) = heart_beat(&mut s, b"k", 100, 1000);
        assert_eq!((resp.lock_ttl, writes), (5000, 0));
        assert_eq!(s.lock(b"k").unwrap().ttl, 5000);
    }

    #[test]
    fn pessimistic_primary_is_kept_alive_too() {
        let mut s = Store::new();
        must_pessimistic_lock(&mut s, b"k", b"k", 100, 110);
        let (resp, _) = heart_beat(&mut s, b"k", 100, 40000);
        assert_eq!(resp.lock_ttl, 40000);
        assert_eq!(s.lock(b"k").unwrap().ttl, 40000);
    }

    #[test]
    fn without_the_lock_the_txn_is_not_found() {
        let mut s = Store::new();
        let (resp, writes) = heart_beat(&mut s, b"k", 100, 5000);
        let nf = resp.error.unwrap().txn_not_found.unwrap();
        assert_eq!(
            (nf.start_ts, nf.primary_key.as_slice(), writes),
            (100, &b"k"[..], 0)
        );
        assert_eq!(resp.lock_ttl, 0);
        must_prewrite_put(&mut s, b"k", b"v", b"k", 90);
        let (resp, _) = heart_beat(&mut s, b"k", 100, 5000);
        assert!(resp.error.unwrap().txn_not_found.is_some());
        assert_eq!(s.lock(b"k").unwrap().ttl, 3000);
    }
}
