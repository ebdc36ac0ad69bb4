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

use crate::key::hex;
use crate::{Error, Result, TimeStamp};

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
        let mut b = Vec::with_capacity(32 + self.primary.len());
        b.push(self.lock_type.to_byte());
        put_compact_bytes(&mut b, &self.primary);
        put_var_u64(&mut b, self.ts);
        put_var_u64(&mut b, self.ttl);
        // An empty short value is still written: it means "the value is empty", while no
        // short value means "look in CF default".
        if let Some(v) = &self.short_value {
            put_short_value(&mut b, v);
        }
        if self.for_update_ts != 0 {
            b.push(FOR_UPDATE_TS_TAG);
            b.extend_from_slice(&self.for_update_ts.to_be_bytes());
        }
        if self.txn_size != 0 {
            b.push(TXN_SIZE_TAG);
            b.extend_from_slice(&self.txn_size.to_be_bytes());
        }
        if self.min_commit_ts != 0 {
            b.push(MIN_COMMIT_TS_TAG);
            b.extend_from_slice(&self.min_commit_ts.to_be_bytes());
        }
        if self.use_async_commit {
            b.push(ASYNC_COMMIT_TAG);
            put_var_u64(&mut b, self.secondaries.len() as u64);
            for k in &self.secondaries {
                put_compact_bytes(&mut b, k);
            }
        }
        if !self.rollback_ts.is_empty() {
            b.push(ROLLBACK_TS_TAG);
            put_var_u64(&mut b, self.rollback_ts.len() as u64);
            for ts in &self.rollback_ts {
                b.extend_from_slice(&ts.to_be_bytes());
            }
        }
        b
    }

    /// Decodes a record.
    pub fn parse(bytes: &[u8]) -> Result<Lock> {
        let mut r = Reader::new(bytes, "lock");
        let type_byte = r.u8()?;
        let lock_type = LockType::from_byte(type_byte)
            .ok_or_else(|| r.err(format!("unknown lock type {type_byte:#04x}")))?;
        let primary = r.compact_bytes()?;
        let ts = r.var_u64()?;
        // Very old records may end before the TTL.
        let ttl = if r.is_empty() { 0 } else { r.var_u64()? };
        let mut lock = Lock::new(lock_type, primary, ts, ttl);
        while !r.is_empty() {
            match r.u8()? {
                SHORT_VALUE_TAG => lock.short_value = Some(r.short_value()?),
                FOR_UPDATE_TS_TAG => lock.for_update_ts = r.u64_be()?,
                TXN_SIZE_TAG => lock.txn_size = r.u64_be()?,
                MIN_COMMIT_TS_TAG => lock.min_commit_ts = r.u64_be()?,
                ASYNC_COMMIT_TAG => {
                    lock.use_async_commit = true;
                    let n = r.count(1)?;
                    let mut secondaries = Vec::with_capacity(n);
                    for _ in 0..n {
                        secondaries.push(r.compact_bytes()?);
                    }
                    lock.secondaries = secondaries;
                }
                ROLLBACK_TS_TAG => {
                    let n = r.count(8)?;
                    let mut rollback_ts = Vec::with_capacity(n);
                    for _ in 0..n {
                        rollback_ts.push(r.u64_be()?);
                    }
                    lock.rollback_ts = rollback_ts;
                }
                // A field of a newer TiKV: everything we know came before it.
                _ => break,
            }
        }
        Ok(lock)
    }

    /// The lock as reported to clients, for the raw user key `raw_key`.
    pub fn to_lock_info(&self, raw_key: Vec<u8>) -> LockInfo {
        LockInfo {
            primary_lock: self.primary.clone(),
            lock_version: self.ts,
            key: raw_key,
            lock_ttl: self.ttl,
            txn_size: self.txn_size,
            lock_type: self.lock_type.to_op() as i32,
            lock_for_update_ts: self.for_update_ts,
            use_async_commit: self.use_async_commit,
            min_commit_ts: self.min_commit_ts,
            secondaries: self.secondaries.clone(),
            ..Default::default()
        }
    }
}

const SHORT_VALUE_TAG: u8 = b'v';
const FOR_UPDATE_TS_TAG: u8 = b'f';
const TXN_SIZE_TAG: u8 = b't';
const MIN_COMMIT_TS_TAG: u8 = b'c';
const ASYNC_COMMIT_TAG: u8 = b'a';
const ROLLBACK_TS_TAG: u8 = b'r';

// The small pieces of TiKV's record encoding, shared with `write.rs`.

/// Unsigned LEB128.
pub(crate) fn put_var_u64(b: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        b.push(v as u8 | 0x80);
        v >>= 7;
    }
    b.push(v as u8);
}

/// The length as a zigzag varint i64 (so `len << 1` for any real length), then the bytes.
pub(crate) fn put_compact_bytes(b: &mut Vec<u8>, data: &[u8]) {
    put_var_u64(b, (data.len() as u64) << 1);
    b.extend_from_slice(data);
}

/// `'v'`, a one-byte length, the value. Short values are at most
/// [`crate::SHORT_VALUE_MAX_LEN`] bytes; longer ones belong in CF default.
pub(crate) fn put_short_value(b: &mut Vec<u8>, v: &[u8]) {
    debug_assert!(
        v.len() <= crate::SHORT_VALUE_MAX_LEN,
        "short value of {} bytes",
        v.len()
    );
    b.push(SHORT_VALUE_TAG);
    b.push(v.len() as u8);
    b.extend_from_slice(v);
}

/// A cursor over a record being decoded; every failure is [`Error::Corrupt`].
pub(crate) struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
    what: &'static str,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(data: &'a [u8], what: &'static str) -> Self {
        Reader { data, pos: 0, what }
    }

    pub(crate) fn err(&self, why: impl std::fmt::Display) -> Error {
        Error::Corrupt(format!(
            "{} record {} at byte {}: {why}",
            self.what,
            hex(self.data),
            self.pos
        ))
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.pos >= self.data.len()
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.data.len() - self.pos < n {
            return Err(self.err(format!(
                "{n} bytes wanted, {} left",
                self.data.len() - self.pos
            )));
        }
        let s = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    pub(crate) fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    pub(crate) fn u64_be(&mut self) -> Result<u64> {
        let s = self.take(8)?;
        Ok(u64::from_be_bytes(s.try_into().expect("8 bytes")))
    }

    pub(crate) fn var_u64(&mut self) -> Result<u64> {
        let mut v = 0u64;
        for i in 0..10 {
            let byte = self.u8()?;
            // The tenth byte may only carry the top bit of a u64.
            if i == 9 && byte > 1 {
                return Err(self.err("varint overflows u64"));
            }
            v |= u64::from(byte & 0x7f) << (7 * i);
            if byte < 0x80 {
                return Ok(v);
            }
        }
        Err(self.err("varint longer than 10 bytes"))
    }

    /// A count of items of at least `min_item_len` bytes each, checked against what is left
    /// (so a corrupt count cannot make us allocate a huge vector).
    pub(crate) fn count(&mut self, min_item_len: usize) -> Result<usize> {
        let n = self.var_u64()?;
        let left = (self.data.len() - self.pos) as u64;
        if n > left / min_item_len as u64 {
            return Err(self.err(format!("{n} items cannot fit in {left} bytes")));
        }
        Ok(n as usize)
    }

    pub(crate) fn compact_bytes(&mut self) -> Result<Vec<u8>> {
        let z = self.var_u64()?;
        if z & 1 == 1 {
            return Err(self.err("negative compact bytes length"));
        }
        let len = z >> 1;
        if len > (self.data.len() - self.pos) as u64 {
            return Err(self.err(format!("compact bytes of {len} bytes past the end")));
        }
        Ok(self.take(len as usize)?.to_vec())
    }

    /// The body of a `'v'` field: a one-byte length and the value.
    pub(crate) fn short_value(&mut self) -> Result<Vec<u8>> {
        let len = self.u8()?;
        Ok(self.take(len as usize)?.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full_lock() -> Lock {
        let mut l = Lock::new(LockType::Put, b"k1".to_vec(), 400_000, 3000);
        l.short_value = Some(b"ab".to_vec());
        l
    }

    #[test]
    fn put_lock_has_tikv_bytes() {
        let l = full_lock();
        let bytes = l.to_bytes();
        assert_eq!(
            bytes,
            [0x50, 0x04, 0x6b, 0x31, 0x80, 0xb5, 0x18, 0xb8, 0x17, 0x76, 0x02, 0x61, 0x62]
        );
        assert_eq!(Lock::parse(&bytes).unwrap(), l);
    }

    #[test]
    fn every_optional_field_round_trips() {
        let mut l = full_lock();
        l.for_update_ts = 400_010;
        l.txn_size = u64::MAX;
        l.min_commit_ts = 400_020;
        l.use_async_commit = true;
        l.secondaries = vec![b"k2".to_vec(), Vec::new(), vec![0xff; 300]];
        l.rollback_ts = vec![5, u64::MAX];
        let bytes = l.to_bytes();
        assert_eq!(Lock::parse(&bytes).unwrap(), l);
        // Each field on its own, in every lock type.
        for t in [
            LockType::Put,
            LockType::Delete,
            LockType::Lock,
            LockType::Pessimistic,
        ] {
            let base = Lock::new(t, b"p".to_vec(), u64::MAX, 0);
            let mut variants = vec![base.clone()];
            let mut v = base.clone();
            v.for_update_ts = 7;
            variants.push(v);
            let mut v = base.clone();
            v.txn_size = 3;
            variants.push(v);
            let mut v = base.clone();
            v.min_commit_ts = 9;
            variants.push(v);
            let mut v = base.clone();
            v.use_async_commit = true;
            variants.push(v);
            let mut v = base.clone();
            v.rollback_ts = vec![1];
            variants.push(v);
            let mut v = base.clone();
            v.short_value = Some(Vec::new());
            variants.push(v);
            for v in variants {
                assert_eq!(Lock::parse(&v.to_bytes()).unwrap(), v);
            }
        }
    }

    #[test]
    fn optional_fields_use_tikv_tags_in_order() {
        let mut l = Lock::new(LockType::Pessimistic, b"k".to_vec(), 1, 2);
        l.for_update_ts = 3;
        l.min_commit_ts = 4;
        l.use_async_commit = true;
        l.secondaries = vec![b"s".to_vec()];
        let mut want = vec![b'S', 0x02, b'k', 0x01, 0x02];
        want.push(b'f');
        want.extend_from_slice(&3u64.to_be_bytes());
        want.push(b'c');
        want.extend_from_slice(&4u64.to_be_bytes());
        want.extend_from_slice(&[b'a', 0x01, 0x02, b's']);
        assert_eq!(l.to_bytes(), want);
    }

    #[test]
    fn unknown_tag_stops_the_parser() {
        let l = full_lock();
        let mut bytes = l.to_bytes();
        // TiKV's last_change field, then garbage: both ignored.
        bytes.push(b'l');
        bytes.extend_from_slice(&[1, 2, 3]);
        assert_eq!(Lock::parse(&bytes).unwrap(), l);
    }

    #[test]
    fn bad_input_is_corrupt_not_a_panic() {
        let good = {
            let mut l = full_lock();
            l.use_async_commit = true;
            l.secondaries = vec![b"k2".to_vec()];
            l.rollback_ts = vec![9];
            l.to_bytes()
        };
        // Every truncation that cuts into a field fails cleanly (or stops at a field edge).
        for n in 0..good.len() {
            let _ = Lock::parse(&good[..n]);
        }
        for bad in [
            &[][..],
            &[b'X', 0x00, 0x01][..],
            &[b'P', 0x03, b'k'][..], // negative length
            &[b'P', 0x08, b'k'][..], // length past the end
            &[
                b'P', 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f,
            ][..],
            &[b'P', 0x00, 0x01, 0x01, b'v', 0x05, b'a'][..],
            &[b'P', 0x00, 0x01, 0x01, b'a', 0xff, 0xff, 0x03][..],
            &[b'P', 0x00, 0x01, 0x01, b'f', 0x00][..],
        ] {
            assert!(
                matches!(Lock::parse(bad), Err(Error::Corrupt(_))),
                "{bad:?}"
            );
        }
        // Old records without a TTL still decode.
        assert_eq!(Lock::parse(&[b'L', 0x00, 0x05]).unwrap().ttl, 0);
    }

    #[test]
    fn lock_info_carries_every_field() {
        let mut l = full_lock();
        l.lock_type = LockType::Pessimistic;
        l.for_update_ts = 11;
        l.txn_size = 12;
        l.min_commit_ts = 13;
        l.use_async_commit = true;
        l.secondaries = vec![b"s".to_vec()];
        let info = l.to_lock_info(b"raw".to_vec());
        assert_eq!(info.primary_lock, b"k1");
        assert_eq!(info.lock_version, 400_000);
        assert_eq!(info.key, b"raw");
        assert_eq!(info.lock_ttl, 3000);
        assert_eq!(info.txn_size, 12);
        assert_eq!(info.lock_type, Op::PessimisticLock as i32);
        assert_eq!(info.lock_for_update_ts, 11);
        assert!(info.use_async_commit);
        assert_eq!(info.min_commit_ts, 13);
        assert_eq!(info.secondaries, vec![b"s".to_vec()]);
    }
}
