//! The event loop: one seeded RNG, virtual time, and every runnable component stepped one
//! at a time on the calling thread.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};

use proto::metapb;
use raftstore::Config;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use history::Op;

use crate::chaos::{Chaos, FaultCounts};
use crate::client::{self, Client, ClientState, OpRecord};
use crate::net::{self, Fate, Net, NetFaults};
use crate::node::{Part, SimStore};
use crate::sched::SimScheduler;
use crate::tasks::Tasks;
use crate::{Outcome, SimConfig};

/// What can take the next step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Runnable {
    Store(u64, Part),
    Deliver,
    Client(usize),
    /// A fault to inject, or one to repair, is due.
    Chaos,
    /// Tasks of the executor were woken: poll them.
    Tasks,
}

/// Which phase the run is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Clients issue their workload.
    Load,
    /// Clients finish what they started and issue nothing new.
    Drain,
    /// No client acts; the cluster runs on (idle regions go to sleep).
    Idle,
    /// Each client reads back every key.
    Verify,
}

/// A simulated cluster and its clients.
pub struct Sim {
    pub(crate) cfg: SimConfig,
    pub(crate) rng: StdRng,
    /// Virtual time, ns.
    pub(crate) now: u64,
    pub(crate) step: u64,
    pub(crate) stores: Vec<SimStore>,
    pub(crate) net: Net,
    pub(crate) clients: Vec<Client>,
    /// The shared hot keys.
    pub(crate) keys: Vec<Vec<u8>>,
    /// The clients' region cache (see [`Sim::refresh_regions`]).
    pub(crate) regions: Vec<metapb::Region>,
    /// The new peer the membership repair last asked for, per region.
    pub(crate) pending_adds: std::collections::BTreeMap<u64, metapb::Peer>,
    pub(crate) history: Vec<OpRecord>,
    pub(crate) trace: String,
    pub(crate) leaders: BTreeSet<(u64, u64)>,
    pub(crate) violations: Vec<String>,
    delivered: u64,
    /// `MsgTimeoutNow` messages delivered: leader transfers under way.
    timeout_now: u64,
    pub(crate) phase: Phase,
    /// Index in `history` of the first read-back operation.
    pub(crate) verify_from: usize,
    pub(crate) scheduler: Arc<SimScheduler>,
    pub(crate) chaos: Chaos,
    pub(crate) faults: FaultCounts,
    /// What the linearizability checker covered, or why it found nothing.
    pub(crate) check_summary: String,
    /// A step panicked: the run stopped.
    panicked: bool,
    /// Probability that an attempt goes to a random store instead of the known leader (a
    /// client with a stale region cache).
    pub(crate) stale_route: f64,
    /// The futures of the storage layer and of the clients' attempts ([`crate::tasks`]).
    pub(crate) tasks: Tasks,
    /// Virtual time (ns) until which no task is polled (a stall of the server's runtime).
    pub(crate) tasks_stalled_until: u64,
    /// What the transactional clients share, if any run ([`crate::txn_client`]).
    pub(crate) txn_env: Option<std::rc::Rc<crate::txn_client::TxnEnv>>,
    /// The bank workload, if it runs ([`crate::bank`]).
    pub(crate) bank: Option<std::rc::Rc<crate::bank::Bank>>,
    /// The list-append workload, if it runs ([`crate::appends`]).
    pub(crate) lists: Option<std::rc::Rc<crate::appends::Lists>>,
    /// What the GC operations did ([`crate::gc`]).
    pub(crate) gc: std::rc::Rc<std::cell::RefCell<crate::gc::GcStats>>,
    /// Trace lines of the GC rounds.
    pub(crate) gc_trace: std::rc::Rc<std::cell::RefCell<Vec<String>>>,
    _dir: tempfile::TempDir,
}

/// The region every store starts with: all keys, one peer per store (peer id = store id).
fn initial_region(stores: u64) -> metapb::Region {
    metapb::Region {
        id: 1,
        region_epoch: Some(metapb::RegionEpoch {
            conf_ver: raftstore::util::INIT_EPOCH_CONF_VER,
            version: raftstore::util::INIT_EPOCH_VER,
        }),
        peers: (1..=stores)
            .map(|s| metapb::Peer {
                id: s,
                store_id: s,
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

/// The store configuration of the simulation, with this store's tick period.
fn store_config(tick: Duration) -> Config {
    let mut cfg = Config::for_tests();
    cfg.raft_base_tick_interval = tick;
    // raft-rs draws each election timeout from [min, max) with `rand::thread_rng()`, which
    // no seed controls. raftstore sets min = election ticks + 1, so max = election + 2
    // leaves one value: the timeout is fixed, and what breaks the symmetry between stores
    // is their tick phase and period, drawn from the seed.
    cfg.raft_max_election_timeout_ticks = cfg.raft_election_timeout_ticks + 2;
    cfg.max_leader_lease = cfg.default_leader_lease();
    // As in production: idle regions sleep (tick-driven, so on virtual time too).
    cfg.hibernate_regions = true;
    // The pollers write their own KV batches: the simulator steps every part on one
    // thread, and apply threads are not among the parts it steps. The follow-up of a
    // written batch (`Poller::finish_round`) is the same code either way.
    cfg.apply_pool_size = Some(0);
    cfg
}

/// Where the raft logs go: tmpfs if there is one (the run never fsyncs a real disk).
fn temp_dir() -> tempfile::TempDir {
    let shm = std::path::Path::new("/dev/shm");
    let b = tempfile::Builder::new().prefix("tessera-sim").clone();
    if shm.is_dir() {
        if let Ok(d) = b.tempdir_in(shm) {
            return d;
        }
    }
    b.tempdir().expect("temp dir")
}

impl Sim {
    /// Builds the cluster of `cfg.stores` stores and `cfg.clients` clients for `seed`.
    pub fn new(seed: u64, cfg: SimConfig) -> Sim {
        let mut rng = StdRng::seed_from_u64(seed);
        let dir = temp_dir();
        let region = initial_region(cfg.stores);
        let base = Instant::now();
        let scheduler = Arc::new(SimScheduler::new());
        let mut trace = String::new();
        let net_faults = if cfg.faults {
            NetFaults::draw(&mut rng)
        } else {
            NetFaults::none()
        };
        let chaos = Chaos::draw(cfg.faults, &mut rng);
        let stale_route = if cfg.faults {
            rng.gen_range(0.0..0.3)
        } else {
            0.0
        };
        let _ = writeln!(
            trace,
            "faults: {net_faults:?}, {chaos}, stale routes {stale_route:.3}"
        );
        let mut stores = Vec::new();
        for id in 1..=cfg.stores {
            // Period within ±10% of 50 ms, phase within one period: drawn, not raced.
            let tick_ms = rng.gen_range(45..=55u64);
            let phase = rng.gen_range(1..=tick_ms * 1_000_000);
            let _ = writeln!(
                trace,
                "store s{id} tick={tick_ms}ms first_tick={}us",
                phase / 1000
            );
            let store = SimStore::create(
                id,
                store_config(Duration::from_millis(tick_ms)),
                &region,
                dir.path(),
                base,
                phase,
                scheduler.clone(),
            )
            .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
            stores.push(store);
        }
        let clients = (0..cfg.clients).map(Client::new).collect();
        let keys = (0..cfg.keys)
            .map(|k| format!("k{k}").into_bytes())
            .collect();
        let mut sim = Sim {
            net: Net::new(cfg.min_delay_us * 1000, cfg.max_delay_us * 1000, net_faults),
            cfg,
            rng,
            now: 0,
            step: 0,
            stores,
            clients,
            keys,
            regions: vec![region],
            pending_adds: Default::default(),
            history: Vec::new(),
            trace,
            leaders: BTreeSet::new(),
            violations: Vec::new(),
            delivered: 0,
            timeout_now: 0,
            phase: Phase::Load,
            verify_from: usize::MAX,
            scheduler,
            chaos,
            faults: FaultCounts::default(),
            check_summary: String::new(),
            panicked: false,
            stale_route,
            tasks: Tasks::default(),
            tasks_stalled_until: 0,
            txn_env: None,
            bank: None,
            lists: None,
            gc: Default::default(),
            gc_trace: Default::default(),
            _dir: dir,
        };
        sim.start_txn_clients();
        sim
    }

    /// Store `id`, if there is one.
    pub(crate) fn store(&self, id: u64) -> Option<&SimStore> {
        self.stores.get((id.wrapping_sub(1)) as usize)
    }

    pub(crate) fn log(&mut self, line: std::fmt::Arguments<'_>) {
        let _ = writeln!(self.trace, "{:>9}us #{} {line}", self.now / 1000, self.step);
    }

    /// Runs the load for `steps` steps, lets clients finish, reads every key back, and
    /// returns what happened.
    pub fn run(mut self, seed: u64, steps: u64) -> Outcome {
        if self.phases(steps) {
            self.check_history();
        }
        self.refresh_regions();
        let regions = self
            .regions
            .iter()
            .map(|r| {
                let e = r.region_epoch.unwrap_or_default();
                let peers: Vec<u64> = r.peers.iter().map(|p| p.store_id).collect();
                format!(
                    "r{} [{}, {}) v{} c{} on {peers:?}",
                    r.id,
                    client::show(&r.start_key),
                    client::show(&r.end_key),
                    e.version,
                    e.conf_ver
                )
            })
            .collect::<Vec<_>>();
        self.log(format_args!("regions at the end: {}", regions.join("; ")));
        let conf_changes_applied = self
            .regions
            .iter()
            .map(|r| {
                let v = r.region_epoch.unwrap_or_default().conf_ver;
                v.saturating_sub(raftstore::util::INIT_EPOCH_CONF_VER)
            })
            .max()
            .unwrap_or(0);
        let txn = self
            .txn_env
            .as_ref()
            .map(|e| e.stats.borrow().clone())
            .unwrap_or_default();
        let list_appends_committed = self.lists.as_ref().map_or(0, |l| {
            let h = l.history.borrow();
            h.txns()
                .iter()
                .filter(|t| t.status == history::list_append::TxnStatus::Committed)
                .filter(|t| {
                    t.mops
                        .iter()
                        .any(|m| matches!(m, history::list_append::Mop::Append { .. }))
                })
                .count()
        });
        Outcome {
            gc: self.gc.borrow().clone(),
            txn,
            list_appends_committed,
            regions: self.regions.len(),
            conf_changes_applied,
            leader_transfers: self.timeout_now,
            seed,
            steps: self.step,
            virtual_time: Duration::from_nanos(self.now),
            history: self.history,
            trace: self.trace,
            leaders: self.leaders,
            violations: self.violations,
            delivered: self.delivered,
            faults: self.faults,
            check: self.check_summary,
        }
    }

    /// Load, drain, idle, verify; false if a step panicked (the run stops there: the panic
    /// is its violation).
    fn phases(&mut self, steps: u64) -> bool {
        self.run_phase(steps);
        if self.panicked {
            return false;
        }
        // Faults stop here (the per-message ones go on): everything heals, every store
        // and the scheduler run again, so every client can finish and read back.
        self.calm();
        if let Some(env) = &self.txn_env {
            env.load.set(false);
        }
        self.phase = Phase::Drain;
        self.log(format_args!("phase drain"));
        self.run_phase(self.cfg.settle_steps);
        if self.panicked {
            return false;
        }
        let unfinished = self
            .clients
            .iter()
            .filter(|c| !matches!(c.state, ClientState::Done | ClientState::Idle { .. }))
            .count();
        if unfinished > 0 {
            self.violations.push(format!(
                "{unfinished} clients still had an operation in flight after draining"
            ));
        }
        if !self.txn_clients_done() {
            self.violations.push(
                "transactional clients still had a transaction under way after draining".into(),
            );
        }
        self.phase = Phase::Idle;
        self.log(format_args!("phase idle"));
        let idle_end = self.now + self.cfg.idle_ms * 1_000_000;
        self.run_until(idle_end, self.cfg.settle_steps);
        if self.panicked {
            return false;
        }
        self.phase = Phase::Verify;
        self.log(format_args!("phase verify"));
        self.verify_from = self.history.len();
        for c in &mut self.clients {
            c.script = Some(
                self.keys
                    .iter()
                    .rev()
                    .map(|k| Op::Get { key: k.clone() })
                    .collect(),
            );
            if matches!(c.state, ClientState::Done) {
                c.state = ClientState::Idle { at: 0 };
            }
        }
        self.run_phase(self.cfg.settle_steps);
        if self.panicked {
            return false;
        }
        for c in &self.clients {
            if !matches!(c.state, ClientState::Done) {
                self.violations.push(format!(
                    "client c{} did not finish reading the keys back",
                    c.id
                ));
            }
        }
        true
    }

    /// Runs `steps` more steps (or until nothing is left to do in the drain and verify
    /// phases).
    fn run_phase(&mut self, steps: u64) {
        self.run_until(u64::MAX, steps);
    }

    /// Runs until virtual time `until` (ns), at most `steps` steps, or (when draining or
    /// verifying) until every client is done.
    fn run_until(&mut self, until: u64, steps: u64) {
        let end = self.step + steps;
        let mut runnable = Vec::new();
        while self.step < end && self.now < until {
            if matches!(self.phase, Phase::Drain | Phase::Verify)
                && self
                    .clients
                    .iter()
                    .all(|c| matches!(c.state, ClientState::Done))
                && self.txn_clients_done()
            {
                return;
            }
            runnable.clear();
            self.collect_runnable(&mut runnable);
            if runnable.is_empty() {
                self.advance_time();
                continue;
            }
            let pick = runnable[self.rng.gen_range(0..runnable.len())];
            self.step += 1;
            // A panic in the real code is a finding: the run stops and reports it.
            if let Err(p) = catch_unwind(AssertUnwindSafe(|| self.run_one(pick))) {
                let msg = crate::chaos::panic_message(&p);
                if let Runnable::Store(id, _) = pick {
                    if self.stores[(id - 1) as usize].io_failing() && designed_io_stop(&msg) {
                        // The injected I/O error stopped the store, as it stops the
                        // process in production: a crash, not a finding.
                        self.io_stopped(id, &msg);
                        self.collect_sent();
                        continue;
                    }
                }
                self.log(format_args!("PANIC in {pick:?}: {msg}"));
                self.violations
                    .push(format!("step {} ({pick:?}) panicked: {msg}", self.step));
                self.panicked = true;
                return;
            }
            self.collect_sent();
        }
    }

    fn collect_runnable(&self, out: &mut Vec<Runnable>) {
        let mut parts = Vec::new();
        for s in &self.stores {
            s.runnable(self.now, &mut parts);
        }
        out.extend(parts.into_iter().map(|(s, p)| Runnable::Store(s, p)));
        if self.net.next_at().is_some_and(|at| at <= self.now) {
            out.push(Runnable::Deliver);
        }
        if self.chaos.next_due().is_some_and(|at| at <= self.now) {
            out.push(Runnable::Chaos);
        }
        for c in &self.clients {
            if c.has_response() || c.next_time().is_some_and(|t| t <= self.now) {
                out.push(Runnable::Client(c.id));
            }
        }
        if self.tasks.has_ready() && self.now >= self.tasks_stalled_until {
            out.push(Runnable::Tasks);
        }
    }

    /// Nothing can run now: jump to the next timer or arrival.
    fn advance_time(&mut self) {
        let mut next = u64::MAX;
        for s in &self.stores {
            next = next.min(s.next_timer());
        }
        if let Some(at) = self.net.next_at() {
            next = next.min(at);
        }
        if let Some(at) = self.chaos.next_due() {
            next = next.min(at);
        }
        for c in &self.clients {
            if let Some(t) = c.next_time() {
                next = next.min(t);
            }
        }
        if let Some(at) = self.tasks.next_timer() {
            next = next.min(at);
        }
        if self.tasks.has_ready() && self.tasks_stalled_until > self.now {
            next = next.min(self.tasks_stalled_until);
        }
        assert!(
            next != u64::MAX && next > self.now,
            "simulation stalled at {}ns",
            self.now
        );
        self.now = next;
        for s in &self.stores {
            s.set_time(self.now);
        }
        self.scheduler.set_now(self.now);
        self.tasks.fire_timers(self.now);
    }

    fn run_one(&mut self, pick: Runnable) {
        match pick {
            Runnable::Store(id, part) => {
                let now = self.now;
                self.stores[(id - 1) as usize].step(part, now);
            }
            Runnable::Deliver => {
                let m = self.net.pop_due(self.now).expect("due");
                let line = net::describe(&m);
                if self.net.blocked(m.from, m.msg.to_peer.store_id) {
                    self.faults.cut_off += 1;
                    self.log(format_args!("cut off: {line}"));
                    return;
                }
                self.delivered += 1;
                self.log(format_args!("{line}"));
                let raft = &m.msg.message;
                if m.msg.extra.is_none()
                    && matches!(
                        raft.get_msg_type(),
                        raft::eraftpb::MessageType::MsgAppend
                            | raft::eraftpb::MessageType::MsgHeartbeat
                    )
                {
                    self.leaders.insert((raft.term, m.from));
                }
                if m.msg.extra.is_none()
                    && raft.get_msg_type() == raft::eraftpb::MessageType::MsgTimeoutNow
                {
                    self.timeout_now += 1;
                }
                let to = m.msg.to_peer.store_id;
                if let Some(live) = self
                    .stores
                    .get((to.wrapping_sub(1)) as usize)
                    .and_then(|s| s.live.as_ref())
                {
                    // A full mailbox drops it, as the real router does; raft resends.
                    let _ = live.parts.router.send_raft_message(m.msg);
                }
            }
            Runnable::Client(c) => self.step_client(c),
            Runnable::Chaos => self.run_chaos(),
            Runnable::Tasks => {
                self.tasks.run_until_stalled();
                self.collect_txn_trace();
            }
        }
    }

    /// Moves what every store sent in this step onto the wire.
    fn collect_sent(&mut self) {
        for i in 0..self.stores.len() {
            let from = self.stores[i].id;
            for m in self.stores[i].take_outbox() {
                let to = m.to_peer.store_id;
                let kind = m.message.get_msg_type();
                let what = match self.net.send(self.now, from, m, &mut self.rng) {
                    Fate::Sent => continue,
                    Fate::Dropped => {
                        self.faults.drops += 1;
                        "drop"
                    }
                    Fate::Duplicated => {
                        self.faults.dups += 1;
                        "duplicate"
                    }
                    Fate::Reordered => {
                        self.faults.reorders += 1;
                        "reorder"
                    }
                };
                self.log(format_args!("net {what} s{from}->s{to} {kind:?}"));
            }
        }
    }
}

/// Whether a panic (message with its location, see [`crate::exec`]) is how the store is
/// designed to stop on a failed raft log write: `raftstore::fatal`, or raft-engine's own
/// panic when a sync fails (`LogFileWriter::sync`, file_pipe_log/log_file.rs: it panics
/// rather than risk losing data). Any other panic, even on a failing disk, is a finding.
fn designed_io_stop(msg: &str) -> bool {
    let at = crate::exec::location_of(msg).unwrap_or_default();
    msg.starts_with(raftstore::fatal::FATAL_PREFIX)
        || (at.contains("raft-engine") && at.contains("file_pipe_log/log_file.rs"))
}

/// The number of store threads in this process whose names the real store gives them
/// (see `raftstore::store`). A simulated run must not start any.
pub fn store_threads() -> usize {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .filter_map(|t| t.ok())
        .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
        .filter(|name| {
            let n = name.trim();
            n.starts_with("raft-poller")
                || n.starts_with("raft-log-writ")
                || n.starts_with("region-worker")
                || n.starts_with("raft-gc-worker")
                || n.starts_with("split-check")
                || n.starts_with("pd-worker")
        })
        .count()
}

#[cfg(test)]
mod tests {
    use super::designed_io_stop;

    #[test]
    fn only_the_designed_stops_on_a_failing_disk_are_crashes() {
        assert!(designed_io_stop(
            "fatal error, the store stops: raft log write failed: injected disk fault \
             [at crates/raftstore/src/storage/write.rs:103]"
        ));
        assert!(designed_io_stop(
            "called `Result::unwrap()` on an `Err` value: injected disk fault [at \
             /root/.cargo/registry/src/x/raft-engine-0.4.2/src/file_pipe_log/log_file.rs:125]"
        ));
        // An unwrap of an I/O error in Tessera's own code is a finding, not a crash.
        assert!(!designed_io_stop(
            "called `Result::unwrap()` on an `Err` value: injected disk fault \
             [at crates/raftstore/src/worker/raftlog_gc.rs:10]"
        ));
        assert!(!designed_io_stop(
            "index out of bounds [at crates/raftstore/src/peer/mod.rs:1]"
        ));
    }
}
