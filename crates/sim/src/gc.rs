//! The GC safe point as a cluster operation: the scheduler's safe point moves up, and every
//! running store runs a round of the real MVCC garbage collector
//! (`server::gc_worker::GcWorker::run_once`: it lists the regions, collects those it leads
//! through Raft, skips the others) at that safe point.
//!
//! The new safe point is the oracle's current timestamp, held back to the oldest start_ts
//! a transactional client still reads at ([`crate::txn_client::TxnEnv::live`]): no
//! transaction under way ever reads below it, so every read must still find the versions
//! it saw before; the bank and list-append checks catch it if GC deleted one too many.
//! The worker runs with `GcConfig::inline` (no tokio runtime here): each batch's scan runs
//! on the round's task, which the simulator's executor polls.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use proto::metapb;
use server::gc_worker::{GcConfig, GcSummary, GcWorker, SafePointSource, SourceFuture};
use server::storage::RaftKv;

use crate::ops::newest_regions;
use crate::sched::SimScheduler;
use crate::world::Sim;

/// What the GC operations did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcStats {
    /// Times the safe point moved up.
    pub advances: u64,
    /// Rounds run to their end on some store.
    pub rounds: u64,
    /// Rounds that covered every region of their store.
    pub rounds_finished: u64,
    /// Regions collected by their leader.
    pub regions_collected: u64,
    /// MVCC versions deleted.
    pub versions_deleted: u64,
}

/// The scheduler as the GC worker asks it: the safe point, and the regions (the newest
/// copies the stores hold, as the clients learn them).
pub struct SimSafePoints {
    scheduler: Arc<SimScheduler>,
    kvs: Vec<engine::MemEngine>,
}

impl SafePointSource for SimSafePoints {
    fn get_gc_safe_point(&self) -> SourceFuture<'_, u64> {
        let sp = if self.scheduler.is_up() {
            Ok(self.scheduler.gc_safe_point())
        } else {
            Err("scheduler unavailable (crashed)".to_string())
        };
        Box::pin(async move { sp })
    }

    fn scan_regions(&self, start: Vec<u8>, limit: usize) -> SourceFuture<'_, Vec<metapb::Region>> {
        let regions = if self.scheduler.is_up() {
            Ok(newest_regions(self.kvs.iter())
                .into_iter()
                .filter(|r| r.end_key.is_empty() || r.end_key > start)
                .take(limit)
                .collect())
        } else {
            Err("scheduler unavailable (crashed)".to_string())
        };
        Box::pin(async move { regions })
    }
}

impl Sim {
    /// Moves the safe point up and has every running store run a GC round at it.
    pub(crate) fn op_gc(&mut self) {
        let Ok(now_ts) = self.scheduler.get_ts() else {
            self.log(format_args!("op: nothing (gc: the scheduler is down)"));
            return;
        };
        let oldest = self
            .txn_env
            .as_ref()
            .and_then(|e| e.live.borrow().keys().next().copied());
        let target = oldest.map_or(now_ts, |o| o.min(now_ts));
        if !self.scheduler.update_gc_safe_point(target) {
            return;
        }
        let sp = self.scheduler.gc_safe_point();
        self.gc.borrow_mut().advances += 1;
        let source: Arc<dyn SafePointSource> = Arc::new(SimSafePoints {
            scheduler: self.scheduler.clone(),
            kvs: self.stores.iter().map(|s| s.kv().clone()).collect(),
        });
        let cfg = GcConfig {
            inline: true,
            // Small batches: rounds cut inside a region resume from a fresh snapshot.
            batch_keys: 4,
            ..Default::default()
        };
        let mut started = Vec::new();
        for s in &self.stores {
            let Some(live) = &s.live else { continue };
            let kv = RaftKv::new(live.parts.router.clone());
            let worker = GcWorker::new(s.id, kv, source.clone(), cfg.clone());
            let (stats, trace) = (self.gc.clone(), self.gc_trace.clone());
            let id = s.id;
            self.tasks.spawn(async move {
                let sum = worker.run_once(sp).await;
                note_round(&stats, &sum);
                trace.borrow_mut().push(format!(
                    "gc: s{id} round at {sp}: {} regions collected, {} not led, {} failed, \
                     {} keys scanned, {} versions deleted",
                    sum.regions_done,
                    sum.regions_not_led,
                    sum.regions_failed,
                    sum.keys_scanned,
                    sum.versions_deleted
                ));
            });
            started.push(id);
        }
        self.log(format_args!(
            "op: gc safe point {sp} (oldest live start ts {oldest:?}), rounds on {started:?}"
        ));
    }
}

fn note_round(stats: &Rc<RefCell<GcStats>>, sum: &GcSummary) {
    let mut s = stats.borrow_mut();
    s.rounds += 1;
    s.rounds_finished += u64::from(sum.finished);
    s.regions_collected += sum.regions_done as u64;
    s.versions_deleted += sum.versions_deleted as u64;
}
