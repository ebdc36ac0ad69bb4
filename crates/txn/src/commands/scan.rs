//! KvScan (txn.md §3.2): the keys of a range read at `version`, up to `limit`.
//!
//! Forward, the range is `[start_key, end_key)`. Reverse, the client swaps them:
//! `start_key` is the exclusive upper bound and `end_key` the inclusive lower bound, and
//! pairs come in descending order. An empty bound is unbounded on its side. A key hidden
//! by a lock gives a pair with `error.locked`, counted in the limit, and the scan goes on.
//! `sample_step` is not supported (the clients we serve never set it): every key counts.

use proto::kvrpcpb::{KvPair, ScanRequest, ScanResponse};

use crate::commands::get::bypass_locks;
use crate::read::check_lock;
use crate::read::scan::{scan, ScanOptions};
use crate::{ConcurrencyManager, Key, Result, Snapshot};

/// The request's range as encoded `(lower, upper)`, lower inclusive, upper exclusive;
/// `None` on an unbounded side.
fn bounds(req: &ScanRequest) -> (Option<Key>, Option<Key>) {
    let (lower, upper) = if req.reverse {
        (&req.end_key, &req.start_key)
    } else {
        (&req.start_key, &req.end_key)
    };
    let enc = |raw: &Vec<u8>| (!raw.is_empty()).then(|| Key::from_raw(raw));
    (enc(lower), enc(upper))
}

/// Raises max_ts to the read ts, then fails at the first memory lock in the range that
/// blocks the read.
pub fn check_memory_locks(cm: &ConcurrencyManager, req: &ScanRequest) -> Result<()> {
    cm.update_max_ts(req.version);
    let bypass = bypass_locks(req.context.as_ref());
    let (lower, upper) = bounds(req);
    cm.read_range_check(lower.as_ref(), upper.as_ref(), |key, lock| {
        check_lock(&key.to_raw()?, lock, req.version, bypass)
    })
}

/// Scans the range.
pub fn process<S: Snapshot + ?Sized>(snap: &S, req: &ScanRequest) -> Result<ScanResponse> {
    let (lower, upper) = bounds(req);
    let opts = ScanOptions {
        ts: req.version,
        limit: req.limit as usize,
        key_only: req.key_only,
        reverse: req.reverse,
        bypass_locks: bypass_locks(req.context.as_ref()),
    };
    let lower = lower.map_or_else(Vec::new, Key::into_encoded);
    let upper = upper.map_or_else(Vec::new, Key::into_encoded);
    let pairs = scan(snap, &lower, &upper, &opts)?
        .into_iter()
        .map(|(key, value)| match value {
            Ok(value) => KvPair {
                key,
                value,
                ..Default::default()
            },
            Err(e) => KvPair {
                key,
                error: Some(e.to_key_error()),
                ..Default::default()
            },
        })
        .collect();
    Ok(ScanResponse {
        pairs,
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::read::test_util::*;
    use crate::testing::MemSnapshot;
    use crate::{Error, Lock, LockType, WriteType};
    use proto::kvrpcpb::Context;

    fn req(start: &[u8], end: &[u8], limit: u32, version: u64, reverse: bool) -> ScanRequest {
        ScanRequest {
            start_key: start.to_vec(),
            end_key: end.to_vec(),
            limit,
            version,
            reverse,
            ..Default::default()
        }
    }

    /// The pairs as (key, value), a lock error shown as the value "LOCKED".
    fn run(snap: &MemSnapshot, r: &ScanRequest) -> Vec<(Vec<u8>, Vec<u8>)> {
        let resp = process(snap, r).unwrap();
        assert!(resp.error.is_none() && resp.region_error.is_none());
        resp.pairs
            .into_iter()
            .map(|p| match p.error {
                None => (p.key, p.value),
                Some(e) => {
                    assert_eq!(e.locked.expect("a lock error").key, p.key);
                    (p.key, b"LOCKED".to_vec())
                }
            })
            .collect()
    }

    fn kv(k: &[u8], v: &[u8]) -> (Vec<u8>, Vec<u8>) {
        (k.to_vec(), v.to_vec())
    }

    /// TinyKV 4C's fixture: [1] twice, [1,23], [3], [4] then deleted, [5] late.
    fn fixture() -> MemSnapshot {
        let mut snap = MemSnapshot::new();
        must_put(&mut snap, &[1], &[42], 50, 51);
        must_put(&mut snap, &[1], &[43], 52, 53);
        must_put(&mut snap, &[1, 23], &[44], 50, 51);
        must_put(&mut snap, &[3], &[45], 50, 51);
        must_put(&mut snap, &[4], &[46], 50, 51);
        must_write(&mut snap, &[4], WriteType::Delete, 60, 61);
        must_put(&mut snap, &[5], &[47], 100, 101);
        snap
    }

    #[test]
    fn scan_empty() {
        let snap = MemSnapshot::new();
        assert!(run(&snap, &req(&[], &[], 10, 100, false)).is_empty());
        assert!(run(&snap, &req(&[1], &[200], 10, 100, true)).is_empty());
    }

    #[test]
    fn scan_limit_zero() {
        let snap = fixture();
        assert!(run(&snap, &req(&[], &[], 0, 100, false)).is_empty());
        assert!(run(&snap, &req(&[], &[], 0, 100, true)).is_empty());
    }

    #[test]
    fn scan_all() {
        let snap = fixture();
        let got = run(&snap, &req(&[1], &[], 10, 100, false));
        assert_eq!(got, [kv(&[1], &[43]), kv(&[1, 23], &[44]), kv(&[3], &[45])]);
        let got = run(&snap, &req(&[], &[], u32::MAX, 200, false));
        assert_eq!(got.len(), 4);
    }

    #[test]
    fn scan_limit() {
        let snap = fixture();
        let got = run(&snap, &req(&[2], &[], 1, 100, false));
        assert_eq!(got, [kv(&[3], &[45])]);
        let got = run(&snap, &req(&[], &[], 2, 100, false));
        assert_eq!(got, [kv(&[1], &[43]), kv(&[1, 23], &[44])]);
    }

    #[test]
    fn scan_deleted() {
        let snap = fixture();
        let got = run(&snap, &req(&[3], &[], 10, 100, false));
        assert_eq!(got, [kv(&[3], &[45])]);
        let got = run(&snap, &req(&[3], &[], 10, 55, false));
        assert_eq!(got, [kv(&[3], &[45]), kv(&[4], &[46])]);
    }

    #[test]
    fn end_key_is_exclusive() {
        let snap = fixture();
        let got = run(&snap, &req(&[1, 23], &[3], 10, 100, false));
        assert_eq!(got, [kv(&[1, 23], &[44])]);
    }

    #[test]
    fn reverse_takes_start_as_upper_and_end_as_lower() {
        let snap = fixture();
        // [end, start) = [[1,23], [5]) descending.
        let got = run(&snap, &req(&[5], &[1, 23], 10, 200, true));
        assert_eq!(got, [kv(&[3], &[45]), kv(&[1, 23], &[44])]);
        // An empty start (upper) is unbounded, as the client sends for the last region.
        let got = run(&snap, &req(&[], &[3], 10, 200, true));
        assert_eq!(got, [kv(&[5], &[47]), kv(&[3], &[45])]);
        let got = run(&snap, &req(&[], &[], 3, 100, true));
        assert_eq!(got, [kv(&[3], &[45]), kv(&[1, 23], &[44]), kv(&[1], &[43])]);
    }

    #[test]
    fn key_only_and_lock_errors() {
        let mut snap = fixture();
        must_lock(&mut snap, &[3], &[1], LockType::Put, 90, &[0]);
        let mut r = req(&[], &[], 10, 100, false);
        r.key_only = true;
        let got = run(&snap, &r);
        assert_eq!(got, [kv(&[1], &[]), kv(&[1, 23], &[]), kv(&[3], b"LOCKED")]);
        // The lock counts in the limit, in both directions.
        let got = run(&snap, &req(&[], &[], 1, 100, true));
        assert_eq!(got, [kv(&[3], b"LOCKED")]);
        // resolved_locks lets the scan through.
        r.context = Some(Context {
            resolved_locks: vec![90],
            ..Default::default()
        });
        assert_eq!(run(&snap, &r)[2], kv(&[3], &[]));
    }

    #[test]
    fn memory_locks_in_range_block_and_raise_max_ts() {
        let cm = ConcurrencyManager::new(1);
        let guard = cm.lock_key(&Key::from_raw(&[3]));
        guard.with_lock(|l| *l = Some(Lock::new(LockType::Put, vec![1], 50, 100)));
        let blocked =
            |r: &ScanRequest| matches!(check_memory_locks(&cm, r), Err(Error::KeyIsLocked(_)));
        assert!(blocked(&req(&[], &[], 10, 60, false)));
        assert_eq!(cm.max_ts(), 60);
        assert!(blocked(&req(&[3], &[4], 10, 60, false)));
        assert!(
            !blocked(&req(&[1], &[3], 10, 70, false)),
            "end is exclusive"
        );
        assert_eq!(cm.max_ts(), 70);
        assert!(
            !blocked(&req(&[], &[], 10, 49, false)),
            "lock above the read ts"
        );
        // Reverse: [end, start).
        assert!(blocked(&req(&[4], &[3], 10, 60, true)));
        assert!(!blocked(&req(&[3], &[1], 10, 60, true)));
        assert!(blocked(&req(&[], &[2], 10, 60, true)));
        drop(guard);
        assert!(!blocked(&req(&[], &[], 10, 80, false)));
    }
}
