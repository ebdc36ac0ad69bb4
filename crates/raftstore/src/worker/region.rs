//! The region worker: builds snapshots, applies received snapshots, destroys region data.
//!
//! These are the heavy, rare operations on a region's whole range; running them here keeps
//! the poller answering every other region meanwhile. The peer that asked waits (it takes no
//! new ready) until the result comes back through the router.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use engine::{Engine, DATA_CFS};
use proto::metapb;
use proto::raft_serverpb::{PeerState, RaftApplyState, RaftLocalState, RaftTruncatedState};
use raft::eraftpb::Entry;

use crate::msg::PeerMsg;
use crate::router::Router;
use crate::stats::StoreStats;
use crate::storage::peer_storage::{write_apply_state, write_region_state};
use crate::storage::snapshot;
use crate::storage::{LogWriteBatch, RaftLogEngine};
use crate::Result;

/// Work for the region worker.
pub enum RegionTask {
    /// Build a snapshot of the region from the KV engine.
    Gen {
        /// Region to snapshot.
        region_id: u64,
    },
    /// Replace the region's data and log with a received snapshot.
    Apply(Box<ApplyTask>),
    /// Delete a removed region's data in every data CF.
    Destroy {
        /// Region whose data is deleted.
        region_id: u64,
        /// Start of the range.
        start_key: Vec<u8>,
        /// End of the range (empty = unbounded).
        end_key: Vec<u8>,
    },
}

/// A received snapshot to apply, with the rest of the ready that carried it.
pub struct ApplyTask {
    /// Region of the snapshot.
    pub region_id: u64,
    /// Ready number to report as persisted.
    pub ready_number: u64,
    /// The snapshot's checked body.
    pub snapshot: std::sync::Arc<snapshot::CheckedSnapshot>,
    /// Log index the snapshot ends at.
    pub index: u64,
    /// Term of that index.
    pub term: u64,
    /// The region's previous range if it was initialized (its data is cleared too).
    pub old_region: Option<metapb::Region>,
    /// Raft state to write once the data is in.
    pub raft_state: RaftLocalState,
    /// Entries that followed the snapshot in the same ready.
    pub entries: Vec<Entry>,
}

/// Handles [`RegionTask`]s for one store.
pub struct RegionRunner<E: Engine> {
    engine: E,
    raft_engine: RaftLogEngine,
    router: Router<E::Snapshot>,
    stats: Arc<StoreStats>,
}

impl<E: Engine> RegionRunner<E> {
    /// Creates the runner.
    pub fn new(
        engine: E,
        raft_engine: RaftLogEngine,
        router: Router<E::Snapshot>,
        stats: Arc<StoreStats>,
    ) -> Self {
        RegionRunner {
            engine,
            raft_engine,
            router,
            stats,
        }
    }

    /// Executes one task.
    pub fn handle(&mut self, task: RegionTask) {
        match task {
            RegionTask::Gen { region_id } => {
                let res = snapshot::generate(&self.engine, region_id)
                    .map(Box::new)
                    .map_err(|e| e.to_string());
                if res.is_ok() {
                    self.stats
                        .snapshots_generated
                        .fetch_add(1, Ordering::Relaxed);
                }
                let _ = self
                    .router
                    .send(region_id, PeerMsg::SnapshotGenerated { snapshot: res });
            }
            RegionTask::Apply(task) => {
                let region_id = task.region_id;
                let ready_number = task.ready_number;
                let result = self.apply(*task).map_err(|e| e.to_string());
                if result.is_ok() {
                    self.stats.snapshots_applied.fetch_add(1, Ordering::Relaxed);
                }
                if let Err(e) = &result {
                    tracing::error!("[region {region_id}] applying snapshot failed: {e}");
                }
                let _ = self.router.send(
                    region_id,
                    PeerMsg::SnapshotApplied {
                        ready_number,
                        result,
                    },
                );
            }
            RegionTask::Destroy {
                region_id,
                start_key,
                end_key,
            } => {
                if let Err(e) = self.destroy(&start_key, &end_key) {
                    tracing::error!("[region {region_id}] deleting data failed: {e}");
                }
            }
        }
    }

    fn apply(&self, task: ApplyTask) -> Result<()> {
        let region = task.snapshot.region().clone();
        let mut wb = self.engine.write_batch();
        snapshot::stage_apply(
            &self.engine,
            &mut wb,
            task.old_region.as_ref(),
            &task.snapshot,
        )?;
        write_region_state(&mut wb, &region, PeerState::Normal);
        let apply_state = RaftApplyState {
            applied_index: task.index,
            commit_index: task.index,
            commit_term: task.term,
            truncated_state: Some(RaftTruncatedState {
                index: task.index,
                term: task.term,
            }),
            ..Default::default()
        };
        write_apply_state(&mut wb, task.region_id, &apply_state);
        // Data first, durably: if we crash before the log is reset, recovery sees the
        // truncated index past the log's end and restarts the log after the snapshot.
        self.engine.write(wb, true)?;
        // Crash window: the snapshot's data and states are durable, the raft log is not reset.
        fail::fail_point!("region_snapshot_after_kv_write");
        let mut lb = LogWriteBatch::default();
        lb.clean(task.region_id);
        lb.put_raft_state(task.region_id, &task.raft_state)?;
        lb.append(task.region_id, &task.entries)?;
        self.raft_engine.write(&mut lb, true)?;
        Ok(())
    }

    fn destroy(&self, start: &[u8], end: &[u8]) -> Result<()> {
        let start = codec::keys::data_key(start);
        let end = codec::keys::data_end_key(end);
        let mut wb = self.engine.write_batch();
        for cf in DATA_CFS {
            self.engine.delete_range_into(&mut wb, cf, &start, &end)?;
        }
        self.engine.write(wb, false)?;
        Ok(())
    }
}
