//! The `tikvpb.Tikv` gRPC service of one store.
//!
//! [`kv::KvService`] implements the tonic trait: the `Raw*` RPCs in [`kv`] (request →
//! [`crate::storage::RawStorage`] → response), the transactional `Kv*` RPCs and
//! UnsafeDestroyRange in [`txn`] (request → [`crate::storage::TxnStorage`] → response),
//! the store-to-store `Raft`, `BatchRaft` and `Snapshot` streams in [`raft`] (wire
//! message → raftstore message → router).
//!
//! Error placement follows TiKV, because clients decide on retries from it:
//! - region errors go into `region_error` (clients refresh their region cache or follow
//!   the leader hint and retry);
//! - other failures go into the `error` text, or, for responses without one (batch get,
//!   scans), into a single pair whose `error.abort` carries the text; clients return
//!   these to the caller; transactional responses carry key errors instead (see [`txn`]);
//! - a gRPC status only for what is not a request at all: a broken store-to-store stream,
//!   a malformed snapshot, a stopped store that cannot take raft messages.

pub mod kv;
pub mod raft;
pub mod txn;

pub use kv::KvService;
