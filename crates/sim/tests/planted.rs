//! Planted bugs caught by the simulator (issue 11 item 4): with each of raftstore's
//! test-only fail points switched on, a bounded number of seeds must produce a failing
//! verdict; with it off, the same seeds pass.
//!
//! - `planted_read_without_lease_or_read_index`: a read reaching any peer is served from
//!   its engine at once (no leadership, lease or ReadIndex). Clients with a stale route
//!   send reads to followers and deposed leaders; the linearizability checker must report
//!   a stale read.
//! - `planted_raft_log_skips_fsync`: the raft log is never fsynced, so a crash rolls it
//!   back to the bootstrap; the store's KV data (which applied what the log held before
//!   the crash) is then ahead of its log. The run must report a store that cannot start
//!   again, or an acknowledged write lost.
//!
//! Fail points are global to the process: this file is its own test binary (no other
//! simulator test runs beside it), and `fail::FailScenario` serializes its tests and
//! clears the fail points when each ends.
//!
//! Replay a seed: `SIM_SEED=<seed> cargo test -p sim --test planted -- <test> --exact
//! --nocapture` (runs that seed with the bug on, then off).

use std::time::Instant;

/// Seeds each planted bug is given.
const SEEDS: u64 = 10;

fn seeds(default_first: u64) -> std::ops::Range<u64> {
    match sim::seed_from_env() {
        Some(s) => s..s + 1,
        None => default_first..default_first + SEEDS,
    }
}

fn replay(test: &str, seed: u64) -> String {
    format!("SIM_SEED={seed} cargo test -p sim --test planted -- {test} --exact --nocapture")
}

/// Runs `seeds` with fail point `point` on; returns (seed, report) of the failing runs that
/// `caught` accepts as catching the bug (after the first, the rest are only counted).
fn with_bug(
    point: &str,
    test: &str,
    seeds: std::ops::Range<u64>,
    caught: impl Fn(&sim::Outcome) -> bool,
) -> Vec<(u64, String)> {
    let scenario = fail::FailScenario::setup();
    fail::cfg(point, "return").expect("configure the fail point");
    let mut found = Vec::new();
    for seed in seeds {
        let out = sim::sweep_run(seed);
        if caught(&out) {
            found.push((seed, out.report(&replay(test, seed))));
        }
    }
    scenario.teardown();
    found
}

/// The same seeds without the bug must pass.
fn without_bug(test: &str, seeds: std::ops::Range<u64>) {
    let scenario = fail::FailScenario::setup();
    for seed in seeds {
        let out = sim::sweep_run(seed);
        assert!(
            out.violations.is_empty(),
            "without the planted bug:\n{}",
            out.report(&replay(test, seed))
        );
    }
    scenario.teardown();
}

#[test]
fn planted_stale_reads_are_caught_by_the_linearizability_checker() {
    let test = "planted_stale_reads_are_caught_by_the_linearizability_checker";
    let started = Instant::now();
    let found = with_bug(
        "planted_read_without_lease_or_read_index",
        test,
        seeds(9000),
        |out| {
            out.violations
                .iter()
                .any(|v| v.starts_with("linearizability violation"))
        },
    );
    let seconds = started.elapsed().as_secs_f64();
    assert!(
        !found.is_empty(),
        "no seed of {:?} caught the planted stale read",
        seeds(9000)
    );
    eprintln!(
        "stale reads caught by {} of {} seeds in {seconds:.1}s; the first:\n{}",
        found.len(),
        seeds(9000).count(),
        found[0].1
    );
    without_bug(test, seeds(9000));
}

#[test]
fn planted_skipped_fsync_is_caught_by_crashes() {
    let test = "planted_skipped_fsync_is_caught_by_crashes";
    let started = Instant::now();
    let found = with_bug("planted_raft_log_skips_fsync", test, seeds(9100), |out| {
        out.violations
            .iter()
            .any(|v| v.contains("cannot restart") || v.contains("acknowledged write lost"))
    });
    let seconds = started.elapsed().as_secs_f64();
    assert!(
        !found.is_empty(),
        "no seed of {:?} caught the planted skipped fsync",
        seeds(9100)
    );
    eprintln!(
        "skipped fsyncs caught by {} of {} seeds in {seconds:.1}s; the first:\n{}",
        found.len(),
        seeds(9100).count(),
        found[0].1
    );
    without_bug(test, seeds(9100));
}
