//! The core of Tessera's placement driver (the "scheduler"), as a library.
//!
//! # What it owns
//! The cluster's metadata and everything derived from it: the cluster id and bootstrap
//! state, unique ids ([`id`]), transaction timestamps ([`tso`]), the stores and their
//! liveness ([`store_info`]), and the region index fed by leader heartbeats
//! ([`region_tree`]). [`cluster::SchedulerCluster`] ties them together behind locks;
//! [`meta_store::MetaStore`] persists them in an [`engine::Engine`]. The gRPC service
//! will sit on top of this crate and is not here yet.
//!
//! # Scheduling
//! [`schedulers`] propose [`operator::Operator`]s (short lists of [`operator::OpStep`]s:
//! add a peer, remove a peer, transfer leadership; a replica move is add-then-remove) from
//! a [`schedulers::ClusterView`] snapshot: the [`schedulers::ReplicaChecker`] repairs
//! regions with too few or too many voters or voters on lost stores, the
//! [`schedulers::BalanceRegionScheduler`] evens region size across stores (TinyKV 3C
//! rules) and the [`schedulers::BalanceLeaderScheduler`] evens leader counts. The
//! [`operator::OperatorController`] keeps at most one operator per region and, on each
//! heartbeat, retires the steps the region shows done and returns the next one (or
//! cancels the operator when the region changed under it, or it timed out).
//! [`coordinator::Coordinator`] ties them to a [`SchedulerCluster`]:
//! ```text
//!  Coordinator::tick ──► stores snapshot + RegionTree + in-flight operators' effect
//!                        ──► ReplicaChecker, BalanceRegion, BalanceLeader (rate-limited)
//!                        ──► OperatorController::add
//!
//!  Coordinator::region_heartbeat_with_operator(info)
//!        ──► SchedulerCluster::region_heartbeat (as before) ──► OperatorController::on_heartbeat
//!        ──► Option<OpStep> for the leader (maps 1:1 onto raftstore's scheduler_client::Operator)
//! ```
//!
//! # How data moves through it
//! ```text
//!  store heartbeat ──► StoreRegistry (stats, last-seen time; liveness derived on read)
//!
//!  region heartbeat ──► RegionTree::check ──stale──► Error::StaleRegion
//!                             │ Unchanged ──► done
//!                             │ StatsUpdated ───────────────────────┐
//!                             │ MetaUpdated ──► MetaStore (no sync) ┴─► RegionTree::put
//!
//!  alloc_id / ask_batch_split ──► IdAllocator ──(new window)──► MetaStore (synced)
//!  tso ──► Tso ──(physical time beyond the saved limit)──► MetaStore (synced)
//!
//!  get_store = StoreRegistry snapshot + per-store counts from RegionTree
//! ```
//! On restart [`cluster::SchedulerCluster::open`] reads the cluster id, the id and TSO
//! windows, the stores and the regions back from the [`meta_store::MetaStore`]; ids and
//! timestamps restart above anything handed out before. Leaders, sizes and store
//! statistics are not persisted: the next heartbeats bring them back.
//!
//! Time comes from a [`clock::Clock`], so tests can freeze it, move it and step it back.

#![deny(missing_docs)]

pub mod clock;
pub mod cluster;
pub mod coordinator;
mod error;
pub mod history;
pub mod id;
mod id_set;
pub mod meta_store;
pub mod operator;
pub mod region_tree;
pub mod schedulers;
pub mod store_info;
pub mod tso;

pub use clock::{Clock, ManualClock, SystemClock};
pub use cluster::{ClusterConfig, SchedulerCluster, SplitIds};
pub use coordinator::{AdminError, AdminRequest, Coordinator};
pub use error::{Error, Result};
pub use id::IdAllocator;
pub use meta_store::MetaStore;
pub use operator::{OpStep, Operator, OperatorController, OperatorCounters};
pub use region_tree::{HeartbeatOutcome, PeerKind, RegionInfo, RegionTree, StoreRegionStats};
pub use schedulers::{ScheduleConfig, Scheduler, SchedulerLimits};
pub use store_info::{StoreConfig, StoreInfo, StoreRegistry, StoreState, StoreStats};
pub use tso::Tso;
