//! Point reads: the value of one key as a snapshot read at `ts` sees it.

use crate::read::check_lock;
use crate::{Key, MvccReader, Result, Snapshot, TimeStamp, WriteType};

/// The value of the raw user key `raw_key` at `ts`, `None` if it has none (never written,
/// deleted, or only written above `ts`). A lock that blocks the read (see
/// [`check_lock`]) fails it with `KeyIsLocked`.
pub fn get<S: Snapshot + ?Sized>(
    snap: &S,
    raw_key: &[u8],
    ts: TimeStamp,
    bypass_locks: &[TimeStamp],
) -> Result<Option<Vec<u8>>> {
    let reader = MvccReader::new(snap);
    let key = Key::from_raw(raw_key);
    if let Some(lock) = reader.load_lock(&key)? {
        check_lock(raw_key, &lock, ts, bypass_locks)?;
    }
    match reader.get_write(&key, ts)? {
        Some((_, write)) if write.write_type == WriteType::Put => {
            Ok(Some(reader.load_data(&key, &write)?))
        }
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::read::test_util::*;
    use crate::testing::MemSnapshot;
    use crate::{Error, LockType};

    #[test]
    fn reads_the_newest_version_at_or_below_ts() {
        let mut snap = MemSnapshot::new();
        must_put(&mut snap, b"k", b"v1", 10, 20);
        must_put(&mut snap, b"k", &[9; 1000], 30, 40);
        must_write(&mut snap, b"k", WriteType::Lock, 45, 46);
        must_write(&mut snap, b"k", WriteType::Rollback, 47, 47);
        must_write(&mut snap, b"k", WriteType::Delete, 50, 60);
        assert_eq!(get(&snap, b"k", 19, &[]).unwrap(), None);
        assert_eq!(get(&snap, b"k", 20, &[]).unwrap(), Some(b"v1".to_vec()));
        assert_eq!(get(&snap, b"k", 39, &[]).unwrap(), Some(b"v1".to_vec()));
        assert_eq!(get(&snap, b"k", 59, &[]).unwrap(), Some(vec![9; 1000]));
        assert_eq!(get(&snap, b"k", 60, &[]).unwrap(), None);
        assert_eq!(get(&snap, b"other", 60, &[]).unwrap(), None);
        assert_eq!(get(&snap, b"", u64::MAX, &[]).unwrap(), None);
    }

    #[test]
    fn locks_block_by_the_rule() {
        let mut snap = MemSnapshot::new();
        must_put(&mut snap, b"k", b"old", 10, 20);
        must_lock(&mut snap, b"k", b"p", LockType::Put, 30, b"new");
        assert_eq!(get(&snap, b"k", 29, &[]).unwrap(), Some(b"old".to_vec()));
        match get(&snap, b"k", 30, &[]) {
            Err(Error::KeyIsLocked(info)) => {
                assert_eq!((info.key.as_slice(), info.lock_version), (&b"k"[..], 30));
                assert_eq!(info.primary_lock, b"p");
            }
            other => panic!("{other:?}"),
        }
        // The client knows txn 30 is settled: read through its lock.
        assert_eq!(get(&snap, b"k", 40, &[30]).unwrap(), Some(b"old".to_vec()));
        // A pessimistic lock hides nothing.
        must_lock(&mut snap, b"k2", b"p", LockType::Pessimistic, 30, b"");
        assert_eq!(get(&snap, b"k2", 40, &[]).unwrap(), None);
    }
}
