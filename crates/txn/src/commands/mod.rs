//! One file per transactional RPC.
//!
//! Write commands share one shape:
//! - `latch_keys(&Request) -> Vec<Key>`: the keys whose latches the caller must hold from
//!   before it takes the snapshot until the changes are applied;
//! - `process(&Snapshot, &ConcurrencyManager, &Request) -> Result<WriteResult<Response>>`:
//!   the changes to write through Raft and the reply (with per-key errors inside it, as
//!   kvproto carries them). `Err` is kept for failures of the store itself (a record that
//!   does not decode, an engine error).
//!
//! Read commands (get, batch_get, scan, scan_lock) take no latch and change nothing:
//! `check_memory_locks(&ConcurrencyManager, &Request)` runs before the snapshot is taken
//! (it raises max_ts, then looks at the memory lock table), then `process(&Snapshot,
//! &Request)` reads.
//!
//! `region_error` is the caller's to fill; nothing here knows about regions.

pub mod batch_get;
pub mod check_secondary_locks;
pub mod check_txn_status;
pub mod cleanup;
pub mod commit;
pub mod get;
pub mod pessimistic_lock;
pub mod pessimistic_rollback;
pub mod prewrite;
pub mod resolve_lock;
pub mod rollback;
pub mod scan;
pub mod scan_lock;
pub mod txn_heart_beat;
