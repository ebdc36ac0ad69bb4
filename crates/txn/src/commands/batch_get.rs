//! KvBatchGet (txn.md §3.2): several keys read at one `version`.
//!
//! Found keys give a pair with their value, missing ones nothing; a key hidden by a lock
//! gives a pair carrying that key and `error.locked`, and the others are still read.
//! Keys are answered in request order; a key named twice is answered twice.

use proto::kvrpcpb::{BatchGetRequest, BatchGetResponse, KvPair};

use crate::commands::get::bypass_locks;
use crate::read::{check_lock, point};
use crate::{ConcurrencyManager, Error, Key, Result, Snapshot};

/// Raises max_ts to the read ts, then fails at the first key a memory lock blocks.
pub fn check_memory_locks(cm: &ConcurrencyManager, req: &BatchGetRequest) -> Result<()> {
    cm.update_max_ts(req.version);
    let bypass = bypass_locks(req.context.as_ref());
    for raw in &req.keys {
        let key = Key::from_raw(raw);
        cm.read_key_check(&key, |lock| check_lock(raw, lock, req.version, bypass))?;
    }
    Ok(())
}

/// Reads the keys.
pub fn process<S: Snapshot + ?Sized>(snap: &S, req: &BatchGetRequest) -> Result<BatchGetResponse> {
    let bypass = bypass_locks(req.context.as_ref());
    let mut pairs = Vec::new();
    for raw in &req.keys {
        match point::get(snap, raw, req.version, bypass) {
            Ok(Some(value)) => pairs.push(KvPair {
                key: raw.clone(),
                value,
                ..Default::default()
            }),
            Ok(None) => {}
            Err(e @ (Error::Corrupt(_) | Error::Engine(_))) => return Err(e),
            Err(e) => pairs.push(KvPair {
                key: raw.clone(),
                error: Some(e.to_key_error()),
                ..Default::default()
            }),
        }
    }
    Ok(BatchGetResponse {
        pairs,
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::read::test_util::*;
    use crate::testing::MemSnapshot;
    use crate::{Lock, LockType, WriteType};

    fn req(keys: &[&[u8]], version: u64) -> BatchGetRequest {
        BatchGetRequest {
            keys: keys.iter().map(|k| k.to_vec()).collect(),
            version,
            ..Default::default()
        }
    }

    /// The pairs as (key, Some(value)) or (key, None) for a lock error.
    fn summary(resp: BatchGetResponse) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        assert!(resp.error.is_none());
        resp.pairs
            .into_iter()
            .map(|p| match p.error {
                None => (p.key, Some(p.value)),
                Some(e) => {
                    let locked = e.locked.expect("only lock errors");
                    assert_eq!(locked.key, p.key);
                    (p.key, None)
                }
            })
            .collect()
    }

    #[test]
    fn found_missing_deleted_and_locked_keys() {
        let mut snap = MemSnapshot::new();
        must_put(&mut snap, b"a", b"1", 10, 11);
        must_put(&mut snap, b"b", &[2; 500], 10, 11);
        must_put(&mut snap, b"d", b"4", 10, 11);
        must_write(&mut snap, b"d", WriteType::Delete, 20, 21);
        must_put(&mut snap, b"e", b"5", 10, 11);
        must_lock(&mut snap, b"e", b"e", LockType::Put, 30, b"6");
        must_lock(&mut snap, b"f", b"e", LockType::Delete, 30, b"");
        let got =
            summary(process(&snap, &req(&[b"e", b"a", b"c", b"b", b"d", b"f", b"a"], 40)).unwrap());
        assert_eq!(
            got,
            [
                (b"e".to_vec(), None),
                (b"a".to_vec(), Some(b"1".to_vec())),
                (b"b".to_vec(), Some(vec![2; 500])),
                (b"f".to_vec(), None),
                (b"a".to_vec(), Some(b"1".to_vec())),
            ]
        );
        // Below the locks and before the delete.
        let got = summary(process(&snap, &req(&[b"d", b"e", b"f"], 15)).unwrap());
        assert_eq!(
            got,
            [
                (b"d".to_vec(), Some(b"4".to_vec())),
                (b"e".to_vec(), Some(b"5".to_vec()))
            ]
        );
        assert!(process(&snap, &req(&[], 15)).unwrap().pairs.is_empty());
    }

    #[test]
    fn memory_locks_block_and_raise_max_ts() {
        let cm = ConcurrencyManager::new(1);
        let guard = cm.lock_key(&Key::from_raw(b"b"));
        guard.with_lock(|l| *l = Some(Lock::new(LockType::Put, b"a".to_vec(), 50, 100)));
        check_memory_locks(&cm, &req(&[b"a", b"b"], 49)).unwrap();
        assert_eq!(cm.max_ts(), 49);
        match check_memory_locks(&cm, &req(&[b"a", b"b"], 60)) {
            Err(Error::KeyIsLocked(info)) => assert_eq!(info.key, b"b"),
            other => panic!("{other:?}"),
        }
        assert_eq!(cm.max_ts(), 60);
    }
}
