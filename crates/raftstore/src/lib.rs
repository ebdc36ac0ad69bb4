//! Tessera's multi-Raft store: many regions, each a raft-rs group, on one store.
//!
//! # What it owns
//! Everything between "a command for region R arrived" and "it is durable, replicated,
//! applied and answered": peers (one per region), the pollers that drive them
//! (`store_pool_size` threads, each region on one of them), the log writer, apply (on the
//! pollers or on `apply_pool_size` apply threads), the admin operations that change regions (split, conf change, leader
//! transfer, log compaction; one file each in [`operation`]), and the store's workers
//! (region/snapshot, raft-log-gc, split-check, scheduler).
//!
//! # How data moves
//! ```text
//! Router ──► poller mailbox ──► Peer::on_command ──► RawNode::propose
//!  (region id hashed to          │                      │
//!   one of the pollers)          │                      │
//!   Transport ◄── leader msgs ◄──┴── Ready ─────────────┘
//!                                   │
//!      new entries + hard state ──► ONE raft-engine batch ──► log writer (one fsync for
//!                                   │                         every poller's rounds)
//!      leader msgs flushed ◄────────┤ (before the KV write: replication and the fsync
//!                                   │  overlap with it)
//!      committed entries ──► apply into ONE KV batch per round ──► engine.write (by the
//!                                   │                   poller, or by an apply thread:
//!                                   │                   `apply_pool_size`, [`apply::writer`])
//!      callbacks fire after the KV write ◄──────────────────────────────┘
//!      then the round's follow-up (split peers, conf changes, log GC, reads)
//!      persisted notices ──► on_persist_ready ──► more commits ──► apply
//! ```
//! Numbered steps of a round are in [`poller`]; the order within one Ready is in
//! [`peer::ready`].
//!
//! Work that would block the poller goes to a worker thread and comes back as a message:
//! snapshot generation and application ([`worker::region`]), log deletion
//! ([`worker::raftlog_gc`]), region scans for split keys ([`worker::split_check`]) and
//! every call to the scheduler ([`worker::pd`], through [`scheduler_client`]). The
//! split flow end to end is described in [`operation::split`].
//!
//! # Durability
//! An entry is acknowledged only after it is committed, which requires it to be fsynced in
//! a quorum's raft logs. Applied data is written to the KV engine without fsync; after a
//! crash the entries are applied again from the log (the apply state in the KV engine says
//! where to resume). Log entries are deleted only after the KV engine is synced.

pub mod apply;
pub mod clock;
pub mod config;
pub mod context;
pub mod error;
pub mod fatal;
pub mod local_reader;
pub mod metrics;
pub mod msg;
pub mod operation;
pub mod peer;
pub mod poller;
pub mod read_flow;
pub mod region_snapshot;
pub mod router;
pub mod scheduler_client;
pub mod stats;
pub mod storage;
pub mod store;
pub mod store_meta;
pub mod transport;
pub mod util;
pub mod worker;

pub use config::Config;
pub use error::{Error, Result};
pub use msg::{Callback, CmdResponse, PeerMsg, RaftMessage};
pub use region_snapshot::RegionSnapshot;
pub use router::Router;
pub use stats::StoreStats;
pub use storage::RaftLogEngine;
pub use store::Store;
pub use transport::{Transport, TransportError};
