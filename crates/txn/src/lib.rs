//! Percolator transactions, TiKV-compatible, with no Raft inside.
//!
//! # What it owns
//! Everything a store needs to answer TiKV's transactional RPCs once it has a consistent
//! view of one region's data: the on-disk records ([`lock::Lock`], [`write::Write`], in
//! TiKV's byte formats), the MVCC [`reader::MvccReader`], snapshot-isolation reads
//! ([`read`]), the write buffer [`mvcc_txn::MvccTxn`], per-key steps ([`actions`]), one
//! file per RPC ([`commands`]), per-key [`latch`]es and the [`concurrency`] manager
//! (`max_ts` and the in-memory lock table used by async commit and 1PC).
//!
//! # How data moves
//! ```text
//! request ─► commands::X::latch_keys ─► (caller) latches ─► (caller) snapshot
//!        ─► commands::X::process(snapshot, concurrency manager, request)
//!                 │ MvccReader reads locks, writes, values
//!                 │ actions::* decide per key, MvccTxn buffers the changes
//!                 ▼
//!        WriteResult { modifies, response, memory-lock guards }
//!        ─► (caller) one raft command ─► applied ─► guards and latches dropped ─► reply
//! ```
//! The caller (the `server` crate) owns the raft part; here a snapshot is anything that
//! implements [`Snapshot`], so every command is tested on [`testing::MemSnapshot`].
//!
//! # Layout of the data (TiKV's)
//! For a user key `k` (raw bytes as the client sent them, keyspace prefix included):
//! - CF `lock`: `enc(k)` → [`lock::Lock`];
//! - CF `write`: `enc(k) ‖ !commit_ts` → [`write::Write`] (a rollback uses `start_ts`);
//! - CF `default`: `enc(k) ‖ !start_ts` → value, only for values longer than
//!   [`SHORT_VALUE_MAX_LEN`] bytes (shorter ones live inside the lock and write records).
//!
//! `enc` is memcomparable encoding ([`codec::bytes`]) and `!ts` is the timestamp as a
//! descending big-endian u64, so the newest version of a key comes first.

// `Error::KeyIsLocked` carries the whole LockInfo the client needs; it is the common
// outcome of a conflict, so boxing it would only move the allocation.
#![allow(clippy::result_large_err)]

pub mod actions;
pub mod commands;
pub mod concurrency;
pub mod error;
pub mod gc;
pub mod key;
pub mod latch;
pub mod lock;
pub mod mvcc_txn;
pub mod read;
pub mod reader;
pub mod testing;
pub mod timestamp;
pub mod write;

pub use concurrency::ConcurrencyManager;
pub use error::{Error, Result};
pub use key::Key;
pub use lock::{Lock, LockType};
pub use mvcc_txn::{Modify, MvccTxn, WriteResult};
pub use reader::MvccReader;
pub use timestamp::TimeStamp;
pub use write::{Write, WriteType};

use engine::CfName;

/// Values up to this many bytes are stored inline in lock and write records.
pub const SHORT_VALUE_MAX_LEN: usize = 255;

/// A key-value pair read from a snapshot: the stored key (encoded, with a timestamp where
/// the CF has one) and the stored value.
pub type KvPair = (Vec<u8>, Vec<u8>);

/// An iterator over a snapshot's pairs.
pub type KvIter<'a> = Box<dyn Iterator<Item = Result<KvPair>> + Send + 'a>;

/// A consistent read view of one region's data (or, in tests, of everything).
///
/// Keys are stored keys: encoded user keys, with the timestamp suffix in CFs `write` and
/// `default`. The caller bounds the view to its region; the commands never ask for keys
/// outside the range of the request they serve.
pub trait Snapshot: Send + Sync {
    /// The value of `key` in `cf`.
    fn get_cf(&self, cf: CfName, key: &[u8]) -> Result<Option<Vec<u8>>>;
    /// The pairs of `cf` in `[start, end)` (empty `end` = unbounded), ascending, or
    /// descending when `reverse` is set.
    fn scan_cf<'a>(&'a self, cf: CfName, start: &[u8], end: &[u8], reverse: bool) -> KvIter<'a>;
}
