//! A deterministic simulation of a small Tessera cluster: the real raftstore code, on one
//! thread, under virtual time and one seeded RNG. The same seed gives the same run, byte
//! for byte, so a failure found by a seed can be replayed.
//!
//! # What it owns
//! - [`node`]: a store as the real raftstore's parts ([`raftstore::store::StoreParts`]:
//!   pollers, log writer, region / raft-log-gc / split-check / pd runners and their
//!   channels), built without threads, on a MemEngine and a raft-engine log in a temp
//!   directory, with its own [`raftstore::clock::ManualClock`];
//! - [`net`]: the transport the stores send through, and the messages in flight with their
//!   seeded delays (FIFO per link) and faults (drop, duplicate, reorder, cut links);
//! - [`chaos`]: partitions, isolation, store crashes and restarts, scheduler crashes, at
//!   drawn times; [`sched`]: the scheduler that can crash;
//! - [`ops`]: cluster operations (leader transfers, splits, conf changes) and the
//!   clients' region cache;
//! - the server crate's storage layer on every store, rebuilt at each restart:
//!   `server::storage::RawStorage` and `TxnStorage` over the store's router (a
//!   [`node::SimStore`] holds them), and `server::gc_worker::GcWorker` rounds ([`gc`]);
//! - [`tasks`]: the deterministic single-threaded executor their futures (and the
//!   clients' requests) run on, with timers in virtual time;
//! - [`client`]: raw clients as state machines on shared hot keys (put, get, delete,
//!   compare-and-swap through `RawStorage`), and their history;
//! - [`txn_client`]: a minimal Percolator client (async fns on [`tasks`]: timestamps from
//!   the scheduler's oracle, prewrite / commit, lock resolution, region-error retries), on
//!   which run the bank workload ([`bank`]) and the list-append workload ([`appends`]);
//! - [`gc`]: the GC safe point as a cluster operation;
//! - [`check`]: linearizability and lost-write checks of the raw history, the bank's
//!   snapshots (`history::bank`) and the list-append history's snapshot isolation
//!   (`history::list_append`), shortened reports;
//! - [`exec`]: the thread each store incarnation's work runs on, one job at a time;
//! - [`world`]: the event loop.
//!
//! # How an event flows
//! The loop lists what can run now: a poller with mail or a due tick, a writer or worker
//! with a queued task, a message whose delivery time has come, a client whose timer fired
//! or whose answer arrived. It picks one with the RNG and runs one step of it: a poller
//! round ([`raftstore::poller::Poller::step`]), a writer round
//! ([`raftstore::storage::write::LogWriter::write_round`]), one worker task, one delivery
//! (into the destination store's router, i.e. its poller's mailbox), one client action
//! (start an attempt as a task, take an answer, retry), or a round of the executor (poll
//! every task a callback or a timer woke, in wake order). Whatever the step sent goes
//! from the store's outbox onto the wire with a delay drawn from the RNG. When nothing can
//! run, virtual time jumps to the next timer or arrival and every store's clock is set to
//! it. Processing takes no virtual time.
//!
//! # Where nondeterminism was, and what replaced it
//! - time: every behaviour of a store reads its [`raftstore::clock::Clock`];
//! - raft-rs's randomized election timeout (`rand::thread_rng()`): the range is set to one
//!   value, and each store's tick period (45–55 ms) and phase are drawn from the seed;
//! - thread scheduling: the store starts no thread; the RNG orders every step, and a store's
//!   step runs on its incarnation's own thread while the simulator waits ([`exec`]);
//! - hash map order in the poller: fixed hashers ([`raftstore::util::DetHashMap`]);
//! - the local reader's lease check reads `Instant::now()` (raftstore's local_reader.rs):
//!   the storage layer here is built on the store's own router, which has no local reader,
//!   so every read goes through ReadIndex;
//! - the storage layer's futures: polled by [`tasks`] on this thread, woken by raftstore's
//!   callbacks (which only enqueue); no tokio runtime. Its `spawn_blocking` paths are not
//!   taken (raw get / put / delete / CAS never use them, transactional commands name at
//!   most a few keys, ResolveLock names its key, and GC runs with `GcConfig::inline`); raw
//!   values carry no TTL, so the wall clock (`value::now_secs`) decides nothing;
//! - timestamps: the simulated scheduler's oracle, whose physical part is virtual time.

pub mod appends;
pub mod bank;
pub mod chaos;
pub mod check;
pub mod client;
pub mod exec;
pub mod gc;
pub mod net;
pub mod node;
pub mod ops;
pub mod sched;
pub mod tasks;
pub mod txn_client;
mod workload;
pub mod world;

use std::collections::BTreeSet;
use std::time::Duration;

pub use chaos::FaultCounts;
pub use client::{OpRecord, OpResult};
use history::Op;

/// The shape of a simulated run.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Stores (each holds a peer of the one region).
    pub stores: u64,
    /// Concurrent clients.
    pub clients: usize,
    /// Hot keys every client works on.
    pub keys: usize,
    /// Fraction of operations that are puts.
    pub put_ratio: f64,
    /// Fraction of operations that are deletes.
    pub delete_ratio: f64,
    /// Fraction of operations that are compare-and-swaps (the rest are gets).
    pub cas_ratio: f64,
    /// Bank clients (transactions through the stores' TxnStorage; 0: no bank).
    pub bank_clients: usize,
    /// Bank accounts.
    pub accounts: usize,
    /// List-append clients (transactions checked for snapshot isolation; 0: none).
    pub list_clients: usize,
    /// Lists they append to.
    pub lists: usize,
    /// Inject faults (network faults, partitions, crashes; rates drawn from the seed).
    pub faults: bool,
    /// Longest pause of a client between two operations, ms (drawn from 0).
    pub think_ms: u64,
    /// One-way network delay range, µs.
    pub min_delay_us: u64,
    /// See `min_delay_us`.
    pub max_delay_us: u64,
    /// An operation without an answer after this long (virtual) has an unknown outcome.
    pub op_timeout_ms: u64,
    /// Attempts before an operation that keeps meeting definite errors fails.
    pub max_attempts: u32,
    /// Steps allowed for draining, idling and the final read-back, each.
    pub settle_steps: u64,
    /// Virtual time the cluster runs without clients before the read-back, ms: long enough
    /// for idle regions to hibernate, so the read-back also wakes them.
    pub idle_ms: u64,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            stores: 3,
            clients: 4,
            keys: 3,
            put_ratio: 0.5,
            delete_ratio: 0.1,
            cas_ratio: 0.15,
            bank_clients: 2,
            accounts: 5,
            list_clients: 2,
            lists: 4,
            faults: true,
            think_ms: 20,
            min_delay_us: 200,
            max_delay_us: 5_000,
            op_timeout_ms: 3_000,
            max_attempts: 50,
            settle_steps: 20_000,
            idle_ms: 3_000,
        }
    }
}

/// What a run produced.
#[derive(Debug)]
pub struct Outcome {
    /// The seed.
    pub seed: u64,
    /// Steps taken.
    pub steps: u64,
    /// Virtual time at the end.
    pub virtual_time: Duration,
    /// Every client operation, in call order.
    pub history: Vec<OpRecord>,
    /// Every delivered message and client event, one per line.
    pub trace: String,
    /// (term, store) of every store seen sending appends or heartbeats: the leaders.
    pub leaders: BTreeSet<(u64, u64)>,
    /// What the checks found wrong (empty: the run passed).
    pub violations: Vec<String>,
    /// Messages delivered.
    pub delivered: u64,
    /// The faults injected.
    pub faults: FaultCounts,
    /// What the linearizability check covered.
    pub check: String,
    /// Regions at the end (more than one: splits took effect).
    pub regions: usize,
    /// What the transactional clients did.
    pub txn: txn_client::TxnStats,
    /// What the GC operations did.
    pub gc: gc::GcStats,
    /// Committed list-append transactions that appended.
    pub list_appends_committed: usize,
    /// Membership changes applied to the region that had the most (its conf version
    /// minus the initial one).
    pub conf_changes_applied: u64,
    /// `MsgTimeoutNow` delivered: leader transfers the leader carried out.
    pub leader_transfers: u64,
}

impl Outcome {
    /// The history, one operation per line.
    pub fn history_text(&self) -> String {
        let mut s = String::new();
        for (i, op) in self.history.iter().enumerate() {
            s.push_str(&op.line(i));
            s.push('\n');
        }
        s
    }

    /// Acknowledged puts.
    pub fn acked_puts(&self) -> usize {
        self.count(|op| matches!(op.op, Op::Put { .. }) && matches!(op.result, OpResult::Ok(_)))
    }

    /// Acknowledged gets that returned a value.
    pub fn gets_with_values(&self) -> usize {
        self.count(|op| {
            matches!(op.op, Op::Get { .. }) && matches!(op.result, OpResult::Ok(Some(_)))
        })
    }

    /// Compare-and-swaps that swapped (`true`) or found another value (`false`).
    pub fn cas_answered(&self, swapped: bool) -> usize {
        self.count(|op| matches!(op.result, OpResult::Swapped { swapped: s, .. } if s == swapped))
    }

    /// Operations whose outcome is unknown (timed out).
    pub fn unknown_ops(&self) -> usize {
        self.count(|op| matches!(op.result, OpResult::Unknown(_)))
    }

    fn count(&self, f: impl Fn(&OpRecord) -> bool) -> usize {
        self.history.iter().filter(|op| f(op)).count()
    }

    /// A one-line summary.
    pub fn summary(&self) -> String {
        format!(
            "seed {}: {} steps, {:?} virtual, {} messages, {} ops ({} puts acknowledged, {} cas \
             swapped, {} not, {} unknown), leaders {:?}, faults: {}; {} regions at the end, {} conf changes \
             applied, {} leader transfers made; txn {:?}; {:?}; {}; {} violations",
            self.seed,
            self.steps,
            self.virtual_time,
            self.delivered,
            self.history.len(),
            self.acked_puts(),
            self.cas_answered(true),
            self.cas_answered(false),
            self.unknown_ops(),
            self.leaders,
            self.faults,
            self.regions,
            self.conf_changes_applied,
            self.leader_transfers,
            self.txn,
            self.gc,
            self.check,
            self.violations.len()
        )
    }

    /// What a failing run prints: its summary, each violation (a linearizability violation
    /// with its shortened history), the last trace lines and `replay`.
    pub fn report(&self, replay: &str) -> String {
        let tail: Vec<&str> = self.trace.lines().rev().take(30).collect();
        format!(
            "{}\nviolations:\n  {}\nlast trace lines:\n{}\nreplay: {replay}",
            self.summary(),
            self.violations.join("\n  "),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
        )
    }

    /// Panics with the report and the replay command if the run found a problem.
    pub fn assert_ok(&self, test: &str) {
        if !self.violations.is_empty() {
            panic!("{}", self.report(&replay_command(self.seed, test)));
        }
    }
}

/// Load steps of one run of the seed sweeps (the 50-seed test and `examples/simulate.rs`).
pub const SWEEP_STEPS: u64 = 20_000;

/// The cluster a seed sweep runs for `seed`: every third seed has 5 stores (so a partition
/// can split 2 | 3 and two stores can be down at once), the others 3; faults on. About
/// half the seeds (drawn from the seed) also run the bank workload, and about half the
/// list-append workload, each with 1 to 3 clients.
pub fn sweep_config(seed: u64) -> SimConfig {
    use rand::{Rng, SeedableRng};
    let mut draw = rand::rngs::StdRng::seed_from_u64(seed ^ 0x6261_6e6b);
    let bank_clients = if draw.gen_bool(0.5) {
        draw.gen_range(1..=3)
    } else {
        0
    };
    let list_clients = if draw.gen_bool(0.5) {
        draw.gen_range(1..=3)
    } else {
        0
    };
    SimConfig {
        stores: if seed.is_multiple_of(3) { 5 } else { 3 },
        bank_clients,
        list_clients,
        ..SimConfig::default()
    }
}

/// One run of a seed sweep: [`sweep_config`] for [`SWEEP_STEPS`] steps.
pub fn sweep_run(seed: u64) -> Outcome {
    run_with(seed, SWEEP_STEPS, sweep_config(seed))
}

/// The command that replays `seed` of a seed sweep in a release build.
pub fn sweep_replay_command(seed: u64) -> String {
    format!("cargo run --release -p sim --example simulate -- --seeds 1 --start {seed} --verbose")
}

/// The command that replays `seed` in `test` (a test of crates/sim/tests/sim.rs).
pub fn replay_command(seed: u64, test: &str) -> String {
    format!("SIM_SEED={seed} cargo test -p sim --test sim -- {test} --exact --nocapture")
}

/// The seed in `SIM_SEED`, if set.
pub fn seed_from_env() -> Option<u64> {
    std::env::var("SIM_SEED").ok().and_then(|s| s.parse().ok())
}

/// Simulates the default cluster (3 stores, 4 clients on 3 hot keys, faults on) for
/// `steps` steps of load from `seed`, then drains, reads every key back and checks the
/// history.
pub fn run(seed: u64, steps: u64) -> Outcome {
    run_with(seed, steps, SimConfig::default())
}

/// [`run`] with a chosen shape. Panics if a store thread is running when it ends: a
/// simulated run starts none.
pub fn run_with(seed: u64, steps: u64, cfg: SimConfig) -> Outcome {
    let before = world::store_threads();
    let sim = world::Sim::new(seed, cfg);
    let out = sim.run(seed, steps);
    let after = world::store_threads();
    assert!(
        after <= before,
        "seed {seed}: store threads went from {before} to {after} during a simulated run"
    );
    out
}
