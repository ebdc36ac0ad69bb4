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

/// Keys of the list-append workload (their lists are comma-separated numbers).
const LIST_KEYS: usize = 6;

fn list_key(i: usize) -> Vec<u8> {
    format!("list/{i:02}").into_bytes()
}

fn decode_list(v: Option<Vec<u8>>) -> Vec<u64> {
    v.map(|b| {
        String::from_utf8(b)
            .expect("a list is UTF-8")
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().expect("a list holds numbers"))
            .collect()
    })
    .unwrap_or_default()
}

fn encode_list(l: &[u64]) -> Vec<u8> {
    l.iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(",")
        .into_bytes()
}

/// One list-append transaction in `mode` over `keys` (append where `appends` says so,
/// read every key first): its operations and how it ended. Pessimistic transactions lock
/// every key they touch (`get_for_update`), so all their reads are of locked, current
/// values; the others read their snapshot.
async fn list_append_txn(
    client: &tikv_client::TransactionClient,
    mode: bench::args::TxnMode,
    keys: &[usize],
    appends: &[bool],
    next_value: &std::sync::atomic::AtomicU64,
) -> Option<(
    history::list_append::TxnStatus,
    Vec<history::list_append::Mop>,
)> {
    use history::list_append::{Mop, TxnStatus};
    let mut txn = client
        .begin_with_options(bench::tikv::transaction_options(mode))
        .await
        .ok()?;
    let mut mops = Vec::new();
    for (&k, &append) in keys.iter().zip(appends) {
        let key = list_key(k);
        let read = if mode == bench::args::TxnMode::Pessimistic {
            txn.get_for_update(key.clone()).await
        } else {
            txn.get(key.clone()).await
        };
        let Ok(read) = read else {
            let _ = txn.rollback().await;
            return Some((TxnStatus::Aborted, mops));
        };
        let mut list = decode_list(read);
        mops.push(Mop::Read {
            key: format!("{k}"),
            value: Some(list.clone()),
        });
        if append {
            let v = next_value.fetch_add(1, Ordering::Relaxed);
            list.push(v);
            mops.push(Mop::Append {
                key: format!("{k}"),
                value: v,
            });
            if txn.put(key, encode_list(&list)).await.is_err() {
                let _ = txn.rollback().await;
                return Some((TxnStatus::Aborted, mops));
            }
        }
    }
    // A commit that fails may still have committed (its primary, or async commit's
    // prewrites): its appends may or may not be there.
    let status = match txn.commit().await {
        Ok(_) => TxnStatus::Committed,
        Err(_) => TxnStatus::Unknown,
    };
    Some((status, mops))
}

/// Elle's list-append workload through the official `TransactionClient` in all four modes,
/// while regions split between the keys, leaders move and a store stops and restarts:
/// every transaction reads lists and appends unique numbers to some; the history must show
/// snapshot isolation (`history::list_append`: no G0, G1a, G1b, G1c or G-single, every
/// read a prefix of one order per key).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_append_transactions_are_snapshot_isolated_under_faults() {
    use history::list_append::{check, Mop, TxnHistory, TxnStatus};
    use rand::{Rng, SeedableRng};
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = TestCluster::start(dir.path(), 1).await;
    let pd = cluster.pd_addr();
    let seed = std::env::var("TESSERA_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    eprintln!("list-append seed {seed} (TESSERA_TEST_SEED replays the workers' choices)");
    let history = Arc::new(parking_lot::Mutex::new(TxnHistory::new()));
    let next_value = Arc::new(std::sync::atomic::AtomicU64::new(1));
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for w in 0..6u64 {
        let (pd, history, next_value, stop) = (
            pd.clone(),
            history.clone(),
            next_value.clone(),
            stop.clone(),
        );
        workers.push(tokio::spawn(async move {
            let client = tikv_client::TransactionClient::new_with_config(
                vec![pd],
                bench::tikv::client_config(1),
            )
            .await
            .expect("transaction client");
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ w);
            let mut n = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let mode = bank::MODES[(w as usize + n) % bank::MODES.len()];
                n += 1;
                let count = rng.gen_range(1..=3);
                let mut keys: Vec<usize> = Vec::new();
                while keys.len() < count {
                    let k = rng.gen_range(0..LIST_KEYS);
                    if !keys.contains(&k) {
                        keys.push(k);
                    }
                }
                let appends: Vec<bool> = keys.iter().map(|_| rng.gen_bool(0.6)).collect();
                if let Some((status, mops)) =
                    list_append_txn(&client, mode, &keys, &appends, &next_value).await
                {
                    history.lock().push(status, mops);
                }
            }
        }));
    }
    // Faults: a split between the keys, leaders moved, a store stopped and restarted.
    let stored = |k: usize| codec::bytes::encode_bytes(&list_key(k));
    for step in 0..6u32 {
        tokio::time::sleep(Duration::from_secs(2)).await;
        match step {
            0 => cluster.split_at(&stored(2)).await,
            1 | 4 => {
                let regions = cluster.regions().await;
                for r in regions["regions"].as_array().unwrap() {
                    let id = r["id"].as_u64().unwrap();
                    cluster
                        .transfer_leader(id, 1 + (id + step as u64) % 3)
                        .await;
                }
            }
            2 => {
                cluster.stop_store(1).await;
                tokio::time::sleep(Duration::from_secs(2)).await;
                cluster.restart_store(1).await;
            }
            3 => cluster.split_at(&stored(4)).await,
            _ => {}
        }
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.expect("worker panicked");
    }
    // One last read of every list, so the final order of each key is known.
    let client = tikv_client::TransactionClient::new_with_config(
        vec![pd.clone()],
        bench::tikv::client_config(1),
    )
    .await
    .unwrap();
    // A transaction whose commit failed may have left locks behind. tikv-client 0.4's
    // readers cannot resolve every kind (a secondary whose primary was never written: its
    // CheckTxnStatus answer, TxnNotFound, reaches the reader as an error; async-commit
    // locks), so, as in the bank's final check, GC's lock cleanup runs once if reads keep
    // failing.
    let deadline = Instant::now() + Duration::from_secs(60);
    let started = Instant::now();
    let mut cleaned = false;
    let mops = loop {
        let mut last = client.begin_optimistic().await.unwrap();
        let mut mops = Vec::new();
        let mut failed = None;
        for k in 0..LIST_KEYS {
            match last.get(list_key(k)).await {
                Ok(v) => mops.push(Mop::Read {
                    key: format!("{k}"),
                    value: Some(decode_list(v)),
                }),
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        match failed {
            None => {
                last.commit().await.unwrap();
                break mops;
            }
            Some(e) => {
                let _ = last.rollback().await;
                assert!(
                    Instant::now() < deadline,
                    "the final read kept failing: {e}"
                );
                if !cleaned && started.elapsed() > Duration::from_secs(5) {
                    let ts = client.current_timestamp().await.unwrap();
                    let range = b"list/".to_vec()..b"list0".to_vec();
                    let r = client
                        .cleanup_locks(
                            range,
                            &ts,
                            tikv_client::transaction::ResolveLocksOptions::default(),
                        )
                        .await
                        .expect("lock cleanup");
                    eprintln!(
                        "final read: {e}; the lock cleanup resolved {}",
                        r.resolved_locks
                    );
                    cleaned = true;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    };
    let mut history = history.lock().clone();
    history.push(TxnStatus::Committed, mops);

    let committed = history
        .txns()
        .iter()
        .filter(|t| t.status == TxnStatus::Committed)
        .count();
    let longest = history
        .txns()
        .iter()
        .flat_map(|t| &t.mops)
        .filter_map(|m| match m {
            Mop::Read { value: Some(l), .. } => Some(l.len()),
            _ => None,
        })
        .max()
        .unwrap_or(0);
    eprintln!(
        "list-append: {} transactions, {committed} committed, longest list {longest}",
        history.txns().len()
    );
    assert!(
        committed >= 50,
        "too few transactions committed: {committed}"
    );
    assert!(longest >= 10, "the lists never grew: longest {longest}");
    let anomalies = check(&history);
    assert!(
        anomalies.is_empty(),
        "seed {seed}: {} anomalies, first: {}",
        anomalies.len(),
        anomalies[0]
    );
    cluster.stop().await;
}
