//! The Percolator lock record (CF `lock`), in TiKV's byte format.
//!
//! ```text
//! type byte ('P' Put, 'D' Delete, 'L' Lock, 'S' Pessimistic)
//! primary   compact bytes (varint of len << 1 (zigzag i64), then the bytes)
//! start_ts  varint u64
//! ttl       varint u64
//! then optional tagged fields, in this order, each only when non-zero / non-empty:
//!   'v' u8 length + short value
//!   'f' for_update_ts   u64 big-endian
//!   't' txn_size        u64 big-endian
//!   'c' min_commit_ts   u64 big-endian
//!   'a' varint n + n compact-bytes secondaries   (present iff use_async_commit)
//!   'r' varint n + n u64 big-endian rollback_ts
//! ```
//! A parser stops at a tag it does not know (TiKV adds more after these), so records
//! written by a newer TiKV still decode.
//! Example: Put lock, primary `k1`, ts 400000, ttl 3000, value `ab` =
//! `50 04 6b 31 80 b5 18 b8 17 76 02 61 62`.

use proto::kvrpcpb::{LockInfo, Op};

use crate::{Result, TimeStamp};

/// What kind of lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockType {
    /// A prewritten put.
    Put,
    /// A prewritten delete.
    Delete,
    /// A prewritten lock-only key (read for update without a write).
    Lock,
    /// A pessimistic lock, taken before prewrite.
    Pessimistic,
}

impl LockType {
    /// The record's type byte.
    pub fn to_byte(self) -> u8 {
        match self {
            LockType::Put => b'P',
            LockType::Delete => b'D',
            LockType::Lock => b'L',
            LockType::Pessimistic => b'S',
        }
    }

    /// The type of a type byte.
    pub fn from_byte(b: u8) -> Option<LockType> {
        Some(match b {
            b'P' => LockType::Put,
            b'D' => LockType::Delete,
            b'L' => LockType::Lock,
            b'S' => LockType::Pessimistic,
            _ => return None,
        })
    }

    /// kvproto's `Op` for this lock type (as `LockInfo.lock_type` reports it).
    pub fn to_op(self) -> Op {
        match self {
            LockType::Put => Op::Put,
            LockType::Delete => Op::Del,
            LockType::Lock => Op::Lock,
            LockType::Pessimistic => Op::PessimisticLock,
        }
    }
}

/// A lock record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lock {
    pub lock_type: LockType,
    /// The transaction's primary key (raw).
    pub primary: Vec<u8>,
    /// The transaction's start ts.
    pub ts: TimeStamp,
    /// Milliseconds after `physical(ts)` the lock lives unless its owner heartbeats.
    pub ttl: u64,
    /// The value, when at most [`crate::SHORT_VALUE_MAX_LEN`] bytes (Put locks).
    pub short_value: Option<Vec<u8>>,
    /// Pessimistic transactions: the for_update_ts of the lock (0 otherwise).
    pub for_update_ts: TimeStamp,
    /// How many keys the transaction writes (a hint for resolvers).
    pub txn_size: u64,
    /// The transaction may not commit below this (async commit, or pushed by readers).
    pub min_commit_ts: TimeStamp,
    /// Async commit: set on every lock of the transaction.
    pub use_async_commit: bool,
    /// Async commit: on the primary's lock, every other key of the transaction (raw).
    pub secondaries: Vec<Vec<u8>>,
    /// Start timestamps of other transactions that rolled back on this key while this
    /// lock was here (their rollback record would collide with this commit's).
    pub rollback_ts: Vec<TimeStamp>,
}

impl Lock {
    /// A lock with the required fields and every optional one empty.
    pub fn new(lock_type: LockType, primary: Vec<u8>, ts: TimeStamp, ttl: u64) -> Lock {
        Lock {
            lock_type,
            primary,
            ts,
            ttl,
            short_value: None,
            for_update_ts: 0,
            txn_size: 0,
            min_commit_ts: 0,
            use_async_commit: false,
            secondaries: Vec::new(),
            rollback_ts: Vec::new(),
        }
    }

    /// The record's bytes (TiKV's format, see the module doc).
    pub fn to_bytes(&self) -> Vec<u8> {
        todo!("lock encoding")
    }

    /// Decodes a record.
    pub fn parse(bytes: &[u8]) -> Result<Lock> {
        let _ = bytes;
        todo!("lock decoding")
    }

    /// The lock as reported to clients, for the raw user key `raw_key`.
    pub fn to_lock_info(&self, raw_key: Vec<u8>) -> LockInfo {
        let _ = raw_key;
        todo!("LockInfo")
    }
}
