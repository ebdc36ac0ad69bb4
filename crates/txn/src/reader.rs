//! [`MvccReader`]: the MVCC records of a snapshot, one question at a time.

use crate::{Key, Lock, Result, Snapshot, TimeStamp, Write};

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
        todo!()
    }

    /// Whether the transaction is known rolled back on this key.
    pub fn is_rolled_back(&self) -> bool {
        todo!()
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
        let _ = key;
        todo!()
    }

    /// The newest commit record of `key` with commit_ts ≤ `ts`, of any type.
    pub fn seek_write(&self, key: &Key, ts: TimeStamp) -> Result<Option<(TimeStamp, Write)>> {
        let _ = (key, ts);
        todo!()
    }

    /// The newest Put or Delete of `key` with commit_ts ≤ `ts` (Lock and Rollback records
    /// skipped), i.e. the version a snapshot read at `ts` sees.
    pub fn get_write(&self, key: &Key, ts: TimeStamp) -> Result<Option<(TimeStamp, Write)>> {
        let _ = (key, ts);
        todo!()
    }

    /// The commit record of transaction `start_ts` on `key` (see [`TxnCommitRecord`]):
    /// scans the records from the newest down to commit_ts ≥ `start_ts`.
    pub fn get_txn_commit_record(&self, key: &Key, start_ts: TimeStamp) -> Result<TxnCommitRecord> {
        let _ = (key, start_ts);
        todo!()
    }

    /// The value a Put record stands for: its short value, or CF default at
    /// `(key, write.start_ts)`.
    pub fn load_data(&self, key: &Key, write: &Write) -> Result<Vec<u8>> {
        let _ = (key, write);
        todo!()
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
        let _ = (start, end, filter, limit);
        todo!()
    }
}
