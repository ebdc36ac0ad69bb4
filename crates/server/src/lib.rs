//! A Tessera store's network face: what a TiKV client and the other stores talk to.
//!
//! # What it owns
//! - [`storage`]: the raw (non-transactional) KV layer. It turns a raw operation into
//!   raftstore commands for the region named in the request's `kvrpcpb::Context`, awaits
//!   the answer without blocking a tokio worker, and applies the raw API's rules: API
//!   V1/V2 key checks, limits, TTL, compare-and-swap under per-key latches, checksums.
//!   Its core speaks plain Rust types plus the request context; no gRPC types.
//! - [`service`]: the `tikvpb.Tikv` gRPC service ([`service::KvService`]): every `Raw*`
//!   RPC maps its request onto [`storage`] and the result back onto the kvproto response
//!   (region errors into `region_error`, other failures into the `error` text); and the
//!   store-to-store RPCs `Raft`, `BatchRaft` and `Snapshot`, which hand incoming raft
//!   messages to the local raftstore.
//! - [`gc_worker`]: the store's MVCC garbage collector. When the scheduler's GC safe point
//!   advances, it collects, region by region on the regions this store leads, the versions
//!   no read at or above the safe point can see ([`txn::gc`]), rate-limited, and deletes
//!   them through Raft so every replica stays identical.
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
//! other store ─► KvService::raft / batch_raft / snapshot (reassembled from chunks)
//!                 ─► RaftMessage::from_proto ─► Router::send_raft_message ─► raftstore
//! ```

pub mod gc_worker;
pub mod service;
pub mod storage;

pub use service::KvService;
pub use storage::{ApiVersion, RawStorage, StorageConfig};
