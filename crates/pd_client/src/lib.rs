//! The store side of the placement driver: a gRPC client of kvproto's `pdpb.PD` (as
//! served by `pd_server`). It does not know the store: `node` adapts it to raftstore's
//! `SchedulerClient` trait (`node::pd_adapter`), mapping this crate's [`operator`] types
//! onto raftstore's.
//!
//! # What it owns
//! - the connection to PD: endpoints tried with backoff until one answers GetMembers, the
//!   cluster id learned there and sent in every request header, response headers checked
//!   and their errors typed ([`Error`], grouped by what to do: retry, fatal, invalid),
//!   transparent reconnection after transport failures ([`connection`]);
//! - the async API a store process needs ([`PdClient`]: bootstrap, ids, stores, regions,
//!   TSO, splits, heartbeats, GC safe point; the RPCs themselves are in module `calls`);
//! - the one long-lived region heartbeat stream and the operators PD sends back on it
//!   (module `heartbeat`), checked and turned into [`operator`]s ([`convert`]) for the
//!   operator sink the store installed;
//! - a blocking entry point ([`PdClient::block_on`]) for callers on plain threads, such
//!   as the store's pd worker.
//!
//! # How data moves through it
//! ```text
//!  node's PdAdapter ─► PdClient::block_on ───────┐
//!  async caller ─────► PdClient::<call> ─────────┴► task on the client runtime ─► Shared::call
//!        header{cluster_id} ─► tonic ─► PD ─► answer ─► check_header ─► typed result
//!        transport failure ─► drop connection ─► backoff ─► dial (GetMembers) ─► again
//!
//!  leader ─► region_heartbeat ─► queue ─► heartbeat task ─► RegionHeartbeat stream ─► PD
//!  PD ─► answer (ChangePeer / TransferLeader / Split) ─► PushedOperator ─► operator sink
//!        ─► (node's adapter, raftstore) admin command ─► region leader
//! ```
//!
//! # Example
//! ```no_run
//! # async fn run() -> Result<(), pd_client::Error> {
//! let pd = pd_client::PdClient::connect(&["127.0.0.1:2379".to_string()]).await?;
//! if !pd.is_bootstrapped().await? {
//!     // bootstrap the first store and region ...
//! }
//! let id = pd.alloc_id().await?;
//! # let _ = id; Ok(()) }
//! ```

#![deny(missing_docs)]

mod calls;
pub mod client;
pub mod config;
pub mod connection;
pub mod convert;
pub mod error;
mod heartbeat;
pub mod operator;

pub use calls::RegionInfo;
pub use client::PdClient;
pub use config::Config;
pub use error::{Error, ErrorClass, Result};
pub use operator::{Operator, OperatorSink, PushedOperator, SplitIds};
