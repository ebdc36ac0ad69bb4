//! Faults injected at random steps of the load phase: partitions, an isolated store, store
//! crashes (torn or not) and restarts, scheduler crashes and restarts, and the cluster
//! operations of [`crate::ops`] (leader transfers, splits, peer removals with their later
//! re-additions), GC safe point moves ([`crate::gc`]) and stalls of the storage layer's
//! tasks (the server's async runtime pausing while raft goes on). Each run draws how
//! often each happens from its seed; every fault and every repair is a trace line.
//!
//! A disruption is due at a drawn virtual time; when it is, the chaos step is one of the
//! runnable steps the RNG picks from (so it lands between any two steps of the stores and
//! clients). Each disruption schedules its own repair: a partition heals, a store restarts,
//! the scheduler comes back, after a drawn time. At most a minority of the stores is down
//! at once, and one partition is in force at a time. When the load phase ends
//! `Sim::calm` repairs everything at once and no new disruption comes.

use std::collections::BTreeMap;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};

use rand::rngs::StdRng;
use rand::Rng;

use crate::world::Sim;

/// How many of each fault a run injected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultCounts {
    /// Messages lost.
    pub drops: u64,
    /// Messages delivered twice.
    pub dups: u64,
    /// Messages given an out-of-order delay.
    pub reorders: u64,
    /// Messages dropped at delivery because their link was cut or a store was down.
    pub cut_off: u64,
    /// Partitions of the stores into two sides.
    pub partitions: u64,
    /// Stores isolated from every other.
    pub isolations: u64,
    /// Store crashes.
    pub crashes: u64,
    /// Crashes that tore the last unsynced write.
    pub torn: u64,
    /// Bytes the raft logs lost in crashes.
    pub lost_bytes: u64,
    /// Restarts that worked.
    pub restarts: u64,
    /// Restarts that failed (a finding: a store that cannot start on what its disk kept).
    pub failed_restarts: u64,
    /// Scheduler crashes.
    pub scheduler_crashes: u64,
    /// Leader transfers asked for.
    pub transfers: u64,
    /// Splits asked for (at a hot key not yet a region boundary).
    pub splits: u64,
    /// Peer removals scheduled (scheduler operators).
    pub conf_changes: u64,
    /// Peer additions scheduled by the membership repair (operators; a retry counts again).
    pub peers_added: u64,
    /// Raft logs made to fail every write and sync (I/O errors).
    pub io_errors: u64,
    /// Stores stopped by a fatal error on a failing disk (each also counts as a crash).
    pub io_fatal: u64,
    /// Times a store's clock started to drift.
    pub drifts: u64,
    /// GC operations (safe point moved up, a round on every running store).
    pub gc_ops: u64,
    /// Stalls of the storage layer's tasks.
    pub stalls: u64,
}

impl std::ops::AddAssign for FaultCounts {
    fn add_assign(&mut self, o: FaultCounts) {
        self.drops += o.drops;
        self.dups += o.dups;
        self.reorders += o.reorders;
        self.cut_off += o.cut_off;
        self.partitions += o.partitions;
        self.isolations += o.isolations;
        self.crashes += o.crashes;
        self.torn += o.torn;
        self.lost_bytes += o.lost_bytes;
        self.restarts += o.restarts;
        self.failed_restarts += o.failed_restarts;
        self.scheduler_crashes += o.scheduler_crashes;
        self.transfers += o.transfers;
        self.splits += o.splits;
        self.conf_changes += o.conf_changes;
        self.peers_added += o.peers_added;
        self.io_errors += o.io_errors;
        self.io_fatal += o.io_fatal;
        self.drifts += o.drifts;
        self.gc_ops += o.gc_ops;
        self.stalls += o.stalls;
    }
}

impl fmt::Display for FaultCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "drops {} dups {} reorders {} cut-off {} partitions {} isolations {} crashes {} \
             (torn {}, {} bytes lost, {} restarts, {} failed) scheduler crashes {} transfers {} \
             splits {} removals {} additions {} io-errors {} (fatal {}) drifts {} gc {} stalls {}",
            self.drops,
            self.dups,
            self.reorders,
            self.cut_off,
            self.partitions,
            self.isolations,
            self.crashes,
            self.torn,
            self.lost_bytes,
            self.restarts,
            self.failed_restarts,
            self.scheduler_crashes,
            self.transfers,
            self.splits,
            self.conf_changes,
            self.peers_added,
            self.io_errors,
            self.io_fatal,
            self.drifts,
            self.gc_ops,
            self.stalls
        )
    }
}

/// A scheduled repair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Repair {
    Heal,
    Restart(u64),
    SchedulerRestart,
    /// Give every region a peer on every store again (after a removal).
    Membership,
    /// Store's clock back to the rate of virtual time.
    Undrift(u64),
}

/// Kinds of disruption, in the order of [`Chaos::weights`].
const KINDS: [&str; 11] = [
    "partition",
    "isolate",
    "crash",
    "scheduler",
    "transfer",
    "split",
    "remove-peer",
    "io-error",
    "drift",
    "gc",
    "stall",
];

/// The widest clock drift drawn, parts per million either way (5%), narrowed further by
/// [`Sim::lease_safe_rates`].
pub const MAX_DRIFT_PPM: u64 = 50_000;

/// The disruptions of one run: their rates, the next one, and the repairs due.
pub struct Chaos {
    on: bool,
    /// Virtual time (ns) of the next disruption.
    next_at: u64,
    /// Longest gap between two disruptions, ns.
    max_gap: u64,
    /// Relative weights of each kind in [`KINDS`].
    weights: [u32; KINDS.len()],
    /// Probability that a crash tears the last unsynced write.
    torn: f64,
    repairs: BTreeMap<(u64, u64), Repair>,
    seq: u64,
    partitioned: bool,
    /// A store's clock drifts (one at a time).
    drifting: bool,
}

impl fmt::Display for Chaos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.on {
            return write!(f, "no chaos");
        }
        write!(
            f,
            "chaos every <= {} ms (weights:",
            self.max_gap / 1_000_000
        )?;
        for (k, w) in KINDS.iter().zip(self.weights) {
            write!(f, " {k} {w}")?;
        }
        write!(f, "), torn {:.2}", self.torn)
    }
}

impl Chaos {
    /// Rates drawn from `rng`; with `on == false` nothing is ever injected.
    pub fn draw(on: bool, rng: &mut StdRng) -> Chaos {
        let mut c = Chaos {
            on,
            next_at: u64::MAX,
            max_gap: 0,
            weights: [0; KINDS.len()],
            torn: 0.0,
            repairs: BTreeMap::new(),
            seq: 0,
            partitioned: false,
            drifting: false,
        };
        if on {
            c.max_gap = rng.gen_range(300..=2_000) * 1_000_000;
            c.weights = [
                rng.gen_range(0..=3),
                rng.gen_range(0..=3),
                rng.gen_range(1..=4),
                rng.gen_range(0..=1),
                rng.gen_range(0..=2),
                rng.gen_range(0..=2),
                rng.gen_range(0..=1),
                rng.gen_range(0..=2),
                rng.gen_range(0..=2),
                rng.gen_range(0..=2),
                rng.gen_range(0..=1),
            ];
            c.torn = rng.gen_range(0.0..=1.0);
            c.next_at = rng.gen_range(0..=c.max_gap);
        }
        c
    }

    /// When the next disruption or repair is due.
    pub fn next_due(&self) -> Option<u64> {
        let repair = self.repairs.keys().next().map(|(at, _)| *at);
        let next = repair.unwrap_or(u64::MAX).min(self.next_at);
        (next != u64::MAX).then_some(next)
    }

    fn schedule(&mut self, at: u64, r: Repair) {
        self.seq += 1;
        self.repairs.insert((at, self.seq), r);
    }
}

impl Sim {
    /// Runs the repairs that are due, then the disruption if it is due.
    pub(crate) fn run_chaos(&mut self) {
        while let Some((&(at, seq), &r)) = self.chaos.repairs.iter().next() {
            if at > self.now {
                break;
            }
            self.chaos.repairs.remove(&(at, seq));
            self.repair(r);
        }
        if self.chaos.next_at <= self.now {
            self.disrupt();
            let gap = self.rng.gen_range(1..=self.chaos.max_gap);
            self.chaos.next_at = self.now + gap;
        }
    }

    /// Repairs everything now and injects nothing more (network faults go on).
    pub(crate) fn calm(&mut self) {
        self.chaos.next_at = u64::MAX;
        self.tasks_stalled_until = 0;
        let repairs: Vec<Repair> = std::mem::take(&mut self.chaos.repairs)
            .into_values()
            .collect();
        for r in repairs {
            self.repair(r);
        }
    }

    fn repair(&mut self, r: Repair) {
        match r {
            Repair::Heal => {
                self.net.heal();
                self.chaos.partitioned = false;
                self.log(format_args!("chaos: partition healed"));
            }
            Repair::SchedulerRestart => {
                self.scheduler.restart();
                self.log(format_args!("chaos: scheduler restarted"));
            }
            Repair::Restart(id) => self.restart_store(id),
            Repair::Undrift(id) => {
                let now = self.now;
                self.stores[(id - 1) as usize].set_rate(now, crate::node::PPM);
                self.chaos.drifting = false;
                self.log(format_args!("chaos: s{id}'s clock back in step"));
            }
            Repair::Membership => {
                // Until every region has all its peers again, while the load goes on.
                if !self.repair_membership() && self.chaos.next_at != u64::MAX {
                    let at = self.now + 500_000_000;
                    self.chaos.schedule(at, Repair::Membership);
                }
            }
        }
    }

    fn disrupt(&mut self) {
        let w = self.chaos.weights;
        let total: u32 = w.iter().sum();
        let mut pick = self.rng.gen_range(0..total.max(1));
        let mut kind = 0;
        while kind < KINDS.len() - 1 && pick >= w[kind] {
            pick -= w[kind];
            kind += 1;
        }
        let n = self.stores.len() as u64;
        // A store on a failing disk is as good as down: it stops at its next write.
        let down = self
            .stores
            .iter()
            .filter(|s| !s.is_up() || s.io_failing())
            .count() as u64;
        let heal_at = self.now + self.rng.gen_range(100..=2_000) * 1_000_000;
        match kind {
            0 | 1 if !self.chaos.partitioned => {
                let side: Vec<bool> = if kind == 1 {
                    // Isolate the latest leader half the time, else any store.
                    let latest = self.leaders.iter().next_back().map(|(_, s)| *s);
                    let victim = match latest {
                        Some(s) if self.rng.gen_bool(0.5) => s,
                        _ => self.rng.gen_range(1..=n),
                    };
                    (1..=n).map(|s| s == victim).collect()
                } else {
                    let mut side: Vec<bool> = (1..=n).map(|_| self.rng.gen_bool(0.5)).collect();
                    let flip = self.rng.gen_range(0..n as usize);
                    if side.iter().all(|b| *b) || side.iter().all(|b| !*b) {
                        side[flip] = !side[flip];
                    }
                    side
                };
                // A partition cuts one way only a quarter of the time.
                let one_way = kind == 0 && self.rng.gen_bool(0.25);
                for a in 1..=n {
                    for b in 1..=n {
                        if side[(a - 1) as usize] && !side[(b - 1) as usize] {
                            self.net.set_cut(a, b, true);
                            self.net.set_cut(b, a, !one_way);
                        }
                    }
                }
                self.chaos.partitioned = true;
                if kind == 0 {
                    self.faults.partitions += 1;
                } else {
                    self.faults.isolations += 1;
                }
                let a: Vec<u64> = (1..=n).filter(|s| side[(s - 1) as usize]).collect();
                let b: Vec<u64> = (1..=n).filter(|s| !side[(s - 1) as usize]).collect();
                let what = if kind == 1 { "isolate" } else { "partition" };
                let dir = if one_way { " (one way)" } else { "" };
                self.log(format_args!(
                    "chaos: {what} {a:?} | {b:?}{dir} until {}us",
                    heal_at / 1000
                ));
                self.chaos.schedule(heal_at, Repair::Heal);
            }
            2 | 7 if down < (n - 1) / 2 => {
                let up: Vec<u64> = (1..=n)
                    .filter(|s| {
                        let s = &self.stores[(s - 1) as usize];
                        s.is_up() && !s.io_failing()
                    })
                    .collect();
                let id = up[self.rng.gen_range(0..up.len())];
                if kind == 7 {
                    // The store stops at its next raft log write (raftstore::fatal); if it
                    // has not by `heal_at`, it is stopped then, and restarted on a healthy
                    // disk either way.
                    self.stores[(id - 1) as usize].fail_io();
                    self.faults.io_errors += 1;
                    self.log(format_args!(
                        "chaos: s{id}'s raft log fails every write from now on, restart at \
                         {}us",
                        heal_at / 1000
                    ));
                } else {
                    let torn = self.rng.gen_bool(self.chaos.torn);
                    self.crash_store(id, torn);
                }
                self.chaos.schedule(heal_at, Repair::Restart(id));
            }
            3 if self.scheduler.is_up() => {
                self.scheduler.crash();
                self.faults.scheduler_crashes += 1;
                self.log(format_args!(
                    "chaos: scheduler crashed until {}us",
                    heal_at / 1000
                ));
                self.chaos.schedule(heal_at, Repair::SchedulerRestart);
            }
            4 => self.op_transfer_leader(),
            10 => {
                // The server's async workers stall (a long pause of the process's
                // runtime): no storage-layer future is polled until then, while raft
                // goes on; a request resumes between its read and its write.
                let until = self.now + self.rng.gen_range(100..=1_500) * 1_000_000;
                self.tasks_stalled_until = self.tasks_stalled_until.max(until);
                self.faults.stalls += 1;
                self.log(format_args!(
                    "chaos: the storage layer's tasks stall until {}us",
                    until / 1000
                ));
            }
            9 => {
                self.faults.gc_ops += 1;
                self.op_gc();
            }
            5 => self.op_split(),
            6 => {
                if self.op_remove_peer() {
                    self.chaos.schedule(heal_at, Repair::Membership);
                }
            }
            8 if !self.chaos.drifting => {
                let id = self.rng.gen_range(1..=n);
                let (lo, hi) = self.lease_safe_rates(id);
                let (lo, hi) = (
                    lo.max(crate::node::PPM - MAX_DRIFT_PPM),
                    hi.min(crate::node::PPM + MAX_DRIFT_PPM),
                );
                if lo > hi {
                    self.log(format_args!(
                        "chaos: nothing (no lease-safe drift for s{id})"
                    ));
                    return;
                }
                let ppm = self.rng.gen_range(lo..=hi);
                // Drift lasts longer than the other faults: up to 10 s.
                let until = self.now + self.rng.gen_range(500..=10_000) * 1_000_000;
                let now = self.now;
                self.stores[(id - 1) as usize].set_rate(now, ppm);
                self.chaos.drifting = true;
                self.faults.drifts += 1;
                self.log(format_args!(
                    "chaos: s{id}'s clock runs at {ppm} ppm of virtual time until {}us",
                    until / 1000
                ));
                self.chaos.schedule(until, Repair::Undrift(id));
            }
            _ => self.log(format_args!(
                "chaos: nothing ({} not possible now)",
                KINDS[kind]
            )),
        }
    }

    /// Crashes store `id` (see [`crate::node::SimStore::crash`]); what was in flight to or
    /// from it is lost.
    pub(crate) fn crash_store(&mut self, id: u64, torn: bool) {
        let lost = self.stores[(id - 1) as usize].crash(torn);
        self.net.set_down(id, true);
        let dropped = self.net.drop_store(id);
        self.faults.crashes += 1;
        self.faults.torn += u64::from(torn);
        self.faults.lost_bytes += lost;
        self.log(format_args!(
            "chaos: crash s{id} (torn: {torn}): log lost {lost} bytes, {dropped} messages in \
             flight dropped"
        ));
    }

    /// Restarts store `id` if it is down. A store that cannot start on what its disk kept
    /// (an error, or a panic while loading) is a finding: it stays down and the run fails.
    pub(crate) fn restart_store(&mut self, id: u64) {
        if self.stores[(id - 1) as usize].io_failing() {
            // Still running on its failing disk (it wrote nothing since): stop it, as an
            // operator replacing the disk would.
            self.crash_store(id, false);
        }
        let store = &mut self.stores[(id - 1) as usize];
        if store.is_up() {
            return;
        }
        let tick = store.tick_ns();
        let phase = self.rng.gen_range(1..=tick);
        let now = self.now;
        let started = catch_unwind(AssertUnwindSafe(|| store.restart(phase, now)));
        let failure = match started {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e),
            Err(panic) => Some(panic_message(&panic)),
        };
        match failure {
            None => {
                self.net.set_down(id, false);
                self.faults.restarts += 1;
                self.log(format_args!("chaos: restart s{id}"));
            }
            Some(e) => {
                // The parts a failed build left are dropped; the store stays down.
                self.stores[(id - 1) as usize].live = None;
                self.faults.failed_restarts += 1;
                self.log(format_args!("chaos: s{id} cannot restart: {e}"));
                self.violations.push(format!(
                    "store s{id} cannot restart on what its disk kept after a crash: {e}"
                ));
            }
        }
    }
}

/// The message of a caught panic.
pub fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else if let Some(s) = panic.downcast_ref::<&str>() {
        s.to_string()
    } else {
        "(no message)".into()
    }
}

impl Sim {
    /// Store `id`, whose raft log fails every write, panicked in a step with `msg`: it
    /// stopped, as the process would. Its disk keeps what it had synced (a crash, not
    /// torn); the restart already scheduled brings it back on a healthy disk.
    pub(crate) fn io_stopped(&mut self, id: u64, msg: &str) {
        self.faults.io_fatal += 1;
        let first = msg.lines().next().unwrap_or_default();
        self.log(format_args!(
            "chaos: s{id} stopped on its failing disk: {first}"
        ));
        self.crash_store(id, false);
    }
}

impl Sim {
    /// The clock rates (ppm of virtual time, exclusive of the bounds' rounding) store `id`
    /// may run at while the others run at the rate of virtual time, such that no leader
    /// lease outlives the earliest election that could replace its leader:
    /// - `id` leads: its lease (its clock) must end before any other store campaigns,
    ///   `lease(id) / rate < earliest_campaign(f)` for every other store `f`;
    /// - another store leads: its lease must end before `id` campaigns,
    ///   `lease(l) < earliest_campaign(id) / rate`.
    ///
    /// Leases are not used to serve reads in the simulation (every read goes through
    /// ReadIndex), but the drift is kept where a lease read would still be safe, as
    /// production assumes of its clocks.
    pub(crate) fn lease_safe_rates(&self, id: u64) -> (u64, u64) {
        let ppm = u128::from(crate::node::PPM);
        let me = &self.stores[(id - 1) as usize];
        let others = self.stores.iter().filter(|s| s.id != id);
        let min_campaign = others.clone().map(|s| s.earliest_campaign_ns()).min();
        let max_lease = others.map(|s| s.lease_ns()).max();
        let (Some(min_campaign), Some(max_lease)) = (min_campaign, max_lease) else {
            return (crate::node::PPM, crate::node::PPM);
        };
        // rate > lease(id) / min_campaign, strictly.
        let lo = u128::from(me.lease_ns()) * ppm / u128::from(min_campaign) + 1;
        // rate < earliest_campaign(id) / max_lease, strictly.
        let hi =
            (u128::from(me.earliest_campaign_ns()) * ppm / u128::from(max_lease)).saturating_sub(1);
        (
            u64::try_from(lo).unwrap_or(u64::MAX),
            u64::try_from(hi).unwrap_or(0),
        )
    }
}
