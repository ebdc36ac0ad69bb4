//! Raw put/get/delete on a few hot keys from several client threads, while a chaos thread
//! partitions and isolates stores, moves leaders, splits the region between the keys and
//! stops and restarts a store. Every operation is recorded (`history::Recorder`, see
//! `test_cluster::recorded` for what counts as Failed or Unknown) and the history must be
//! linearizable per key (`history::linearizability`). After the chaos the network heals,
//! every store runs again and each key is read once more through the cluster: those final
//! reads are in the history too, so an acknowledged write lost by a restart or a leader
//! change fails the same check.
//!
//! Compare-and-swap is left out: the harness sends raft commands, which have no
//! conditional write. A failing run prints the seed (`TESSERA_TEST_SEED` replays the
//! harness's choices, not the thread interleaving), the chaos it ran and the checker's
//! counterexample.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use history::linearizability::{check, Verdict};
use history::{Op, Outcome, Recorder, Ret};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use test_cluster::scenario::scenario_lock;
use test_cluster::transport::{IsolationFilter, PartitionFilter};
use test_cluster::Cluster;

const KEYS: [&[u8]; 4] = [b"hot-a", b"hot-b", b"hot-c", b"hot-d"];
const CLIENTS: u64 = 5;
const RUN_FOR: Duration = Duration::from_secs(12);
/// How long a client keeps retrying one operation after refusals that prove nothing was
/// applied, before recording it as Failed.
const OP_DEADLINE: Duration = Duration::from_secs(3);

fn random_op(rng: &mut StdRng, client: u64, i: u64) -> Op {
    let key = KEYS[rng.gen_range(0..KEYS.len())].to_vec();
    match rng.gen_range(0..100) {
        0..=44 => Op::Get { key },
        45..=89 => Op::Put {
            key,
            // Unique per key: the checker can tell every write apart.
            value: format!("c{client}-{i}").into_bytes(),
        },
        _ => Op::Delete { key },
    }
}

/// Runs one random fault, and undoes it (heals, restarts) before returning.
fn chaos_step(c: &Cluster, rng: &mut StdRng, log: &Mutex<Vec<String>>) {
    let stores = c.count;
    let hold = Duration::from_millis(rng.gen_range(300..900));
    let what = match rng.gen_range(0..5) {
        0 => {
            // Two non-empty sides.
            let mut all: Vec<u64> = (1..=stores).collect();
            all.shuffle(rng);
            let cut = rng.gen_range(1..all.len());
            let (s1, s2) = (all[..cut].to_vec(), all[cut..].to_vec());
            let what = format!("partition {s1:?} | {s2:?} for {hold:?}");
            c.add_filter(PartitionFilter { s1, s2 });
            thread::sleep(hold);
            c.clear_filters();
            what
        }
        1 => {
            let s = rng.gen_range(1..=stores);
            c.add_filter(IsolationFilter(s));
            thread::sleep(hold);
            c.clear_filters();
            format!("isolate store {s} for {hold:?}")
        }
        2 => {
            c.refresh_regions();
            let regions = c.cached_regions();
            let region = &regions[rng.gen_range(0..regions.len())];
            let peer = region.peers[rng.gen_range(0..region.peers.len())];
            let accepted = c.try_transfer_leader(region.id, peer);
            format!(
                "transfer leader of region {} to store {} (accepted: {accepted})",
                region.id, peer.store_id
            )
        }
        3 => {
            let key = KEYS[rng.gen_range(1..KEYS.len())];
            let asked = c.ask_split_at(key);
            format!(
                "split at {:?} (asked: {asked})",
                String::from_utf8_lossy(key)
            )
        }
        _ => {
            let s = rng.gen_range(1..=stores);
            c.stop_store(s);
            thread::sleep(hold);
            c.start_store(s);
            format!("restart store {s} after {hold:?}")
        }
    };
    log.lock().unwrap().push(what);
}

#[test]
fn raw_ops_on_hot_keys_are_linearizable_under_partitions_and_restarts() {
    linearizable_under_chaos(raftstore::Config::for_tests());
}

/// The same with apply threads writing the KV batches (see tests/apply_threads.rs): a read
/// must not run ahead of what the engine holds.
#[test]
fn raw_ops_are_linearizable_with_apply_threads_under_partitions_and_restarts() {
    let mut cfg = raftstore::Config::for_tests();
    cfg.apply_pool_size = Some(1);
    linearizable_under_chaos(cfg);
}

fn linearizable_under_chaos(cfg: raftstore::Config) {
    let _g = scenario_lock();
    let started = Instant::now();
    let c = Arc::new(Cluster::new(3, cfg));
    c.run();
    let rec = Arc::new(Recorder::new());
    let done = Arc::new(AtomicBool::new(false));
    let seeds: Vec<u64> = c
        .net()
        .with_rng(|r| (0..=CLIENTS).map(|_| r.gen()).collect());
    let clients: Vec<_> = (0..CLIENTS)
        .map(|id| {
            let (c, rec, done) = (c.clone(), rec.clone(), done.clone());
            let mut rng = StdRng::seed_from_u64(seeds[id as usize]);
            thread::spawn(move || {
                let mut i = 0;
                while !done.load(Ordering::Relaxed) {
                    let op = random_op(&mut rng, id, i);
                    c.recorded_op(&rec, id, op, None, OP_DEADLINE);
                    i += 1;
                }
            })
        })
        .collect();
    let log = Arc::new(Mutex::new(Vec::new()));
    let chaos = {
        let (c, done, log) = (c.clone(), done.clone(), log.clone());
        let mut rng = StdRng::seed_from_u64(seeds[CLIENTS as usize]);
        thread::spawn(move || {
            thread::sleep(Duration::from_millis(300));
            while !done.load(Ordering::Relaxed) {
                chaos_step(&c, &mut rng, &log);
                thread::sleep(Duration::from_millis(rng.gen_range(100..400)));
            }
        })
    };
    thread::sleep(RUN_FOR);
    done.store(true, Ordering::Relaxed);
    chaos.join().expect("chaos thread");
    c.clear_filters();
    c.start_all();
    for h in clients {
        h.join().expect("client thread");
    }
    // The final reads: every key once more, through whichever store leads it now.
    for key in KEYS {
        let out = c.recorded_op(
            &rec,
            CLIENTS,
            Op::Get { key: key.to_vec() },
            None,
            Duration::from_secs(20),
        );
        assert!(
            matches!(out, Outcome::Ok(_)),
            "final read of {:?} failed (seed {})",
            String::from_utf8_lossy(key),
            c.seed
        );
    }
    let history = rec.history();
    history
        .validate()
        .expect("the recorder writes well-formed histories");
    let (ok, failed, unknown) = history.outcome_counts();
    let chaos_log = log.lock().unwrap().join("\n  ");
    let verdict = check(&history);
    eprintln!(
        "{} ops ({ok} ok, {failed} failed, {unknown} unknown) in {:?}; chaos:\n  {chaos_log}\nverdict: {verdict:?}",
        history.len(),
        started.elapsed()
    );
    match verdict {
        Verdict::Linearizable(summary) => assert_eq!(summary.keys, KEYS.len()),
        Verdict::Violation(cx) => panic!(
            "not linearizable (seed {}, replay the harness's choices with TESSERA_TEST_SEED={}):\n{cx}",
            c.seed, c.seed
        ),
        Verdict::Undecided { key, steps } => panic!(
            "no verdict for key {:?} after {steps} steps (seed {})",
            String::from_utf8_lossy(&key),
            c.seed
        ),
    }
    // Not a vacuous pass: writes were acknowledged and reads saw them.
    let writes_ok = history
        .entries()
        .iter()
        .filter(|e| e.op.is_write() && matches!(e.outcome, Outcome::Ok(_)))
        .count();
    let reads_of_values = history
        .entries()
        .iter()
        .filter(|e| matches!(&e.outcome, Outcome::Ok(Ret::Value(Some(_)))))
        .count();
    assert!(
        writes_ok >= 20 && reads_of_values >= 20,
        "too little happened to check: {writes_ok} writes, {reads_of_values} reads of a value (seed {})",
        c.seed
    );
    c.shutdown();
}
