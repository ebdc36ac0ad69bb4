//! KvResolveLock (txn.md §3.10): settle the locks of transactions whose fate is known.
//!
//! The request names one transaction (`start_version`, `commit_version`; 0 = rolled
//! back) or several (`txn_infos`, as GC sends). Without `keys` every lock of those
//! transactions in the whole region is resolved; the caller does that in batches:
//!
//! ```text
//! start = region start
//! loop {
//!     (keys, more) = scan_keys(snapshot, req, start, RESOLVE_LOCK_BATCH_SIZE)   // no latch
//!     latch keys; take a fresh snapshot
//!     result = process_keys(snapshot, cm, req, keys)     // re-reads each lock
//!     write result.modifies; release latches; stop on result.response.error
//!     if !more { break }  start = next_start(keys.last())
//! }
//! ```
//!
//! With `keys` (TiKV's ResolveLockLite, for one transaction) exactly those keys are
//! resolved through [`latch_keys`] and [`process`], like any write command.
//!
//! A rollback is an unprotected cleanup without TTL check (protected on the primary
//! key); a commit is the ordinary commit step, except that a leftover pessimistic lock
//! of a committed transaction is just dropped.

use std::collections::{HashMap, HashSet};

use proto::kvrpcpb::{ResolveLockRequest, ResolveLockResponse};

use crate::actions::cleanup::cleanup;
use crate::actions::commit::commit;
use crate::{
    ConcurrencyManager, Error, Key, LockType, MvccReader, MvccTxn, Result, Snapshot, TimeStamp,
    WriteResult,
};

/// How many locks one region-wide batch resolves (TiKV's batch size).
pub const RESOLVE_LOCK_BATCH_SIZE: usize = 256;

/// start ts → commit ts (0: roll back) of the transactions the request settles.
///
/// `Err` is a request the store must refuse (a commit ts not above its start ts): put it
/// in `response.error` with [`Error::to_key_error`].
pub fn txn_status_map(req: &ResolveLockRequest) -> Result<HashMap<TimeStamp, TimeStamp>> {
    let pairs: Vec<(TimeStamp, TimeStamp)> = if req.start_version > 0 {
        vec![(req.start_version, req.commit_version)]
    } else {
        req.txn_infos.iter().map(|i| (i.txn, i.status)).collect()
    };
    let mut map = HashMap::with_capacity(pairs.len());
    for (start_ts, commit_ts) in pairs {
        if commit_ts != 0 && commit_ts <= start_ts {
            return Err(Error::InvalidTxnTso {
                start_ts,
                commit_ts,
            });
        }
        map.insert(start_ts, commit_ts);
    }
    Ok(map)
}

/// The read phase of a region-wide resolve: keys (stored form) from `start` (an encoded
/// key, inclusive; empty = the snapshot's start) whose lock belongs to a transaction of
/// the request, at most `limit` (0 = all), and whether there may be more after them.
pub fn scan_keys<S: Snapshot + ?Sized>(
    snap: &S,
    req: &ResolveLockRequest,
    start: &[u8],
    limit: usize,
) -> Result<(Vec<Key>, bool)> {
    let map = txn_status_map(req)?;
    if map.is_empty() {
        return Ok((Vec::new(), false));
    }
    let locks = MvccReader::new(snap).scan_locks(start, b"", |l| map.contains_key(&l.ts), limit)?;
    let more = limit != 0 && locks.len() >= limit;
    Ok((locks.into_iter().map(|(k, _)| k).collect(), more))
}

/// Where the scan after a batch ending at `last` starts: just past it.
pub fn next_start(last: &Key) -> Vec<u8> {
    let mut start = last.as_encoded().to_vec();
    start.push(0);
    start
}

/// The write phase of a region-wide resolve, on latched `keys`: each key's lock is read
/// again (it may have been resolved, or replaced, since the scan) and settled if it still
/// belongs to a transaction of the request. Any failure fails the batch, unwritten.
pub fn process_keys<S: Snapshot + ?Sized>(
    snap: &S,
    _cm: &ConcurrencyManager,
    req: &ResolveLockRequest,
    keys: &[Key],
) -> Result<WriteResult<ResolveLockResponse>> {
    let map = match txn_status_map(req) {
        Ok(map) => map,
        Err(e) => return Ok(error_reply(e)),
    };
    let reader = MvccReader::new(snap);
    let mut txn = MvccTxn::new(0);
    let mut seen = HashSet::new();
    for key in keys {
        if !seen.insert(key) {
            continue;
        }
        let Some(lock) = reader.load_lock(key)? else {
            continue;
        };
        let Some(&commit_ts) = map.get(&lock.ts) else {
            continue;
        };
        txn.start_ts = lock.ts;
        let done = if commit_ts == 0 {
            cleanup(&mut txn, &reader, key.clone(), 0, false)
        } else if commit_ts > lock.ts {
            match commit_key(&mut txn, &reader, key.clone(), commit_ts) {
                // A pessimistic lock left behind by a committed transaction: nothing to
                // commit there.
                Err(Error::TxnLockNotFound { .. }) if lock.lock_type == LockType::Pessimistic => {
                    Ok(())
                }
                r => r,
            }
        } else {
            Err(Error::InvalidTxnTso {
                start_ts: lock.ts,
                commit_ts,
            })
        };
        if let Err(e) = done {
            return fail(e);
        }
    }
    Ok(txn.into_result(ResolveLockResponse::default()))
}

/// The request's `keys` (empty for a region-wide resolve, which goes through
/// [`scan_keys`] and [`process_keys`] instead).
pub fn latch_keys(req: &ResolveLockRequest) -> Vec<Key> {
    req.keys.iter().map(|k| Key::from_raw(k)).collect()
}

/// Resolves exactly the request's `keys` for transaction `start_version` (TiKV's
/// ResolveLockLite): commit each at `commit_version`, or roll each back (0), whether or
/// not its lock is still there (a missing lock gets a rollback record; a commit finds
/// the commit record or fails with TxnLockNotFound).
pub fn process<S: Snapshot + ?Sized>(
    snap: &S,
    _cm: &ConcurrencyManager,
    req: &ResolveLockRequest,
) -> Result<WriteResult<ResolveLockResponse>> {
    if req.keys.is_empty() {
        return Ok(error_reply(Error::InvalidRequest(
            "a region-wide ResolveLock is served by scan_keys and process_keys".into(),
        )));
    }
    if req.start_version == 0 {
        return Ok(error_reply(Error::InvalidRequest(
            "ResolveLock with keys needs start_version".into(),
        )));
    }
    if let Err(e) = txn_status_map(req) {
        return Ok(error_reply(e));
    }
    let reader = MvccReader::new(snap);
    let mut txn = MvccTxn::new(req.start_version);
    let mut seen = HashSet::new();
    for raw in &req.keys {
        if !seen.insert(raw.as_slice()) {
            continue;
        }
        let key = Key::from_raw(raw);
        let done = if req.commit_version == 0 {
            cleanup(&mut txn, &reader, key, 0, false)
        } else {
            commit_key(&mut txn, &reader, key, req.commit_version)
        };
        if let Err(e) = done {
            return fail(e);
        }
    }
    Ok(txn.into_result(ResolveLockResponse::default()))
}

/// Commits `txn`'s lock on `key` at `commit_ts` (the commit step of txn.md §3.4).
fn commit_key<S: Snapshot + ?Sized>(
    txn: &mut MvccTxn,
    reader: &MvccReader<S>,
    key: Key,
    commit_ts: TimeStamp,
) -> Result<()> {
    commit(txn, reader, key, commit_ts).map(|_| ())
}

fn error_reply(e: Error) -> WriteResult<ResolveLockResponse> {
    WriteResult::read_only(ResolveLockResponse {
        error: Some(e.to_key_error()),
        ..Default::default()
    })
}

/// A per-key failure as the reply (nothing written), or a store failure as `Err`.
fn fail(e: Error) -> Result<WriteResult<ResolveLockResponse>> {
    match e {
        Error::Corrupt(_) | Error::Engine(_) => Err(e),
        e => Ok(error_reply(e)),
    }
}

#[cfg(test)]
mod tests {
    use proto::kvrpcpb::TxnInfo;

    use super::*;
    use crate::actions::cleanup::test_util::*;
    use crate::testing::MemSnapshot;
    use crate::{Lock, Write, WriteType};

    fn resolve_req(start: u64, commit_ts: u64) -> ResolveLockRequest {
        ResolveLockRequest {
            start_version: start,
            commit_version: commit_ts,
            ..Default::default()
        }
    }

    /// The caller's region-wide loop, in batches of `batch`; returns the batch count.
    fn resolve_region(
        snap: &mut MemSnapshot,
        req: &ResolveLockRequest,
        batch: usize,
    ) -> (ResolveLockResponse, usize) {
        let cm = ConcurrencyManager::new(1);
        let mut start = Vec::new();
        let mut batches = 0;
        loop {
            let (keys, more) = match scan_keys(&*snap, req, &start, batch) {
                Ok(r) => r,
                Err(e) => return (error_reply(e).response, batches),
            };
            if keys.is_empty() {
                return (ResolveLockResponse::default(), batches);
            }
            batches += 1;
            let res = process_keys(&*snap, &cm, req, &keys).unwrap();
            snap.apply(&res.modifies);
            if res.response.error.is_some() || !more {
                return (res.response, batches);
            }
            start = next_start(keys.last().unwrap());
        }
    }

    /// TinyKV's layout: txn 100 locks [3] (primary) and [7], txn 110 locks [200].
    fn three_locks() -> MemSnapshot {
        let mut snap = MemSnapshot::new();
        prewrite_put(&mut snap, &[3], &[42; 300], &[3], 100, 10);
        prewrite_put(&mut snap, &[7], &[43; 300], &[3], 100, 10);
        prewrite_put(&mut snap, &[200], &[44; 300], &[200], 110, 10);
        snap
    }

    #[test]
    fn empty() {
        let mut snap = MemSnapshot::new();
        let (resp, _) = resolve_region(&mut snap, &resolve_req(0, 0), 256);
        assert_eq!(resp, ResolveLockResponse::default());
        assert_eq!(lens(&snap), (0, 0, 0));
    }

    #[test]
    fn rollback() {
        let mut snap = three_locks();
        let (resp, _) = resolve_region(&mut snap, &resolve_req(100, 0), 256);
        assert!(resp.error.is_none());
        assert_eq!(lens(&snap), (1, 1, 2));
        assert!(
            get_write(&snap, &[3], 100).unwrap().is_protected(),
            "primary: protected"
        );
        assert_eq!(
            get_write(&snap, &[7], 100).unwrap(),
            Write::new_rollback(100, false)
        );
        assert_eq!(get_lock(&snap, &[200]).unwrap().ts, 110);
        assert!(has_value(&snap, &[200], 110));
    }

    #[test]
    fn rollback_written() {
        // Only txn 110's lock is left; txn 100 already committed [201] and rolled back.
        let mut snap = MemSnapshot::new();
        put_write(
            &mut snap,
            &[201],
            120,
            &Write::new(WriteType::Put, 100, Some(vec![1])),
        );
        put_write(&mut snap, &[201], 100, &Write::new_rollback(100, false));
        prewrite_put(&mut snap, &[200], &[44; 300], &[200], 110, 10);
        let before = snap.clone();
        let (resp, batches) = resolve_region(&mut snap, &resolve_req(100, 0), 256);
        assert!(resp.error.is_none());
        assert_eq!(batches, 0, "no lock of txn 100: nothing to do");
        assert_eq!(snap.dump(engine::CF_WRITE), before.dump(engine::CF_WRITE));
        assert_eq!(lens(&snap), (1, 1, 2));
    }

    #[test]
    fn invalid_commit_ts() {
        let mut snap = three_locks();
        let (resp, _) = resolve_region(&mut snap, &resolve_req(100, 100), 256);
        assert!(!resp.error.unwrap().abort.is_empty());
        assert_eq!(lens(&snap), (3, 3, 0));
        let req = ResolveLockRequest {
            txn_infos: vec![
                TxnInfo {
                    txn: 100,
                    status: 0,
                    ..Default::default()
                },
                TxnInfo {
                    txn: 110,
                    status: 90,
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        assert!(matches!(
            txn_status_map(&req),
            Err(Error::InvalidTxnTso {
                start_ts: 110,
                commit_ts: 90
            })
        ));
        let res = process_keys(
            &snap,
            &ConcurrencyManager::new(1),
            &req,
            &[Key::from_raw(&[3])],
        )
        .unwrap();
        assert!(res.response.error.is_some() && res.modifies.is_empty());
    }

    #[test]
    fn region_wide_in_small_batches() {
        let mut snap = MemSnapshot::new();
        // 10 locks of txn 100 interleaved with 10 of txn 200.
        for i in 0..20u8 {
            let start = if i % 2 == 0 { 100 } else { 200 };
            prewrite_put(
                &mut snap,
                &[b'k', i],
                &[i],
                &[b'k', start as u8 % 2],
                start,
                10,
            );
        }
        let (resp, batches) = resolve_region(&mut snap, &resolve_req(100, 0), 3);
        assert!(resp.error.is_none());
        assert_eq!(batches, 4, "10 locks in batches of 3");
        assert_eq!(lens(&snap).1, 10);
        for i in 0..20u8 {
            let lock = get_lock(&snap, &[b'k', i]);
            if i % 2 == 0 {
                assert!(lock.is_none());
                assert_eq!(
                    get_write(&snap, &[b'k', i], 100).unwrap().write_type,
                    WriteType::Rollback
                );
            } else {
                assert_eq!(lock.unwrap().ts, 200);
            }
        }
    }

    #[test]
    fn scan_keys_limits_and_filters() {
        let snap = three_locks();
        let (keys, more) = scan_keys(&snap, &resolve_req(100, 0), b"", 1).unwrap();
        assert_eq!((keys, more), (vec![Key::from_raw(&[3])], true));
        let (keys, more) = scan_keys(
            &snap,
            &resolve_req(100, 0),
            &next_start(&Key::from_raw(&[3])),
            1,
        )
        .unwrap();
        assert_eq!((keys, more), (vec![Key::from_raw(&[7])], true));
        let (keys, more) = scan_keys(&snap, &resolve_req(100, 0), b"", 0).unwrap();
        assert_eq!((keys.len(), more), (2, false));
        let (keys, more) = scan_keys(
            &snap,
            &resolve_req(100, 0),
            &next_start(&Key::from_raw(&[7])),
            5,
        )
        .unwrap();
        assert_eq!((keys.len(), more), (0, false));
    }

    #[test]
    fn changed_lock_is_skipped() {
        // The scan saw txn 100's lock on [7]; before latching it was rolled back and
        // txn 130 locked the key. process_keys leaves txn 130's lock alone.
        let mut snap = three_locks();
        let (keys, _) = scan_keys(&snap, &resolve_req(100, 0), b"", 0).unwrap();
        let mut txn = MvccTxn::new(100);
        txn.unlock_key(Key::from_raw(&[7]));
        apply(&mut snap, txn);
        prewrite_put(&mut snap, &[7], &[1], &[7], 130, 10);
        let res = process_keys(
            &snap,
            &ConcurrencyManager::new(1),
            &resolve_req(100, 0),
            &keys,
        )
        .unwrap();
        snap.apply(&res.modifies);
        assert!(res.response.error.is_none());
        assert_eq!(get_lock(&snap, &[7]).unwrap().ts, 130);
        assert!(get_lock(&snap, &[3]).is_none());
    }

    #[test]
    fn txn_infos_rollback_several() {
        let mut snap = three_locks();
        prewrite_put(&mut snap, &[9], &[1], &[9], 150, 10);
        let req = ResolveLockRequest {
            txn_infos: vec![
                TxnInfo {
                    txn: 100,
                    status: 0,
                    ..Default::default()
                },
                TxnInfo {
                    txn: 110,
                    status: 0,
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let (resp, _) = resolve_region(&mut snap, &req, 2);
        assert!(resp.error.is_none());
        assert_eq!(lens(&snap), (0, 1, 3));
        assert_eq!(get_lock(&snap, &[9]).unwrap().ts, 150);
    }

    #[test]
    fn lite_rollback_exact_keys() {
        let mut snap = three_locks();
        let req = ResolveLockRequest {
            keys: vec![vec![7], vec![8], vec![7]],
            ..resolve_req(100, 0)
        };
        assert_eq!(latch_keys(&req).len(), 3);
        let res = process(&snap, &ConcurrencyManager::new(1), &req).unwrap();
        snap.apply(&res.modifies);
        assert!(res.response.error.is_none());
        // [7] rolled back, [8] (no lock) gets a rollback record, [3] untouched.
        assert!(get_lock(&snap, &[7]).is_none());
        assert!(get_write(&snap, &[8], 100).is_some());
        assert_eq!(get_lock(&snap, &[3]).unwrap().ts, 100);
        // Without keys `process` refuses rather than resolving unlatched.
        let res = process(&snap, &ConcurrencyManager::new(1), &resolve_req(100, 0)).unwrap();
        assert!(res.response.error.is_some() && res.modifies.is_empty());
    }

    #[test]
    fn pessimistic_lock_rolled_back() {
        let mut snap = MemSnapshot::new();
        let mut l = Lock::new(LockType::Pessimistic, b"p".to_vec(), 100, 10);
        l.for_update_ts = 100;
        put_lock(&mut snap, b"k", &l);
        let (resp, _) = resolve_region(&mut snap, &resolve_req(100, 0), 256);
        assert!(resp.error.is_none());
        assert_eq!(lens(&snap), (0, 0, 1));
    }
    #[test]
    fn commit_all_locks_of_txn() {
        let mut snap = three_locks();
        let (resp, _) = resolve_region(&mut snap, &resolve_req(100, 120), 256);
        assert!(resp.error.is_none());
        assert_eq!(lens(&snap), (3, 1, 2));
        for k in [[3u8], [7]] {
            let w = get_write(&snap, &k, 120).unwrap();
            assert_eq!(
                (w.write_type, w.start_ts, w.short_value),
                (WriteType::Put, 100, None)
            );
            assert!(has_value(&snap, &k, 100));
        }
        assert_eq!(get_lock(&snap, &[200]).unwrap().ts, 110);
    }

    #[test]
    fn commit_written() {
        let mut snap = MemSnapshot::new();
        put_write(
            &mut snap,
            &[201],
            120,
            &Write::new(WriteType::Put, 100, Some(vec![1])),
        );
        put_write(&mut snap, &[201], 100, &Write::new_rollback(100, false));
        prewrite_put(&mut snap, &[200], &[44; 300], &[200], 110, 10);
        let before = snap.clone();
        let (resp, _) = resolve_region(&mut snap, &resolve_req(100, 120), 256);
        assert!(resp.error.is_none());
        assert_eq!(snap.dump(engine::CF_WRITE), before.dump(engine::CF_WRITE));
        assert_eq!(lens(&snap), (1, 1, 2));
    }

    #[test]
    fn txn_infos_commit_and_rollback() {
        let mut snap = three_locks();
        prewrite_put(&mut snap, &[9], &[1], &[9], 150, 10);
        let req = ResolveLockRequest {
            txn_infos: vec![
                TxnInfo {
                    txn: 100,
                    status: 130,
                    ..Default::default()
                },
                TxnInfo {
                    txn: 110,
                    status: 0,
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let (resp, batches) = resolve_region(&mut snap, &req, 2);
        assert!(resp.error.is_none());
        assert_eq!(batches, 2);
        assert_eq!(get_write(&snap, &[3], 130).unwrap().start_ts, 100);
        assert_eq!(get_write(&snap, &[7], 130).unwrap().start_ts, 100);
        assert!(get_write(&snap, &[200], 110).unwrap().is_protected());
        assert!(!has_value(&snap, &[200], 110));
        assert_eq!(get_lock(&snap, &[9]).unwrap().ts, 150);
        assert_eq!(lens(&snap), (2, 1, 3));
    }

    #[test]
    fn committed_txn_drops_pessimistic_lock() {
        let mut snap = MemSnapshot::new();
        let mut l = Lock::new(LockType::Pessimistic, b"p".to_vec(), 100, 10);
        l.for_update_ts = 100;
        put_lock(&mut snap, b"k", &l);
        prewrite_put(&mut snap, b"p", b"v", b"p", 100, 10);
        let (resp, _) = resolve_region(&mut snap, &resolve_req(100, 120), 256);
        assert!(resp.error.is_none());
        assert_eq!(lens(&snap), (0, 0, 1));
        assert!(get_write(&snap, b"k", 120).is_none());
        assert_eq!(
            get_write(&snap, b"p", 120).unwrap().write_type,
            WriteType::Put
        );
    }

    #[test]
    fn commit_below_min_commit_ts_fails_unwritten() {
        let mut snap = three_locks();
        let mut l = Lock::new(LockType::Put, vec![3], 100, 10);
        l.min_commit_ts = 125;
        prewrite(&mut snap, &[7], &[1], l);
        let (resp, _) = resolve_region(&mut snap, &resolve_req(100, 120), 256);
        let e = resp.error.unwrap().commit_ts_expired.unwrap();
        assert_eq!((e.min_commit_ts, e.attempted_commit_ts), (125, 120));
        assert_eq!(lens(&snap).2, 0, "nothing of the batch written");
    }

    #[test]
    fn commit_carries_overlapped_rollback() {
        let mut snap = MemSnapshot::new();
        let mut l = Lock::new(LockType::Put, b"k".to_vec(), 100, 10);
        l.use_async_commit = true;
        l.min_commit_ts = 101;
        l.rollback_ts = vec![120];
        prewrite(&mut snap, b"k", b"v", l);
        let (resp, _) = resolve_region(&mut snap, &resolve_req(100, 120), 256);
        assert!(resp.error.is_none());
        let w = get_write(&snap, b"k", 120).unwrap();
        assert!(w.has_overlapped_rollback);
        assert_eq!(w.start_ts, 100);
    }

    #[test]
    fn lite_commit_exact_keys() {
        let mut snap = three_locks();
        let req = ResolveLockRequest {
            keys: vec![vec![7]],
            ..resolve_req(100, 120)
        };
        let res = process(&snap, &ConcurrencyManager::new(1), &req).unwrap();
        snap.apply(&res.modifies);
        assert!(res.response.error.is_none());
        assert_eq!(get_write(&snap, &[7], 120).unwrap().start_ts, 100);
        assert_eq!(get_lock(&snap, &[3]).unwrap().ts, 100);
        // Again: the commit record makes it a no-op; a key never locked fails.
        let res = process(&snap, &ConcurrencyManager::new(1), &req).unwrap();
        assert!(res.response.error.is_none() && res.modifies.is_empty());
        let req = ResolveLockRequest {
            keys: vec![vec![8]],
            ..resolve_req(100, 120)
        };
        let res = process(&snap, &ConcurrencyManager::new(1), &req).unwrap();
        assert!(
            !res.response.error.unwrap().retryable.is_empty(),
            "TxnLockNotFound"
        );
        assert!(res.modifies.is_empty());
    }
}
