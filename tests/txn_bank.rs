//! The bank-transfer invariant under faults, through the official `TransactionClient`:
//! 8 workers (optimistic, pessimistic, async commit and 1PC, two each) move money between
//! 100 accounts while regions split, leaders move and a store is stopped and restarted
//! (a scheduler and three stores in this process, on loopback gRPC). A checker reading at
//! fresh timestamps always sees the same total and no negative balance; at the end no lock
//! is left.
//!
//! `TESSERA_BANK_SECS` sets how long the transfers run (default 20 s).

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bench::bank::{self, Bank, Stats};
use common::TestCluster;

fn run_secs() -> u64 {
    std::env::var("TESSERA_BANK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20)
}

async fn bank_under_faults(api_version: u8) {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = TestCluster::start(dir.path(), api_version).await;
    let bank = Bank {
        accounts: 100,
        initial: 1000,
        v2: api_version == 2,
    };
    if bank.v2 {
        // Wait for the keyspace edges, so splits below land inside the keyspace.
        cluster.wait_for_keyspace_edges(b'x').await;
    }
    let pd = cluster.pd_addr();
    let client = bank.client(&pd).await.unwrap();
    bank.setup(&client).await.unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let stats = Arc::new(Stats::default());
    let seed = std::env::var("TESSERA_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    eprintln!("bank seed {seed} (TESSERA_TEST_SEED replays the workers' choices)");
    let tasks = bank::spawn(bank, pd.clone(), 8, seed, stop.clone(), stats.clone());

    // Faults while the transfers run: splits, leader moves, a store stopped and restarted.
    let secs = run_secs();
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut step = 0u32;
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(secs * 1000 / 8)).await;
        match step % 4 {
            0 => {
                cluster
                    .split_at(&bank.stored_key(25 * (step / 4 % 3 + 1)))
                    .await
            }
            1 => {
                let regions = cluster.regions().await;
                for r in regions["regions"].as_array().unwrap() {
                    let id = r["id"].as_u64().unwrap();
                    let to = 1 + (id + step as u64) % 3;
                    cluster.transfer_leader(id, to).await;
                }
            }
            2 => {
                let victim = (step as usize / 4) % 3;
                cluster.stop_store(victim).await;
                tokio::time::sleep(Duration::from_secs(2)).await;
                cluster.restart_store(victim).await;
            }
            _ => {}
        }
        step += 1;
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("worker or checker panicked");
    }
    let end = bank::final_check(&bank, &client).await.unwrap();
    eprintln!("bank (API V{api_version}): {}", stats.summary());
    if end.locks_cleaned > 0 {
        eprintln!(
            "readers left {} to the GC lock cleanup, which resolved {}",
            end.lingering, end.locks_cleaned
        );
    }
    assert!(
        stats.committed.load(Ordering::Relaxed) > 0,
        "no transfer committed: {}",
        stats.summary()
    );
    assert!(
        stats.checks.load(Ordering::Relaxed) > 0,
        "the checker never read"
    );
    for (i, c) in stats.per_mode.iter().enumerate() {
        assert!(
            c.load(Ordering::Relaxed) > 0,
            "no {:?} transfer committed: {}",
            bank::MODES[i],
            stats.summary()
        );
    }
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bank_transfers_keep_the_total_under_splits_leader_moves_and_restarts_v1() {
    bank_under_faults(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bank_transfers_keep_the_total_under_splits_leader_moves_and_restarts_v2() {
    bank_under_faults(2).await;
}
