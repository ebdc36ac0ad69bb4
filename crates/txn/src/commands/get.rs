//! KvGet (txn.md §3.2): the value of one key as a snapshot read at `version` sees it.
//!
//! A blocking lock fails the whole request with `error.locked`; the client resolves it
//! and retries.

use proto::kvrpcpb::{GetRequest, GetResponse};

use crate::read::{check_lock, point};
use crate::{ConcurrencyManager, Error, Key, Result, Snapshot, TimeStamp};

/// Raises max_ts to the read ts, then fails if a memory lock (an async-commit or 1PC
/// prewrite not yet applied) blocks the read.
pub fn check_memory_locks(cm: &ConcurrencyManager, req: &GetRequest) -> Result<()> {
    cm.update_max_ts(req.version);
    let key = Key::from_raw(&req.key);
    let bypass = bypass_locks(req.context.as_ref());
    cm.read_key_check(&key, |lock| check_lock(&req.key, lock, req.version, bypass))
}

/// Reads the key.
pub fn process<S: Snapshot + ?Sized>(snap: &S, req: &GetRequest) -> Result<GetResponse> {
    let bypass = bypass_locks(req.context.as_ref());
    match point::get(snap, &req.key, req.version, bypass) {
        Ok(Some(value)) => Ok(GetResponse {
            value,
            ..Default::default()
        }),
        Ok(None) => Ok(GetResponse {
            not_found: true,
            ..Default::default()
        }),
        Err(e @ (Error::Corrupt(_) | Error::Engine(_))) => Err(e),
        Err(e) => Ok(GetResponse {
            error: Some(e.to_key_error()),
            ..Default::default()
        }),
    }
}

/// The transactions a read may read through (`context.resolved_locks`).
pub(crate) fn bypass_locks(ctx: Option<&proto::kvrpcpb::Context>) -> &[TimeStamp] {
    ctx.map_or(&[], |c| c.resolved_locks.as_slice())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::read::test_util::*;
    use crate::testing::MemSnapshot;
    use crate::{Lock, LockType, WriteType};
    use proto::kvrpcpb::Context;

    fn get(snap: &MemSnapshot, key: &[u8], version: u64) -> GetResponse {
        let req = GetRequest {
            key: key.to_vec(),
            version,
            ..Default::default()
        };
        let cm = ConcurrencyManager::new(1);
        check_memory_locks(&cm, &req).unwrap();
        process(snap, &req).unwrap()
    }

    fn value(v: &[u8]) -> GetResponse {
        GetResponse {
            value: v.to_vec(),
            ..Default::default()
        }
    }

    fn not_found() -> GetResponse {
        GetResponse {
            not_found: true,
            ..Default::default()
        }
    }

    #[test]
    fn get_value() {
        let mut snap = MemSnapshot::new();
        must_put(&mut snap, &[99], &[42], 50, 54);
        assert_eq!(get(&snap, &[99], 100), value(&[42]));
        assert_eq!(get(&snap, &[99], u64::MAX), value(&[42]));
    }

    #[test]
    fn get_value_ts() {
        let mut snap = MemSnapshot::new();
        must_put(&mut snap, &[99], &[42], 50, 54);
        must_put(&mut snap, &[99], &[43], 60, 66);
        assert_eq!(get(&snap, &[99], 53), not_found());
        assert_eq!(get(&snap, &[99], 54), value(&[42]));
        assert_eq!(get(&snap, &[99], 65), value(&[42]));
        assert_eq!(get(&snap, &[99], 66), value(&[43]));
    }

    #[test]
    fn get_empty_and_none() {
        let mut snap = MemSnapshot::new();
        assert_eq!(get(&snap, &[100], 100), not_found());
        assert_eq!(get(&snap, &[], 0), not_found());
        must_put(&mut snap, &[99], &[42], 50, 54);
        must_put(&mut snap, &[101], &[42], 50, 54);
        assert_eq!(get(&snap, &[100], 100), not_found());
    }

    #[test]
    fn get_versions() {
        let mut snap = MemSnapshot::new();
        must_put(&mut snap, &[99], &[42], 50, 54);
        must_put(&mut snap, &[99], &[43], 60, 66);
        must_put(&mut snap, &[99], &[44; 400], 120, 122);
        assert_eq!(get(&snap, &[99], 100), value(&[43]));
        assert_eq!(get(&snap, &[99], 200), value(&[44; 400]));
    }

    #[test]
    fn get_deleted() {
        let mut snap = MemSnapshot::new();
        must_put(&mut snap, &[99], &[42], 50, 54);
        must_write(&mut snap, &[99], WriteType::Delete, 60, 66);
        assert_eq!(get(&snap, &[99], 100), not_found());
        assert_eq!(get(&snap, &[99], 60), value(&[42]));
        // A Lock or Rollback record does not hide the value.
        must_write(&mut snap, &[98], WriteType::Lock, 5, 6);
        must_put(&mut snap, &[98], &[1], 1, 2);
        assert_eq!(get(&snap, &[98], 100), value(&[1]));
    }

    #[test]
    fn get_locked() {
        let mut snap = MemSnapshot::new();
        must_put(&mut snap, &[99], &[42], 50, 54);
        must_lock(&mut snap, &[99], &[99], LockType::Put, 200, &[43]);
        // Invisible to a read below it...
        assert_eq!(get(&snap, &[99], 55), value(&[42]));
        // ...and in the way of one above it.
        let resp = get(&snap, &[99], 300);
        let locked = resp.error.expect("a key error").locked.expect("locked");
        assert_eq!(locked.key, [99]);
        assert_eq!(locked.primary_lock, [99]);
        assert_eq!(locked.lock_version, 200);
        assert_eq!(locked.lock_ttl, 3000);
        assert!(resp.value.is_empty() && !resp.not_found);
        // Unless the client says txn 200 is settled.
        let req = GetRequest {
            context: Some(Context {
                resolved_locks: vec![200],
                ..Default::default()
            }),
            key: vec![99],
            version: 300,
        };
        assert_eq!(process(&snap, &req).unwrap(), value(&[42]));
    }

    #[test]
    fn memory_lock_blocks_and_max_ts_rises() {
        let cm = ConcurrencyManager::new(10);
        let key = Key::from_raw(b"k");
        let guard = cm.lock_key(&key);
        let mut lock = Lock::new(LockType::Put, b"k".to_vec(), 100, 3000);
        lock.min_commit_ts = 101;
        guard.with_lock(|l| *l = Some(lock));
        let req = |version| GetRequest {
            key: b"k".to_vec(),
            version,
            ..Default::default()
        };
        // Below min_commit_ts: not blocked, but max_ts moves up.
        check_memory_locks(&cm, &req(100)).unwrap();
        assert_eq!(cm.max_ts(), 100);
        match check_memory_locks(&cm, &req(150)) {
            Err(Error::KeyIsLocked(info)) => {
                assert_eq!((info.key, info.lock_version), (b"k".to_vec(), 100))
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(cm.max_ts(), 150);
        // Another key is not affected.
        let other = GetRequest {
            key: b"j".to_vec(),
            version: 200,
            ..Default::default()
        };
        check_memory_locks(&cm, &other).unwrap();
        drop(guard);
        check_memory_locks(&cm, &req(300)).unwrap();
        assert_eq!(cm.max_ts(), 300);
    }

    #[test]
    fn corrupt_data_is_a_store_error() {
        let mut snap = MemSnapshot::new();
        must_write(&mut snap, b"k", WriteType::Put, 10, 11);
        let req = GetRequest {
            key: b"k".to_vec(),
            version: 20,
            ..Default::default()
        };
        assert!(matches!(process(&snap, &req), Err(Error::Corrupt(_))));
    }
}
