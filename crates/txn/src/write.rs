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

use crate::lock::{put_short_value, put_var_u64, Reader};
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
        let mut b = Vec::with_capacity(16 + self.short_value.as_ref().map_or(0, |v| v.len()));
        b.push(self.write_type.to_byte());
        put_var_u64(&mut b, self.start_ts);
        if let Some(v) = &self.short_value {
            put_short_value(&mut b, v);
        }
        if self.has_overlapped_rollback {
            b.push(OVERLAPPED_ROLLBACK_TAG);
        }
        if let Some(ts) = self.gc_fence {
            b.push(GC_FENCE_TAG);
            b.extend_from_slice(&ts.to_be_bytes());
        }
        b
    }

    /// Decodes a record.
    pub fn parse(bytes: &[u8]) -> Result<Write> {
        let mut r = Reader::new(bytes, "write");
        let type_byte = r.u8()?;
        let write_type = WriteType::from_byte(type_byte)
            .ok_or_else(|| r.err(format!("unknown write type {type_byte:#04x}")))?;
        let start_ts = r.var_u64()?;
        let mut w = Write::new(write_type, start_ts, None);
        while !r.is_empty() {
            match r.u8()? {
                SHORT_VALUE_TAG => w.short_value = Some(r.short_value()?),
                OVERLAPPED_ROLLBACK_TAG => w.has_overlapped_rollback = true,
                GC_FENCE_TAG => w.gc_fence = Some(r.u64_be()?),
                // A field of a newer TiKV: everything we know came before it.
                _ => break,
            }
        }
        Ok(w)
    }
}

const SHORT_VALUE_TAG: u8 = b'v';
const OVERLAPPED_ROLLBACK_TAG: u8 = b'R';
const GC_FENCE_TAG: u8 = b'F';

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;

    #[test]
    fn put_and_protected_rollback_have_tikv_bytes() {
        let put = Write::new(WriteType::Put, 400_000, Some(b"ab".to_vec()));
        let bytes = put.to_bytes();
        assert_eq!(bytes, [0x50, 0x80, 0xb5, 0x18, 0x76, 0x02, 0x61, 0x62]);
        assert_eq!(Write::parse(&bytes).unwrap(), put);

        let rb = Write::new_rollback(400_000, true);
        let bytes = rb.to_bytes();
        assert_eq!(bytes, [0x52, 0x80, 0xb5, 0x18, 0x76, 0x01, 0x70]);
        let parsed = Write::parse(&bytes).unwrap();
        assert!(parsed.is_protected());
        assert_eq!(parsed, rb);

        let plain = Write::new_rollback(400_000, false);
        assert_eq!(plain.to_bytes(), [0x52, 0x80, 0xb5, 0x18]);
        assert!(!Write::parse(&plain.to_bytes()).unwrap().is_protected());
    }

    #[test]
    fn overlapped_rollback_and_gc_fence_round_trip() {
        let mut w = Write::new(WriteType::Delete, 7, None);
        w.has_overlapped_rollback = true;
        w.gc_fence = Some(0);
        let bytes = w.to_bytes();
        let mut want = vec![b'D', 0x07, b'R', b'F'];
        want.extend_from_slice(&0u64.to_be_bytes());
        assert_eq!(bytes, want);
        assert_eq!(Write::parse(&bytes).unwrap(), w);

        let mut w = Write::new(WriteType::Put, u64::MAX, Some(vec![1; 255]));
        w.has_overlapped_rollback = true;
        w.gc_fence = Some(u64::MAX);
        assert_eq!(Write::parse(&w.to_bytes()).unwrap(), w);
        for t in [
            WriteType::Put,
            WriteType::Delete,
            WriteType::Lock,
            WriteType::Rollback,
        ] {
            for sv in [None, Some(Vec::new())] {
                let w = Write::new(t, 1, sv);
                assert_eq!(Write::parse(&w.to_bytes()).unwrap(), w);
            }
        }
    }

    #[test]
    fn unknown_tag_stops_the_parser() {
        let w = Write::new(WriteType::Lock, 99, None);
        let mut bytes = w.to_bytes();
        bytes.extend_from_slice(b"S\x01junk");
        assert_eq!(Write::parse(&bytes).unwrap(), w);
    }

    #[test]
    fn bad_input_is_corrupt_not_a_panic() {
        for bad in [
            &[][..],
            &[b'Z', 0x01][..],
            &[b'P'][..],
            &[b'P', 0x80][..],
            &[b'P', 0x01, b'v', 0x03, b'a'][..],
            &[b'P', 0x01, b'v'][..],
            &[b'P', 0x01, b'F', 0x00, 0x00][..],
        ] {
            assert!(
                matches!(Write::parse(bad), Err(Error::Corrupt(_))),
                "{bad:?}"
            );
        }
    }
}
