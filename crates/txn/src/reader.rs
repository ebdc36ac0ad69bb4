//! [`MvccReader`]: the MVCC records of a snapshot, one question at a time.

use engine::{CF_DEFAULT, CF_LOCK, CF_WRITE};

use crate::{Error, Key, Lock, Result, Snapshot, TimeStamp, Write, WriteType};

/// Where a transaction's commit record for a key stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxnCommitRecord {
    /// The record written at `commit_ts` for this transaction (possibly a Rollback).
    SingleRecord { commit_ts: TimeStamp, write: Write },
    /// Another transaction's commit at `commit_ts == start_ts` carries this
    /// transaction's rollback (`has_overlapped_rollback`).
    OverlappedRollback { commit_ts: TimeStamp },
    /// No record. `overlapped_write` is another transaction's record sitting exactly at
    /// `(key, start_ts)`, if any (a rollback must then be folded into it).
    None {
        overlapped_write: Option<(TimeStamp, Write)>,
    },
}

impl TxnCommitRecord {
    /// The commit ts if the transaction committed (a non-Rollback record).
    pub fn committed_ts(&self) -> Option<TimeStamp> {
        match self {
            TxnCommitRecord::SingleRecord { commit_ts, write }
                if write.write_type != WriteType::Rollback =>
            {
                Some(*commit_ts)
            }
            _ => None,
        }
    }

    /// Whether the transaction is known rolled back on this key.
    pub fn is_rolled_back(&self) -> bool {
        match self {
            TxnCommitRecord::SingleRecord { write, .. } => write.write_type == WriteType::Rollback,
            TxnCommitRecord::OverlappedRollback { .. } => true,
            TxnCommitRecord::None { .. } => false,
        }
    }
}

/// Reads MVCC records from one snapshot.
pub struct MvccReader<'a, S: Snapshot + ?Sized> {
    snap: &'a S,
}

impl<'a, S: Snapshot + ?Sized> MvccReader<'a, S> {
    /// A reader over `snap`.
    pub fn new(snap: &'a S) -> Self {
        MvccReader { snap }
    }

    /// The snapshot read.
    pub fn snapshot(&self) -> &'a S {
        self.snap
    }

    /// The lock on `key`, if any.
    pub fn load_lock(&self, key: &Key) -> Result<Option<Lock>> {
        match self.snap.get_cf(CF_LOCK, key.as_encoded())? {
            Some(bytes) => Ok(Some(Lock::parse(&bytes)?)),
            None => Ok(None),
        }
    }

    /// The newest commit record of `key` with commit_ts ≤ `ts`, of any type.
    pub fn seek_write(&self, key: &Key, ts: TimeStamp) -> Result<Option<(TimeStamp, Write)>> {
        self.writes(key, ts, 0).next().transpose()
    }

    /// The newest Put or Delete of `key` with commit_ts ≤ `ts` (Lock and Rollback records
    /// skipped), i.e. the version a snapshot read at `ts` sees.
    pub fn get_write(&self, key: &Key, ts: TimeStamp) -> Result<Option<(TimeStamp, Write)>> {
        for item in self.writes(key, ts, 0) {
            let (commit_ts, write) = item?;
            match write.write_type {
                WriteType::Put | WriteType::Delete => return Ok(Some((commit_ts, write))),
                WriteType::Lock | WriteType::Rollback => {}
            }
        }
        Ok(None)
    }

    /// The commit record of transaction `start_ts` on `key` (see [`TxnCommitRecord`]):
    /// scans the records from the newest down to commit_ts ≥ `start_ts`.
    pub fn get_txn_commit_record(&self, key: &Key, start_ts: TimeStamp) -> Result<TxnCommitRecord> {
        // A transaction commits after it starts, so its record (or its rollback, at
        // start_ts itself) cannot sit below start_ts.
        for item in self.writes(key, TimeStamp::MAX, start_ts) {
            let (commit_ts, write) = item?;
            if write.start_ts == start_ts {
                return Ok(TxnCommitRecord::SingleRecord { commit_ts, write });
            }
            if commit_ts == start_ts {
                return Ok(if write.has_overlapped_rollback {
                    TxnCommitRecord::OverlappedRollback { commit_ts }
                } else {
                    TxnCommitRecord::None {
                        overlapped_write: Some((commit_ts, write)),
                    }
                });
            }
        }
        Ok(TxnCommitRecord::None {
            overlapped_write: None,
        })
    }

    /// The value a Put record stands for: its short value, or CF default at
    /// `(key, write.start_ts)`.
    pub fn load_data(&self, key: &Key, write: &Write) -> Result<Vec<u8>> {
        if let Some(v) = &write.short_value {
            return Ok(v.clone());
        }
        let data_key = key.append_ts(write.start_ts);
        self.snap
            .get_cf(CF_DEFAULT, data_key.as_encoded())?
            .ok_or_else(|| {
                Error::corrupt(
                    key.as_encoded(),
                    format!(
                        "no value in CF default for the record of txn {}",
                        write.start_ts
                    ),
                )
            })
    }

    /// Locks in `[start, end)` (encoded keys; empty `end` = unbounded) that `filter`
    /// accepts, in key order, at most `limit` (0 = no limit).
    pub fn scan_locks(
        &self,
        start: &[u8],
        end: &[u8],
        filter: impl Fn(&Lock) -> bool,
        limit: usize,
    ) -> Result<Vec<(Key, Lock)>> {
        let mut out = Vec::new();
        for item in self.snap.scan_cf(CF_LOCK, start, end, false) {
            let (key, bytes) = item?;
            let lock = Lock::parse(&bytes)?;
            if filter(&lock) {
                out.push((Key::from_encoded(key), lock));
                if limit != 0 && out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// The commit records of `key` with `lo ≤ commit_ts ≤ hi`, newest first.
    fn writes(
        &self,
        key: &Key,
        hi: TimeStamp,
        lo: TimeStamp,
    ) -> impl Iterator<Item = Result<(TimeStamp, Write)>> + 'a {
        let start = key.append_ts(hi).into_encoded();
        // Just past `(key, lo)`: every stored key in between starts with `key`, since
        // encoded keys are never a prefix of one another.
        let mut end = key.append_ts(lo).into_encoded();
        end.push(0);
        let user_len = key.as_encoded().len();
        self.snap
            .scan_cf(CF_WRITE, &start, &end, false)
            .map(move |item| {
                let (stored, value) = item?;
                if stored.len() != user_len + 8 {
                    return Err(Error::corrupt(&stored, "write key of the wrong length"));
                }
                let (_, commit_ts) = Key::split_on_ts(&stored)?;
                let write = Write::parse(&value).map_err(|e| Error::corrupt(&stored, e))?;
                Ok((commit_ts, write))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::MemSnapshot;
    use crate::{LockType, MvccTxn, SHORT_VALUE_MAX_LEN};

    /// Writes a committed version of `key` as a prewrite + commit would leave it.
    fn put_version(
        snap: &mut MemSnapshot,
        key: &[u8],
        start_ts: TimeStamp,
        commit_ts: TimeStamp,
        write_type: WriteType,
        value: &[u8],
    ) {
        let key = Key::from_raw(key);
        let mut txn = MvccTxn::new(start_ts);
        let short = if write_type == WriteType::Put && value.len() > SHORT_VALUE_MAX_LEN {
            txn.put_value(key.clone(), start_ts, value.to_vec());
            None
        } else {
            (write_type == WriteType::Put).then(|| value.to_vec())
        };
        txn.put_write(key, commit_ts, &Write::new(write_type, start_ts, short));
        snap.apply(txn.modifies());
    }

    fn put_record(snap: &mut MemSnapshot, key: &[u8], commit_ts: TimeStamp, write: Write) {
        let mut txn = MvccTxn::new(write.start_ts);
        txn.put_write(Key::from_raw(key), commit_ts, &write);
        snap.apply(txn.modifies());
    }

    /// The value a snapshot read of `key` at `ts` sees (TinyKV's `GetValue`).
    fn get_value(snap: &MemSnapshot, key: &[u8], ts: TimeStamp) -> Option<Vec<u8>> {
        let reader = MvccReader::new(snap);
        let key = Key::from_raw(key);
        match reader.get_write(&key, ts).unwrap() {
            Some((_, w)) if w.write_type == WriteType::Put => {
                Some(reader.load_data(&key, &w).unwrap())
            }
            _ => None,
        }
    }

    #[test]
    fn get_value_simple_and_missing() {
        let mut snap = MemSnapshot::new();
        put_version(&mut snap, &[1], 50, 54, WriteType::Put, &[42]);
        assert_eq!(get_value(&snap, &[1], 60), Some(vec![42]));
        assert_eq!(
            get_value(&snap, &[1], 54),
            Some(vec![42]),
            "commit_ts == ts is visible"
        );
        assert_eq!(get_value(&snap, &[2], 60), None);
        assert_eq!(get_value(&snap, &[], 60), None);
    }

    #[test]
    fn get_value_too_early() {
        let mut snap = MemSnapshot::new();
        put_version(&mut snap, &[1], 50, 54, WriteType::Put, &[42]);
        assert_eq!(get_value(&snap, &[1], 53), None);
        assert_eq!(get_value(&snap, &[1], 0), None);
    }

    #[test]
    fn get_value_overwritten_and_not() {
        let mut snap = MemSnapshot::new();
        put_version(&mut snap, &[1], 50, 54, WriteType::Put, &[42]);
        let long = vec![7; SHORT_VALUE_MAX_LEN + 1];
        put_version(&mut snap, &[1], 60, 66, WriteType::Put, &long);
        // Overwritten: the newer version wins (its value lives in CF default).
        assert_eq!(get_value(&snap, &[1], 70), Some(long.clone()));
        assert_eq!(get_value(&snap, &[1], u64::MAX), Some(long));
        // Not overwritten: a read between the two commits sees the older one.
        assert_eq!(get_value(&snap, &[1], 65), Some(vec![42]));
        assert_eq!(get_value(&snap, &[1], 60), Some(vec![42]));
    }

    #[test]
    fn get_value_deleted_and_not() {
        let mut snap = MemSnapshot::new();
        put_version(&mut snap, &[1], 50, 54, WriteType::Put, &[42]);
        put_version(&mut snap, &[1], 60, 66, WriteType::Delete, &[]);
        assert_eq!(get_value(&snap, &[1], 70), None);
        assert_eq!(get_value(&snap, &[1], 65), Some(vec![42]));
    }

    #[test]
    fn get_write_skips_lock_and_rollback_records() {
        let mut snap = MemSnapshot::new();
        put_version(&mut snap, &[1], 50, 54, WriteType::Put, &[42]);
        put_version(&mut snap, &[1], 60, 66, WriteType::Lock, &[]);
        put_record(&mut snap, &[1], 70, Write::new_rollback(70, true));
        let reader = MvccReader::new(&snap);
        let k = Key::from_raw(&[1]);
        let (ts, w) = reader.get_write(&k, 80).unwrap().unwrap();
        assert_eq!((ts, w.start_ts, w.write_type), (54, 50, WriteType::Put));
        // seek_write sees every type.
        let (ts, w) = reader.seek_write(&k, 80).unwrap().unwrap();
        assert_eq!((ts, w.write_type), (70, WriteType::Rollback));
        let (ts, w) = reader.seek_write(&k, 69).unwrap().unwrap();
        assert_eq!((ts, w.write_type), (66, WriteType::Lock));
        assert_eq!(reader.seek_write(&k, 53).unwrap(), None);
        // Another key's versions are never seen.
        put_version(&mut snap, &[1, 0], 1, 2, WriteType::Put, b"x");
        put_version(&mut snap, &[0], 1, 2, WriteType::Put, b"y");
        let reader = MvccReader::new(&snap);
        assert_eq!(reader.seek_write(&k, 53).unwrap(), None);
        assert_eq!(reader.seek_write(&Key::from_raw(&[1, 0]), 1).unwrap(), None);
    }

    #[test]
    fn current_write_finds_the_commit_of_a_start_ts() {
        let mut snap = MemSnapshot::new();
        put_version(&mut snap, &[1], 50, 54, WriteType::Put, &[42]);
        put_version(&mut snap, &[1], 60, 66, WriteType::Delete, &[]);
        put_record(&mut snap, &[1], 80, Write::new_rollback(80, false));
        let reader = MvccReader::new(&snap);
        let k = Key::from_raw(&[1]);
        let rec = reader.get_txn_commit_record(&k, 50).unwrap();
        assert_eq!(rec.committed_ts(), Some(54));
        assert!(!rec.is_rolled_back());
        assert_eq!(
            reader.get_txn_commit_record(&k, 60).unwrap().committed_ts(),
            Some(66)
        );
        let rolled = reader.get_txn_commit_record(&k, 80).unwrap();
        assert_eq!(rolled.committed_ts(), None);
        assert!(rolled.is_rolled_back());
        for missing in [1, 51, 70, 81] {
            let rec = reader.get_txn_commit_record(&k, missing).unwrap();
            assert_eq!(
                rec,
                TxnCommitRecord::None {
                    overlapped_write: None
                },
                "start {missing}"
            );
            assert!(!rec.is_rolled_back());
        }
    }

    #[test]
    fn commit_record_sees_overlapped_writes_and_rollbacks() {
        let mut snap = MemSnapshot::new();
        // Txn 10 committed at 20; txn 20 never wrote here: its record would sit at 20.
        put_version(&mut snap, &[1], 10, 20, WriteType::Put, b"v");
        let reader = MvccReader::new(&snap);
        let k = Key::from_raw(&[1]);
        match reader.get_txn_commit_record(&k, 20).unwrap() {
            TxnCommitRecord::None {
                overlapped_write: Some((20, w)),
            } => assert_eq!(w.start_ts, 10),
            other => panic!("{other:?}"),
        }
        // Once txn 20's rollback is folded into that record, txn 20 is rolled back.
        let mut w = Write::new(WriteType::Put, 10, Some(b"v".to_vec()));
        w.has_overlapped_rollback = true;
        put_record(&mut snap, &[1], 20, w);
        let reader = MvccReader::new(&snap);
        let rec = reader.get_txn_commit_record(&k, 20).unwrap();
        assert_eq!(rec, TxnCommitRecord::OverlappedRollback { commit_ts: 20 });
        assert!(rec.is_rolled_back());
        assert_eq!(rec.committed_ts(), None);
        // Txn 10 itself is still committed.
        assert_eq!(
            reader.get_txn_commit_record(&k, 10).unwrap().committed_ts(),
            Some(20)
        );
    }

    #[test]
    fn most_recent_write_is_the_newest_of_any_type() {
        let mut snap = MemSnapshot::new();
        let k = Key::from_raw(&[1]);
        assert_eq!(
            MvccReader::new(&snap).seek_write(&k, u64::MAX).unwrap(),
            None
        );
        put_version(&mut snap, &[1], 50, 54, WriteType::Put, &[42]);
        put_version(&mut snap, &[1], 60, 66, WriteType::Delete, &[]);
        put_version(&mut snap, &[1], 40, 45, WriteType::Put, &[1]);
        let (ts, w) = MvccReader::new(&snap)
            .seek_write(&k, u64::MAX)
            .unwrap()
            .unwrap();
        assert_eq!((ts, w.start_ts, w.write_type), (66, 60, WriteType::Delete));
    }

    #[test]
    fn missing_long_value_is_corrupt() {
        let mut snap = MemSnapshot::new();
        put_record(&mut snap, &[1], 20, Write::new(WriteType::Put, 10, None));
        let reader = MvccReader::new(&snap);
        let k = Key::from_raw(&[1]);
        let (_, w) = reader.get_write(&k, 30).unwrap().unwrap();
        assert!(matches!(reader.load_data(&k, &w), Err(Error::Corrupt(_))));
        // A record that does not decode is corrupt too.
        snap.apply(&[crate::Modify::Put {
            cf: CF_WRITE,
            key: k.append_ts(25).into_encoded(),
            value: vec![b'?'],
        }]);
        let reader = MvccReader::new(&snap);
        assert!(matches!(reader.seek_write(&k, 30), Err(Error::Corrupt(_))));
        assert!(matches!(reader.get_write(&k, 30), Err(Error::Corrupt(_))));
        assert_eq!(reader.seek_write(&k, 24).unwrap().unwrap().0, 20);
    }

    #[test]
    fn load_lock_and_scan_locks() {
        let mut snap = MemSnapshot::new();
        let mut txn = MvccTxn::new(0);
        for (i, raw) in [b"a", b"b", b"c", b"d"].into_iter().enumerate() {
            let ts = 10 * (i as u64 + 1);
            txn.put_lock(
                Key::from_raw(raw),
                &Lock::new(LockType::Put, b"a".to_vec(), ts, 100),
            );
        }
        snap.apply(txn.modifies());
        let reader = MvccReader::new(&snap);
        assert_eq!(
            reader.load_lock(&Key::from_raw(b"b")).unwrap().unwrap().ts,
            20
        );
        assert_eq!(reader.load_lock(&Key::from_raw(b"bb")).unwrap(), None);
        let keys = |v: Vec<(Key, Lock)>| {
            v.into_iter()
                .map(|(k, _)| k.to_raw().unwrap())
                .collect::<Vec<_>>()
        };
        let all = reader.scan_locks(&[], &[], |_| true, 0).unwrap();
        assert_eq!(keys(all), [b"a", b"b", b"c", b"d"]);
        let b = Key::from_raw(b"b");
        let d = Key::from_raw(b"d");
        let mid = reader
            .scan_locks(b.as_encoded(), d.as_encoded(), |_| true, 0)
            .unwrap();
        assert_eq!(keys(mid), [b"b", b"c"]);
        let old = reader.scan_locks(&[], &[], |l| l.ts <= 30, 2).unwrap();
        assert_eq!(keys(old), [b"a", b"b"]);
        let newer = reader
            .scan_locks(b.as_encoded(), &[], |l| l.ts > 10, 0)
            .unwrap();
        assert_eq!(keys(newer), [b"b", b"c", b"d"]);
    }
}
