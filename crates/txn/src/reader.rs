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
