//! KvCleanup (legacy; the 0.4.0 client never sends it): roll back one key of a
//! transaction if its lock's TTL ran out by `current_ts` (0: unconditionally).
//!
//! As in TiKV nothing is collapsed, the rollback is protected where no lock is found
//! (and on the primary), and max_ts is raised to the start ts so an async-commit
//! prewrite cannot pick a commit ts at or below the rollback. A committed
//! transaction is not an error here: the reply carries `commit_version` instead.

use proto::kvrpcpb::{CleanupRequest, CleanupResponse};

use crate::actions::cleanup::cleanup;
use crate::{ConcurrencyManager, Error, Key, MvccReader, MvccTxn, Result, Snapshot, WriteResult};

/// The one key.
pub fn latch_keys(req: &CleanupRequest) -> Vec<Key> {
    vec![Key::from_raw(&req.key)]
}

/// Rolls back `start_version` on `key` if its lock expired.
pub fn process<S: Snapshot + ?Sized>(
    snap: &S,
    cm: &ConcurrencyManager,
    req: &CleanupRequest,
) -> Result<WriteResult<CleanupResponse>> {
    let fail = |e: Error| {
        Ok(WriteResult::read_only(CleanupResponse {
            error: Some(e.to_key_error()),
            ..Default::default()
        }))
    };
    if req.start_version == 0 {
        return fail(Error::InvalidRequest("cleanup of start_version 0".into()));
    }
    cm.update_max_ts(req.start_version);
    let reader = MvccReader::new(snap);
    let mut txn = MvccTxn::new(req.start_version);
    match cleanup(
        &mut txn,
        &reader,
        Key::from_raw(&req.key),
        req.current_ts,
        true,
    ) {
        Ok(()) => Ok(txn.into_result(CleanupResponse::default())),
        Err(Error::Committed { commit_ts, .. }) => Ok(WriteResult::read_only(CleanupResponse {
            commit_version: commit_ts,
            ..Default::default()
        })),
        Err(e @ (Error::Corrupt(_) | Error::Engine(_))) => Err(e),
        Err(e) => fail(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actions::cleanup::test_util::*;
    use crate::testing::MemSnapshot;

    fn run(
        snap: &mut MemSnapshot,
        cm: &ConcurrencyManager,
        key: &[u8],
        start: u64,
        current: u64,
    ) -> CleanupResponse {
        let req = CleanupRequest {
            key: key.to_vec(),
            start_version: start,
            current_ts: current,
            ..Default::default()
        };
        let res = process(&*snap, cm, &req).unwrap();
        snap.apply(&res.modifies);
        res.response
    }

    #[test]
    fn expiry_locked_committed() {
        let cm = ConcurrencyManager::new(1);
        let mut snap = MemSnapshot::new();
        // A secondary lock, not yet expired: KeyIsLocked, nothing written.
        prewrite_put(&mut snap, b"s", b"v", b"p", ts(100), 10);
        let resp = run(&mut snap, &cm, b"s", ts(100), ts(105));
        assert_eq!(resp.error.unwrap().locked.unwrap().lock_version, ts(100));
        assert!(get_lock(&snap, b"s").is_some());
        assert_eq!(cm.max_ts(), ts(100));
        // Expired: rolled back; on a secondary the record is unprotected (TiKV protects
        // by primary-ness here; `protect_rollback` only stops the collapse).
        put_write(
            &mut snap,
            b"s",
            ts(50),
            &crate::Write::new_rollback(ts(50), false),
        );
        let resp = run(&mut snap, &cm, b"s", ts(100), ts(200));
        assert_eq!(resp, CleanupResponse::default());
        assert!(get_lock(&snap, b"s").is_none());
        assert!(!get_write(&snap, b"s", ts(100)).unwrap().is_protected());
        assert!(get_write(&snap, b"s", ts(50)).is_some(), "not collapsed");
        // current_ts 0: no TTL check.
        prewrite_put(&mut snap, b"t", b"v", b"p", ts(300), 100_000);
        run(&mut snap, &cm, b"t", ts(300), 0);
        assert!(get_lock(&snap, b"t").is_none());
        // Committed: commit_version, no error.
        prewrite_put(&mut snap, b"c", b"v", b"c", ts(400), 10);
        commit(&mut snap, b"c", ts(410));
        let resp = run(&mut snap, &cm, b"c", ts(400), 0);
        assert_eq!((resp.error, resp.commit_version), (None, ts(410)));
        // No lock, no record: a protected rollback.
        let resp = run(&mut snap, &cm, b"n", ts(500), ts(600));
        assert!(resp.error.is_none());
        assert!(get_write(&snap, b"n", ts(500)).unwrap().is_protected());
    }
}
