//! One simulated store: the real raftstore's parts ([`raftstore::store::StoreParts`]) on a
//! MemEngine and a raft-engine log, its own virtual clock, and the bits of driving that a
//! thread would otherwise do (the log GC worker's purge timer).
//!
//! # Crash and restart
//! The raft log sits on raftstore's fault-injecting file system
//! ([`raftstore::storage::log_fs`]). [`SimStore::crash`] first crashes that disk (every log
//! file goes back to its content at its last fsync, the last write maybe torn in half;
//! nothing written afterwards reaches the files, including the sync raft-engine does when
//! it closes), then drops the store's parts: pollers, writer, workers and every pending
//! command's callback (no thread exists, so nothing runs on). [`SimStore::restart`] opens
//! the log again on a fresh disk and builds the parts again with
//! [`raftstore::store::StoreParts::build`], exactly as a store process starting up. The KV
//! engine (a MemEngine) is kept as it was: a store applies only entries its log has made
//! durable, so what the KV engine holds is never ahead of what the crash left in the log.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use engine::MemEngine;
use proto::metapb;
use raftstore::clock::{Clock, ManualClock};
use raftstore::scheduler_client::SchedulerClient;
use raftstore::storage::bootstrap::{bootstrap_store, write_initial_region};
use raftstore::storage::log_fs::{DiskFaults, LogFileSystem};
use raftstore::store::StoreParts;
use raftstore::worker::raftlog_gc::GcRunner;
use raftstore::{Config, RaftLogEngine};
use server::storage::txn::EngineRangeDestroyer;
use server::storage::{StorageConfig, TsoSource, TxnDeps};

use crate::exec::Executor;
use crate::net::{Outbox, SimTransport};

/// A clock rate of 1 (parts per million).
pub const PPM: u64 = 1_000_000;

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
    /// The running store; `None` while it is crashed.
    pub live: Option<Live>,
    /// What the parts sent during the last step.
    pub outbox: Outbox,
    /// The thread this incarnation's work runs on (see [`crate::exec`]).
    exec: Executor,
    /// How this store's clock reads against virtual time.
    drift: Drift,
    cfg: Config,
    kv: MemEngine,
    dir: PathBuf,
    scheduler: Arc<dyn SchedulerClient>,
    tso: Arc<dyn TsoSource>,
    /// The running incarnation's transactional storage layer (the server crate's
    /// TxnStorage: its own latches and concurrency manager, as a restarted process builds
    /// them), shared with the transactional clients ([`crate::txn_client`]); `None`
    /// while the store is down.
    pub txn: TxnSlot,
}

/// Where the transactional clients find a store's running TxnStorage.
pub type TxnSlot = Arc<std::sync::Mutex<Option<Arc<Txn>>>>;

/// The transactional storage layer of one store.
pub type Txn = server::storage::TxnStorage<engine::MemSnapshot>;

/// What a running store has and a crash loses.
pub struct Live {
    /// The real store's parts, driven by [`SimStore::step`].
    pub parts: StoreParts<MemEngine, SimTransport>,
    /// The disk under its raft log.
    pub disk: DiskFaults,
    /// Every write and sync of the raft log fails (an injected I/O error).
    pub io_failing: bool,
    /// The store's raw KV storage layer (the server crate's), over its router; a new
    /// one (new latches) for each incarnation, as a restarted process builds it.
    pub raw: Arc<crate::client::Raw>,
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
        scheduler: Arc<crate::sched::SimScheduler>,
    ) -> Result<SimStore, String> {
        let kv = MemEngine::new();
        let dir = dir.join(format!("store{id}"));
        let disk = DiskFaults::new();
        let exec = Executor::new(format!("sim-s{id}"));
        let raft = exec.run(|| -> Result<RaftLogEngine, String> {
            let raft = open_log(&dir, &cfg, &disk)
                .map_err(|e| format!("opening the raft log of store {id}: {e}"))?;
            bootstrap_store(&kv, CLUSTER_ID, id).map_err(|e| e.to_string())?;
            write_initial_region(&kv, &raft, region).map_err(|e| e.to_string())?;
            // The bootstrap is durable before the store first starts.
            raft.sync().map_err(|e| e.to_string())?;
            Ok(raft)
        })?;
        let mut store = SimStore {
            id,
            clock: Arc::new(ManualClock::new(base)),
            live: None,
            outbox: Outbox::default(),
            exec,
            drift: Drift::default(),
            cfg,
            kv,
            dir,
            scheduler: scheduler.clone(),
            tso: scheduler,
            txn: TxnSlot::default(),
        };
        store.start(raft, disk, phase, 0)?;
        Ok(store)
    }

    /// Builds the parts on `raft` (whose disk is `disk`) at virtual time `now` (ns); the
    /// first tick comes `phase` ns (of this store's clock) from now.
    fn start(
        &mut self,
        raft: RaftLogEngine,
        disk: DiskFaults,
        phase: u64,
        now: u64,
    ) -> Result<(), String> {
        let id = self.id;
        let (cfg, kv, clock) = (self.cfg.clone(), self.kv.clone(), self.clock.clone());
        let (transport, scheduler) = (
            SimTransport::new(self.outbox.clone()),
            self.scheduler.clone(),
        );
        let raft_for_build = raft.clone();
        // On this incarnation's thread: loading the peers reads the log.
        let mut parts = self
            .exec
            .run(move || StoreParts::build(cfg, kv, raft_for_build, transport, scheduler, clock))
            .map_err(|e| format!("building store {id}: {e}"))?;
        let first_tick = self.clock.now() + Duration::from_nanos(phase);
        for p in &mut parts.pollers {
            p.set_next_tick(first_tick);
        }
        let gc = GcRunner::new(self.kv.clone(), raft, Some(parts.router.clone()));
        // Through `router`, not `client_router`: the latter's local reader checks leases
        // against `Instant::now()`, which no seed controls.
        let raw = Arc::new(server::storage::RawStorage::new(
            parts.router.clone(),
            server::storage::StorageConfig::default(),
        ));
        let deps = TxnDeps {
            tso: self.tso.clone(),
            destroyer: Arc::new(EngineRangeDestroyer::new(self.kv.clone())),
        };
        let txn = Txn::new(parts.router.clone(), StorageConfig::default(), deps);
        *self.txn.lock().expect("txn slot") = Some(Arc::new(txn));
        self.live = Some(Live {
            raw,
            parts,
            disk,
            io_failing: false,
            gc,
            next_purge: now + duration_nanos(self.cfg.raft_log_purge_interval),
        });
        Ok(())
    }

    /// The leader lease this store takes, ns of its own clock.
    pub fn lease_ns(&self) -> u64 {
        duration_nanos(self.cfg.max_leader_lease)
    }

    /// The earliest a follower of this store campaigns after it last heard from the
    /// leader, ns of its own clock: the randomized timeout is fixed at election + 1 ticks
    /// (see `store_config` in world.rs), and the first tick after a reset may come at
    /// once, so `election` whole tick periods.
    pub fn earliest_campaign_ns(&self) -> u64 {
        self.tick_ns() * self.cfg.raft_election_timeout_ticks as u64
    }

    /// This store's tick period, ns.
    pub fn tick_ns(&self) -> u64 {
        duration_nanos(self.cfg.raft_base_tick_interval)
    }

    /// The store's KV engine (kept across crashes).
    pub fn kv(&self) -> &MemEngine {
        &self.kv
    }

    /// From now on every write and sync of the raft log fails with an I/O error, until
    /// the store restarts on a healthy disk. False if the store is down.
    pub fn fail_io(&mut self) -> bool {
        let Some(live) = self.live.as_mut() else {
            return false;
        };
        live.disk.fail_io(true);
        live.io_failing = true;
        true
    }

    /// Whether the store runs on a disk that fails every write.
    pub fn io_failing(&self) -> bool {
        self.live.as_ref().is_some_and(|l| l.io_failing)
    }

    /// Whether the store is running.
    pub fn is_up(&self) -> bool {
        self.live.is_some()
    }

    /// Crashes the store: its disk loses what was not fsynced (with `torn`, half of the
    /// last unsynced write stays), then its parts and pending callbacks are dropped.
    /// Returns the bytes the raft log lost.
    pub fn crash(&mut self, torn: bool) -> u64 {
        let Some(live) = self.live.take() else {
            return 0;
        };
        // First the disk: raft-engine syncs when it closes, and that sync must not land.
        let lost = live.disk.crash(torn);
        *self.txn.lock().expect("txn slot") = None;
        self.exec.run(move || drop(live));
        self.outbox.lock().expect("outbox").clear();
        lost
    }

    /// Starts a crashed store again on what its disk kept at virtual time `now`, its first
    /// tick `phase` ns from now. An error (or a panic, which the caller catches) means the
    /// store cannot start on what the crash left.
    pub fn restart(&mut self, phase: u64, now: u64) -> Result<(), String> {
        assert!(self.live.is_none(), "store {} is running", self.id);
        // A new incarnation, a new thread: nothing the old one cached survives.
        self.exec = Executor::new(format!("sim-s{}", self.id));
        let disk = DiskFaults::new();
        let (dir, cfg, id) = (&self.dir, &self.cfg, self.id);
        let raft = self
            .exec
            .run(|| open_log(dir, cfg, &disk))
            .map_err(|e| format!("reopening the raft log of store {id}: {e}"))?;
        self.start(raft, disk, phase, now)
    }

    /// From virtual time `now` on, this store's clock runs at `rate_ppm` parts per million
    /// of virtual time (see [`Drift::set_rate`]).
    pub fn set_rate(&mut self, now: u64, rate_ppm: u64) {
        self.drift.set_rate(now, rate_ppm);
        self.set_time(now);
    }

    /// This store's clock rate, parts per million of virtual time.
    pub fn rate_ppm(&self) -> u64 {
        self.drift.rate_ppm
    }

    /// Moves this store's clock to what it reads at virtual time `now` (ns).
    pub fn set_time(&self, now: u64) {
        self.clock
            .set_elapsed(Duration::from_nanos(self.drift.local_at(now)));
    }

    /// The parts that have work at virtual time `now`, in a fixed order.
    pub fn runnable(&self, now: u64, out: &mut Vec<(u64, Part)>) {
        let Some(live) = &self.live else { return };
        let parts = &live.parts;
        let clock_now = self.clock.now();
        for (i, p) in parts.pollers.iter().enumerate() {
            if p.has_pending() || clock_now >= p.next_tick() {
                out.push((self.id, Part::Poller(i)));
            }
        }
        if !parts.writer_rx.is_empty() {
            out.push((self.id, Part::Writer));
        }
        if !parts.region_rx.is_empty() {
            out.push((self.id, Part::Region));
        }
        if !parts.gc_rx.is_empty() || now >= live.next_purge {
            out.push((self.id, Part::Gc));
        }
        if !parts.split_rx.is_empty() {
            out.push((self.id, Part::SplitCheck));
        }
        if !parts.pd_rx.is_empty() {
            out.push((self.id, Part::Pd));
        }
    }

    /// The earliest virtual time (ns) at which a timer of this store fires: a poller's next
    /// tick or the log purge (none while it is down).
    pub fn next_timer(&self) -> u64 {
        let Some(live) = &self.live else {
            return u64::MAX;
        };
        let ticks = live.parts.pollers.iter().map(|p| {
            self.drift
                .virtual_at(duration_nanos(self.clock.offset_of(p.next_tick())))
        });
        ticks.fold(live.next_purge, u64::min)
    }

    /// Runs one step of `part` at virtual time `now`.
    pub fn step(&mut self, part: Part, now: u64) {
        let live = self.live.as_mut().expect("a runnable store is up");
        self.exec.run(move || live.step(part, now));
    }

    /// Takes what the parts sent since the last call.
    pub fn take_outbox(&self) -> Vec<raftstore::RaftMessage> {
        std::mem::take(&mut *self.outbox.lock().expect("outbox"))
    }
}

impl Live {
    /// Runs one step of `part` at virtual time `now` (on the store's thread).
    fn step(&mut self, part: Part, now: u64) {
        let live = self;
        let parts = &mut live.parts;
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
                live.gc.handle_batch(tasks);
                if now >= live.next_purge {
                    // As the worker thread's timer: every purge interval, sooner after the
                    // purge named regions to compact.
                    let named = live.gc.purge();
                    let interval = if named.is_empty() {
                        parts.cfg.raft_log_purge_interval
                    } else {
                        parts
                            .cfg
                            .raft_log_purge_interval
                            .min(Duration::from_secs(1))
                    };
                    live.next_purge = now + duration_nanos(interval);
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
}

/// Opens the raft log in `dir` on the faulty file system of `disk`.
fn open_log(dir: &Path, cfg: &Config, disk: &DiskFaults) -> raftstore::Result<RaftLogEngine> {
    RaftLogEngine::open_on(
        dir,
        cfg.raft_log_purge_threshold,
        LogFileSystem::Faulty(disk.clone()),
    )
}

/// `d` in nanoseconds (saturating).
pub fn duration_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// A store's clock against virtual time: it runs at `rate_ppm` parts per million of virtual
/// time from the anchor on. A rate change keeps the offset gained or lost so far, as a clock
/// that drifted keeps its error; the clock never goes backwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Drift {
    /// Parts per million of virtual time (1,000,000: in step).
    rate_ppm: u64,
    /// (virtual ns, clock ns) where the current rate took over.
    anchor: (u64, u64),
}

impl Default for Drift {
    fn default() -> Self {
        Drift {
            rate_ppm: PPM,
            anchor: (0, 0),
        }
    }
}

impl Drift {
    /// What the clock reads (ns after its base) at virtual time `v`.
    pub fn local_at(&self, v: u64) -> u64 {
        let (v0, l0) = self.anchor;
        let d = u128::from(v.saturating_sub(v0)) * u128::from(self.rate_ppm) / u128::from(PPM);
        l0.saturating_add(u64::try_from(d).unwrap_or(u64::MAX))
    }

    /// The first virtual time at which the clock reads `local` or more.
    pub fn virtual_at(&self, local: u64) -> u64 {
        let (v0, l0) = self.anchor;
        if local <= l0 {
            return v0;
        }
        let d = u128::from(local - l0) * u128::from(PPM);
        let r = u128::from(self.rate_ppm);
        v0.saturating_add(u64::try_from(d.div_ceil(r)).unwrap_or(u64::MAX))
    }

    /// From virtual time `now` on, the clock runs at `rate_ppm` (at least 1).
    pub fn set_rate(&mut self, now: u64, rate_ppm: u64) {
        self.anchor = (now, self.local_at(now));
        self.rate_ppm = rate_ppm.max(1);
    }
}

#[cfg(test)]
mod tests {
    use super::{Drift, PPM};

    #[test]
    fn a_drifting_clock_keeps_its_error_and_never_goes_back() {
        let mut d = Drift::default();
        assert_eq!(d.local_at(1_000), 1_000);
        // 5% fast from t = 1,000.
        d.set_rate(1_000, PPM + 50_000);
        assert_eq!(d.local_at(3_000), 3_100);
        // 5% slow from t = 3,000: the 100 ns gained stay.
        d.set_rate(3_000, PPM - 50_000);
        assert_eq!(d.local_at(3_000), 3_100);
        assert_eq!(d.local_at(5_000), 5_000);
        d.set_rate(5_000, PPM);
        assert_eq!(d.local_at(6_000), 6_000);
        let mut last = 0;
        for v in (0..7_000).step_by(7) {
            let l = d.local_at(v);
            assert!(l >= last, "clock went back at {v}");
            last = l;
        }
    }

    #[test]
    fn a_timer_fires_at_the_first_virtual_time_the_clock_reaches_it() {
        let mut d = Drift::default();
        d.set_rate(0, PPM - 30_000);
        for local in [1, 999, 1_000, 12_345, 1_000_000] {
            let v = d.virtual_at(local);
            assert!(d.local_at(v) >= local, "{local}: not reached at {v}");
            assert!(v == 0 || d.local_at(v - 1) < local, "{local}: {v} is late");
        }
    }
}
