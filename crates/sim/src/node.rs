//! One simulated store: the real raftstore's parts ([`raftstore::store::StoreParts`]) on a
//! MemEngine and a raft-engine log, its own virtual clock, and the bits of driving that a
//! thread would otherwise do (the log GC worker's purge timer).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use engine::MemEngine;
use proto::metapb;
use raftstore::clock::{Clock, ManualClock};
use raftstore::scheduler_client::SchedulerClient;
use raftstore::storage::bootstrap::{bootstrap_store, write_initial_region};
use raftstore::store::StoreParts;
use raftstore::worker::raftlog_gc::GcRunner;
use raftstore::{Config, RaftLogEngine};

use crate::net::{Outbox, SimTransport};

/// Cluster id written into every simulated store.
pub const CLUSTER_ID: u64 = 1;

/// A part of a store that can take one step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Part {
    /// Poller `i`: one round.
    Poller(usize),
    /// The log writer: every queued round in one write.
    Writer,
    /// The region worker: one task.
    Region,
    /// The raft-log-gc worker: every queued compaction, or the timed purge.
    Gc,
    /// The split-check worker: one task.
    SplitCheck,
    /// The pd worker: one task.
    Pd,
}

/// One store of the simulation.
pub struct SimStore {
    /// Store id.
    pub id: u64,
    /// This store's virtual clock (all share one base instant).
    pub clock: Arc<ManualClock>,
    /// The real store's parts, driven by [`SimStore::step`].
    pub parts: StoreParts<MemEngine, SimTransport>,
    /// What the parts sent during the last step.
    pub outbox: Outbox,
    gc: GcRunner<MemEngine>,
    /// Virtual time (ns) of the next timed purge of the raft log.
    next_purge: u64,
}

impl SimStore {
    /// Bootstraps store `id` with `region` in `dir` and builds its parts. `phase` delays its
    /// pollers' first tick (virtual ns), so stores do not tick in lockstep.
    pub fn create(
        id: u64,
        cfg: Config,
        region: &metapb::Region,
        dir: &Path,
        base: Instant,
        phase: u64,
        scheduler: Arc<dyn SchedulerClient>,
    ) -> Result<SimStore, String> {
        let kv = MemEngine::new();
        let raft = RaftLogEngine::open_with(
            &dir.join(format!("store{id}")),
            cfg.raft_log_purge_threshold,
        )
        .map_err(|e| format!("opening the raft log of store {id}: {e}"))?;
        bootstrap_store(&kv, CLUSTER_ID, id).map_err(|e| e.to_string())?;
        write_initial_region(&kv, &raft, region).map_err(|e| e.to_string())?;
        let clock = Arc::new(ManualClock::new(base));
        let outbox = Outbox::default();
        let purge = duration_nanos(cfg.raft_log_purge_interval);
        let mut parts = StoreParts::build(
            cfg,
            kv.clone(),
            raft.clone(),
            SimTransport::new(outbox.clone()),
            scheduler,
            clock.clone(),
        )
        .map_err(|e| format!("building store {id}: {e}"))?;
        let first_tick = base + Duration::from_nanos(phase);
        for p in &mut parts.pollers {
            p.set_next_tick(first_tick);
        }
        let gc = GcRunner::new(kv, raft, Some(parts.router.clone()));
        Ok(SimStore {
            id,
            clock,
            parts,
            outbox,
            gc,
            next_purge: purge,
        })
    }

    /// Moves this store's clock to virtual time `now` (ns).
    pub fn set_time(&self, now: u64) {
        self.clock.set_elapsed(Duration::from_nanos(now));
    }

    /// The parts that have work at virtual time `now`, in a fixed order.
    pub fn runnable(&self, now: u64, out: &mut Vec<(u64, Part)>) {
        let clock_now = self.clock.now();
        for (i, p) in self.parts.pollers.iter().enumerate() {
            if p.has_pending() || clock_now >= p.next_tick() {
                out.push((self.id, Part::Poller(i)));
            }
        }
        if !self.parts.writer_rx.is_empty() {
            out.push((self.id, Part::Writer));
        }
        if !self.parts.region_rx.is_empty() {
            out.push((self.id, Part::Region));
        }
        if !self.parts.gc_rx.is_empty() || now >= self.next_purge {
            out.push((self.id, Part::Gc));
        }
        if !self.parts.split_rx.is_empty() {
            out.push((self.id, Part::SplitCheck));
        }
        if !self.parts.pd_rx.is_empty() {
            out.push((self.id, Part::Pd));
        }
    }

    /// The earliest virtual time (ns) at which a timer of this store fires: a poller's next
    /// tick or the log purge.
    pub fn next_timer(&self) -> u64 {
        let ticks = self
            .parts
            .pollers
            .iter()
            .map(|p| duration_nanos(self.clock.offset_of(p.next_tick())));
        ticks.fold(self.next_purge, u64::min)
    }

    /// Runs one step of `part` at virtual time `now`.
    pub fn step(&mut self, part: Part, now: u64) {
        let parts = &mut self.parts;
        match part {
            Part::Poller(i) => {
                parts.pollers[i].step();
            }
            Part::Writer => {
                let msgs: Vec<_> = parts.writer_rx.try_iter().collect();
                parts.writer.write_round(msgs);
            }
            Part::Region => {
                if let Ok(t) = parts.region_rx.try_recv() {
                    parts.region_runner.handle(t);
                }
            }
            Part::Gc => {
                let tasks: Vec<_> = parts.gc_rx.try_iter().collect();
                self.gc.handle_batch(tasks);
                if now >= self.next_purge {
                    // As the worker thread's timer: every purge interval, sooner after the
                    // purge named regions to compact.
                    let named = self.gc.purge();
                    let interval = if named.is_empty() {
                        parts.cfg.raft_log_purge_interval
                    } else {
                        parts
                            .cfg
                            .raft_log_purge_interval
                            .min(Duration::from_secs(1))
                    };
                    self.next_purge = now + duration_nanos(interval);
                }
            }
            Part::SplitCheck => {
                if let Ok(t) = parts.split_rx.try_recv() {
                    parts.split_runner.handle(t);
                }
            }
            Part::Pd => {
                if let Ok(t) = parts.pd_rx.try_recv() {
                    parts.pd_runner.handle(t);
                }
            }
        }
    }

    /// Takes what the parts sent since the last call.
    pub fn take_outbox(&self) -> Vec<raftstore::RaftMessage> {
        std::mem::take(&mut *self.outbox.lock().expect("outbox"))
    }
}

/// `d` in nanoseconds (saturating).
pub fn duration_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}
