//! The simulator's own tests: determinism (same seed, same run, faults included), that
//! seeds matter, and batches of seeds under faults that each elect a leader, acknowledge
//! writes, check as linearizable and read every acknowledged write back.
//!
//! Replay a failing seed with the command its panic prints
//! (`SIM_SEED=<seed> cargo test -p sim --test sim -- <test> --exact --nocapture`).

use std::time::Instant;

/// Load steps of one run in these tests.
const STEPS: u64 = 20_000;

fn seed_or(default: u64) -> u64 {
    sim::seed_from_env().unwrap_or(default)
}

#[test]
fn the_same_seed_gives_the_same_history() {
    let seed = seed_or(7);
    let started = Instant::now();
    let a = sim::run(seed, STEPS);
    let b = sim::run(seed, STEPS);
    eprintln!("{} ({:?} for two runs)", a.summary(), started.elapsed());
    a.assert_ok("the_same_seed_gives_the_same_history");
    assert!(!a.leaders.is_empty(), "no leader was elected");
    assert!(
        a.acked_puts() >= 50,
        "only {} puts acknowledged",
        a.acked_puts()
    );
    assert!(a.gets_with_values() > 0, "no get read a value");
    if a.trace != b.trace {
        let (n, (la, lb)) = a
            .trace
            .lines()
            .zip(b.trace.lines())
            .enumerate()
            .find(|(_, (x, y))| x != y)
            .expect("traces of different lengths with a common prefix");
        panic!(
            "seed {seed}: the traces differ at line {n}:\n  first:  {la}\n  second: {lb}\nreplay: {}",
            sim::replay_command(seed, "the_same_seed_gives_the_same_history")
        );
    }
    assert_eq!(a.history_text(), b.history_text(), "histories differ");
    assert_eq!((a.steps, a.virtual_time), (b.steps, b.virtual_time));
}

#[test]
fn different_seeds_give_different_schedules() {
    let seed = seed_or(11);
    let a = sim::run(seed, STEPS / 3);
    let b = sim::run(seed + 1, STEPS / 3);
    a.assert_ok("different_seeds_give_different_schedules");
    b.assert_ok("different_seeds_give_different_schedules");
    assert_ne!(
        a.trace,
        b.trace,
        "seeds {seed} and {} ran the same schedule",
        seed + 1
    );
}

#[test]
fn twenty_seeds_elect_a_leader_and_keep_every_acknowledged_write() {
    let first = seed_or(1000);
    let count = if sim::seed_from_env().is_some() {
        1
    } else {
        20
    };
    let started = Instant::now();
    for seed in first..first + count {
        let out = sim::run(seed, STEPS);
        let test = "twenty_seeds_elect_a_leader_and_keep_every_acknowledged_write";
        out.assert_ok(test);
        assert!(
            !out.leaders.is_empty() && out.acked_puts() > 0,
            "{}\nreplay: {}",
            out.summary(),
            sim::replay_command(seed, test)
        );
    }
    eprintln!("{count} seeds in {:?}", started.elapsed());
}

/// 50 seeds under every fault (drops, duplicates, reordering, partitions, isolation, store
/// crashes with torn writes, scheduler crashes, raft logs failing with I/O errors, which
/// stop their store until it restarts on a healthy disk) and cluster operation (leader transfers,
/// splits at the hot keys, peer removals and additions), 3 or 5 stores: each history must
/// check as linearizable, every acknowledged write must read back, every crashed store
/// must start again on what its disk kept, and the faults and operations must actually
/// have happened (splits, membership changes and transfers took effect in some seeds).
#[test]
fn fifty_seeds_with_faults_are_linearizable() {
    let test = "fifty_seeds_with_faults_are_linearizable";
    let first = seed_or(5000);
    let count = if sim::seed_from_env().is_some() {
        1
    } else {
        50
    };
    let started = Instant::now();
    let mut total = sim::FaultCounts::default();
    // Seeds whose cluster ended with more than one region, with a membership change
    // applied, and with a leader transfer carried out: the operations took effect.
    let (mut split, mut changed, mut transferred) = (0, 0, 0);
    // Compare-and-swaps (through the stores' real raw storage layer) that swapped, and
    // that found another value.
    let (mut swapped, mut refused) = (0, 0);
    // Bank seeds, and what their transactions did.
    let (mut bank_seeds, mut txn) = (0, sim::txn_client::TxnStats::default());
    // List-append seeds, and their committed transactions that appended.
    let (mut list_seeds, mut appended) = (0, 0);
    let mut gc = sim::gc::GcStats::default();
    for seed in first..first + count {
        let out = sim::sweep_run(seed);
        out.assert_ok(test);
        split += u32::from(out.regions > 1);
        changed += u32::from(out.conf_changes_applied > 0);
        transferred += u32::from(out.leader_transfers > 0);
        swapped += out.cas_answered(true);
        refused += out.cas_answered(false);
        gc.advances += out.gc.advances;
        gc.rounds += out.gc.rounds;
        gc.regions_collected += out.gc.regions_collected;
        gc.versions_deleted += out.gc.versions_deleted;
        if sim::sweep_config(seed).list_clients > 0 {
            list_seeds += 1;
            appended += out.list_appends_committed;
        }
        if sim::sweep_config(seed).bank_clients > 0 {
            bank_seeds += 1;
            txn.committed += out.txn.committed;
            txn.unknown += out.txn.unknown;
            txn.aborted += out.txn.aborted;
            txn.snapshots += out.txn.snapshots;
            txn.locks_resolved += out.txn.locks_resolved;
        }
        assert!(
            !out.leaders.is_empty() && out.acked_puts() > 0,
            "{}\nreplay: {}",
            out.summary(),
            sim::replay_command(seed, test)
        );
        total += out.faults;
    }
    eprintln!(
        "{count} seeds in {:?}: {total}; seeds that split {split}, changed membership \
         {changed}, transferred leadership {transferred}; cas swapped {swapped}, not {refused}; {bank_seeds} bank seeds: {txn:?}; {list_seeds} list-append seeds, {appended} \
         appending transactions committed; {gc:?}",
        started.elapsed()
    );
    if count == 50 {
        // The sweep exercised every kind of fault (the rates are drawn per seed).
        for (what, n) in [
            ("drops", total.drops),
            ("duplicates", total.dups),
            ("reorders", total.reorders),
            ("partitions", total.partitions),
            ("isolations", total.isolations),
            ("crashes", total.crashes),
            ("torn crashes", total.torn),
            ("restarts", total.restarts),
            ("scheduler crashes", total.scheduler_crashes),
            ("leader transfers asked", total.transfers),
            ("splits asked", total.splits),
            ("peer removals", total.conf_changes),
            ("peer additions", total.peers_added),
            ("I/O errors", total.io_errors),
            ("stores stopped by an I/O error", total.io_fatal),
            ("clock drifts", total.drifts),
            ("GC operations", total.gc_ops),
            ("storage-layer stalls", total.stalls),
        ] {
            assert!(n > 0, "50 seeds injected no {what}: {total}");
        }
        for (what, n) in [
            ("ended with more than one region", split),
            ("applied a membership change", changed),
            ("carried out a leader transfer", transferred),
            ("had a compare-and-swap swap", swapped as u32),
            ("had a compare-and-swap find another value", refused as u32),
            ("ran the bank", bank_seeds),
            ("committed a bank transfer", txn.committed as u32),
            ("took a bank snapshot", txn.snapshots as u32),
            ("resolved a lock", txn.locks_resolved as u32),
            ("ran list-append transactions", list_seeds),
            ("committed a list append", appended as u32),
            ("moved the GC safe point", gc.advances as u32),
            ("ran a GC round", gc.rounds as u32),
            ("had GC delete an MVCC version", gc.versions_deleted as u32),
        ] {
            assert!(n > 0, "none of 50 seeds {what}");
        }
    }
}
