//! Planted bugs (issue 11 item 4): proof that the history checkers can fail on a real
//! cluster, not only on hand-made histories.
//!
//! The stale-read bug is raftstore's test-only fail point
//! `planted_read_without_lease_or_read_index`: while it is configured, a read that reaches a
//! store's poller is served from that peer's engine at once, with no leadership, lease or
//! ReadIndex check. Each round isolates the region's leader, keeps reading the key on the
//! isolated old leader and on a follower (clients with a stale region cache address them
//! directly), and writes new values through whichever other store leads now; every
//! operation is recorded and the round's history goes to the linearizability checker.
//! With the bug planted the checker must report a violation within a few rounds; the same
//! rounds without it must all check as linearizable.
//!
//! The skipped-fsync bug is raftstore's fail point `planted_raft_log_skips_fsync`: raft
//! log writes are never fsynced, so the power-loss rounds of `test_cluster::power_loss`
//! (every store's raft log loses its unsynced writes at once) must find an acknowledged
//! write gone, or a store unable to start on what is left.
//!
//! The fail point registry is global to the process: `fail::FailScenario` serializes the
//! tests of this file and clears the fail point when each ends.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use history::linearizability::{check, Verdict};
use history::{Op, Outcome, Recorder};
use test_cluster::scenario::scenario_lock;
use test_cluster::Cluster;

const KEY: &[u8] = b"planted";
const STALE_READS: &str = "planted_read_without_lease_or_read_index";
const WRITES_PER_ROUND: u64 = 20;
/// Rounds the planted bug is given to show up (it shows up in the first, in practice).
const MAX_ROUNDS: u64 = 3;

fn get() -> Op {
    Op::Get { key: KEY.to_vec() }
}

/// A thread reading `KEY` at `store` only, recording each read, until stopped.
fn pinned_reader(
    c: Arc<Cluster>,
    rec: Arc<Recorder>,
    client: u64,
    store: u64,
    stop: Arc<AtomicBool>,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            c.recorded_op(&rec, client, get(), Some(store), Duration::from_millis(300));
            // Thousands of reads per round, not hundreds of thousands.
            thread::sleep(Duration::from_millis(1));
        }
    })
}

/// Writes `value` at whichever of `stores` accepts it, each try a recorded op of its own
/// (pinned, short); panics if none does within a generous deadline.
fn write_somewhere(c: &Cluster, rec: &Recorder, client: u64, stores: &[u64], value: String) {
    let deadline = Instant::now() + Duration::from_secs(30);
    for turn in 0.. {
        assert!(
            Instant::now() < deadline,
            "no store accepted {value} (seed {})",
            c.seed
        );
        let op = Op::Put {
            key: KEY.to_vec(),
            value: value.clone().into_bytes(),
        };
        let to = stores[turn % stores.len()];
        match c.recorded_op(rec, client, op, Some(to), Duration::from_millis(300)) {
            Outcome::Ok(_) => return,
            // Maybe applied: the next try writes a new value, so every value stays unique.
            Outcome::Unknown => {
                return write_somewhere(c, rec, client, stores, format!("{value}+"));
            }
            Outcome::Failed => {}
        }
    }
}

/// One round (see the module doc) on a healthy cluster; heals it again before returning.
fn round(c: &Arc<Cluster>, n: u64) -> Verdict {
    let rec = Arc::new(Recorder::new());
    let region = c.region_for_key(KEY).expect("the key's region");
    let leader = c.leader_of_region(region.id).expect("a leader");
    let others: Vec<u64> = (1..=c.count).filter(|s| *s != leader).collect();
    // The round's history starts from a value written in it: the checker knows nothing
    // of earlier rounds.
    let all: Vec<u64> = (1..=c.count).collect();
    write_somewhere(c, &rec, 0, &all, format!("{n}-before"));
    let stop = Arc::new(AtomicBool::new(false));
    let readers = [
        pinned_reader(c.clone(), rec.clone(), 1, leader, stop.clone()),
        pinned_reader(c.clone(), rec.clone(), 2, others[0], stop.clone()),
    ];
    c.isolate(leader);
    for i in 0..WRITES_PER_ROUND {
        write_somewhere(c, &rec, 0, &others, format!("{n}-{i}"));
    }
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.join().expect("reader thread");
    }
    c.clear_filters();
    let history = rec.history();
    history.validate().expect("well-formed history");
    let (ok, failed, unknown) = history.outcome_counts();
    eprintln!("round {n}: {ok} ok, {failed} failed, {unknown} unknown; old leader store {leader}");
    check(&history)
}

fn start() -> Arc<Cluster> {
    let c = Arc::new(Cluster::new(3, raftstore::Config::for_tests()));
    c.run();
    c.must_put(KEY, b"initial");
    c
}

#[test]
fn stale_reads_are_caught_by_the_checker() {
    let _g = scenario_lock();
    let scenario = fail::FailScenario::setup();
    let c = start();
    fail::cfg(STALE_READS, "return").expect("configure the planted bug");
    let mut verdicts = Vec::new();
    let caught = (1..=MAX_ROUNDS).find_map(|n| match round(&c, n) {
        Verdict::Violation(cx) => Some((n, cx)),
        other => {
            verdicts.push(other);
            None
        }
    });
    fail::remove(STALE_READS);
    let Some((n, cx)) = caught else {
        panic!(
            "the planted stale read went unnoticed for {MAX_ROUNDS} rounds: {verdicts:?} (seed {})",
            c.seed
        );
    };
    eprintln!("caught in round {n}:\n{cx}");
    assert_eq!(cx.key, KEY);
    c.shutdown();
    scenario.teardown();
}

#[test]
fn without_the_planted_bug_the_same_rounds_are_linearizable() {
    let _g = scenario_lock();
    let scenario = fail::FailScenario::setup();
    let c = start();
    for n in 1..=2 {
        match round(&c, n) {
            Verdict::Linearizable(s) => assert!(s.ops > WRITES_PER_ROUND as usize),
            Verdict::Violation(cx) => panic!("round {n} (seed {}):\n{cx}", c.seed),
            v => panic!("round {n}: no verdict {v:?} (seed {})", c.seed),
        }
    }
    c.shutdown();
    scenario.teardown();
}

/// raftstore's fail point `planted_raft_log_skips_fsync`: raft log writes are never
/// fsynced.
const SKIPPED_FSYNC: &str = "planted_raft_log_skips_fsync";

/// With every raft log fsync skipped, the power-loss rounds (every store loses its unsynced
/// writes at once) must notice within three rounds: an acknowledged write is gone, or a
/// store cannot start on what is left. The same rounds with the fsync in place pass
/// (`persist.rs`: `acknowledged_writes_survive_every_store_losing_power_at_once`).
#[test]
fn a_skipped_fsync_is_caught_by_the_power_loss_rounds() {
    let _g = scenario_lock();
    let scenario = fail::FailScenario::setup();
    let c = start();
    fail::cfg(SKIPPED_FSYNC, "return").expect("configure the planted bug");
    let report = test_cluster::power_loss::power_loss_rounds(&c, 3, 3);
    fail::remove(SKIPPED_FSYNC);
    eprintln!("seed {}: {report:?}", c.seed);
    assert!(
        report.check.is_err(),
        "a log that is never fsynced lost nothing acknowledged in 3 power losses (seed {})",
        c.seed
    );
    assert!(report.lost_bytes > 0, "{report:?}");
    c.shutdown();
    scenario.teardown();
}
