//! The KV layers of a store: TiKV's raw API, and its transactional API ([`txn`]), on top
//! of raftstore. Most of this page is about the raw layer; [`txn`] documents the other.
//!
//! # Pieces
//! - [`raftkv::RaftKv`] sends one command to the region named by a request's context
//!   (`region_id`, `region_epoch`, `peer`, `term`) and awaits raftstore's callback through
//!   a oneshot channel: linearizable reads come back as a region-bounded snapshot
//!   (ReadIndex), writes come back once applied. Region problems come back as
//!   [`Error::Region`] carrying raftstore's `errorpb::Error` unchanged.
//! - [`raw::RawStorage`] implements the operations (get, batch get, scan, batch scan,
//!   put, batch put, delete, batch delete, delete range, compare-and-swap, key TTL,
//!   checksum) and every request check ([`validate`]).
//! - [`latch::Latches`] serialises raw writes per key on this store, so a
//!   compare-and-swap's read and write are atomic with respect to every other raw write
//!   sent here; a range delete excludes all of them.
//! - [`value`] is our on-disk value format, [`checksum`] the RawChecksum algorithm.
//! - [`key_codec::KeyCodec`] turns user keys into stored keys and back (see below).
//! - [`txn::TxnStorage`] serves the transactional API (Percolator, the `txn` crate's
//!   commands) through the same [`raftkv::RaftKv`], with its own latch table and the
//!   store's concurrency manager. Transactional keys are always stored
//!   memcomparable-encoded, in V1 too (as TiKV stores them). The two APIs are meant for
//!   disjoint keys: in V2 they are different key spaces (`r…` and `x…`, checked); in V1,
//!   as with TiKV, an application uses one API or the other for a key range.
//!
//! # API versions
//! The store serves one API version ([`StorageConfig::api_version`]), like TiKV's
//! `storage.api-version`:
//! - **V1**: any key; `cf` may be empty, `default`, `lock` or `write`. TTLs are accepted
//!   (TiKV needs `enable-ttl` for that; we always store the expiry).
//! - **V2**: every key must be a raw key of a keyspace, `r` + 3-byte keyspace id + user
//!   key; range bounds must be such keys too (or `s`, the end of the raw key space); `cf`
//!   must be empty.
//!
//! A request whose `context.api_version` differs from the store's setting is refused with
//! `ApiVersionNotMatched`; in V2 a key outside the raw key space is refused with
//! `InvalidKeyMode` (or `InvalidKeyRangeMode` for ranges), as TiKV does.
//!
//! # Key encoding
//! - **V1**: keys are stored exactly as sent.
//! - **V2**: keys are stored memcomparable-encoded, prefix included:
//!   `codec::bytes::encode_bytes(b"r" ‖ keyspace id ‖ user key)`, as TiKV stores them (TiKV
//!   also appends a timestamp; we do not). Requests and responses carry plain keys; only
//!   the engine, and so the region boundaries raftstore derives from stored keys, see the
//!   encoded form. That is what V2 clients expect: they encode a key to ask the scheduler
//!   for its region and decode the boundaries they get back. The encoding preserves
//!   order, so a range `[a, b)` of plain keys is the range `[enc(a), enc(b))` of stored
//!   keys (an empty, unbounded, bound stays empty), and every check against a region's
//!   range (key not in region, scan clamping) compares stored keys. Scans decode keys
//!   before returning them, and RawChecksum digests the plain key, as TiKV does.
//!
//! # Value encoding (ours, not TiKV's)
//! Every stored value starts with one flags byte:
//! ```text
//! 0x00 ‖ user value                          no expiry
//! 0x01 ‖ expire_at (u64 big-endian) ‖ value  expires at `expire_at`, Unix seconds
//! ```
//! Other flag values are rejected as corrupt. A value whose `expire_at` is at or before
//! the current time is treated as absent by every read (get, batch get, scan, batch scan,
//! key TTL, checksum, compare-and-swap); it stays on disk until overwritten or deleted.
//! raftstore adds its data prefix `z` in front of every stored key.
//!
//! # Limits
//! Key size ([`StorageConfig::max_key_size`], 8 KiB), value size
//! ([`StorageConfig::max_value_size`]), scan limit ([`StorageConfig::max_scan_limit`]),
//! and raftstore's raft entry size (`RaftEntryTooLarge` region error). Each violation is a
//! clean error; none panics.

pub mod checksum;
pub mod config;
pub mod error;
pub mod key_codec;
pub use ::txn::latch;
pub mod raftkv;
pub mod raw;
pub mod txn;
pub mod validate;
pub mod value;

pub use self::txn::{RangeDestroyer, TsoSource, TxnDeps, TxnStorage};
pub use config::{ApiVersion, StorageConfig};
pub use error::{Error, Result};
pub use raftkv::{Modify, RaftKv};
pub use raw::{CasOutcome, Checksum, RawStorage};
