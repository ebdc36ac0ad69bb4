//! Store-to-store raft transport over gRPC.
//!
//! # What it owns
//! [`GrpcTransport`], the [`raftstore::Transport`] a networked store gives its poller and
//! log writer: it carries raft messages to other stores over kvproto's `tikvpb.Tikv`
//! service (`BatchRaft` for ordinary messages, `Snapshot` for snapshots), one connection
//! per destination store, reconnecting on failure. Where a store listens comes from a
//! [`StoreResolver`]. The receiving side (the RPC handlers that feed a store's router)
//! belongs to the server.
//!
//! # How data moves
//! ```text
//! poller / log writer thread                 tokio runtime (given at construction)
//! ─────────────────────────                  ───────────────────────────────────────
//! send(msg) ─► buffer for msg's store
//!     MsgSnapshot ─► snapshot queue ───────► snapshot task (one per store)
//! flush() ─► each store's buffer                 resolve + connect, Snapshot stream in
//!            ─► its bounded queue                chunks, then callback(region, peer, ok)
//!               (full: drop + count)
//!                     └──────────────────────► raft stream task (one per store)
//!                                                resolve + connect, one BatchRaft stream;
//!                                                take all queued ─► few BatchRaftMessage
//!                                                frames; on failure: store marked down,
//!                                                queue drained and dropped during an
//!                                                exponential backoff, reconnect once
//!                                                the store is sent to again
//! ```
//! The sending threads never wait on the network: `send` appends to a buffer (or
//! `try_send`s a snapshot) and `flush` `try_send`s into bounded queues. Dropped messages
//! are counted ([`StatsSnapshot`]); raft retransmits what matters.
//!
//! # Snapshots
//! A snapshot is reported finished only when the receiving store acknowledged all of it,
//! through the [`SnapshotStatusCallback`] (the server forwards it to the sending peer as
//! `raftstore::PeerMsg::SnapshotSent`). [`GrpcTransport`] therefore answers
//! [`raftstore::Transport::reports_snapshot_delivery`] with `true`, so raftstore does
//! not treat an accepted snapshot as delivered.

mod backoff;
pub mod config;
mod connect;
mod raft_stream;
pub mod resolver;
mod snapshot;
pub mod stats;
mod transport;

pub use config::{Config, ConfigError};
pub use resolver::{ResolveError, ResolveFuture, StaticResolver, StoreResolver};
pub use stats::{StatsSnapshot, TransportStats};
pub use transport::{GrpcTransport, LinkStatus, SnapshotStatusCallback};
