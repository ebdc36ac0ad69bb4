//! The raft-log-gc worker: deletes log entries that a CompactLog made unnecessary.
//!
//! Order matters for crash safety: the KV engine is synced first, so every entry removed from
//! the log has its effect (and the truncated state saying it is gone) on disk.

use engine::Engine;

use crate::storage::RaftLogEngine;

/// Delete a region's log entries below `end_index`.
#[derive(Debug)]
pub struct GcTask {
    /// Region whose log is compacted.
    pub region_id: u64,
    /// First index to keep.
    pub end_index: u64,
}

/// Handles [`GcTask`]s, batching all tasks already queued behind the first.
pub struct GcRunner<E: Engine> {
    engine: E,
    raft_engine: RaftLogEngine,
    tasks_since_purge: usize,
}

impl<E: Engine> GcRunner<E> {
    /// Creates the runner.
    pub fn new(engine: E, raft_engine: RaftLogEngine) -> Self {
        GcRunner {
            engine,
            raft_engine,
            tasks_since_purge: 0,
        }
    }

    /// Compacts the logs named by `tasks` after syncing the KV engine once for all of them.
    pub fn handle_batch(&mut self, tasks: Vec<GcTask>) {
        if tasks.is_empty() {
            return;
        }
        let sync_start = std::time::Instant::now();
        let synced = self.engine.sync();
        crate::metrics::FSYNC_TOTAL.with_label_values(&["kv"]).inc();
        crate::metrics::FSYNC_DURATION
            .with_label_values(&["kv"])
            .observe(sync_start.elapsed().as_secs_f64());
        if let Err(e) = synced {
            tracing::error!("raft log gc: syncing the KV engine failed, keeping logs: {e}");
            return;
        }
        // Crash window: the truncated states are durable, the entries are still in the log.
        fail::fail_point!("raft_log_gc_before_compact");
        for t in &tasks {
            let n = self.raft_engine.compact_to(t.region_id, t.end_index);
            tracing::trace!(
                "[region {}] compacted {n} log entries below {}",
                t.region_id,
                t.end_index
            );
        }
        self.tasks_since_purge += tasks.len();
        if self.tasks_since_purge >= 64 {
            self.tasks_since_purge = 0;
            if let Err(e) = self.raft_engine.purge_expired_files() {
                tracing::warn!("raft log gc: purging log files failed: {e}");
            }
        }
    }
}

/// Starts the worker thread; it drains its queue each time it wakes.
pub fn spawn<E: Engine>(
    engine: E,
    raft_engine: RaftLogEngine,
    rx: crossbeam_channel::Receiver<GcTask>,
) -> std::thread::JoinHandle<()> {
    std::thread::Builder::new()
        .name("raft-gc-worker".into())
        .spawn(move || {
            let mut runner = GcRunner::new(engine, raft_engine);
            while let Ok(first) = rx.recv() {
                let mut batch = vec![first];
                batch.extend(rx.try_iter());
                runner.handle_batch(batch);
            }
            let _ = runner.raft_engine.purge_expired_files();
        })
        .expect("spawning the raft log gc worker")
}
