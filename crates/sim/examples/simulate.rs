//! Runs a sweep of simulated seeds and reports throughput, the faults of each seed, and
//! every failure with the command that replays it.
//!
//! ```sh
//! cargo run --release -p sim --example simulate -- --seeds 1000 [--start 0] [--verbose] [--out DIR]
//! ```
//!
//! Each seed is one run of `sim::sweep_run` (the same runs as the 50-seed test): 3 or 5
//! stores, every fault on, the history checked for linearizability and lost writes. One
//! line per seed gives its faults; `--verbose` also prints a failing seed's whole report
//! (the shortened history of the violating key, the last trace lines); `--out DIR` writes
//! each seed's whole trace and history to `DIR/sim-<seed>.trace` and `.history` (to read,
//! or to diff two runs of one seed). Exits non-zero if any seed failed.

use std::time::Instant;

fn main() {
    let mut seeds = 100u64;
    let mut start = 0u64;
    let mut verbose = false;
    let mut out_dir: Option<std::path::PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut num = |name: &str| -> u64 {
            args.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{name} takes a number"))
        };
        match a.as_str() {
            "--seeds" => seeds = num("--seeds"),
            "--start" => start = num("--start"),
            "--verbose" => verbose = true,
            "--out" => {
                out_dir = Some(
                    args.next()
                        .unwrap_or_else(|| panic!("--out takes a directory"))
                        .into(),
                )
            }
            other => {
                eprintln!(
                    "unknown argument {other}; usage: --seeds N [--start S] [--verbose] [--out DIR]"
                );
                std::process::exit(2);
            }
        }
    }
    let began = Instant::now();
    let mut total = sim::FaultCounts::default();
    let mut failures = Vec::new();
    let mut ops = 0usize;
    for seed in start..start + seeds {
        let t = Instant::now();
        let out = sim::sweep_run(seed);
        if let Some(dir) = &out_dir {
            std::fs::write(dir.join(format!("sim-{seed}.trace")), &out.trace)
                .expect("write the trace");
            std::fs::write(dir.join(format!("sim-{seed}.history")), out.history_text())
                .expect("write the history");
        }
        total += out.faults;
        ops += out.history.len();
        let verdict = if out.violations.is_empty() {
            "ok"
        } else {
            "FAILED"
        };
        let cfg = sim::sweep_config(seed);
        let mut txns = String::new();
        if cfg.bank_clients + cfg.list_clients > 0 {
            txns = format!(
                "; {} bank / {} list-append clients: {} txns committed, {} unknown, {} \
                 snapshots, {} locks resolved",
                cfg.bank_clients,
                cfg.list_clients,
                out.txn.committed,
                out.txn.unknown,
                out.txn.snapshots,
                out.txn.locks_resolved
            );
        }
        println!(
            "seed {seed} {verdict} ({} stores, {} ops, {:.2}s): {}; {} regions, {} conf \
             changes, {} transfers made; cas {} swapped {} not{txns}; gc {} rounds, {} \
             versions deleted",
            cfg.stores,
            out.history.len(),
            t.elapsed().as_secs_f64(),
            out.faults,
            out.regions,
            out.conf_changes_applied,
            out.leader_transfers,
            out.cas_answered(true),
            out.cas_answered(false),
            out.gc.rounds,
            out.gc.versions_deleted
        );
        if !out.violations.is_empty() {
            let replay = sim::sweep_replay_command(seed);
            if verbose {
                println!("{}", out.report(&replay));
            } else {
                let first = out.violations[0].lines().next().unwrap_or_default();
                println!("  {first}\n  replay: {replay}");
            }
            failures.push((seed, replay));
        }
    }
    let secs = began.elapsed().as_secs_f64();
    println!(
        "\n{seeds} seeds in {secs:.1}s: {:.1} seeds per minute, {ops} ops; faults in all: \
         {total}",
        seeds as f64 * 60.0 / secs.max(1e-9)
    );
    println!("{} failed", failures.len());
    for (seed, replay) in &failures {
        println!("  seed {seed}: {replay}");
    }
    if !failures.is_empty() {
        std::process::exit(1);
    }
}
