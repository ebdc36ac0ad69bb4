//! The raft-log-gc worker: deletes log entries that a CompactLog made unnecessary, and lets
//! raft-engine reclaim the files that hold nothing else.
//!
//! Order matters for crash safety: the KV engine is synced first, so every entry removed from
//! the log has its effect (and the truncated state saying it is gone) on disk.
//!
//! Reclaiming files: raft-engine deletes a log file only when every entry in it was
//! compacted, and only once the whole log is over its purge threshold. A region that stopped
//! taking writes a while ago may keep a few entries in an old file and so keep every later
//! file alive. raft-engine copies such stragglers forward itself when they are few; when a
//! region has many, it names the region, and this worker asks that region's peer to compact
//! its log at once ([`PeerMsg::ForceCompactLog`]). The purge runs every
//! `raft_log_purge_interval` whether or not compactions arrive (a load on one region
//! compacts only every few seconds), after every 64 compactions, and one second after it
//! named regions, once their compactions have had time to land.

use std::time::{Duration, Instant};

use engine::Engine;

use crate::msg::PeerMsg;
use crate::router::Router;
use crate::storage::RaftLogEngine;

/// Compactions between two purges while compactions keep arriving.
const TASKS_PER_PURGE: usize = 64;

/// After naming regions, the next purge comes this soon: their compactions are a raft
/// round trip away, and the files they pinned can go then.
const NAMED_REGIONS_RECHECK: Duration = Duration::from_secs(1);

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
    router: Option<Router<E::Snapshot>>,
    tasks_since_purge: usize,
}

impl<E: Engine> GcRunner<E> {
    /// Creates the runner; regions that raft-engine asks to compact are told through
    /// `router` (without one they are only logged).
    pub fn new(engine: E, raft_engine: RaftLogEngine, router: Option<Router<E::Snapshot>>) -> Self {
        GcRunner {
            engine,
            raft_engine,
            router,
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
        if self.tasks_since_purge >= TASKS_PER_PURGE {
            self.purge();
        }
    }

    /// Lets raft-engine reclaim files, and asks the regions it names to compact their logs.
    /// Returns those regions.
    pub fn purge(&mut self) -> Vec<u64> {
        self.tasks_since_purge = 0;
        let regions = match self.raft_engine.purge_expired_files() {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("raft log gc: purging log files failed: {e}");
                return Vec::new();
            }
        };
        if !regions.is_empty() {
            tracing::info!(
                "raft log gc: {} regions keep old log files alive; asking them to compact",
                regions.len()
            );
        }
        if let Some(router) = &self.router {
            for &region_id in &regions {
                // A region gone since is fine: its log is deleted with it.
                let _ = router.send(region_id, PeerMsg::ForceCompactLog);
            }
        }
        regions
    }
}

/// Starts the worker thread; it drains its queue each time it wakes, and purges at least
/// every `purge_interval`.
pub fn spawn<E: Engine>(
    engine: E,
    raft_engine: RaftLogEngine,
    router: Router<E::Snapshot>,
    purge_interval: Duration,
    rx: crossbeam_channel::Receiver<GcTask>,
) -> std::thread::JoinHandle<()> {
    std::thread::Builder::new()
        .name("raft-gc-worker".into())
        .spawn(move || {
            let mut runner = GcRunner::new(engine, raft_engine, Some(router));
            let mut next_purge = Instant::now() + purge_interval;
            loop {
                let wait = next_purge.saturating_duration_since(Instant::now());
                match rx.recv_timeout(wait) {
                    Ok(first) => {
                        let mut batch = vec![first];
                        batch.extend(rx.try_iter());
                        runner.handle_batch(batch);
                    }
                    Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                    Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
                }
                if Instant::now() >= next_purge {
                    let named = runner.purge();
                    next_purge = Instant::now()
                        + if named.is_empty() {
                            purge_interval
                        } else {
                            NAMED_REGIONS_RECHECK.min(purge_interval)
                        };
                }
            }
            let _ = runner.raft_engine.purge_expired_files();
        })
        .expect("spawning the raft log gc worker")
}

#[cfg(test)]
mod tests {
    use raft::eraftpb::Entry;

    use super::*;
    use crate::msg::PollerMsg;
    use crate::storage::log_engine::MIN_PURGE_THRESHOLD;
    use crate::storage::LogWriteBatch;

    fn append(raft: &RaftLogEngine, region_id: u64, from: u64, count: u64, size: usize) {
        let entries: Vec<Entry> = (from..from + count)
            .map(|index| {
                // Incompressible (xorshift), so the log's size is what was written.
                let mut x = index.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
                let data: Vec<u8> = (0..size)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        x as u8
                    })
                    .collect();
                Entry {
                    index,
                    term: 1,
                    data: data.into(),
                    ..Default::default()
                }
            })
            .collect();
        let mut batch = LogWriteBatch::default();
        batch.append(region_id, &entries).unwrap();
        raft.write(&mut batch, true).unwrap();
    }

    #[test]
    fn compacted_files_are_reclaimed_and_old_regions_are_asked_to_compact() {
        let dir = tempfile::tempdir().unwrap();
        let raft = RaftLogEngine::open_with(dir.path(), MIN_PURGE_THRESHOLD).unwrap();
        let (router, mailbox) = Router::new(16);
        let mut runner = GcRunner::new(engine::MemEngine::new(), raft.clone(), Some(router));

        // Region 7 writes 100 entries, then goes quiet: they sit in the oldest file.
        append(&raft, 7, 1, 100, 64);
        // Region 9 writes 12 MiB, three times the threshold, and compacts as it goes.
        let mut next = 1;
        for _ in 0..48 {
            append(&raft, 9, next, 64, 4096);
            next += 64;
            runner.handle_batch(vec![GcTask {
                region_id: 9,
                end_index: next - 1,
            }]);
        }
        let before = raft.used_size();
        assert!(before > MIN_PURGE_THRESHOLD, "log holds {before} bytes");

        // Region 7's entries keep the oldest file; too many to copy forward, so it is named
        // and its peer is told to compact.
        let named = runner.purge();
        assert_eq!(named, vec![7]);
        let told: Vec<u64> = mailbox
            .notices
            .try_iter()
            .filter_map(|m| match m {
                PollerMsg::Peer(id, PeerMsg::ForceCompactLog) => Some(id),
                _ => None,
            })
            .collect();
        assert_eq!(told, vec![7]);

        // Once it has (what its CompactLog leads to), the files are reclaimed.
        runner.handle_batch(vec![GcTask {
            region_id: 7,
            end_index: 101,
        }]);
        assert!(runner.purge().is_empty());
        let after = raft.used_size();
        assert!(
            after <= MIN_PURGE_THRESHOLD,
            "log still holds {after} bytes (was {before})"
        );
        // Nothing of region 9 past its compaction was lost.
        assert_eq!(raft.first_index(9), Some(next - 1));
        assert_eq!(raft.last_index(9), Some(next - 1));
    }
}
