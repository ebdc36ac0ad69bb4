//! The commit record (CF `write`), in TiKV's byte format.
//!
//! ```text
//! type byte ('P' Put, 'D' Delete, 'L' Lock, 'R' Rollback)
//! start_ts  varint u64
//! then optional tagged fields, in this order:
//!   'v' u8 length + short value     (a protected rollback carries the value "p")
//!   'R'                              has_overlapped_rollback
//!   'F' gc_fence u64 big-endian      (only with has_overlapped_rollback or from GC)
//! ```
//! A parser stops at an unknown tag. Examples: Put at start 400000 with value `ab` =
//! `50 80 b5 18 76 02 61 62`; a protected rollback at 400000 = `52 80 b5 18 76 01 70`.

use crate::{Result, TimeStamp};

/// What a commit record says happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteType {
    Put,
    Delete,
    /// The key was locked but not written.
    Lock,
    /// The transaction was rolled back on this key (the record sits at its start ts).
    Rollback,
}

impl WriteType {
    /// The record's type byte.
    pub fn to_byte(self) -> u8 {
        match self {
            WriteType::Put => b'P',
            WriteType::Delete => b'D',
            WriteType::Lock => b'L',
            WriteType::Rollback => b'R',
        }
    }

    /// The type of a type byte.
    pub fn from_byte(b: u8) -> Option<WriteType> {
        Some(match b {
            b'P' => WriteType::Put,
            b'D' => WriteType::Delete,
            b'L' => WriteType::Lock,
            b'R' => WriteType::Rollback,
            _ => return None,
        })
    }

    /// The write type a committed lock of `lock_type` leaves (pessimistic locks leave none).
    pub fn from_lock_type(lock_type: crate::LockType) -> Option<WriteType> {
        match lock_type {
            crate::LockType::Put => Some(WriteType::Put),
            crate::LockType::Delete => Some(WriteType::Delete),
            crate::LockType::Lock => Some(WriteType::Lock),
            crate::LockType::Pessimistic => None,
        }
    }
}

/// The short value that marks a rollback as protected (never collapsed).
pub const PROTECTED_ROLLBACK_SHORT_VALUE: &[u8] = b"p";

/// A commit record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Write {
    pub write_type: WriteType,
    /// The start ts of the transaction that wrote it.
    pub start_ts: TimeStamp,
    /// The value, when at most [`crate::SHORT_VALUE_MAX_LEN`] bytes (Put records).
    pub short_value: Option<Vec<u8>>,
    /// Another transaction's rollback at this record's commit ts was folded into it.
    pub has_overlapped_rollback: bool,
    /// Written by GC / overlapped rollback: the commit ts of the next newer version.
    pub gc_fence: Option<TimeStamp>,
}

impl Write {
    /// A record with no optional field.
    pub fn new(write_type: WriteType, start_ts: TimeStamp, short_value: Option<Vec<u8>>) -> Write {
        Write {
            write_type,
            start_ts,
            short_value,
            has_overlapped_rollback: false,
            gc_fence: None,
        }
    }

    /// A rollback record for `start_ts`; `protected` rollbacks are never collapsed.
    pub fn new_rollback(start_ts: TimeStamp, protected: bool) -> Write {
        let short_value = protected.then(|| PROTECTED_ROLLBACK_SHORT_VALUE.to_vec());
        Write::new(WriteType::Rollback, start_ts, short_value)
    }

    /// Whether this is a protected rollback.
    pub fn is_protected(&self) -> bool {
        self.write_type == WriteType::Rollback
            && self.short_value.as_deref() == Some(PROTECTED_ROLLBACK_SHORT_VALUE)
    }

    /// The record's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        todo!("write encoding")
    }

    /// Decodes a record.
    pub fn parse(bytes: &[u8]) -> Result<Write> {
        let _ = bytes;
        todo!("write decoding")
    }
}
