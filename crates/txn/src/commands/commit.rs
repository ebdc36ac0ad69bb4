//! KvCommit: make a prewritten transaction's keys visible at `commit_version`.
//!
//! Any failing key fails the whole request and nothing is written; keys already
//! committed by this transaction are skipped (commit is idempotent).

use proto::kvrpcpb::{CommitRequest, CommitResponse};

use crate::actions::commit::commit;
use crate::{ConcurrencyManager, Error, Key, MvccReader, MvccTxn, Result, Snapshot, WriteResult};

/// Every key to commit.
pub fn latch_keys(req: &CommitRequest) -> Vec<Key> {
    req.keys.iter().map(|k| Key::from_raw(k)).collect()
}

/// Commits the request's keys (see the module doc). The reply carries the commit ts on
/// success, as TiKV's does.
pub fn process<S: Snapshot + ?Sized>(
    snap: &S,
    _cm: &ConcurrencyManager,
    req: &CommitRequest,
) -> Result<WriteResult<CommitResponse>> {
    let (start_ts, commit_ts) = (req.start_version, req.commit_version);
    if commit_ts <= start_ts {
        return Ok(failed(Error::InvalidTxnTso {
            start_ts,
            commit_ts,
        }));
    }
    let reader = MvccReader::new(snap);
    let mut txn = MvccTxn::new(start_ts);
    for raw in &req.keys {
        match commit(&mut txn, &reader, Key::from_raw(raw), commit_ts) {
            Ok(_) => {}
            Err(e @ (Error::Corrupt(_) | Error::Engine(_))) => return Err(e),
            Err(e) => return Ok(failed(e)),
        }
    }
    Ok(txn.into_result(CommitResponse {
        commit_version: commit_ts,
        ..Default::default()
    }))
}

fn failed(e: Error) -> WriteResult<CommitResponse> {
    WriteResult::read_only(CommitResponse {
        error: Some(e.to_key_error()),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::prewrite::test_util::*;
    use crate::{Lock, LockType, Write, WriteType};

    #[test]
    fn commit_empty() {
        let s = Store::new();
        let req = CommitRequest {
            start_version: 100,
            commit_version: 110,
            ..Default::default()
        };
        let r = process(&s.snap, &s.cm, &req).unwrap();
        assert!(r.modifies.is_empty());
        assert_eq!((r.response.error, r.response.commit_version), (None, 110));
    }

    #[test]
    fn commit_single() {
        let mut s = Store::new();
        must_prewrite_put(&mut s, &[3], &[42], &[3], 100);
        must_commit(&mut s, &[&[3]], 100, 110);
        assert_eq!(s.lens(), (0, 0, 1));
        // 'P', start 100, short value [42].
        let stored = s.write_at(&[3], 110).unwrap();
        assert_eq!(stored.to_bytes(), vec![0x50, 0x64, 0x76, 0x01, 0x2a]);
        assert_eq!(s.value_at(&[3], 110), Some(vec![42]));
        assert_eq!(s.value_at(&[3], 109), None);
    }

    #[test]
    fn commit_overwrite() {
        let mut s = Store::new();
        s.put_committed(b"k", b"old", 50, 60);
        must_prewrite_put(&mut s, b"k", b"new", b"k", 100);
        must_commit(&mut s, &[b"k"], 100, 110);
        assert_eq!(s.value_at(b"k", 109), Some(b"old".to_vec()));
        assert_eq!(s.value_at(b"k", 110), Some(b"new".to_vec()));
        assert_eq!(s.lens(), (0, 0, 2));
    }

    #[test]
    fn commit_multiple_keys_of_every_kind() {
        let mut s = Store::new();
        s.put_committed(b"b", b"old", 50, 60);
        let long = vec![1u8; 256];
        let req = prewrite_req(
            vec![
                put(b"a", b"1"),
                del(b"b"),
                mutation(proto::kvrpcpb::Op::Lock, b"c", b""),
                put(b"d", &long),
            ],
            b"a",
            100,
        );
        must_prewrite(&mut s, &req);
        must_commit(&mut s, &[b"a", b"b", b"c", b"d"], 100, 110);
        assert_eq!(s.lens(), (1, 0, 5));
        let types: Vec<_> = [&b"a"[..], b"b", b"c", b"d"]
            .iter()
            .map(|k| s.write_at(k, 110).unwrap().write_type)
            .collect();
        use WriteType::*;
        assert_eq!(types, vec![Put, Delete, Lock, Put]);
        assert_eq!(s.value_at(b"b", 120), None);
        assert_eq!(s.value_at(b"d", 120), Some(long));
    }

    #[test]
    fn recommit_is_a_no_op() {
        let mut s = Store::new();
        must_prewrite_put(&mut s, b"k", b"v", b"k", 100);
        must_commit(&mut s, &[b"k"], 100, 110);
        let req = CommitRequest {
            keys: vec![b"k".to_vec()],
            start_version: 100,
            commit_version: 110,
            ..Default::default()
        };
        let r = process(&s.snap, &s.cm, &req).unwrap();
        assert!(r.modifies.is_empty());
        assert_eq!(r.response.error, None);
        // Even at another ts (TinyKV's ConflictRepeat): the key is committed already.
        let resp = s.commit(&[b"k"], 100, 120);
        assert_eq!(resp.error, None);
        assert_eq!(s.write_at(b"k", 120), None);
    }

    #[test]
    fn commit_after_rollback_fails() {
        let mut s = Store::new();
        must_prewrite_put(&mut s, b"k", b"v", b"k", 100);
        // Rolled back: lock gone, rollback record at the start ts.
        let mut txn = crate::MvccTxn::new(100);
        txn.unlock_key(Key::from_raw(b"k"));
        s.apply_txn(txn);
        s.put_rollback(b"k", 100);
        let resp = s.commit(&[b"k"], 100, 110);
        let e = resp.error.unwrap();
        assert!(
            !e.retryable.is_empty(),
            "TxnLockNotFound is retryable text: {e:?}"
        );
        assert_eq!(resp.commit_version, 0);
        assert_eq!(s.write_at(b"k", 110), None);
    }

    #[test]
    fn commit_with_another_txns_lock_fails_and_writes_nothing() {
        let mut s = Store::new();
        must_prewrite_put(&mut s, b"a", b"1", b"a", 100);
        // Txn 100 was rolled back on b and txn 105 locked it.
        must_prewrite_put(&mut s, b"b", b"x", b"b", 105);
        let req = CommitRequest {
            keys: vec![b"a".to_vec(), b"b".to_vec()],
            start_version: 100,
            commit_version: 110,
            ..Default::default()
        };
        let r = process(&s.snap, &s.cm, &req).unwrap();
        assert!(r.modifies.is_empty(), "a is not committed either");
        assert!(!r.response.error.unwrap().retryable.is_empty());
        assert_eq!(s.lock(b"b").unwrap().ts, 105);
    }

    #[test]
    fn commit_without_prewrite_is_txn_lock_not_found() {
        // TinyKV answers OK; TiKV (and we) answer TxnLockNotFound.
        let mut s = Store::new();
        let resp = s.commit(&[b"k"], 100, 110);
        assert!(resp.error.unwrap().retryable.contains("no lock"));
        assert_eq!(s.lens(), (0, 0, 0));
    }

    #[test]
    fn commit_ts_not_above_start_is_invalid() {
        let mut s = Store::new();
        must_prewrite_put(&mut s, b"k", b"v", b"k", 100);
        for commit in [100, 99, 0] {
            let resp = s.commit(&[b"k"], 100, commit);
            assert!(resp.error.unwrap().abort.contains("invalid commit ts"));
        }
        assert!(s.lock(b"k").is_some());
    }

    #[test]
    fn commit_below_min_commit_ts_expires() {
        let mut s = Store::new();
        s.cm.update_max_ts(200);
        let mut req = prewrite_req(vec![put(b"k", b"v")], b"k", 100);
        req.use_async_commit = true;
        assert_eq!(must_prewrite(&mut s, &req).min_commit_ts, 201);
        let resp = s.commit(&[b"k"], 100, 150);
        let e = resp.error.unwrap().commit_ts_expired.unwrap();
        assert_eq!(
            (e.start_ts, e.attempted_commit_ts, e.min_commit_ts),
            (100, 150, 201)
        );
        assert_eq!(e.key, b"k");
        assert!(s.lock(b"k").is_some());
        must_commit(&mut s, &[b"k"], 100, 201);
    }

    #[test]
    fn committing_a_pessimistic_lock_only_removes_it() {
        let mut s = Store::new();
        must_pessimistic_lock(&mut s, b"k", b"k", 100, 105);
        must_commit(&mut s, &[b"k"], 100, 110);
        assert_eq!(s.lens(), (0, 0, 0));
    }

    #[test]
    fn commit_at_a_rolled_back_ts_keeps_that_rollback_as_a_flag() {
        let mut s = Store::new();
        let mut lock = Lock::new(LockType::Put, b"k".to_vec(), 100, 3000);
        lock.short_value = Some(b"v".to_vec());
        lock.rollback_ts = vec![110, 120];
        let mut txn = crate::MvccTxn::new(100);
        txn.put_lock(Key::from_raw(b"k"), &lock);
        s.apply_txn(txn);
        must_commit(&mut s, &[b"k"], 100, 120);
        let mut expected = Write::new(WriteType::Put, 100, Some(b"v".to_vec()));
        expected.has_overlapped_rollback = true;
        assert_eq!(s.write_at(b"k", 120), Some(expected));
    }

    #[test]
    fn commit_action_reports_the_lock_removed() {
        let mut s = Store::new();
        must_prewrite_put(&mut s, b"k", b"v", b"k", 100);
        let reader = MvccReader::new(&s.snap);
        let mut txn = MvccTxn::new(100);
        let removed = commit(&mut txn, &reader, Key::from_raw(b"k"), 110).unwrap();
        assert_eq!(removed.map(|l| l.ts), Some(100));
        assert_eq!(txn.len(), 2);
        s.apply_txn(txn);
        let reader = MvccReader::new(&s.snap);
        let mut txn = MvccTxn::new(100);
        assert_eq!(
            commit(&mut txn, &reader, Key::from_raw(b"k"), 110).unwrap(),
            None
        );
        assert!(txn.is_empty());
    }
}
