//! A Tessera store's network face: what a TiKV client and the other stores talk to.
//!
//! # What it owns
//! - [`storage`]: the KV layers over raftstore. Both turn an operation into raftstore
//!   commands for the region named in the request's `kvrpcpb::Context` and await the
//!   answer without blocking a tokio worker.
//!   - the raw layer ([`RawStorage`]) applies the raw API's rules: API V1/V2 key checks,
//!     limits, TTL, compare-and-swap under per-key latches, checksums. Its core speaks
//!     plain Rust types plus the request context; no gRPC types.
//!   - the transactional layer ([`TxnStorage`], [`storage::txn`]) runs the `txn` crate's
//!     Percolator commands on a region snapshot under its own latches and concurrency
//!     manager, writes their changes through Raft, keeps max_ts synced with the
//!     scheduler's TSO on new leaders ([`TsoSource`]) and destroys ranges outside Raft
//!     ([`RangeDestroyer`]). It takes and returns kvrpcpb messages, as the commands do.
//! - [`service`]: the `tikvpb.Tikv` gRPC service ([`service::KvService`]): every `Raw*`
//!   RPC maps its request onto the raw layer and the result back onto the kvproto
//!   response (region errors into `region_error`, other failures into the `error` text);
//!   every transactional `Kv*` RPC and UnsafeDestroyRange goes through [`service::txn`]
//!   to the transactional layer (region errors into `region_error`, failures into key
//!   errors); and the store-to-store RPCs `Raft`, `BatchRaft` and `Snapshot`, which hand
//!   incoming raft messages to the local raftstore.
//! - [`gc_worker`]: the store's MVCC garbage collector. When the scheduler's GC safe point
//!   advances, it collects, region by region on the regions this store leads, the versions
//!   no read at or above the safe point can see ([`txn::gc`]), rate-limited, and deletes
//!   them through Raft so every replica stays identical.
//!
//! - [`metrics`]: per-RPC counts and latencies ([`metrics::Metered`] wraps the service) and
//!   the start and end of each request's stage timings.
//!
//! The process assembly (listening socket, scheduler client, the sending side of the
//! store-to-store transport) is the `node` crate, which serves this crate's service.
//!
//! # How data moves
//! ```text
//! client ─► KvService::raw_put ─► RawStorage::put ─► checks (api version, key, sizes)
//!                                        │ latches for the key (held until applied)
//!                                        ▼
//!                              RaftKv::write ─► Router::send_command ─► raftstore
//!                                        ▲                                  │
//!                 oneshot ◄── callback ◄─┴──────── applied (or region error)┘
//!
//! client ─► KvService::raw_scan ─► RawStorage::scan ─► RaftKv::snapshot (ReadIndex)
//!                                        │ RegionSnapshot, bounded to the region
//!                                        ▼
//!                   blocking pool: iterate, decode values, drop expired ─► response
//!
//! client ─► KvService::kv_prewrite ─► service::txn ─► TxnStorage::prewrite ─► checks
//!                 │ latches of the keys ─► snapshot (ReadIndex, with the leader's term)
//!                 │ async commit / 1PC on a new term: max_ts ◄─ fresh TSO timestamp
//!                 ▼
//!           txn::commands::prewrite::process(snapshot, concurrency manager, request)
//!                 ▼
//!           RaftKv::write(modifies; latches and memory locks held until applied) ─► reply
//!
//! other store ─► KvService::raft / batch_raft / snapshot (reassembled from chunks)
//!                 ─► RaftMessage::from_proto ─► Router::send_raft_message ─► raftstore
//! ```

pub mod gc_worker;
pub mod metrics;
pub mod service;
pub mod storage;

pub use service::KvService;
pub use storage::txn::{RangeDestroyer, TsoSource, TxnDeps, TxnStorage};
pub use storage::{ApiVersion, RawStorage, StorageConfig};
